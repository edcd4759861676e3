#!/usr/bin/env python3
"""Energy VAD of a data dir as Kaldi compute-vad (sid/compute_vad_decision.sh).

    python3 subtools/compute_vad.py --conf conf/vad.conf data/train

Writes ``DATA/data/vad_<set>.<job>.ark/.scp`` and ``DATA/vad.scp``: per utterance a float32 vector
``[T]`` of 0/1 (1 = voiced), T = the utterance's feature frames.

Where the log-energy comes from (``DATA/conf/feat_type`` and ``feats.conf``, written by
make_features.py): when the features carry it (MFCC with use-energy, Kaldi's default, also the MFCC
part of mfcc_pitch; fbank with use-energy) it is read from feats.scp: column 0, as Kaldi's compute-vad
reads it, except with htk-compat, where the energy is the last column (Kaldi's compute-vad would read C1
there; we read the energy).
Otherwise (our 80-dim fbank) it is computed from the audio in wav.scp: Kaldi's raw log-energy
(= MFCC C0) with the features' framing, so T matches utt2num_frames (checked).
Utterances whose features/audio fail are skipped and listed in ``DATA/log/compute_vad.failed``;
utterances with no voiced frame are kept and listed in ``DATA/log/vad.zero_voiced`` (make_nosil.py
skips them).

``make_features.py --vad-conf`` makes the same vad.scp in the feature pass, from the audio it has just
decoded (:class:`SamePassVad`: one read of the audio per utterance instead of two).

The VAD conf is read and checked before anything runs: an unknown option or a value Kaldi asserts on
(``--vad-proportion-threshold`` outside (0, 1), negative ``--vad-frames-context`` or
``--vad-energy-mean-scale``) stops the command with ``file:line``. ``--check-conf`` does only that.
"""
import argparse
import io
import os
import sys

import kaldiio

from subtools.cli import run_cli
from subtools.kaldi.ark_jobs import KALDI_COMPRESSION_AUTO, report_items, run_jobs
from subtools.kaldi.audio import read_audio
from subtools.kaldi.data_dir import read_sorted_table
from subtools.kaldi.features import FEATURE_TYPES, FeatureExtractor
from subtools.kaldi.fileio import read_table, write_lines, write_table
from subtools.kaldi.fingerprint import content_hash
from subtools.kaldi.lock import WAIT_HELP
from subtools.kaldi.vad import compute_vad, read_vad_conf, vad_conf_lines
from subtools.parallel import dispatch


def check_frames(utt, energy, frames):
    if len(energy) != int(frames):
        raise ValueError(f"utterance {utt}: audio gives {len(energy)} frames but the features have {frames}")


class FeatsEnergy:
    """(utt, feats.scp entry) -> log-energy column ``[T]``."""

    def __init__(self, column):
        self.column = column

    def __call__(self, utt, entry):
        return kaldiio.load_mat(entry)[:, self.column]


class AudioEnergy:
    """(utt, wav.scp entry) -> raw log-energy ``[T]`` computed from the audio; ``frames`` {utt: the
    features' frame count} (utt2num_frames), which the energy must match."""

    def __init__(self, extractor, frames):
        self.extractor, self.frames = extractor, frames

    def __call__(self, utt, entry):
        wave, _ = read_audio(entry, utt, expected_rate=self.extractor.sample_rate, channel=self.extractor.channel)
        energy = self.extractor.frame_log_energy(wave)
        check_frames(utt, energy, self.frames[utt])
        return energy


class VadWorker:
    """Wraps an energy source: (utt, value) -> 0/1 float32 ``[T]``."""

    def __init__(self, energy, vad_opts):
        self.energy, self.vad_opts = energy, vad_opts

    def __call__(self, utt, value):
        return compute_vad(self.energy(utt, value), **self.vad_opts)


