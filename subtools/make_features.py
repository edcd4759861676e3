#!/usr/bin/env python3
"""Compute Kaldi fbank/MFCC/MFCC+pitch features of a data dir (Kaldi steps/make_{fbank,mfcc,mfcc_pitch}.sh).

    python3 subtools/make_features.py --nj 4 --conf conf/fbank.conf fbank data/train
    python3 subtools/make_features.py --conf conf/mfcc23.conf --pitch-conf conf/pitch.conf mfcc_pitch data/train

``mfcc_pitch`` takes the confs of make_mfcc_pitch.sh: ``--conf`` (compute-mfcc-feats options),
``--pitch-conf`` (compute-kaldi-pitch-feats options) and optionally ``--pitch-postprocess-conf``
(process-kaldi-pitch-feats options; Kaldi's defaults without it).

Reads ``DATA/wav.scp``; writes ``DATA/data/raw_<type>_<set>.<job>.ark/.scp`` per job, then
``DATA/conf/feat_type`` + ``DATA/conf/feats.conf`` (the fully resolved options, read by
compute_vad.py; mfcc_pitch also ``DATA/conf/pitch.conf`` and ``DATA/conf/pitch_postprocess.conf``;
``DATA/conf/compress``; ``DATA/conf/audio.sha1``: the audio it read, see :func:`made_with`),
``DATA/utt2num_frames`` and, last, ``DATA/feats.scp``.

``--vad-conf FILE`` also makes the energy VAD (Kaldi compute-vad options in FILE) in the same pass, from
the audio each job has just decoded: ``DATA/vad.scp`` and ``DATA/log/vad.zero_voiced``, equal to what
``compute_vad.py --conf FILE DATA`` writes afterwards (which would read the audio a second time when the
features carry no log-energy, e.g. our 80-dim fbank). Its arks are ``raw_<type>_<set>_vad.<job>.ark``;
the feature jobs' stamp covers the VAD options.

Every option file is read and checked before any job starts: an unknown option, a malformed value or
a value Kaldi refuses (e.g. ``--num-mel-bins=2``, ``--low-freq`` at or above the resolved high
frequency, ``--min-f0`` >= ``--max-f0``) stops the command with ``file:line`` and writes nothing.
``--check-confs`` does only that check.

Bad utterances (missing/corrupt/empty audio, failing pipe, wrong sample rate, multi-channel
without --channel, shorter than one frame) are skipped: each is listed with its reason in
``DATA/log/make_<type>.failed`` and a warning is printed; the command exits 0 unless every
utterance failed. Run ``python3 subtools/data_dir.py fix DATA`` afterwards to drop them from the
other tables. Rerunning skips the jobs already complete (same items, same options).
"""
import argparse
import os
import sys
import zlib

from subtools.compute_vad import SamePassVad, vad_outputs, write_vad
from subtools.cli import run_cli
from subtools.kaldi.ark_jobs import inputs_digest, report_items, run_jobs
from subtools.kaldi.audio import AudioError, read_audio
from subtools.kaldi.features import FEATURE_TYPES, FeatureExtractor
from subtools.kaldi.data_dir import read_sorted_table
from subtools.kaldi.fileio import read_table, write_lines, write_table
from subtools.kaldi.lock import WAIT_HELP
from subtools.kaldi.vad import read_vad_conf, vad_conf_lines
from subtools.parallel import dispatch


class FeatureWorker:
    """(utt, wav.scp entry) -> features ``[T, D]``, or with ``vad`` (a :class:`SamePassVad`) the pair
    (features, VAD ``[T]``) from one read of the audio; raises AudioError for a bad utterance."""

    def __init__(self, extractor, vad=None):
        import torch

        torch.set_num_threads(1)  # one core per job: jobs are the parallelism
        self.extractor, self.vad = extractor, vad

    def __call__(self, utt, entry):
        wave, _ = read_audio(entry, utt, expected_rate=self.extractor.sample_rate, channel=self.extractor.channel)
        feats = self.extractor(wave, seed=zlib.crc32(utt.encode()))
        if feats.shape[0] == 0:
            raise AudioError(f"utterance {utt}: {len(wave)} samples give no frame (too short): {entry}")
        return feats if self.vad is None else (feats, self.vad(utt, wave, feats))


