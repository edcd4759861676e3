"""VoxCeleb1 data dirs and trials.

Input: the VoxCeleb1 wav tree ``wav/idXXXXX/<youtube-id>/NNNNN.wav`` under ``--vox1`` (the dev and
test archives unpacked into one ``wav/``, or kept as ``vox1_dev_wav/wav`` and ``vox1_test_wav/wav``).
Optional, in ``--lists`` (default: ``--vox1``): the verification lists ``veri_test.txt`` (O),
``list_test_all.txt`` (E), ``list_test_hard.txt`` (H) and their cleaned versions ``*2.txt``;
``vox1_meta.csv`` (gender -> spk2gender, and a check of the dev/test split) and ``iden_split.txt``
(a check that every listed file is present).

Output (under OUT):
- ``voxceleb1/``: every utterance (id ``idXXXXX-<youtube-id>-NNNNN``, speaker ``idXXXXX``): wav.scp,
  utt2spk, spk2utt, utt2dur[, spk2gender]; ``trials/{O,E,H}`` and ``trials/{O,E,H}-clean`` for each
  list found;
- ``voxceleb1_train/``: the dev speakers; ``voxceleb1_test/``: id10270-id10309, with ``trials/O``
  and ``trials/O-clean``.

A trials list naming an utterance absent from the data (e.g. E/H with only the test part on disk)
is skipped whole with a message naming the count and the first missing utterances.
"""
import argparse
import csv
import os

from recipe.voxceleb.local.common import (PrepError, find_audio, remove_trials, require_dir, warn,
                                          write_dir, write_trials)
from subtools.cli import run_cli
from subtools.kaldi import trials as trials_lib

WAV_ROOTS = ("wav", "vox1_dev_wav/wav", "vox1_test_wav/wav")
TEST_SPEAKERS = ("id10270", "id10309")  # first and last VoxCeleb1 test speaker (inclusive)
LISTS = {"O": "veri_test.txt", "E": "list_test_all.txt", "H": "list_test_hard.txt",
         "O-clean": "veri_test2.txt", "E-clean": "list_test_all2.txt", "H-clean": "list_test_hard2.txt"}


def is_test_speaker(spk):
    return TEST_SPEAKERS[0] <= spk <= TEST_SPEAKERS[1]


def scan(vox1):
    """{utt: absolute wav path} over every wav root found under ``vox1``."""
    roots = [os.path.join(vox1, r) for r in WAV_ROOTS if os.path.isdir(os.path.join(vox1, r))]
    if not roots:
        raise PrepError(f"VoxCeleb1: none of {', '.join(WAV_ROOTS)} found under {vox1}")
    wav_scp = {}
    for root in roots:
        for rel in find_audio(root, ".wav"):
            utt = trials_lib.vox1_utt_id(rel)
            path = os.path.abspath(os.path.join(root, rel))
            if utt in wav_scp:
                raise PrepError(f"VoxCeleb1: utterance {utt} found twice: {wav_scp[utt]} and {path}")
            wav_scp[utt] = path
    if not wav_scp:
        raise PrepError(f"VoxCeleb1: no .wav files under {', '.join(roots)}")
    return wav_scp


def read_meta(path, speakers):
    """spk2gender from vox1_meta.csv (tab-separated, header line); warns about split disagreements."""
    spk2gender = {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    for lineno, row in enumerate(rows[1:], 2):
        row = [c.strip() for c in row]
        if not row or not row[0]:
            continue
        if len(row) < 5:
            raise PrepError(f"{path}:{lineno}: expected 5 tab-separated columns (ID, name, gender, nationality, set)")
        spk, gender, subset = row[0], row[2].lower(), row[4].lower()
        if spk not in speakers:
            continue
        if gender in ("m", "f"):
            spk2gender[spk] = gender
        if (subset == "test") != is_test_speaker(spk):
            warn(f"{path}:{lineno}: {spk} is in set '{subset}' but the id range says otherwise")
    absent = sorted(set(speakers) - set(spk2gender))
    if absent:
        warn(f"{path}: no gender for {len(absent)} speakers: {' '.join(absent[:5])}")
    return spk2gender


def check_iden_split(path, utts):
    """Report files listed in iden_split.txt (``N idXXXXX/<ytid>/NNNNN.wav``) but absent on disk."""
    listed = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if fields:
                try:
                    listed.append(trials_lib.vox1_utt_id(fields[-1]))
                except ValueError as err:
                    raise PrepError(f"{path}:{lineno}: {err}") from None
    absent = sorted(set(listed) - set(utts))
    if absent:
        warn(f"{path}: {len(absent)} of {len(listed)} listed files are absent from the wav tree: "
             f"{' '.join(absent[:5])}")


def make_trials(lists_dir, out, all_utts, test_utts):
    """Convert each list found; returns {name: trials} of the lists written."""
    written = {}
    for name, filename in LISTS.items():
        targets = [("voxceleb1", all_utts)] + ([("voxceleb1_test", test_utts)] if name.startswith("O") else [])
        path = os.path.join(lists_dir, filename)
        if not os.path.isfile(path):
            for dir_name, _ in targets:
                remove_trials(os.path.join(out, dir_name), name)
            continue
        trials = trials_lib.drop_repeats(trials_lib.read_vox1_list(path), path)
        for dir_name, utts in targets:
            try:
                trials_lib.check_trials(trials, utts, utts, f"{path} (for {dir_name}/trials/{name})")
            except ValueError as err:
                warn(f"skipped: {err}")
                remove_trials(os.path.join(out, dir_name), name)
                continue
            write_trials(os.path.join(out, dir_name), name, trials_lib.format_trials(trials))
            written[f"{dir_name}/trials/{name}"] = trials
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vox1", required=True, help="VoxCeleb1 root (holding wav/)")
    parser.add_argument("--lists", help="dir of the list files (default: --vox1)")
    parser.add_argument("--nj", type=int, default=1, help="processes for reading audio headers")
    parser.add_argument("out", help="output data root")
    args = parser.parse_args()
    require_dir(args.vox1, "--vox1")
    lists_dir = require_dir(args.lists or args.vox1, "--vox1-lists")

    wav_scp = scan(args.vox1)
    utt2spk = {u: u.split("-")[0] for u in wav_scp}
    speakers = set(utt2spk.values())
    tables = {}
    meta = os.path.join(lists_dir, "vox1_meta.csv")
    if os.path.isfile(meta):
        tables["spk2gender"] = read_meta(meta, speakers)
    iden = os.path.join(lists_dir, "iden_split.txt")
    if os.path.isfile(iden):
        check_iden_split(iden, wav_scp)

    full = write_dir(os.path.join(args.out, "voxceleb1"), wav_scp, utt2spk, args.nj, tables)
    for name, test in (("voxceleb1_train", False), ("voxceleb1_test", True)):
        keep = [u for u in full.utts() if is_test_speaker(utt2spk[u]) == test]
        if keep:
            full.select(keep).save(os.path.join(args.out, name))
        else:
            warn(f"no {'test' if test else 'dev'} speakers found: {name} not written")
    test_utts = [u for u in full.utts() if is_test_speaker(utt2spk[u])]
    written = make_trials(lists_dir, args.out, full.utts(), test_utts)
    print(f"make_voxceleb1: {len(speakers)} speakers, {len(wav_scp)} utterances; trials: "
          + (", ".join(sorted(written)) or "none (no list files found)"))


if __name__ == "__main__":
    run_cli(main)