class SamePassVad:
    """The VAD of one utterance from the feature pass's audio and features: (utt, wave ``[N]``, feats
    ``[T, D]``) -> 0/1 float32 ``[T]``, equal to what this script computes afterwards with ``--source
    auto``: from the features' log-energy column as it is stored (after Kaldi compression when the
    features are compressed), else from the raw log-energy of the same audio."""

    def __init__(self, extractor, vad_opts, compress):
        self.extractor, self.vad_opts, self.compress = extractor, vad_opts, compress
        self.column = extractor.energy_column()

    def stored(self, feats):
        """``feats`` as read back from the ark."""
        if not self.compress:
            return feats
        buffer = io.BytesIO()
        kaldiio.save_ark(buffer, {"u": feats}, compression_method=KALDI_COMPRESSION_AUTO)
        buffer.seek(0)
        return next(iter(kaldiio.load_ark(buffer)))[1]

    def __call__(self, utt, wave, feats):
        if self.column is not None:
            energy = self.stored(feats)[:, self.column]
        else:
            energy = self.extractor.frame_log_energy(wave)
            check_frames(utt, energy, feats.shape[0])
        return compute_vad(energy, **self.vad_opts)


def energy_source(data, extractor, source):
    """Pick (items, energy callable, description) for ``source`` in {auto, feats, audio}."""
    feats = read_sorted_table(os.path.join(data, "feats.scp"))
    column = extractor.energy_column()
    if source == "feats" or (source == "auto" and column is not None):
        if column is None:
            raise ValueError(f"{data}: {extractor.feat_type} features have no log-energy column (use --source audio)")
        return list(feats.items()), FeatsEnergy(column), f"column {column} of feats.scp"
    wav = read_sorted_table(os.path.join(data, "wav.scp"))
    frames = read_table(os.path.join(data, "utt2num_frames"))
    missing = [u for u in feats if u not in wav or u not in frames]
    if missing:
        raise ValueError(
            f"{data}: {len(missing)} utterances of feats.scp lack wav.scp/utt2num_frames, e.g. {missing[0]}"
        )
    items = [(u, wav[u]) for u in feats]
    what = f"raw log-energy from wav.scp audio (utt2num_frames sha1 {content_hash(os.path.join(data, 'utt2num_frames'))})"
    return items, AudioEnergy(extractor, frames), what


def run_compute_vad(data, vad_conf, nj=1, fix_context=False, source="auto", feat_type=None, feat_conf=None,
                    wait=False, cmd="", job=None):
    """Library entry point of the CLI; returns (vad scp dict, failed dict, zero-voiced list). Holds the
    lock of ``data`` (``wait``: wait for another run holding it instead of stopping). The VAD conf is read
    and checked first (ValueError naming file:line). ``cmd``: the jobs' runner (``--cmd``,
    :mod:`subtools.parallel.dispatch`; logs ``DATA/log/vad_<set>.<job>.log``); ``job``: this process is that
    dispatched job: it returns None."""
    vad_opts = read_vad_conf(vad_conf)
    job_args = ["--conf", vad_conf, "--nj", nj, *(["--fix-context"] if fix_context else []), "--source", source,
                *(["--feat-type", feat_type] if feat_type else []), *(["--feat-conf", feat_conf] if feat_conf else []),
                data]
    runner = dispatch.stage_dispatch(cmd, job, __file__, job_args, os.path.join(data, "log"))
    with dispatch.output_lock(data, wait, f"data dir {data}", job, create=False):
        return _compute_vad(data, vad_opts, nj, fix_context, source, feat_type, feat_conf, runner)


def data_extractor(data, feat_type=None, feat_conf=None):
    """The FeatureExtractor that made DATA's features: DATA/conf/feat_type and feats.conf (mfcc_pitch:
    also DATA/conf/pitch.conf and pitch_postprocess.conf), each overridable."""
    conf_dir = os.path.join(data, "conf")
    if feat_type is None:
        with open(os.path.join(conf_dir, "feat_type")) as f:
            feat_type = f.read().strip()
    pitch_confs = [None, None]
    if feat_type == "mfcc_pitch":
        pitch_confs = [path if os.path.isfile(path) else None
                       for path in (os.path.join(conf_dir, n) for n in ("pitch.conf", "pitch_postprocess.conf"))]
    return FeatureExtractor.from_conf(feat_type, feat_conf or os.path.join(conf_dir, "feats.conf"), *pitch_confs)


