"""Kaldi fbank / MFCC features from Kaldi option files, computed by torchaudio.compliance.kaldi.

Every Kaldi option of compute-fbank-feats / compute-mfcc-feats that torchaudio implements is
accepted under its Kaldi name and mapped to torchaudio's keyword; options left unset take
**Kaldi's** defaults (which differ from torchaudio's for dither = 1.0, energy-floor = 0 and MFCC
use-energy = true). Options torchaudio lacks (htk-mode, allow-downsample, vtln-map, ...) are refused
with an error naming the conf line. ``--channel`` is applied when reading the audio.

Waveforms are float32 ``[N]`` in int16 scale (see :mod:`subtools.kaldi.audio`); features are
float32 ``[T, D]`` with T frames of ``frame-shift`` ms.
"""
import hashlib

import numpy as np
import torch
import torchaudio.compliance.kaldi as ta_kaldi

from subtools.kaldi.options import read_conf, typed_options

FLT_EPSILON = float(np.finfo(np.float32).eps)

# Kaldi option name -> (torchaudio keyword, type, Kaldi default). Shared by fbank and MFCC.
_COMMON = {
    "sample-frequency": ("sample_frequency", float, 16000.0),
    "frame-shift": ("frame_shift", float, 10.0),
    "frame-length": ("frame_length", float, 25.0),
    "dither": ("dither", float, 1.0),
    "preemphasis-coefficient": ("preemphasis_coefficient", float, 0.97),
    "remove-dc-offset": ("remove_dc_offset", bool, True),
    "window-type": ("window_type", str, "povey"),
    "round-to-power-of-two": ("round_to_power_of_two", bool, True),
    "blackman-coeff": ("blackman_coeff", float, 0.42),
    "snip-edges": ("snip_edges", bool, True),
    "num-mel-bins": ("num_mel_bins", int, 23),
    "low-freq": ("low_freq", float, 20.0),
    "high-freq": ("high_freq", float, 0.0),
    "vtln-low": ("vtln_low", float, 100.0),
    "vtln-high": ("vtln_high", float, -500.0),
    "vtln-warp": ("vtln_warp", float, 1.0),
    "energy-floor": ("energy_floor", float, 0.0),
    "raw-energy": ("raw_energy", bool, True),
    "htk-compat": ("htk_compat", bool, False),
    "subtract-mean": ("subtract_mean", bool, False),
    "min-duration": ("min_duration", float, 0.0),
    "channel": ("channel", int, -1),
}
OPTIONS = {
    "fbank": {
        **_COMMON,
        "use-energy": ("use_energy", bool, False),
        "use-log-fbank": ("use_log_fbank", bool, True),
        "use-power": ("use_power", bool, True),
    },
    "mfcc": {
        **_COMMON,
        "use-energy": ("use_energy", bool, True),
        "num-ceps": ("num_ceps", int, 13),
        "cepstral-lifter": ("cepstral_lifter", float, 22.0),
    },
}
WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "blackman")


class FeatureExtractor:
    """Callable computing one feature type with fixed options (build once per job, reuse).

    Attributes: ``feat_type`` ("fbank"|"mfcc"), ``options`` {Kaldi name: value} with every option
    resolved, ``torchaudio_kwargs`` (the keywords passed to torchaudio), ``sample_rate`` (int Hz),
    ``channel`` (None or the channel index to read), ``dim``.
    """

    def __init__(self, feat_type, options=None):
        if feat_type not in OPTIONS:
            raise ValueError(f"unknown feature type '{feat_type}' (expected one of {sorted(OPTIONS)})")
        table = OPTIONS[feat_type]
        self.feat_type = feat_type
        self.options = {name: default for name, (_, _, default) in table.items()}
        self.options.update(options or {})
        if self.options["window-type"] not in WINDOW_TYPES:
            raise ValueError(f"--window-type={self.options['window-type']}: expected one of {WINDOW_TYPES}")
        self.torchaudio_kwargs = {table[n][0]: v for n, v in self.options.items() if n != "channel"}
        self._compute = ta_kaldi.fbank if feat_type == "fbank" else ta_kaldi.mfcc
        self.sample_rate = int(self.options["sample-frequency"])
        self.channel = None if self.options["channel"] < 0 else self.options["channel"]
        self.window_size = int(self.sample_rate * self.options["frame-length"] * 0.001)
        self.window_shift = int(self.sample_rate * self.options["frame-shift"] * 0.001)
        if feat_type == "fbank":
            self.dim = self.options["num-mel-bins"] + int(self.options["use-energy"])
        else:
            self.dim = self.options["num-ceps"]

    @classmethod
    def from_conf(cls, feat_type, path):
        """Build from a Kaldi option file; ValueError naming file:line for unknown/bad options."""
        if feat_type not in OPTIONS:
            raise ValueError(f"unknown feature type '{feat_type}' (expected one of {sorted(OPTIONS)})")
        known = {name: kind for name, (_, kind, _) in OPTIONS[feat_type].items()}
        return cls(feat_type, typed_options(read_conf(path), known, feat_type))

    def energy_column(self):
        """Column index of the log-energy in the output, or None when there is none."""
        if not self.options["use-energy"]:
            return None
        return self.dim - 1 if self.options["htk-compat"] else 0

    def stamp(self):
        """Short hash of the resolved options (detects a changed conf when resuming)."""
        text = self.feat_type + " " + " ".join(f"--{k}={v}" for k, v in sorted(self.options.items()))
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def num_frames(self, num_samples):
        """Kaldi NumFrames: frames produced for ``num_samples`` samples."""
        if self.options["snip-edges"]:
            return 0 if num_samples < self.window_size else 1 + (num_samples - self.window_size) // self.window_shift
        return (num_samples + self.window_shift // 2) // self.window_shift

    def __call__(self, wave):
        """float32 ``[N]`` int16-scale waveform -> float32 ``[T, dim]`` features (T may be 0)."""
        tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0)
        if self.num_frames(tensor.shape[1]) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():
            return self._compute(tensor, **self.torchaudio_kwargs).numpy()

    def frame_log_energy(self, wave):
        """Kaldi raw log-energy per frame (MFCC C0 with use-energy, raw-energy): ``[T]`` float32.

        log(max(sum_n (x_n - mean(x))^2, FLT_EPSILON)) over each frame's samples (mean removed when
        remove-dc-offset), before pre-emphasis and windowing, with this extractor's framing
        (frame length/shift, snip-edges with Kaldi's edge reflection) and energy-floor; no dither.
        """
        n = len(wave)
        t = self.num_frames(n)
        if t == 0:
            return np.zeros(0, dtype=np.float32)
        starts = np.arange(t) * self.window_shift
        if not self.options["snip-edges"]:
            starts += self.window_shift // 2 - self.window_size // 2
        idx = starts[:, None] + np.arange(self.window_size)
        while (idx < 0).any() or (idx >= n).any():  # reflect at the edges: -1 -> 0, n -> n-1
            idx = np.where(idx < 0, -idx - 1, idx)
            idx = np.where(idx >= n, 2 * n - 1 - idx, idx)
        frames = np.asarray(wave, dtype=np.float64)[idx]
        if self.options["remove-dc-offset"]:
            frames -= frames.mean(axis=1, keepdims=True)
        energy = np.log(np.maximum(np.einsum("ij,ij->i", frames, frames), FLT_EPSILON))
        if self.options["energy-floor"] > 0:
            energy = np.maximum(energy, np.log(self.options["energy-floor"]))
        return energy.astype(np.float32)
