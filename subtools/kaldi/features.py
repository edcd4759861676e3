"""Kaldi fbank / MFCC (/ MFCC + pitch) features from Kaldi option files.

fbank and MFCC are computed by torchaudio.compliance.kaldi. Every Kaldi option of compute-fbank-feats /
compute-mfcc-feats that torchaudio implements is accepted under its Kaldi name and mapped to torchaudio's
keyword; options left unset take **Kaldi's** defaults (which differ from torchaudio's for dither = 1.0, energy-floor = 0 and MFCC
use-energy = true). Options torchaudio lacks (htk-mode, allow-downsample, vtln-map, ...) are refused
with an error naming the conf line. ``--channel`` is applied when reading the audio.

``mfcc_pitch`` is Kaldi's steps/make_mfcc_pitch.sh (ASV-subtools ``mfcc_23_pitch``): the MFCCs pasted with
the post-processed Kaldi pitch (:mod:`subtools.kaldi.pitch`; compute-kaldi-pitch-feats options from the
pitch conf, process-kaldi-pitch-feats options from the optional post-process conf), MFCC columns first,
frames cut to the shorter of the two as ``paste-feats --length-tolerance=2`` does (an utterance whose two
lengths differ by more than 2 frames is refused, as paste-feats skips it).

Option values Kaldi refuses (its asserts and KALDI_ERRs: too few mel bins, low-freq >= high-freq, ...) are
refused when the extractor is built (:class:`~subtools.kaldi.options.OptionError`; ``from_conf`` names the
conf line), never per utterance.

Waveforms are float32 ``[N]`` in int16 scale (see :mod:`subtools.kaldi.audio`); features are
float32 ``[T, D]`` with T frames of ``frame-shift`` ms.
"""
import hashlib

import numpy as np
import torch
import torchaudio.compliance.kaldi as ta_kaldi

from subtools.kaldi.options import OptionError, locate, read_conf, typed_options
from subtools.kaldi.pitch import POSTPROCESS_OPTIONS, PITCH_OPTIONS, KaldiPitch, PitchPostProcessor

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
FEATURE_TYPES = ("fbank", "mfcc", "mfcc_pitch")
PASTE_LENGTH_TOLERANCE = 2  # make_mfcc_pitch.sh --paste-length-tolerance default


