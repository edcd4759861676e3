#!/usr/bin/env python3
"""Compute Kaldi fbank/MFCC features of a data dir (Kaldi steps/make_{fbank,mfcc}.sh).

    python3 subtools/make_features.py --nj 4 --conf conf/fbank.conf fbank data/train

Reads ``DATA/wav.scp``; writes ``DATA/data/raw_<type>_<set>.<job>.ark/.scp`` per job, then
``DATA/conf/feat_type`` + ``DATA/conf/feats.conf`` (the fully resolved options, read by
compute_vad.py), ``DATA/utt2num_frames`` and, last, ``DATA/feats.scp``.

Bad utterances (missing/corrupt/empty audio, failing pipe, wrong sample rate, multi-channel
without --channel, shorter than one frame) are skipped: each is listed with its reason in
``DATA/log/make_<type>.failed`` and a warning is printed; the command exits 0 unless every
utterance failed. Run ``python3 subtools/data_dir.py fix DATA`` afterwards to drop them from the
other tables. Rerunning skips the jobs already complete (same items, same options).
"""
import argparse
import os
import sys

from subtools.kaldi.ark_jobs import report_failed, report_items, run_jobs
from subtools.kaldi.audio import AudioError, read_audio
from subtools.kaldi.features import FeatureExtractor
from subtools.kaldi.data_dir import read_sorted_table
from subtools.kaldi.fileio import write_lines, write_table
from subtools.kaldi.lock import WAIT_HELP, locked


class FeatureWorker:
    """(utt, wav.scp entry) -> features ``[T, D]``; raises AudioError for a bad utterance."""

    def __init__(self, extractor):
        import torch

        torch.set_num_threads(1)  # one core per job: jobs are the parallelism
        self.extractor = extractor

    def __call__(self, utt, entry):
        wave, _ = read_audio(entry, utt, expected_rate=self.extractor.sample_rate, channel=self.extractor.channel)
        feats = self.extractor(wave)
        if feats.shape[0] == 0:
            raise AudioError(f"utterance {utt}: {len(wave)} samples give no frame (too short): {entry}")
        return feats


def make_features(data, feat_type, conf, nj=1, compress=False, ark_dir=None, wait=False):
    """Library entry point of the CLI; returns {utt: reason} of the skipped utterances. Holds the lock of
    ``data`` (``wait``: wait for another run holding it instead of stopping)."""
    with locked(data, wait, f"data dir {data}"):
        return _make_features(data, feat_type, conf, nj, compress, ark_dir)


def _make_features(data, feat_type, conf, nj, compress, ark_dir):
    extractor = FeatureExtractor.from_conf(feat_type, conf)
    wav_scp = read_sorted_table(os.path.join(data, "wav.scp"))
    ark_dir = os.path.abspath(ark_dir or os.path.join(data, "data"))
    name = f"raw_{feat_type}_{os.path.basename(os.path.normpath(data))}"
    feats_scp, utt2num_frames = os.path.join(data, "feats.scp"), os.path.join(data, "utt2num_frames")
    type_file, conf_file = os.path.join(data, "conf", "feat_type"), os.path.join(data, "conf", "feats.conf")
    outputs = [feats_scp, utt2num_frames, type_file, conf_file]
    result = run_jobs(
        list(wav_scp.items()), lambda: FeatureWorker(extractor), ark_dir, name, nj,
        config_stamp=extractor.stamp(), compress=compress, outputs=outputs,
    )
    log = os.path.join(data, "log", f"make_{feat_type}")
    report_failed(log + ".failed", result.failed, f"make_features {data}")
    report_items(log + ".warnings", result.warnings, f"make_features {data}", "read with a warning")
    if result.current:
        print(f"make_features: {feats_scp} is complete ({len(result.scp)} utterances)", file=sys.stderr)
        return result.failed
    if not result.scp:
        raise RuntimeError(f"make_features: all {len(wav_scp)} utterances of {data} failed; nothing written")
    write_lines(type_file, [feat_type])
    write_lines(conf_file, [f"--{k}={v}" for k, v in sorted(extractor.options.items())])
    write_table(utt2num_frames, result.lengths)
    write_table(feats_scp, result.scp)
    print(f"make_features: {len(result.scp)} utterances -> {feats_scp} ({extractor.dim}-dim {feat_type})",
          file=sys.stderr)
    return result.failed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nj", type=int, default=1, help="parallel jobs (processes)")
    parser.add_argument("--conf", help="Kaldi option file (default conf/<type>.conf)")
    parser.add_argument("--compress", action="store_true", help="Kaldi-compress the arks (copy-feats --compress)")
    parser.add_argument("--ark-dir", help="where the arks go (default DATA/data)")
    parser.add_argument("--wait", action="store_true", help=WAIT_HELP)
    parser.add_argument("feat_type", choices=["fbank", "mfcc"])
    parser.add_argument("data", help="Kaldi data dir with wav.scp")
    args = parser.parse_args(argv)
    try:
        make_features(args.data, args.feat_type, args.conf or f"conf/{args.feat_type}.conf", args.nj,
                      args.compress, args.ark_dir, args.wait)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"make_features.py: error: {e}")


if __name__ == "__main__":
    main()
