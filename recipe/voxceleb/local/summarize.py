"""Print what a data dir holds: speakers, utterances, hours, feature/VAD coverage and trials.

Hours come from utt2dur, else from utt2num_frames (10 ms frames), else are shown as '?'.
Usage: ``python3 recipe/voxceleb/local/summarize.py DIR...`` (missing dirs are skipped).
"""
import argparse
import os

from subtools.cli import run_cli
from subtools.kaldi import trials as trials_lib
from subtools.kaldi.data_dir import TRIALS_DIR, DataDir


def hours(data):
    if data.utt2dur:
        return f"{sum(data.utt2dur.values()) / 3600:.2f} h"
    if data.utt2num_frames:
        return f"{sum(data.utt2num_frames.values()) / 360000:.2f} h (from frames)"
    return "? h"


def summary(path):
    data = DataDir.load(path)
    utts = data.utt2spk or {}
    parts = [f"{len(set(utts.values()))} speakers", f"{len(utts)} utterances", hours(data)]
    for name, table in (("feats", data.feats_scp), ("vad", data.vad_scp)):
        if table is not None:
            parts.append(f"{name} {len(table)}")
    lines = [f"{path}: " + ", ".join(parts)]
    trials_dir = os.path.join(path, TRIALS_DIR)
    if os.path.isdir(trials_dir):
        for name in sorted(os.listdir(trials_dir)):
            targets, nontargets = trials_lib.count_trials(trials_lib.read_trials(os.path.join(trials_dir, name)))
            lines.append(f"  trials/{name}: {targets + nontargets} trials ({targets} target, {nontargets} nontarget)")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+")
    args = parser.parse_args()
    for path in args.dirs:
        if os.path.isdir(path):
            print(summary(path))


if __name__ == "__main__":
    run_cli(main)