def _mel(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def check_options(feat_type, o):
    """Refuse fbank/MFCC options Kaldi refuses (feature-window.cc, mel-computations.cc, feature-mfcc.cc,
    compute-*-feats.cc): OptionError naming the options, the likeliest culprit first."""
    rate = o["sample-frequency"]
    if rate <= 0:
        raise OptionError(["sample-frequency"], f"--sample-frequency={rate:g} must be positive")
    for name in ("frame-shift", "frame-length"):
        if int(rate * o[name] * 0.001) < 1:
            raise OptionError([name], f"--{name}={o[name]:g} ms is under one sample at --sample-frequency={rate:g}")
    if not 0.0 <= o["preemphasis-coefficient"] <= 1.0:
        raise OptionError(["preemphasis-coefficient"],
                          f"--preemphasis-coefficient={o['preemphasis-coefficient']:g} must be in [0, 1]")
    if o["window-type"] not in WINDOW_TYPES:
        raise OptionError(["window-type"], f"--window-type={o['window-type']}: expected one of {WINDOW_TYPES}")
    size = int(rate * o["frame-length"] * 0.001)
    padded = 1 << (size - 1).bit_length() if o["round-to-power-of-two"] else size
    if padded % 2:
        raise OptionError(["frame-length", "round-to-power-of-two"], f"the FFT length {padded} (--frame-length="
                          f"{o['frame-length']:g} ms, --round-to-power-of-two=false) must be even")
    bins = o["num-mel-bins"]
    if bins < 3:
        raise OptionError(["num-mel-bins"], f"--num-mel-bins={bins}: Kaldi needs at least 3 mel bins")
    nyquist = 0.5 * rate
    low, high = o["low-freq"], o["high-freq"] if o["high-freq"] > 0 else nyquist + o["high-freq"]
    if not 0.0 <= low < nyquist:
        raise OptionError(["low-freq"], f"--low-freq={low:g} must be in [0, nyquist {nyquist:g})")
    if not 0.0 < high <= nyquist:
        raise OptionError(["high-freq"], f"--high-freq={o['high-freq']:g} resolves to {high:g} Hz, outside "
                          f"(0, nyquist {nyquist:g}] (a non-positive value means nyquist + high-freq)")
    if high <= low:
        raise OptionError(["low-freq", "high-freq"], f"--low-freq={low:g} must be below the high frequency {high:g} "
                          f"Hz (--high-freq={o['high-freq']:g})")
    if o["vtln-warp"] != 1.0:
        vlow, vhigh = o["vtln-low"], o["vtln-high"] + (nyquist if o["vtln-high"] < 0 else 0.0)
        if not (low < vlow < vhigh < high):
            raise OptionError(["vtln-low", "vtln-high", "vtln-warp"], f"with --vtln-warp={o['vtln-warp']:g}, "
                              f"need --low-freq {low:g} < --vtln-low {vlow:g} < --vtln-high {vhigh:g} < high {high:g}")
    fft_mel = _mel(rate / padded * np.arange(padded // 2))
    edges = _mel(low) + np.arange(bins + 2) * (_mel(high) - _mel(low)) / (bins + 1)
    inside = (fft_mel[None, :] > edges[:-2, None]) & (fft_mel[None, :] < edges[2:, None])
    if not inside.any(axis=1).all():
        raise OptionError(["num-mel-bins", "frame-length"], f"--num-mel-bins={bins} is too many for the {padded}-point "
                          f"FFT between {low:g} and {high:g} Hz: some mel bin holds no FFT bin")
    if feat_type == "mfcc" and not 1 <= o["num-ceps"] <= bins:
        raise OptionError(["num-ceps", "num-mel-bins"],
                          f"--num-ceps={o['num-ceps']} must be in [1, --num-mel-bins={bins}]")
    if o["channel"] < -1:
        raise OptionError(["channel"], f"--channel={o['channel']} must be -1 (mono only) or a channel index")


def check_pitch_matches(o, pitch):
    """The pitch must see the same audio rate and frames as the MFCCs it is pasted to."""
    for name in ("sample-frequency", "frame-shift"):
        if pitch[name] != o[name]:
            raise OptionError([name], f"pitch --{name}={pitch[name]:g} differs from the MFCC's {o[name]:g} "
                              "(the pitch frames must line up with the MFCC frames)", "pitch")


def paste_feats(feats, tolerance=PASTE_LENGTH_TOLERANCE):
    """Kaldi paste-feats --length-tolerance: ``[T_i, D_i]`` -> ``[min T_i, sum D_i]``; ValueError when the
    lengths differ by more than ``tolerance`` or one is empty."""
    lengths = [f.shape[0] for f in feats]
    if max(lengths) - min(lengths) > tolerance or min(lengths) == 0:
        raise ValueError(f"feature lengths {lengths} differ by more than {tolerance} frames or one is empty "
                         f"(paste-feats --length-tolerance={tolerance})")
    return np.concatenate([f[:min(lengths)] for f in feats], axis=1)


class FeatureExtractor:
    """Callable computing one feature type with fixed options (build once per job, reuse).

    Attributes: ``feat_type`` ("fbank"|"mfcc"|"mfcc_pitch"), ``options`` {Kaldi name: value} of the
    fbank/MFCC part with every option resolved, ``torchaudio_kwargs`` (the keywords passed to torchaudio),
    ``pitch`` / ``pitch_postprocess`` (:class:`KaldiPitch` / :class:`PitchPostProcessor`, or None),
    ``sample_rate`` (int Hz), ``channel`` (None or the channel index to read), ``dim``.
    OptionError (a ValueError) for option values Kaldi refuses.
    """

    def __init__(self, feat_type, options=None, pitch_options=None, postprocess_options=None):
        if feat_type not in FEATURE_TYPES:
            raise ValueError(f"unknown feature type '{feat_type}' (expected one of {FEATURE_TYPES})")
        base = "mfcc" if feat_type == "mfcc_pitch" else feat_type
        table = OPTIONS[base]
        self.feat_type = feat_type
        self.options = {name: default for name, (_, _, default) in table.items()}
        self.options.update(options or {})
        check_options(base, self.options)
        self.torchaudio_kwargs = {table[n][0]: v for n, v in self.options.items() if n != "channel"}
        self._compute = ta_kaldi.fbank if base == "fbank" else ta_kaldi.mfcc
        self.sample_rate = int(self.options["sample-frequency"])
        self.channel = None if self.options["channel"] < 0 else self.options["channel"]
        self.window_size = int(self.sample_rate * self.options["frame-length"] * 0.001)
        self.window_shift = int(self.sample_rate * self.options["frame-shift"] * 0.001)
        if base == "fbank":
            self.base_dim = self.options["num-mel-bins"] + int(self.options["use-energy"])
        else:
            self.base_dim = self.options["num-ceps"]
        self.pitch = self.pitch_postprocess = None
        if feat_type == "mfcc_pitch":
            self.pitch = KaldiPitch(pitch_options)
            self.pitch_postprocess = PitchPostProcessor(postprocess_options)
            check_pitch_matches(self.options, self.pitch.options)
        elif pitch_options or postprocess_options:
            raise ValueError(f"pitch options given for feature type {feat_type} (only mfcc_pitch has pitch)")
        self.dim = self.base_dim + (self.pitch_postprocess.dim if self.pitch else 0)

    @classmethod
    def from_conf(cls, feat_type, path, pitch_conf=None, postprocess_conf=None):
        """Build from Kaldi option files (``pitch_conf`` / ``postprocess_conf``: compute-kaldi-pitch-feats /
        process-kaldi-pitch-feats options, mfcc_pitch only; Kaldi defaults when None). ValueError naming
        file:line for an unknown option, a malformed value or a value Kaldi refuses."""
        if feat_type not in FEATURE_TYPES:
            raise ValueError(f"unknown feature type '{feat_type}' (expected one of {FEATURE_TYPES})")
        if feat_type != "mfcc_pitch" and (pitch_conf or postprocess_conf):
            raise ValueError(f"a pitch conf is only read for mfcc_pitch, not {feat_type}")
        base = "mfcc" if feat_type == "mfcc_pitch" else feat_type
        sources = {  # program -> (option table {name: type}, conf path or None, label)
            "features": ({n: k for n, (_, k, _) in OPTIONS[base].items()}, path, base),
            "pitch": ({n: k for n, (k, _) in PITCH_OPTIONS.items()}, pitch_conf, "compute-kaldi-pitch-feats"),
            "pitch-postprocess": ({n: k for n, (k, _) in POSTPROCESS_OPTIONS.items()}, postprocess_conf,
                                  "process-kaldi-pitch-feats"),
        }
        confs, values = {}, {}
        for program, (known, conf_path, label) in sources.items():
            confs[program] = read_conf(conf_path) if conf_path else {}
            values[program] = typed_options(confs[program], known, label)
        try:
            return cls(feat_type, values["features"], values["pitch"], values["pitch-postprocess"])
        except OptionError as e:
            where = sources[e.program][1] or f"(no {e.program} conf given)"
            raise locate(e, confs[e.program], where) from None

    def energy_column(self):
        """Column index of the log-energy in the output, or None when there is none."""
        if not self.options["use-energy"]:
            return None
        return self.base_dim - 1 if self.options["htk-compat"] else 0

    def stamp(self):
        """Short hash of every resolved option, pitch ones included (detects a changed conf when resuming)."""
        text = self.feat_type + " " + " ".join(f"--{k}={v}" for k, v in sorted(self.options.items()))
        if self.pitch:
            text += " pitch " + " ".join(f"--{k}={v}" for k, v in sorted(self.pitch.options.items()))
            text += " post " + " ".join(f"--{k}={v}" for k, v in sorted(self.pitch_postprocess.options.items()))
            text += f" paste-length-tolerance={PASTE_LENGTH_TOLERANCE}"
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def num_frames(self, num_samples):
        """Frames produced for ``num_samples`` samples (mfcc_pitch: the shorter of MFCC and pitch)."""
        frames = self._base_frames(num_samples)
        return min(frames, self.pitch.num_frames(num_samples)) if self.pitch else frames

    def _base_frames(self, num_samples):
        """Kaldi NumFrames of the fbank/MFCC framing."""
        if self.options["snip-edges"]:
            return 0 if num_samples < self.window_size else 1 + (num_samples - self.window_size) // self.window_shift
        return (num_samples + self.window_shift // 2) // self.window_shift

    def __call__(self, wave, seed=0):
        """float32 ``[N]`` int16-scale waveform -> float32 ``[T, dim]`` features (T may be 0). ``seed``
        seeds the dither noise (``--dither`` > 0), so that an utterance's features do not depend on which
        job or process computes it (make_features seeds with a hash of the utterance id)."""
        tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0)
        if self._base_frames(tensor.shape[1]) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            feats = self._compute(tensor, **self.torchaudio_kwargs).numpy()
        if self.pitch is None:
            return feats
        return paste_feats([feats, self.pitch_postprocess(self.pitch(tensor[0].numpy()))])

    def frame_log_energy(self, wave):
        """Kaldi raw log-energy per frame (MFCC C0 with use-energy, raw-energy): ``[T]`` float32.

        log(max(sum_n (x_n - mean(x))^2, FLT_EPSILON)) over each frame's samples (mean removed when
        remove-dc-offset), before pre-emphasis and windowing, with this extractor's framing
        (frame length/shift, snip-edges with Kaldi's edge reflection) and energy-floor; no dither.
        mfcc_pitch: the frames kept by the paste.
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
