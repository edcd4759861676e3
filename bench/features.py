#!/usr/bin/env python3
"""Feature-stage speed: wav files -> fbank-80 arks through make_features (--nj 1, one core),
beside the bare torchaudio.compliance.kaldi.fbank call on the same audio, in the same run; and the
authors' mfcc_pitch (MFCC-23 + Kaldi pitch, conf/mfcc23.conf + conf/pitch.conf) end to end, beside the
bare pitch (tracker + post-processing, audio in memory).

    python3 bench/features.py [--minutes 5] [--utt-seconds 8]

Prints real-time factors per core (audio seconds / CPU-core seconds): ours end to end (read wav,
compute, write ark + scp + utt2num_frames) and the bare calls (features only, audio in memory),
and the fbank ratio. Target (SPEC §9): ours >= 0.6 of the bare fbank call in the same run (the bare
call's own speed varies too much between VMs for an absolute target); for mfcc_pitch, well above real
time (Kaldi's C++ pitch runs at about 100x).
The four are timed alternately ``--repeats`` times (ours into a fresh ark dir each time); the best
(least disturbed) time of each is reported, with the median beside it, because a shared VM's
CPU time varies by tens of percent from run to run.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import soundfile
import torch

from subtools.kaldi.features import FeatureExtractor
from subtools.make_features import make_features

RATE = 16000


def synthetic_utterance(seconds, rng):
    """Harmonic source with gliding f0, on/off at a syllable rate, plus noise; int16."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = rng.uniform(90, 220) * (1 + 0.2 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20)) * ((t * 4) % 1 < 0.6)
    y = voiced + 0.05 * rng.standard_normal(n)
    return (y / np.abs(y).max() * 10000).astype(np.int16)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="total audio")
    parser.add_argument("--utt-seconds", type=float, default=8.0, help="utterance length")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timings of each")
    parser.add_argument("--conf", default="conf/fbank.conf")
    parser.add_argument("--mfcc-conf", default="conf/mfcc23.conf", help="MFCC part of mfcc_pitch")
    parser.add_argument("--pitch-conf", default="conf/pitch.conf")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    num_utts = max(1, int(args.minutes * 60 / args.utt_seconds))
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "bench")
        os.makedirs(data)
        waves, lines = [], []
        for i in range(num_utts):
            wave = synthetic_utterance(args.utt_seconds, rng)
            path = os.path.join(tmp, f"u{i:05d}.wav")
            soundfile.write(path, wave, RATE, subtype="PCM_16")
            waves.append(wave.astype(np.float32))
            lines.append(f"spk-u{i:05d} {path}\n")
        with open(os.path.join(data, "wav.scp"), "w") as f:
            f.writelines(lines)
        with open(os.path.join(data, "utt2spk"), "w") as f:
            f.writelines(f"{line.split()[0]} spk\n" for line in lines)
        audio_seconds = num_utts * args.utt_seconds

        extractor = FeatureExtractor.from_conf("fbank", args.conf)
        kwargs = dict(extractor.torchaudio_kwargs)
        extractor(waves[0])  # warm-up (first call initialises torch kernels)
        pitch = FeatureExtractor.from_conf("mfcc_pitch", args.mfcc_conf, args.pitch_conf)
        times = {label: [] for label in LABELS}
        for rep in range(args.repeats):
            runs = {
                "bare_fbank": lambda: [torchaudio_fbank(wave, kwargs) for wave in waves],
                "fbank": lambda: make_features(data, "fbank", args.conf, nj=1, ark_dir=os.path.join(tmp, f"arks{rep}")),
                "bare_pitch": lambda: [pitch.pitch_postprocess(pitch.pitch(wave)) for wave in waves],
                "mfcc_pitch": lambda: make_features(data, "mfcc_pitch", args.mfcc_conf, nj=1,
                                                    pitch_conf=args.pitch_conf, ark_dir=os.path.join(tmp, f"arks{rep}")),
            }
            for label, run in runs.items():
                start = time.process_time()
                run()
                times[label].append(time.process_time() - start)

    print(f"audio: {num_utts} utterances x {args.utt_seconds:g} s = {audio_seconds / 60:.1f} min, "
          f"fbank-{extractor.dim} and mfcc_pitch-{pitch.dim}, 1 thread, CPU time, best (median) of {args.repeats}")
    for label, text in LABELS.items():
        best, median = min(times[label]), float(np.median(times[label]))
        print(f"{text}: {best:7.2f} s  -> {audio_seconds / best:6.0f}x ({audio_seconds / median:6.0f}x) "
              "real time per core")
    print(f"fbank ratio ours/bare: {min(times['bare_fbank']) / min(times['fbank']):.2f} (target >= 0.6)")
    sys.stdout.flush()


LABELS = {
    "bare_fbank": "bare torchaudio.compliance.kaldi.fbank",
    "fbank": "make_features fbank (wav -> ark, end to end)",
    "bare_pitch": "bare Kaldi pitch + post-processing",
    "mfcc_pitch": "make_features mfcc_pitch (wav -> ark, end to end)",
}


def torchaudio_fbank(wave, kwargs):
    import torchaudio.compliance.kaldi as ta_kaldi

    return ta_kaldi.fbank(torch.from_numpy(wave).unsqueeze(0), **kwargs)


if __name__ == "__main__":
    main()
