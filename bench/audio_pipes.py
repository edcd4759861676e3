#!/usr/bin/env python3
"""Cost of one VoxCeleb2-style audio pass: reading m4a through the recipe's ``ffmpeg … |`` wav.scp pipe,
beside reading the same audio from flac (what ``prepare.sh --vox2-convert flac`` leaves), in the same run.

    python3 bench/audio_pipes.py [--utts 40] [--seconds 8]

Prints CPU seconds per utterance (this process and its children: ffmpeg and bash included) of
``subtools.kaldi.audio.read_audio`` for each form, and their ratio. The README's VoxCeleb2 time
estimates multiply the pipe figure by the number of passes (utt2dur, features, VAD, augmented copies).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np
import soundfile

from subtools.kaldi.audio import read_audio

RATE = 16000


def cpu_seconds():
    """CPU time (user + system) of this process and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def per_utterance(entries):
    start = cpu_seconds()
    for i, entry in enumerate(entries):
        read_audio(entry, f"u{i}", expected_rate=RATE)
    return (cpu_seconds() - start) / len(entries)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=8.0, help="utterance length (VoxCeleb2 mean: about 8 s)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        pipes, flacs = [], []
        for i in range(args.utts):
            wave = (rng.standard_normal(int(args.seconds * RATE)) * 3000).astype(np.int16)
            flac, m4a = os.path.join(tmp, f"u{i}.flac"), os.path.join(tmp, f"u{i}.m4a")
            soundfile.write(flac, wave, RATE, format="FLAC")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", flac, "-c:a", "aac", m4a], check=True)
            flacs.append(flac)
            pipes.append(f"ffmpeg -v 8 -i {m4a} -f wav -acodec pcm_s16le - |")
        read_audio(pipes[0], "warm-up")
        pipe_cost, flac_cost = per_utterance(pipes), per_utterance(flacs)
    print(f"{args.utts} utterances x {args.seconds:g} s, CPU time incl. child processes")
    print(f"m4a through the ffmpeg pipe: {pipe_cost * 1000:6.1f} ms per utterance per pass")
    print(f"same audio as flac (reference): {flac_cost * 1000:6.1f} ms per utterance per pass")
    print(f"ratio pipe/flac: {pipe_cost / flac_cost:.0f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