def make_features(data, feat_type, conf, nj=1, compress=False, ark_dir=None, wait=False, pitch_conf=None,
                  postprocess_conf=None, vad_conf=None, cmd="", job=None):
    """Library entry point of the CLI; returns {utt: reason} of the skipped utterances. Holds the lock of
    ``data`` (``wait``: wait for another run holding it instead of stopping). The option files are read and
    checked before anything else (ValueError naming file:line). ``vad_conf``: also write the VAD (module
    docstring). ``cmd``: the jobs' runner (``--cmd``, :mod:`subtools.parallel.dispatch`; logs
    ``DATA/log/raw_<type>_<set>.<job>.log``); ``job``: this process is that dispatched job: it returns None."""
    extractor = FeatureExtractor.from_conf(feat_type, conf, pitch_conf, postprocess_conf)
    vad = SamePassVad(extractor, read_vad_conf(vad_conf), compress) if vad_conf else None
    job_args = ["--nj", nj, "--conf", conf, *(["--pitch-conf", pitch_conf] if pitch_conf else []),
                *(["--pitch-postprocess-conf", postprocess_conf] if postprocess_conf else []),
                *(["--vad-conf", vad_conf] if vad_conf else []), *(["--compress"] if compress else []),
                *(["--ark-dir", ark_dir] if ark_dir else []), feat_type, data]
    runner = dispatch.stage_dispatch(cmd, job, __file__, job_args, os.path.join(data, "log"))
    with dispatch.output_lock(data, wait, f"data dir {data}", job, create=False):
        return _make_features(data, extractor, nj, compress, ark_dir, vad, runner)


def conf_lines(options):
    """A resolved option dict as Kaldi conf lines."""
    return [f"--{k}={v}" for k, v in sorted(options.items())]


PITCH_RECORDS = ("pitch.conf", "pitch_postprocess.conf")
AUDIO_RECORD = "audio.sha1"   # DATA/conf/audio.sha1: inputs_digest of the wav.scp entries that have features


def option_records(extractor, compress):
    """{DATA/conf file name: its lines} recording the features' resolved options (module docstring) and
    whether their arks are compressed."""
    records = {"feat_type": [extractor.feat_type], "feats.conf": conf_lines(extractor.options),
               "compress": [str(bool(compress)).lower()]}
    if extractor.pitch:
        records.update(zip(PITCH_RECORDS, (conf_lines(extractor.pitch.options),
                                           conf_lines(extractor.pitch_postprocess.options))))
    return records


def audio_record(wav_scp, utts):
    """The DATA/conf/audio.sha1 line: :func:`inputs_digest` of the wav.scp entries of ``utts`` (what they
    read, down to the audio files' identities)."""
    return [inputs_digest((u, entry) for u, entry in wav_scp.items() if u in utts)]


def made_with(data, extractor, compress, vad=None):
    """True when DATA holds features (with ``vad``: and a VAD) of every wav.scp utterance, recorded in
    DATA/conf as made with exactly these options from these audio files as they are now (audio.sha1).
    prepare.sh asks this before calling make_features, so that a data dir from which ``data_dir.py fix``
    dropped failed utterances is not computed again (its changed wav.scp would redo every job), while audio
    replaced in place is, as the job stamps would notice."""
    records = option_records(extractor, compress)
    if vad:
        records["vad.conf"] = vad_conf_lines(vad.vad_opts)
    if not all(_holds(os.path.join(data, "conf", name), lines) for name, lines in records.items()):
        return False
    wav_scp = read_sorted_table(os.path.join(data, "wav.scp"))
    tables = ["feats.scp", "utt2num_frames"] + (["vad.scp"] if vad else [])
    if not all(os.path.isfile(os.path.join(data, t)) and set(wav_scp) <= set(read_table(os.path.join(data, t)))
               for t in tables):
        return False
    return _holds(os.path.join(data, "conf", AUDIO_RECORD), audio_record(wav_scp, wav_scp))   # last: stats every file


def _holds(path, lines):
    """Whether the file ``path`` exists and holds exactly ``lines``."""
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return f.read().splitlines() == lines


