#!/usr/bin/env python3
"""Data-dir tools and egs at VoxCeleb2 scale: wall time and peak memory of each step on a table-only
data dir (no audio; every feats.scp entry points at one real 2000 x 80 matrix).

    python3 bench/data_scale.py [--utts 300000] [--spks 5994] [--keep DIR]

``--utts 2184018`` is VoxCeleb2 dev + one augmented copy per utterance (the recipe's training set).
Utterance lengths are uniform in 300-2000 frames. Each step runs as its own process (the commands
users run): ``data_dir.py validate``, ``data_dir.py fix`` (on a copy), ``data_dir.py remove-utt``,
``get_chunk_egs.py`` (egs plan, conf/voxceleb.yaml options), and loading ``train.egs.csv`` into the
training Dataset (``ChunkEgs``). The reference printed beside them is the floor every step pays:
reading each table of the dir once with ``read_table``, in this process.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import kaldiio
import numpy as np

from subtools.kaldi.data_dir import utt2spk_to_spk2utt, write_spk2utt
from subtools.kaldi.fileio import read_table, write_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = ("utt2spk", "spk2utt", "wav.scp", "feats.scp", "vad.scp", "utt2num_frames")


def make_dir(out, num_utts, num_spks, rng):
    """Write a sorted, valid table-only data dir of ``num_utts`` utterances over ``num_spks`` speakers."""
    os.makedirs(out)
    with kaldiio.WriteHelper(f"ark,scp:{out}/one.ark,{out}/one.scp") as writer:
        writer("x", np.zeros((2000, 80), np.float32))
    spec = read_table(f"{out}/one.scp")["x"]
    counts = rng.multinomial(num_utts - 8 * num_spks, np.full(num_spks, 1 / num_spks)) + 8
    utts = [f"id{s:05d}-vid{u // 8:05d}-{u % 8:05d}" for s, c in enumerate(counts) for u in range(c)]
    frames = rng.integers(300, 2001, len(utts))
    tables = {
        "utt2spk": [u[:7] for u in utts],
        "wav.scp": [f"ffmpeg -v 8 -i /corpora/vox2/dev/aac/{u[:7]}/{u[8:19]}/{u[20:]}.m4a -f wav "
                    "-acodec pcm_s16le - |" for u in utts],
        "feats.scp": [spec] * len(utts),
        "vad.scp": [spec] * len(utts),
        "utt2num_frames": frames,
    }
    for name, values in tables.items():
        write_table(f"{out}/{name}", dict(zip(utts, values)), sort=False)
    write_spk2utt(f"{out}/spk2utt", utt2spk_to_spk2utt(dict(zip(utts, tables["utt2spk"]))))


def run(label, cmd):
    """Run ``cmd``; print its wall seconds and peak RSS (GB, from ``os.wait4``)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{label} failed:\n{stderr.decode()[-2000:]}")
    print(f"{label:<56s} {seconds:7.1f} s  peak {usage.ru_maxrss / 2**20:5.2f} GB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=300000)
    parser.add_argument("--spks", type=int, default=5994)
    parser.add_argument("--keep", help="build the dirs here and keep them (default: a temp dir, removed)")
    args = parser.parse_args()
    if args.utts < 8 * args.spks:
        sys.exit("--utts must be >= 8 x --spks")
    root = args.keep or tempfile.mkdtemp(prefix="data_scale.")
    data = os.path.join(root, "train")
    try:
        make_dir(data, args.utts, args.spks, np.random.default_rng(0))
        start = time.perf_counter()
        for name in TABLES:
            read_table(os.path.join(data, name))
        floor = time.perf_counter() - start
        print(f"table-only data dir: {args.utts} utterances, {args.spks} speakers, {len(TABLES)} tables")
        print(f"{'reference: read_table of every table once':<56s} {floor:7.1f} s")
        shutil.copytree(data, data + "_fix")
        py, tools = sys.executable, os.path.join(REPO, "subtools")
        run("data_dir.py validate", [py, f"{tools}/data_dir.py", "validate", data])
        run("data_dir.py fix (nothing to fix)", [py, f"{tools}/data_dir.py", "fix", data + "_fix"])
        run("data_dir.py remove-utt --min-frames 200 --min-utts 8",
            [py, f"{tools}/data_dir.py", "remove-utt", "--min-frames", "200", "--min-utts", "8", data,
             data + "_removed"])
        egs = os.path.join(root, "egs")
        run("get_chunk_egs.py (chunk 200, overlap 0.1, scale 1.5)",
            [py, f"{tools}/pytorch/pipeline/get_chunk_egs.py", data, egs])
        with open(os.path.join(egs, "train.egs.csv")) as f:
            num_egs = sum(1 for _ in f) - 1
        load = "import sys; from subtools.pytorch.libs.egs.egs import ChunkEgs"
        run("reference: that import alone (torch)", [py, "-c", load])
        run(f"ChunkEgs(train.egs.csv): {num_egs} egs",
            [py, "-c", load + "; ChunkEgs(sys.argv[1])", os.path.join(egs, "train.egs.csv")])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
