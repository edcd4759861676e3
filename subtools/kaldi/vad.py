"""Energy VAD exactly as Kaldi ``compute-vad`` (src/ivector/voice-activity-detection.cc).

Given per-frame log-energies ``e[t]`` (C0 of Kaldi MFCCs), the threshold is
``vad-energy-threshold + vad-energy-mean-scale * mean_t(e)``. Kaldi then loops over a context
window ``t2 in [t - context, t + context]`` (clipped to the utterance) counting ``den`` frames and
``num`` frames "above threshold", and marks t voiced when ``num >= den * vad-proportion-threshold``.
Kaldi's loop tests ``e[t]`` instead of ``e[t2]``, so num is 0 or den and the decision reduces to
``e[t] > threshold``: frames-context has no effect. We reproduce that by default;
``fix_context=True`` tests ``e[t2]`` (the intended smoothing).

Option values Kaldi asserts on (vad-energy-mean-scale < 0, vad-frames-context < 0,
vad-proportion-threshold outside (0, 1)) are refused when the conf is read, naming its line.
"""
import numpy as np

from subtools.kaldi.options import OptionError, locate, read_conf, typed_options

# Kaldi option name -> (keyword of compute_vad, type, Kaldi default)
VAD_OPTIONS = {
    "vad-energy-threshold": ("energy_threshold", float, 5.0),
    "vad-energy-mean-scale": ("energy_mean_scale", float, 0.5),
    "vad-frames-context": ("frames_context", int, 0),
    "vad-proportion-threshold": ("proportion_threshold", float, 0.6),
}


def vad_conf_lines(opts):
    """Kaldi option lines of resolved VAD ``opts`` (keyword arguments of :func:`compute_vad`); our
    ``fix_context`` (not a Kaldi option) as a comment."""
    lines = [f"--{name}={opts[kw]}" for name, (kw, _, _) in VAD_OPTIONS.items()]
    return lines + [f"# fix-context={str(bool(opts.get('fix_context', False))).lower()} (compute_vad.py --fix-context)"]


def read_vad_conf(path):
    """Kaldi vad option file -> keyword arguments of :func:`compute_vad` (Kaldi defaults filled in).

    ValueError naming file:line for an unknown option, a malformed value or one Kaldi asserts on."""
    conf = read_conf(path)
    given = typed_options(conf, {n: k for n, (_, k, _) in VAD_OPTIONS.items()}, "compute-vad")
    opts = {kw: given.get(name, default) for name, (kw, _, default) in VAD_OPTIONS.items()}
    try:
        check_vad_options(opts["energy_mean_scale"], opts["frames_context"], opts["proportion_threshold"])
    except OptionError as e:
        raise locate(e, conf, path) from None
    return opts


def check_vad_options(energy_mean_scale, frames_context, proportion_threshold):
    """Kaldi ComputeVadEnergy's asserts, as OptionError naming the option."""
    if energy_mean_scale < 0:
        raise OptionError(["vad-energy-mean-scale"], f"--vad-energy-mean-scale={energy_mean_scale:g} must be >= 0",
                          "vad")
    if frames_context < 0:
        raise OptionError(["vad-frames-context"], f"--vad-frames-context={frames_context} must be >= 0", "vad")
    if not 0.0 < proportion_threshold < 1.0:
        raise OptionError(["vad-proportion-threshold"],
                          f"--vad-proportion-threshold={proportion_threshold:g} must be in (0, 1)", "vad")


def compute_vad(
    log_energy,
    energy_threshold=5.0,
    energy_mean_scale=0.5,
    frames_context=0,
    proportion_threshold=0.6,
    fix_context=False,
):
    """Kaldi ComputeVadEnergy on log-energies ``[T]`` -> float32 ``[T]`` of 0.0/1.0 (1 = voiced).

    Arithmetic in float32 like Kaldi (mean accumulated in float64; an energy exactly at the
    threshold may differ from Kaldi by rounding).
    """
    e = np.asarray(log_energy, dtype=np.float32)
    if e.ndim != 1:
        raise ValueError(f"compute_vad: expected log-energies [T], got shape {e.shape}")
    check_vad_options(energy_mean_scale, frames_context, proportion_threshold)
    if e.size == 0:
        return np.zeros(0, dtype=np.float32)
    threshold = np.float32(energy_threshold)
    if energy_mean_scale != 0.0:
        threshold = np.float32(threshold + np.float32(energy_mean_scale) * np.float32(e.mean(dtype=np.float64)))
    above = (e > threshold).astype(np.int64)
    if not fix_context:
        return above.astype(np.float32)  # Kaldi's loop: num is den or 0, so the proportion test is e[t] > thr
    t = np.arange(e.size)
    lo = np.maximum(t - frames_context, 0)
    hi = np.minimum(t + frames_context, e.size - 1) + 1
    csum = np.concatenate([[0], np.cumsum(above)])
    num, den = csum[hi] - csum[lo], hi - lo
    return (num >= den * np.float32(proportion_threshold)).astype(np.float32)


def select_voiced(feats, vad):
    """Keep the voiced rows of ``feats [T, F]`` where ``vad [T]`` > 0.5 -> ``[T_voiced, F]``.

    ValueError if the lengths differ (Kaldi select-voiced-frames refuses such utterances too).
    """
    vad = np.asarray(vad)
    if feats.shape[0] != vad.shape[0]:
        raise ValueError(f"feats have {feats.shape[0]} frames but VAD has {vad.shape[0]}")
    return feats[vad > 0.5]