def _compute_vad(data, vad_opts, nj, fix_context, source, feat_type, feat_conf, runner):
    vad_opts = dict(vad_opts, fix_context=fix_context)
    extractor = data_extractor(data, feat_type, feat_conf)
    items, energy, what = energy_source(data, extractor, source)
    print(f"compute_vad: {data}: energy = {what}", file=sys.stderr)
    name = f"vad_{os.path.basename(os.path.normpath(data))}"
    vad_scp, zero_path, _ = vad_outputs(data)
    stamp = f"{sorted(vad_opts.items())} {what} {extractor.stamp()}"
    result = run_jobs(
        items, lambda: VadWorker(energy, vad_opts), os.path.abspath(os.path.join(data, "data")), name, nj,
        config_stamp=stamp, outputs=list(vad_outputs(data)), dispatch=runner,
    )
    if result is None:   # a dispatched job: its parent merges
        return None
    scp, failed = result.scp, result.failed
    report_items(os.path.join(data, "log", "compute_vad.failed"), failed, f"compute_vad {data}")
    report_items(os.path.join(data, "log", "compute_vad.warnings"), result.warnings, f"compute_vad {data}",
                 "read with a warning")
    if result.current:
        print(f"compute_vad: {vad_scp} is complete ({len(scp)} utterances)", file=sys.stderr)
        return scp, failed, list(read_table(zero_path))
    if not scp:
        raise RuntimeError(f"compute_vad: all utterances of {data} failed; nothing written")
    zero = write_vad(data, scp, vad_opts)
    result.mark_current()
    return scp, failed, zero


def vad_outputs(data):
    """The merged files a VAD run writes: ``DATA/vad.scp``, ``DATA/log/vad.zero_voiced`` and
    ``DATA/conf/vad.conf`` (the resolved options it ran with)."""
    return (os.path.join(data, "vad.scp"), os.path.join(data, "log", "vad.zero_voiced"),
            os.path.join(data, "conf", "vad.conf"))


def write_vad(data, scp, vad_opts):
    """Write the merged VAD ``scp`` {utt: ark entry} as DATA/vad.scp, after recording ``vad_opts`` in
    DATA/conf/vad.conf and listing the utterances with no voiced frame in DATA/log/vad.zero_voiced
    (warned); returns that list."""
    vad_scp, zero_path, conf_path = vad_outputs(data)
    write_lines(conf_path, vad_conf_lines(vad_opts))
    zero = [u for u, entry in scp.items() if not kaldiio.load_mat(entry).any()]
    write_lines(zero_path, zero)
    if zero:
        print(f"WARNING: {len(zero)} utterances of {data} have no voiced frame (listed in {zero_path})",
              file=sys.stderr)
    write_table(vad_scp, scp)
    return zero


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default="conf/vad.conf", help="Kaldi compute-vad option file")
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs")
    parser.add_argument("--fix-context", action="store_true",
                        help="test the energy of each context frame (Kaldi's loop tests the centre frame only)")
    parser.add_argument("--source", choices=["auto", "feats", "audio"], default="auto",
                        help="where the log-energy comes from (see above)")
    parser.add_argument("--feat-type", choices=FEATURE_TYPES, help="override DATA/conf/feat_type")
    parser.add_argument("--feat-conf", help="override DATA/conf/feats.conf (framing for --source audio)")
    parser.add_argument("--check-conf", action="store_true", help="only read and check --conf, then exit")
    parser.add_argument("data", nargs="?", help="data dir with feats.scp (and wav.scp for --source audio)")
    parser.add_argument("--wait", action="store_true", help=WAIT_HELP)
    dispatch.add_options(parser)
    args = parser.parse_args(argv)
    if args.data is None and not args.check_conf:
        parser.error("the data dir is required")
    run_cli(run, args, parser)


def run(args, parser):
    """Carry out the parsed command line."""
    if args.check_conf:
        read_vad_conf(args.conf)
        return
    run_compute_vad(args.data, args.conf, args.nj, args.fix_context, args.source, args.feat_type, args.feat_conf,
                    args.wait, args.cmd, dispatch.job_from_args(parser, args))


if __name__ == "__main__":
    main()
