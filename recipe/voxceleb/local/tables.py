"""A data-dir table helper for recipe/voxceleb/prepare.sh.

``share SRC DST...``: give each DST (a subset of SRC, e.g. voxceleb1_test of voxceleb1) the
  ``feats.scp``, ``utt2num_frames`` and ``vad.scp`` entries of SRC for its utterances, so features
  are computed once; a DST utterance missing from SRC's tables is an error naming it.
"""
import argparse
import os

from subtools.cli import run_cli
from subtools.kaldi.data_dir import DataDir
from subtools.kaldi.fileio import read_table, write_table

SHARED = ("feats.scp", "utt2num_frames", "vad.scp")


def share(src, dst):
    utts = DataDir.load(dst).utts()
    for name in SHARED:
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            continue
        table = read_table(path)
        missing = [u for u in utts if u not in table]
        if missing:
            raise ValueError(f"{path}: no entry for {len(missing)} utterances of {dst}, e.g. {missing[0]}")
        write_table(os.path.join(dst, name), {u: table[u] for u in utts})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    copy = sub.add_parser("share", help="copy SRC's feature/VAD entries to subsets of it")
    copy.add_argument("src")
    copy.add_argument("dsts", nargs="+")
    args = parser.parse_args()
    for dst in args.dsts:
        share(args.src, dst)


if __name__ == "__main__":
    run_cli(main)
