#!/usr/bin/env python3
"""Kaldi data-dir tools (Kaldi utils/ equivalents), one sub-command each:

  validate DIR                      list problems, exit 1 if any (validate_data_dir.sh)
  fix [--extra-files "F1 F2"] DIR   back up into DIR/.backup/, sort, drop inconsistent entries, report
                                    them (fix_data_dir.sh; only Kaldi's table names and the extra files
                                    are tables)
  subset SRC DST (--utt-list F | --spk-list F | --num N | --per-spk N)
  split [--by spk|utt] SRC N        SRC/split{N}[utt]/{1..N}
  combine DST SRC...                union (combine_data.sh)
  filter [--exclude] SRC DST LIST   keep (or drop) the utterance ids listed in LIST (first column)
  remove-utt [--min-frames 200] [--min-utts 8] SRC DST   ASV-subtools removeUtt
  spk2utt DIR / utt2spk DIR         write one from the other
  utt2dur [--nj N] DIR              durations from wav.scp (reads headers, runs pipes)
  utt2num-frames DIR                frame counts from feats.scp

Every command that writes holds the lock of the dir it writes (another run on it: stop, or --wait).
"""
import argparse
import os
import sys

import kaldiio

from subtools.cli import run_cli
from subtools.kaldi import data_dir as dd
from subtools.kaldi.audio import durations
from subtools.kaldi.fileio import read_table, text_lines, write_table
from subtools.kaldi.lock import WAIT_HELP, locked


def _first_column(path):
    return [line.split()[0] for _, line in text_lines(path) if line.strip()]


NEW_DIR_COMMANDS = ("subset", "combine", "filter", "remove-utt")   # they write a new DST; the others an existing dir


def _output_dir(args):
    """The dir a command writes (None for validate)."""
    if args.cmd == "validate":
        return None
    if args.cmd == "split":
        return args.src
    return getattr(args, "dst", None) or getattr(args, "dir", None)


def _print_removed(removed, what):
    for utt, reason in sorted(removed.items()):
        print(f"  removed {utt}: {reason}")
    print(f"{what}: {len(removed)} utterances removed")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    writes = argparse.ArgumentParser(add_help=False)
    writes.add_argument("--wait", action="store_true", help=WAIT_HELP)
    sub.add_parser("validate", help="list problems; exit 1 if any").add_argument("dir")
    p = sub.add_parser("fix", parents=[writes], help="make consistent in place; report what was dropped")
    p.add_argument("--extra-files", default="",
                   help="space-separated extra table names to keep consistent (utt2*, *.scp: by utterance; "
                        "spk2*: by speaker)")
    p.add_argument("dir")
    p = sub.add_parser("subset", parents=[writes], help="subset by list / evenly spread / per speaker")
    p.add_argument("src")
    p.add_argument("dst")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--utt-list", help="file whose first column lists utterance ids")
    g.add_argument("--spk-list", help="file whose first column lists speaker ids")
    g.add_argument("--num", type=int, help="N utterances evenly spread")
    g.add_argument("--per-spk", type=int, help="N utterances per speaker, evenly spread")
    p = sub.add_parser("split", parents=[writes], help="split into N parts")
    p.add_argument("--by", choices=["spk", "utt"], default="spk")
    p.add_argument("src")
    p.add_argument("n", type=int)
    p = sub.add_parser("combine", parents=[writes], help="union of data dirs")
    p.add_argument("dst")
    p.add_argument("srcs", nargs="+")
    p = sub.add_parser("filter", parents=[writes], help="keep (or --exclude) the listed utterances")
    p.add_argument("--exclude", action="store_true")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("list", help="file whose first column lists utterance ids")
    p = sub.add_parser("remove-utt", parents=[writes], help="drop short utterances, then speakers with few utterances")
    p.add_argument("--min-frames", type=int, default=200)
    p.add_argument("--min-utts", type=int, default=8)
    p.add_argument("src")
    p.add_argument("dst")
    sub.add_parser("spk2utt", parents=[writes], help="write spk2utt from utt2spk").add_argument("dir")
    sub.add_parser("utt2spk", parents=[writes], help="write utt2spk from spk2utt").add_argument("dir")
    p = sub.add_parser("utt2dur", parents=[writes], help="write utt2dur from wav.scp")
    p.add_argument("--nj", type=int, default=1, help="threads (pipes run in parallel)")
    p.add_argument("dir")
    sub.add_parser("utt2num-frames", parents=[writes], help="write utt2num_frames from feats.scp").add_argument("dir")
    args = parser.parse_args(argv)
    run_cli(run, args)


def run(args):
    """Carry out the parsed command, holding the lock of the dir it writes."""
    output = _output_dir(args)
    if output is not None:
        with locked(output, args.wait, f"data dir {output}", create=args.cmd in NEW_DIR_COMMANDS):
            return _run(args)
    return _run(args)


def _run(args):
    if args.cmd == "validate":
        problems = dd.validate_dir(args.dir)
        for line in problems:
            print(f"{args.dir}: {line}", file=sys.stderr)
        if problems:
            sys.exit(1)
        print(f"{args.dir}: OK")
    elif args.cmd == "fix":
        print(dd.fix_dir(args.dir, args.extra_files.split()))
    elif args.cmd == "subset":
        out = dd.subset_dir(
            args.src, args.dst,
            utt_list=_first_column(args.utt_list) if args.utt_list else None,
            spk_list=_first_column(args.spk_list) if args.spk_list else None,
            num=args.num, per_spk=args.per_spk,
        )
        print(f"subset: {len(out.utt2spk)} utterances, {len(out.spk2utt)} speakers -> {args.dst}")
    elif args.cmd == "split":
        for path in dd.split_dir(args.src, args.n, args.by):
            print(path)
    elif args.cmd == "combine":
        out, warnings = dd.combine_dirs(args.dst, args.srcs)
        for line in warnings:
            print(f"WARNING: {line}", file=sys.stderr)
        print(f"combine: {len(out.utt2spk)} utterances -> {args.dst}")
    elif args.cmd == "filter":
        out = dd.filter_dir(args.src, args.dst, _first_column(args.list), args.exclude)
        print(f"filter: {len(out.utt2spk)} utterances -> {args.dst}")
    elif args.cmd == "remove-utt":
        _print_removed(dd.remove_utt(args.src, args.dst, args.min_frames, args.min_utts), "remove-utt")
    elif args.cmd == "spk2utt":
        spk2utt = dd.utt2spk_to_spk2utt(read_table(os.path.join(args.dir, "utt2spk")))
        dd.write_spk2utt(os.path.join(args.dir, "spk2utt"), spk2utt)
    elif args.cmd == "utt2spk":
        spk2utt = dd.read_spk2utt(os.path.join(args.dir, "spk2utt"))
        write_table(os.path.join(args.dir, "utt2spk"), dd.spk2utt_to_utt2spk(spk2utt))
    elif args.cmd == "utt2dur":
        wav_scp = dd.read_sorted_table(os.path.join(args.dir, "wav.scp"))
        write_table(os.path.join(args.dir, "utt2dur"), {u: repr(d) for u, d in durations(wav_scp, args.nj).items()})
    elif args.cmd == "utt2num-frames":
        feats = dd.read_sorted_table(os.path.join(args.dir, "feats.scp"))
        write_table(os.path.join(args.dir, "utt2num_frames"),
                    {u: kaldiio.load_mat(e).shape[0] for u, e in feats.items()})


if __name__ == "__main__":
    main()
