"""Test audio and Kaldi pitch reference arrays for tests/test_pitch.py (run by make_pitch_reference.sh).

    python3 tests/data/make_pitch_reference.py audio DIR       # project venv: espeak-ng + scipy -> DIR/*.wav
    PYTHON tests/data/make_pitch_reference.py reference DIR    # throwaway venv with torchaudio 2.0.2

``reference`` runs ``torchaudio.functional.compute_kaldi_pitch`` (torchaudio's build of Kaldi's
pitch-functions.cc) on each case of :data:`CASES` and writes ``DIR/reference.npz``: ``CASE`` -> float32
``[T, 2]`` (NCCF, pitch Hz), and ``cases`` (JSON: case -> [wav file, Kaldi options]).
The waveform is passed as int16 / 32768: torchaudio 2.0.2 meant to scale [-1, 1] input back to int16
(its ``denormalize`` calls the out-of-place ``index_put`` and drops the result), so Kaldi's code sees the
[-1, 1] values; the pitch tracker is scale invariant and a power-of-two scale is exact in float32.
"""
import json
import os
import subprocess
import sys

CASES = {  # case -> (wav, compute-kaldi-pitch-feats options)
    "male": ("male.wav", {}),
    "female": ("female.wav", {}),
    "noise-silence": ("noise_silence.wav", {}),
    "click-at-end": ("click_at_end.wav", {}),  # the held-back tail changes the energy: recompute-frame path
    "male-no-snip-edges": ("male.wav", {"snip-edges": False}),
    "male-frames": ("male.wav", {"frame-length": 40.0, "frame-shift": 5.0, "min-f0": 80.0, "max-f0": 500.0}),
    "male-filters": ("male.wav", {"lowpass-filter-width": 3, "upsample-filter-width": 3, "lowpass-cutoff": 800.0,
                                  "resample-frequency": 3000.0, "delta-pitch": 0.01, "penalty-factor": 0.5,
                                  "soft-min-f0": 5.0}),
    "male-8k": ("male_8k.wav", {"sample-frequency": 8000.0}),
    "noise-silence-chunks": ("noise_silence.wav", {"frames-per-chunk": 10}),  # energy per chunk, then recompute
}


def make_audio(out):
    """Two espeak-ng voices (low male, high female), digital silence + noise + a tone, quiet noise ending in a
    loud click; 16 kHz int16 (one 8 kHz copy)."""
    import io

    import numpy as np
    import scipy.signal as ss
    import soundfile

    def espeak(args, text, rate):
        raw = subprocess.run(["espeak-ng", "--stdout", *args, text], capture_output=True, check=True).stdout
        wave, sr = soundfile.read(io.BytesIO(raw), dtype="int16")
        return np.clip(np.round(ss.resample_poly(wave.astype(np.float64), rate, sr)), -32768, 32767)

    rng = np.random.default_rng(0)
    rate = 16000
    t = np.arange(rate // 2) / rate
    tone = sum(np.sin(2 * np.pi * k * 220 * t) / k for k in range(1, 6))
    clips = {
        "male.wav": (espeak(["-v", "en", "-p", "30"], "The quick brown fox jumps over the lazy dog.", rate), rate),
        "female.wav": (espeak(["-v", "en+f3", "-p", "80"], "She sells sea shells by the sea shore.", rate), rate),
        "male_8k.wav": (espeak(["-v", "en", "-p", "30"], "The quick brown fox jumps over the lazy dog.", 8000), 8000),
        "noise_silence.wav": (np.concatenate([np.zeros(rate // 4), 2000 * rng.standard_normal(rate // 2),
                                              np.zeros(rate // 4), 3000 * tone + 300 * rng.standard_normal(t.size)]),
                              rate),
    }
    click = 30 * rng.standard_normal(9600) + 40 * np.sin(2 * np.pi * 180 * np.arange(9600) / rate)
    click[-12:] = 20000 * np.sign(rng.standard_normal(12))
    clips["click_at_end.wav"] = (click, rate)
    os.makedirs(out, exist_ok=True)
    for name, (wave, sr) in clips.items():
        soundfile.write(os.path.join(out, name), np.round(wave).astype(np.int16), sr, subtype="PCM_16")


def make_reference(out):
    import numpy as np
    import soundfile
    import torch
    from torchaudio.functional import compute_kaldi_pitch

    arrays = {}
    for case, (wav, options) in CASES.items():
        wave, rate = soundfile.read(os.path.join(out, wav), dtype="int16")
        kwargs = {name.replace("-", "_"): value for name, value in options.items() if name != "sample-frequency"}
        pitch = compute_kaldi_pitch(torch.from_numpy(wave.astype(np.float32) / 32768), rate, **kwargs)
        arrays[case] = pitch.numpy().astype(np.float32)
    np.savez_compressed(os.path.join(out, "reference.npz"), cases=np.array(json.dumps(CASES)), **arrays)


if __name__ == "__main__":
    {"audio": make_audio, "reference": make_reference}[sys.argv[1]](sys.argv[2])
