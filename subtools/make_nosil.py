#!/usr/bin/env python3
"""Sliding CMN then voiced-frame selection: SRC -> DST data dir (ASV-subtools stage 0, ``*_nosil``).

    python3 subtools/make_nosil.py --nj 4 --cmn-window 300 data/train data/train_nosil

As Kaldi ``apply-cmvn-sliding --norm-vars=false --center=true --cmn-window=300 | select-voiced-frames``.
Reads SRC/feats.scp and SRC/vad.scp; writes DST/data/nosil_feats_<dst>.<job>.ark/.scp, then DST
with every utterance/speaker table of SRC (wav.scp, utt2spk, utt2dur, spk2gender, ... and trials/)
restricted to the kept utterances, its own utt2num_frames (voiced frames) and, last, feats.scp.
vad.scp is not carried (all frames of DST are voiced).

Skipped and listed in ``DST/log/make_nosil.skipped`` (``utt reason``): utterances with 0 voiced
frames, without a vad.scp entry, or whose VAD length differs from the features.

``--cmd`` runs the jobs through a Kaldi-style runner (``local``, ``slurm ...``, ``queue.pl ...``; logs in
``DST/log/nosil_feats_<dst>.<job>.log``; see :mod:`subtools.parallel.dispatch`).
"""
import argparse
import os
import sys

from subtools.kaldi.ark_jobs import report_items, run_jobs
from subtools.cli import run_cli
from subtools.kaldi import fingerprint
from subtools.kaldi.data_dir import DataDir
from subtools.kaldi.fileio import write_table
from subtools.kaldi.lock import WAIT_HELP
from subtools.kaldi.nosil import NosilWorker, nosil_item
from subtools.parallel import dispatch


def make_nosil(src, dst, nj=1, cmn_window=300, compress=False, wait=False, cmd="", job=None):
    """Library entry point of the CLI; returns {utt: reason} of the skipped utterances. Holds the lock of
    ``dst`` (``wait``: wait for another run holding it instead of stopping). ``cmd``: the jobs' runner
    (``--cmd``); ``job``: this process is that dispatched job (a OneJob): it returns None."""
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError("make_nosil: DST must differ from SRC")
    job_args = ["--nj", nj, "--cmn-window", cmn_window, *(["--compress"] if compress else []), src, dst]
    runner = dispatch.stage_dispatch(cmd, job, __file__, job_args, os.path.join(dst, "log"))
    with dispatch.output_lock(dst, wait, f"data dir {dst}", job):
        return _make_nosil(src, dst, nj, cmn_window, compress, runner)


def _make_nosil(src, dst, nj, cmn_window, compress, runner):
    data = DataDir.load(src)
    if data.feats_scp is None or data.vad_scp is None:
        raise FileNotFoundError(f"{src}: feats.scp and vad.scp are required")
    skipped = {u: "no vad.scp entry" for u in data.feats_scp if u not in data.vad_scp}
    items = [(u, nosil_item(e, data.vad_scp[u])) for u, e in sorted(data.feats_scp.items()) if u in data.vad_scp]
    name = f"nosil_feats_{os.path.basename(os.path.normpath(dst))}"
    feats_scp = os.path.join(dst, "feats.scp")
    # the other tables of DST are copies of SRC's: a changed SRC table redoes the merge, not the jobs
    tables = fingerprint.dir_fingerprint(src, sorted({**data.utt_tables(), **data.spk_tables()}))
    result = run_jobs(
        items, lambda: NosilWorker(cmn_window), os.path.abspath(os.path.join(dst, "data")), name, nj,
        config_stamp=f"cmn_window={cmn_window}", compress=compress, outputs=[feats_scp], dispatch=runner,
        merge_stamp=str(sorted(tables.items())),
    )
    if result is None:   # a dispatched job: its parent merges
        return None
    skipped.update(result.failed)
    report_items(os.path.join(dst, "log", "make_nosil.skipped"), skipped, f"make_nosil {src}")
    if result.current:
        print(f"make_nosil: {dst} is complete ({len(result.scp)} utterances)", file=sys.stderr)
        return skipped
    if not result.scp:
        raise RuntimeError(f"make_nosil: no utterance of {src} kept; nothing written")
    out = data.select(result.scp)
    out.vad_scp = None
    out.feats_scp = None
    out.utt2num_frames = result.lengths
    out.save(dst)
    write_table(feats_scp, result.scp)
    result.mark_current()
    print(f"make_nosil: {len(result.scp)} utterances -> {dst}", file=sys.stderr)
    return skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    parser.add_argument("--cmn-window", type=int, default=300, help="sliding CMN window in frames (centred)")
    parser.add_argument("--compress", action="store_true", help="Kaldi-compress the arks")
    parser.add_argument("--wait", action="store_true", help=WAIT_HELP)
    dispatch.add_options(parser)
    parser.add_argument("src", help="data dir with feats.scp and vad.scp")
    parser.add_argument("dst", help="output data dir")
    args = parser.parse_args(argv)
    job = dispatch.job_from_args(parser, args)
    run_cli(make_nosil, args.src, args.dst, args.nj, args.cmn_window, args.compress, args.wait, args.cmd, job)


if __name__ == "__main__":
    main()