def _make_features(data, extractor, nj, compress, ark_dir, vad, runner):
    feat_type = extractor.feat_type
    wav_scp = read_sorted_table(os.path.join(data, "wav.scp"))
    ark_dir = os.path.abspath(ark_dir or os.path.join(data, "data"))
    name = f"raw_{feat_type}_{os.path.basename(os.path.normpath(data))}"
    feats_scp, utt2num_frames = os.path.join(data, "feats.scp"), os.path.join(data, "utt2num_frames")
    records = {os.path.join(data, "conf", name): lines for name, lines in option_records(extractor, compress).items()}
    audio_path = os.path.join(data, "conf", AUDIO_RECORD)
    outputs = [feats_scp, utt2num_frames, *records, audio_path]
    stamp, side_arks = extractor.stamp(), ()
    if vad:
        outputs += list(vad_outputs(data))
        stamp, side_arks = f"{stamp} vad {sorted(vad.vad_opts.items())}", (f"{name}_vad",)
    result = run_jobs(
        list(wav_scp.items()), lambda: FeatureWorker(extractor, vad), ark_dir, name, nj,
        config_stamp=stamp, compress=compress, outputs=outputs, side_arks=side_arks, dispatch=runner,
    )
    if result is None:   # a dispatched job: its parent merges
        return None
    log = os.path.join(data, "log", f"make_{feat_type}")
    report_items(log + ".failed", result.failed, f"make_features {data}")
    report_items(log + ".warnings", result.warnings, f"make_features {data}", "read with a warning")
    if result.current:
        print(f"make_features: {feats_scp} is complete ({len(result.scp)} utterances)", file=sys.stderr)
        return result.failed
    if not result.scp:
        raise RuntimeError(f"make_features: all {len(wav_scp)} utterances of {data} failed; nothing written")
    for path, lines in {**records, audio_path: audio_record(wav_scp, result.scp)}.items():
        write_lines(path, lines)
    for name in PITCH_RECORDS:   # a former mfcc_pitch run's
        path = os.path.join(data, "conf", name)
        if path not in records and os.path.exists(path):
            os.remove(path)
    write_table(utt2num_frames, result.lengths)
    if vad:
        write_vad(data, result.side_scp[side_arks[0]], vad.vad_opts)
    write_table(feats_scp, result.scp)
    result.mark_current()
    print(f"make_features: {len(result.scp)} utterances -> {feats_scp} ({extractor.dim}-dim {feat_type})",
          file=sys.stderr)
    return result.failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs (processes)")
    parser.add_argument("--conf", help="Kaldi option file of compute-{fbank,mfcc}-feats (default conf/<type>.conf; "
                        "mfcc_pitch: conf/mfcc.conf)")
    parser.add_argument("--pitch-conf",
                        help="mfcc_pitch: compute-kaldi-pitch-feats option file (default conf/pitch.conf)")
    parser.add_argument("--pitch-postprocess-conf",
                        help="mfcc_pitch: process-kaldi-pitch-feats option file (default: Kaldi's defaults)")
    parser.add_argument("--vad-conf", help="also compute the energy VAD (compute-vad option file) from the same "
                        "decoded audio: DATA/vad.scp as compute_vad.py would write it")
    parser.add_argument("--check-confs", action="store_true",
                        help="only read and check the option files, then exit (DATA may be left out)")
    parser.add_argument("--unless-made-with-these-options", action="store_true",
                        help="do nothing when DATA/conf records these options and the tables cover wav.scp "
                             "(what prepare.sh uses: a data dir fixed after failures is not recomputed)")
    parser.add_argument("--compress", action="store_true", help="Kaldi-compress the arks (copy-feats --compress)")
    parser.add_argument("--ark-dir", help="where the arks go (default DATA/data)")
    parser.add_argument("--wait", action="store_true", help=WAIT_HELP)
    dispatch.add_options(parser)
    parser.add_argument("feat_type", choices=FEATURE_TYPES)
    parser.add_argument("data", nargs="?", help="Kaldi data dir with wav.scp")
    args = parser.parse_args(argv)
    if args.data is None and not args.check_confs:
        parser.error("the data dir is required")
    conf = args.conf or f"conf/{'mfcc' if args.feat_type == 'mfcc_pitch' else args.feat_type}.conf"
    pitch_conf = args.pitch_conf or ("conf/pitch.conf" if args.feat_type == "mfcc_pitch" else None)
    run_cli(run, args, conf, pitch_conf, parser)


def run(args, conf, pitch_conf, parser):
    """Carry out the parsed command line."""
    if args.check_confs:
        FeatureExtractor.from_conf(args.feat_type, conf, pitch_conf, args.pitch_postprocess_conf)
        if args.vad_conf:
            read_vad_conf(args.vad_conf)
        return
    if args.unless_made_with_these_options:
        extractor = FeatureExtractor.from_conf(args.feat_type, conf, pitch_conf, args.pitch_postprocess_conf)
        vad = SamePassVad(extractor, read_vad_conf(args.vad_conf), args.compress) if args.vad_conf else None
        if made_with(args.data, extractor, args.compress, vad):
            print(f"make_features: {args.data} already holds features made with these options", file=sys.stderr)
            return
    make_features(args.data, args.feat_type, conf, args.nj, args.compress, args.ark_dir, args.wait,
                  pitch_conf, args.pitch_postprocess_conf, args.vad_conf, args.cmd,
                  dispatch.job_from_args(parser, args))


if __name__ == "__main__":
    main()
