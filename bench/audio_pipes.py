#!/usr/bin/env python3
"""Cost of one VoxCeleb2-style audio pass: reading an m4a in-process (the recipe's default wav.scp entry,
the m4a path, decoded by FFmpeg's decoders through PyAV), beside the same m4a through Kaldi's
``ffmpeg … |`` wav.scp pipe (``prepare.sh --vox2-pipes``) and the same audio from flac (what
``--vox2-convert flac`` leaves), in the same run; utt2dur of an m4a from its container (no decode); what
the one-pass VAD adds to the feature pass (raw log-energy + decision on the decoded audio); and an
augmented copy rendered in-process from its m4a (decode + reverb with a 0.5 s RIR, or + 5-speaker babble).

    python3 bench/audio_pipes.py [--utts 40] [--seconds 8]

Prints CPU seconds per utterance (this process and its children: ffmpeg and bash included) of
``subtools.kaldi.audio.read_audio`` for each form (``duration`` for utt2dur), and the pipe/in-process
ratio (target: >= 8x). The README's VoxCeleb2 time estimate multiplies these by the number of passes.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np
import soundfile

from subtools.kaldi.audio import duration, read_audio
from subtools.kaldi.augment import render_entry
from subtools.kaldi.features import FeatureExtractor
from subtools.kaldi.vad import compute_vad, read_vad_conf

RATE = 16000


def cpu_seconds():
    """CPU time (user + system) of this process and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def per_utterance(entries, read=lambda entry, utt: read_audio(entry, utt, expected_rate=RATE)):
    start = cpu_seconds()
    for i, entry in enumerate(entries):
        read(entry, f"u{i}")
    return (cpu_seconds() - start) / len(entries)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=8.0, help="utterance length (VoxCeleb2 mean: about 8 s)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        pipes, m4as, flacs = [], [], []
        for i in range(args.utts):
            wave = (rng.standard_normal(int(args.seconds * RATE)) * 3000).astype(np.int16)
            flac, m4a = os.path.join(tmp, f"u{i}.flac"), os.path.join(tmp, f"u{i}.m4a")
            soundfile.write(flac, wave, RATE, format="FLAC")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", flac, "-c:a", "aac", m4a], check=True)
            flacs.append(flac)
            m4as.append(m4a)
            pipes.append(f"ffmpeg -v 8 -i {m4a} -f wav -acodec pcm_s16le - |")
        for entry in (pipes[0], m4as[0], flacs[0]):
            read_audio(entry, "warm-up")
        pipe_cost, m4a_cost, flac_cost = per_utterance(pipes), per_utterance(m4as), per_utterance(flacs)
        header_cost = per_utterance(m4as, duration)
        extractor, vad_opts = FeatureExtractor.from_conf("fbank", "conf/fbank.conf"), read_vad_conf("conf/vad.conf")
        waves = [read_audio(m4a, "u")[0] for m4a in m4as]
        vad_cost = per_utterance(waves, lambda wave, _: compute_vad(extractor.frame_log_energy(wave), **vad_opts))
        rir = os.path.join(tmp, "rir.wav")
        decay = rng.standard_normal(RATE // 2) * np.exp(-np.arange(RATE // 2) / (0.05 * RATE)) * 20000
        soundfile.write(rir, decay.astype(np.int16), RATE, subtype="PCM_16")
        reverb_cost = per_utterance([render_entry(f"u{i}-reverb", m4a, ["--rir", rir]) for i, m4a in enumerate(m4as)])
        babble_cost = per_utterance([
            render_entry(f"u{i}-babble", m4a, [a for k in range(1, 6) for a in ("--bg", flacs[(i + k) % len(flacs)], "15")])
            for i, m4a in enumerate(m4as)])
    print(f"{args.utts} utterances x {args.seconds:g} s, CPU time incl. child processes")
    print(f"m4a in-process (PyAV, FFmpeg's decoder): {m4a_cost * 1000:6.1f} ms per utterance per pass")
    print(f"m4a through the ffmpeg pipe:             {pipe_cost * 1000:6.1f} ms per utterance per pass")
    print(f"same audio as flac (reference):          {flac_cost * 1000:6.1f} ms per utterance per pass")
    print(f"utt2dur of an m4a from its container:    {header_cost * 1000:6.1f} ms per utterance")
    print(f"VAD in the feature pass (energy + decision on the decoded audio): {vad_cost * 1000:.1f} ms per utterance")
    print(f"augmented copy rendered from its m4a: reverb {reverb_cost * 1000:.1f} ms, "
          f"babble (5 speakers) {babble_cost * 1000:.1f} ms per copy (decode included)")
    print(f"ratio pipe/in-process: {pipe_cost / m4a_cost:.0f}x (target >= 8x); pipe/flac: {pipe_cost / flac_cost:.0f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
