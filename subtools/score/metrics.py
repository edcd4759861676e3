"""Verification metrics: EER (Kaldi compute-eer), minDCF (Kaldi sid/compute_min_dcf.py), DET plots.

All functions take ``scores [M]`` (float, higher = more likely same speaker) and ``labels [M]``
(bool, True = target) and are vectorised (one sort each).

* :func:`eer` -- Kaldi ``compute-eer``: sort target and nontarget scores (float32 as Kaldi's
  BaseFloat); walk target positions ``p = 0, 1, ...`` and stop at the first ``p`` where the
  nontarget score at position ``N - 1 - floor(N p / T)`` is below the target score at ``p``;
  EER = p / T (returned as a fraction; multiply by 100 for %).
* :func:`min_dcf` -- Kaldi ``compute_min_dcf.py``: thresholds are the sorted scores (stable sort,
  ties in trial order); at threshold i, FNR = targets with score rank <= i / T,
  FPR = 1 - nontargets with rank <= i / N; ``Cdet = c_miss FNR p + c_fa FPR (1 - p)``;
  minDCF = min Cdet / min(c_miss p, c_fa (1 - p)).
* :func:`plot_det` -- DET curves (miss vs false-alarm probability on probit axes) of one or more
  systems on the same axes, saved as PNG (matplotlib, Agg backend).
"""
import io

import numpy as np

from subtools.kaldi.fileio import atomic_write


def _split(scores, labels):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN/inf")
    if labels.all() or not labels.any():
        raise ValueError("metrics need both target and nontarget trials "
                         f"(got {int(labels.sum())} targets of {labels.size})")
    return scores, labels


def eer(scores, labels):
    """Equal error rate as a fraction, exactly as Kaldi compute-eer."""
    scores, labels = _split(scores, labels)
    tgt = np.sort(scores[labels].astype(np.float32))
    non = np.sort(scores[~labels].astype(np.float32))
    T, N = tgt.size, non.size
    p = np.arange(T - 1, dtype=np.int64)
    pos = np.maximum(N - 1 - (N * p / T).astype(np.int64), 0)
    hit = non[pos] < tgt[p]
    first = int(np.argmax(hit)) if hit.any() else T - 1
    return first / T


def error_rates(scores, labels):
    """Kaldi compute_min_dcf.py error rates: ``(fnr [M], fpr [M], thresholds [M])`` ascending."""
    scores, labels = _split(scores, labels)
    order = np.argsort(scores, kind="stable")
    lab = labels[order]
    fnr = np.cumsum(lab) / lab.sum()
    fpr = 1.0 - np.cumsum(~lab) / (~lab).sum()
    return fnr, fpr, scores[order]


def _min_dcf_from_rates(fnr, fpr, p_target, c_miss, c_fa):
    c_det = c_miss * fnr * p_target + c_fa * fpr * (1.0 - p_target)
    return float(c_det.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    """Normalised minimum detection cost at prior ``p_target``."""
    fnr, fpr, _ = error_rates(scores, labels)
    return _min_dcf_from_rates(fnr, fpr, p_target, c_miss, c_fa)


def compute_all(scores, labels):
    """``{"eer": %, "mindcf_0.01": x, "mindcf_0.001": y, "trials": M, "targets": T}``."""
    fnr, fpr, _ = error_rates(scores, labels)
    return {"eer": 100.0 * eer(scores, labels),
            "mindcf_0.01": _min_dcf_from_rates(fnr, fpr, 0.01, 1.0, 1.0),
            "mindcf_0.001": _min_dcf_from_rates(fnr, fpr, 0.001, 1.0, 1.0),
            "trials": int(np.size(labels)), "targets": int(np.sum(labels))}


def format_line(m):
    """The contract line ``EER=<x>% minDCF(0.01)=<y> minDCF(0.001)=<z>``."""
    return f"EER={m['eer']:.4f}% minDCF(0.01)={m['mindcf_0.01']:.4f} minDCF(0.001)={m['mindcf_0.001']:.4f}"


def det_points(scores, labels, max_points=2000):
    """``(p_fa, p_miss)`` of the DET curve, thinned to about ``max_points`` along its length."""
    fnr, fpr, _ = error_rates(scores, labels)
    fnr = np.concatenate([[0.0], fnr])
    fpr = np.concatenate([[1.0], fpr])
    if fnr.size > max_points:
        keep = np.unique(np.linspace(0, fnr.size - 1, max_points).astype(np.int64))
        # keep every corner near the low-error ends too: add the first/last 200 points
        keep = np.unique(np.concatenate([keep, np.arange(200), np.arange(fnr.size - 200, fnr.size)]))
        fnr, fpr = fnr[keep], fpr[keep]
    return fpr, fnr


def plot_det(systems, out_png, title="DET"):
    """Draw DET curves of ``systems = [(name, scores, labels), ...]`` on one figure -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    ticks = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4])
    lo, hi = 5e-4, 0.5
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for name, scores, labels in systems:
        p_fa, p_miss = det_points(scores, labels)
        e = eer(scores, labels)
        ax.plot(norm.ppf(np.clip(p_fa, 1e-6, 1 - 1e-6)), norm.ppf(np.clip(p_miss, 1e-6, 1 - 1e-6)),
                label=f"{name} (EER {100 * e:.2f}%)")
    ax.plot(norm.ppf([lo, hi]), norm.ppf([lo, hi]), color="0.7", lw=0.8, ls="--")
    labels_txt = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(norm.ppf(ticks), labels_txt)
    ax.set_yticks(norm.ppf(ticks), labels_txt)
    ax.set_xlim(norm.ppf(lo), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo), norm.ppf(hi))
    ax.set_xlabel("False alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    ax.set_title(title)
    ax.grid(True, color="0.85")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    with atomic_write(out_png, "wb") as f:
        f.write(buf.getvalue())


def labelled_scores(trials, score_table, on_missing="stop"):
    """Join a trials file (with labels) and a score table -> ``(scores [M], labels [M])``.

    Trials without a score are reported; ``on_missing="stop"`` raises, ``"skip"`` drops them.
    """
    from subtools.score.trials import MissingVectorsError

    if trials.labels is None:
        raise ValueError(f"{trials.source}: trials need target/nontarget labels for metrics")
    vals = [score_table.get((e, t)) for e, t in zip(trials.enroll, trials.test)]
    missing = [i for i, v in enumerate(vals) if v is None]
    if missing:
        first = ", ".join(f"{trials.enroll[i]} {trials.test[i]}" for i in missing[:3])
        msg = f"{trials.source}: {len(missing)} of {len(trials)} trials have no score, first: {first}"
        if on_missing == "stop":
            raise MissingVectorsError(msg)
        print(f"WARNING: {msg}; leaving them out")
    keep = np.array([v is not None for v in vals])
    return np.array([v for v in vals if v is not None], dtype=np.float64), trials.labels[keep]
