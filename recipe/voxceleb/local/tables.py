"""Small data-dir table helpers for recipe/voxceleb/prepare.sh.

- ``complete DIR TABLE...``: exit 0 when each table file exists and covers every utterance of
  DIR/utt2spk (the stage's work is done), 1 otherwise;
- ``share SRC DST...``: give each DST (a subset of SRC, e.g. voxceleb1_test of voxceleb1) the
  ``feats.scp``, ``utt2num_frames`` and ``vad.scp`` entries of SRC for its utterances, so features
  are computed once; a DST utterance missing from SRC's tables is an error naming it.
"""
import argparse
import os
import sys

from subtools.kaldi.data_dir import DataDir
from subtools.kaldi.fileio import read_table, write_table

SHARED = ("feats.scp", "utt2num_frames", "vad.scp")


def complete(path, tables):
    utts = set(read_table(os.path.join(path, "utt2spk")))
    return all(os.path.isfile(os.path.join(path, t)) and set(read_table(os.path.join(path, t))) >= utts
               for t in tables)


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
    check = sub.add_parser("complete", help="exit 0 if the tables cover every utterance")
    check.add_argument("dir")
    check.add_argument("tables", nargs="+")
    copy = sub.add_parser("share", help="copy SRC's feature/VAD entries to subsets of it")
    copy.add_argument("src")
    copy.add_argument("dsts", nargs="+")
    args = parser.parse_args()
    if args.command == "complete":
        sys.exit(0 if complete(args.dir, args.tables) else 1)
    for dst in args.dsts:
        share(args.src, dst)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"tables.py: {err}")
