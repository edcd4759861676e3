"""Sliding-window cepstral mean normalisation as Kaldi ``apply-cmvn-sliding --norm-vars=false``.

For frame t the window is ``[start, end)`` with, for ``center=True``,
``start = t - window // 2``, ``end = start + window``; a window sticking out on the left is shifted
right (``end -= start; start = 0``), then one sticking out on the right is shifted left
(``start -= end - T; end = T``) and clipped at 0, so an utterance shorter than the window uses all
its frames for every t. For ``center=False`` the window is the ``window`` frames before t plus t,
extended to ``min_window`` frames at the start (Kaldi's defaults 600/100). The output is
``x[t] - mean(x[start:end])``, computed in float64 like Kaldi, vectorised with cumulative sums.
"""
import numpy as np


def window_bounds(num_frames, window=300, center=True, min_window=100):
    """Kaldi's normalisation window per frame: (start [T], end [T]) int arrays, end exclusive."""
    if window <= 0:
        raise ValueError(f"sliding_cmn: window must be positive, got {window}")
    t = np.arange(num_frames)
    if center:
        start = t - window // 2
        end = start + window
    else:
        start = t - window
        end = t + 1
    end = np.where(start < 0, end - start, end)
    start = np.maximum(start, 0)
    if not center:
        end = np.where(end > t, np.maximum(t + 1, min_window), end)
    over = np.maximum(end - num_frames, 0)
    start = np.maximum(start - over, 0)
    end = end - over
    return start, end


def sliding_cmn(feats, window=300, center=True, min_window=100):
    """Sliding CMN of ``feats [T, F]`` -> float32 ``[T, F]`` (variance not normalised)."""
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"sliding_cmn: expected [T, F], got shape {feats.shape}")
    num_frames = feats.shape[0]
    if num_frames == 0:
        return feats.astype(np.float32)
    x = feats.astype(np.float64)
    csum = np.zeros((num_frames + 1, x.shape[1]))
    np.cumsum(x, axis=0, out=csum[1:])
    start, end = window_bounds(num_frames, window, center, min_window)
    mean = (csum[end] - csum[start]) / (end - start)[:, None]
    return (x - mean).astype(np.float32)
