#!/usr/bin/env python3
"""Lay out the built-in corpus as VoxCeleb1, VoxCeleb2 and SITW trees, for a dry run of the real recipe.

    python3 recipe/voxceleb/local/make_fake_corpora.py --mini-data data [--nj 4] OUT

Reads the built-in corpus' ``mini_train`` / ``mini_test`` data dirs (``--mini-data``) and writes, in the
layouts and list formats of the distributed corpora:

- ``OUT/voxceleb2/dev/aac/idNNNNN/<ytid>/NNNNN.m4a``: every training speaker (ffmpeg AAC encode);
- ``OUT/voxceleb1/wav/idNNNNN/<ytid>/NNNNN.wav``: the test speakers as VoxCeleb1 test speakers
  (id10270...), plus the first two training speakers as dev speakers (id10001...); ``vox1_meta.csv``;
  ``veri_test.txt`` / ``list_test_all.txt`` (+ ``*2.txt``) from the ``mini-O`` trials and
  ``list_test_hard.txt`` (+ ``2``) from ``mini-H``, as ``1|0 path1 path2`` lines;
- ``OUT/sitw/{dev,eval}/{audio,lists,keys}``: the test speakers split in two halves; each speaker's
  first utterance enrolls a model, the others are test files, every model x test file is a trial.

MUSAN and RIRS_NOISES are the corpus' own ``musan/`` and ``RIRS_NOISES/`` (already in those layouts).
Then ``prepare.sh --vox1 OUT/voxceleb1 --vox2 OUT/voxceleb2 --sitw OUT/sitw --musan CORPUS/musan --rirs
CORPUS/RIRS_NOISES`` and the recipes run as on the real corpora, in minutes (see the README).
"""
import argparse
import hashlib
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import soundfile

from subtools.cli import run_cli
from subtools.kaldi.data_dir import DataDir
from subtools.kaldi.fileio import write_lines
from subtools.kaldi.trials import read_trials

YTID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
UTTS_PER_VIDEO = 3


def ytid(text):
    """A deterministic 11-character YouTube-like id."""
    digest = hashlib.sha1(text.encode()).digest()
    return "".join(YTID_CHARS[b % 64] for b in digest[:11])


def layout(data, spk2id):
    """{utt: "idNNNNN/<ytid>/NNNNN"} of the speakers in ``spk2id`` (videos of UTTS_PER_VIDEO utterances)."""
    paths = {}
    for spk, utts in data.spk2utt.items():
        if spk in spk2id:
            for k, utt in enumerate(utts):
                paths[utt] = f"{spk2id[spk]}/{ytid(spk + str(k // UTTS_PER_VIDEO))}/{k % UTTS_PER_VIDEO + 1:05d}"
    return paths


def copy_audio(src, dst, fmt=None):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    wave, rate = soundfile.read(src, dtype="int16")
    soundfile.write(dst, wave, rate, format=fmt)


def encode_m4a(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, "-c:a", "aac", dst], check=True)


def make_voxceleb2(train, out, nj):
    spk2id = {spk: f"id{i + 1:05d}" for i, spk in enumerate(train.spk2utt)}
    jobs = [(train.wav_scp[utt], os.path.join(out, "dev", "aac", rel + ".m4a"))
            for utt, rel in layout(train, spk2id).items()]
    with ThreadPoolExecutor(nj) as pool:
        list(pool.map(lambda job: encode_m4a(*job), jobs))
    return len(spk2id)


def make_voxceleb1(train, test, trials_dir, out):
    test_ids = {spk: f"id{10270 + i}" for i, spk in enumerate(test.spk2utt)}
    dev_ids = {spk: f"id{10001 + i}" for i, spk in enumerate(list(train.spk2utt)[:2])}
    meta = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    for data, ids, split in ((train, dev_ids, "dev"), (test, test_ids, "test")):
        for utt, rel in layout(data, ids).items():
            copy_audio(data.wav_scp[utt], os.path.join(out, "wav", rel + ".wav"))
        gender = data.tables.get("spk2gender", {})
        meta += [f"{vid}\t{spk}\t{gender.get(spk, 'x')}\tNowhere\t{split}" for spk, vid in ids.items()]
    write_lines(os.path.join(out, "vox1_meta.csv"), meta)
    paths = layout(test, test_ids)
    lists = {"mini-O": ("veri_test.txt", "veri_test2.txt", "list_test_all.txt", "list_test_all2.txt"),
             "mini-H": ("list_test_hard.txt", "list_test_hard2.txt")}
    for name, files in lists.items():
        lines = [f"{int(label == 'target')} {paths[enroll]}.wav {paths[test_utt]}.wav"
                 for enroll, test_utt, label in read_trials(os.path.join(trials_dir, name))]
        for file in files:
            write_lines(os.path.join(out, file), lines)
    return len(test_ids) + len(dev_ids)


def make_sitw(test, out):
    speakers = list(test.spk2utt)
    half = len(speakers) // 2
    for s, (subset, spks) in enumerate((("dev", speakers[:half]), ("eval", speakers[half:]))):
        base = os.path.join(out, subset)
        models, tests, keys = [], [], []
        for i, spk in enumerate(spks):
            model = f"{10000 + 1000 * s + i}"
            for k, utt in enumerate(test.spk2utt[spk]):
                copy_audio(test.wav_scp[utt], os.path.join(base, "audio", f"{utt}.flac"), fmt="FLAC")
                (models if k == 0 else tests).append((model, spk, f"audio/{utt}.flac"))
        for model, spk, _ in models:
            keys += [f"{model} {file} {'tgt' if spk == test_spk else 'imp'}" for _, test_spk, file in tests]
        write_lines(os.path.join(base, "lists", "enroll-core.lst"), [f"{m} {f}" for m, _, f in models])
        write_lines(os.path.join(base, "lists", "test-core.lst"), [f for _, _, f in tests])
        write_lines(os.path.join(base, "keys", "core-core.lst"), keys)
    return len(speakers)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mini-data", required=True, help="dir holding the built-in corpus' mini_train, mini_test")
    parser.add_argument("--nj", type=int, default=4, help="parallel ffmpeg encodes")
    parser.add_argument("out", help="where voxceleb1/, voxceleb2/ and sitw/ are written")
    args = parser.parse_args(argv)
    train = DataDir.load(os.path.join(args.mini_data, "mini_train"))
    test = DataDir.load(os.path.join(args.mini_data, "mini_test"))
    n2 = make_voxceleb2(train, os.path.join(args.out, "voxceleb2"), args.nj)
    n1 = make_voxceleb1(train, test, os.path.join(args.mini_data, "mini_test", "trials"),
                        os.path.join(args.out, "voxceleb1"))
    ns = make_sitw(test, os.path.join(args.out, "sitw"))
    print(f"{args.out}: voxceleb2 {n2} speakers, voxceleb1 {n1} speakers, sitw {ns} speakers")


if __name__ == "__main__":
    run_cli(main)
