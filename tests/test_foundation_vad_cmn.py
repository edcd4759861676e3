"""Kaldi compute-vad and apply-cmvn-sliding against slow loops written from Kaldi's definitions."""
import inspect

import numpy as np
import pytest

from subtools.kaldi.cmvn import sliding_cmn
from subtools.kaldi.vad import compute_vad, read_vad_conf, select_voiced


def kaldi_vad_loop(e, threshold, mean_scale, context, proportion, test_t2):
    """Per-frame loop of ComputeVadEnergy; ``test_t2=False`` is Kaldi's code (tests frame t)."""
    e = np.asarray(e, dtype=np.float32)
    thr = np.float32(threshold) + np.float32(mean_scale) * np.float32(e.astype(np.float64).mean())
    out = np.zeros(len(e), dtype=np.float32)
    for t in range(len(e)):
        num = den = 0
        for t2 in range(t - context, t + context + 1):
            if 0 <= t2 < len(e):
                den += 1
                num += e[t2 if test_t2 else t] > thr
        out[t] = 1.0 if num >= den * proportion else 0.0
    return out


# Kaldi's VadEnergyOptions defaults (ivector/voice-activity-detection.h), written from Kaldi.
KALDI_VAD_DEFAULTS = {"energy_threshold": 5.0, "energy_mean_scale": 0.5, "frames_context": 0,
                      "proportion_threshold": 0.6}


def test_vad_defaults_are_kaldis(tmp_path):
    (tmp_path / "empty.conf").write_text("# no options\n")
    assert read_vad_conf(str(tmp_path / "empty.conf")) == KALDI_VAD_DEFAULTS
    signature = inspect.signature(compute_vad).parameters
    assert {k: signature[k].default for k in KALDI_VAD_DEFAULTS} == KALDI_VAD_DEFAULTS


def energies(seed, n=400):
    rng = np.random.default_rng(seed)
    # speech-like log-energies: bursts around 15-20, pauses around 5, isolated spikes
    e = np.where((np.arange(n) // 37) % 3 == 0, 5.0, 17.0) + rng.normal(0, 2.5, n)
    e[rng.integers(0, n, 10)] += rng.normal(0, 8, 10)
    return e.astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_vad_reproduces_kaldi_including_context_quirk(seed):
    opts = read_vad_conf("conf/vad.conf")
    assert opts == {"energy_threshold": 5.5, "energy_mean_scale": 0.5, "frames_context": 2,
                    "proportion_threshold": 0.12}
    e = energies(seed)
    ours = compute_vad(e, **opts)
    np.testing.assert_array_equal(ours, kaldi_vad_loop(e, 5.5, 0.5, 2, 0.12, test_t2=False))
    fixed = compute_vad(e, **opts, fix_context=True)
    np.testing.assert_array_equal(fixed, kaldi_vad_loop(e, 5.5, 0.5, 2, 0.12, test_t2=True))
    # the quirk: with Kaldi's loop the context has no effect
    np.testing.assert_array_equal(ours, compute_vad(e, 5.5, 0.5, 0, 0.12))
    assert not np.array_equal(ours, fixed)  # the fixed variant does smooth (these energies have spikes)


@pytest.mark.parametrize("context,proportion", [(0, 0.6), (3, 0.5), (5, 0.9)])
def test_vad_fixed_context_other_settings(context, proportion):
    e = energies(7, 250)
    np.testing.assert_array_equal(
        compute_vad(e, 5.0, 0.5, context, proportion, fix_context=True),
        kaldi_vad_loop(e, 5.0, 0.5, context, proportion, test_t2=True),
    )


def test_vad_all_silence_and_empty():
    e = np.full(100, np.log(np.finfo(np.float32).eps), np.float32)
    assert compute_vad(e, 5.5, 0.5, 2, 0.12).sum() == 0
    assert compute_vad(np.zeros(0), 5.5, 0.5, 2, 0.12).shape == (0,)


def test_select_voiced():
    feats = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.testing.assert_array_equal(select_voiced(feats, np.array([0, 1, 1, 0, 0, 1.0])), feats[[1, 2, 5]])
    with pytest.raises(ValueError, match="6 frames but VAD has 5"):
        select_voiced(feats, np.ones(5))


def kaldi_cmn_loop(x, window, center, min_window=100):
    """Frame-by-frame SlidingWindowCmn(norm_vars=false) from Kaldi's window definition."""
    T = len(x)
    out = np.zeros_like(x, dtype=np.float64)
    for t in range(T):
        if center:
            start = t - window // 2
            end = start + window
        else:
            start, end = t - window, t + 1
        if start < 0:
            end -= start
            start = 0
        if not center and end > t:
            end = max(t + 1, min_window)
        if end > T:
            start -= end - T
            end = T
            start = max(start, 0)
        out[t] = x[t] - x[start:end].astype(np.float64).sum(axis=0) / (end - start)
    return out.astype(np.float32)


@pytest.mark.parametrize("T", [1, 7, 150, 299, 300, 301, 777])
@pytest.mark.parametrize("window,center", [(300, True), (301, True), (20, True), (600, False), (50, False)])
def test_sliding_cmn_matches_kaldi_window(T, window, center):
    rng = np.random.default_rng(T)
    x = (rng.normal(0, 3, (T, 5)) + np.linspace(0, 40, T)[:, None]).astype(np.float32)
    ours = sliding_cmn(x, window, center)
    np.testing.assert_allclose(ours, kaldi_cmn_loop(x, window, center), atol=1e-4)


def test_sliding_cmn_short_utterance_is_global_cmn():
    x = np.random.default_rng(0).normal(3, 1, (120, 4)).astype(np.float32)
    np.testing.assert_allclose(sliding_cmn(x, 300), x - x.mean(axis=0), atol=1e-5)
