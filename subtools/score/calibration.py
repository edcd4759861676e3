"""Score calibration (scores -> log-likelihood ratios) and the metrics that judge it.

A verification score is *calibrated* when it is a log-likelihood ratio
``llr = log p(score | target) / p(score | nontarget)``: then the Bayes decision for a target prior ``p``
is ``target`` iff ``llr >= -logit(p)`` and needs no threshold tuned on data. Raw PLDA scores are LLRs
only as far as the PLDA model is right; cosine scores are not LLRs at all.

* :func:`train_linear_calibration` -- prior-weighted logistic regression ``llr = a s + b`` (Brummer's
  linear calibration, BOSARIS ``train_linear_calibration``): minimises, for an effective prior ``p``,
  ``p mean_tar log(1 + e^-(a s + b + logit p)) + (1 - p) mean_non log(1 + e^(a s + b + logit p))``;
  solved by scikit-learn's LogisticRegression without penalty, each class weighted by its prior share.
* :class:`LinearCalibration` -- ``(a, b, p_target)`` with ``apply``, ``score_threshold`` and a JSON file
  form (the ``--model`` of ``calibrate.py apply`` and ``calibration.json`` of a model package).
* :func:`cllr` -- ``(mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr)) / 2`` (bits; 1 = a system that
  always says llr = 0, 0 = perfect).
* :func:`pav_llrs` / :func:`min_cllr` -- the optimal monotone (non-decreasing) mapping of the scores to
  LLRs on the same trials (pool-adjacent-violators, scikit-learn's IsotonicRegression; tied scores share
  one value), and the Cllr of those LLRs: the part of Cllr no monotone calibration can remove.
* :func:`act_dcf` -- normalised detection cost (c_miss = c_fa = 1) of the decisions ``llr >= -logit(p)``
  (the Bayes threshold of scores read as LLRs), ``(p P_miss + (1 - p) P_fa) / min(p, 1 - p)``.

Scores are ``[M]`` floats, labels ``[M]`` bool (True = target).
"""
import json
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from subtools.kaldi.fileio import atomic_write

DCF_PRIORS = (0.01, 0.001)


def logit(p):
    """``log(p / (1 - p))``."""
    return math.log(p) - math.log1p(-p)


def bayes_threshold(p_target):
    """The LLR at and above which the Bayes decision at prior ``p_target`` is *target*: ``-logit(p)``."""
    return -logit(p_target)


def _split(scores, labels):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN/inf")
    if labels.all() or not labels.any():
        raise ValueError(f"calibration needs target and nontarget trials (got {int(labels.sum())} targets of "
                         f"{labels.size})")
    return scores, labels


def _check_prior(p_target):
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"the target prior must be in (0, 1), got {p_target}")


@dataclass
class LinearCalibration:
    """``llr = a * score + b``, trained at the effective target prior ``p_target``."""

    a: float
    b: float
    p_target: float

    def apply(self, scores):
        return self.a * np.asarray(scores, dtype=np.float64) + self.b

    def score_threshold(self, p_target=None):
        """The raw score at which the calibrated LLR reaches the Bayes threshold of ``p_target`` (default:
        the training prior)."""
        return (bayes_threshold(p_target or self.p_target) - self.b) / self.a

    def save(self, path, **about):
        """Write ``{"a", "b", "p_target", **about}`` as JSON, atomically (``about``: provenance, figures)."""
        with atomic_write(path) as f:
            json.dump({**asdict(self), **about}, f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`; ValueError naming the file when it is not one."""
        try:
            with open(path) as f:
                data = json.load(f)
            cal = cls(float(data["a"]), float(data["b"]), float(data["p_target"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a calibration file written by calibrate.py train "
                             f"({type(e).__name__}: {e})") from None
        if not (math.isfinite(cal.a) and math.isfinite(cal.b) and cal.a > 0):
            raise ValueError(f"{path}: calibration a={cal.a} b={cal.b} (a must be positive and both finite)")
        return cal


def train_linear_calibration(scores, labels, p_target=0.01):
    """Fit :class:`LinearCalibration` by prior-weighted logistic regression (see module docstring).

    The scores are standardised before the fit (well-conditioned for any score scale) and the solution
    mapped back. ValueError when one class is empty or the trials are separable (no finite solution:
    the slope grows without bound).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    scores, labels = _split(scores, labels)
    _check_prior(p_target)
    if scores[labels].min() > scores[~labels].max():
        raise ValueError("every target score is above every nontarget score: with separable trials no finite "
                         "slope minimises the cost; calibrate on more or harder trials")
    mu, sigma = scores.mean(), scores.std()
    z = ((scores - mu) / sigma)[:, None]
    weights = np.where(labels, p_target / labels.sum(), (1.0 - p_target) / (~labels).sum())
    model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            model.fit(z, labels, sample_weight=weights * labels.size)  # weights of mean 1: a gradient scale tol fits
        except ConvergenceWarning:
            raise ValueError(f"calibration did not converge in {model.max_iter} iterations") from None
    slope, offset = float(model.coef_[0, 0]), float(model.intercept_[0])
    if slope <= 0:
        raise ValueError(f"calibration slope {slope / sigma:.4g} is not positive: higher scores are not more "
                         "target-like on these trials")
    return LinearCalibration(float(slope / sigma), float(offset - slope * mu / sigma - logit(p_target)), float(p_target))


def cllr(llrs, labels):
    """Cllr in bits of LLRs ``[M]`` (see module docstring); infinite LLRs on the right side cost 0."""
    llrs, labels = np.asarray(llrs, dtype=np.float64), np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("Cllr needs target and nontarget trials")
    miss = np.logaddexp(0.0, -llrs[labels]).mean()
    false_alarm = np.logaddexp(0.0, llrs[~labels]).mean()
    return float((miss + false_alarm) / (2.0 * math.log(2.0)))


def pav_llrs(scores, labels):
    """The LLRs ``[M]`` of the optimal non-decreasing calibration of ``scores`` on these trials: the PAV
    target posterior of each score (ties pooled), less the log odds of the trials' own target proportion.
    Scores below every target get -inf, above every nontarget +inf."""
    from sklearn.isotonic import IsotonicRegression

    scores, labels = _split(scores, labels)
    posterior = IsotonicRegression(y_min=0.0, y_max=1.0).fit_transform(scores, labels.astype(np.float64))
    with np.errstate(divide="ignore"):
        log_odds = np.log(posterior) - np.log1p(-posterior)
    return log_odds - logit(labels.mean())


def min_cllr(scores, labels):
    """Cllr after the optimal monotone calibration (:func:`pav_llrs`)."""
    return cllr(pav_llrs(scores, labels), labels)


def act_dcf(llrs, labels, p_target):
    """Normalised DCF (c_miss = c_fa = 1) of the decisions ``llr >= -logit(p_target)``."""
    llrs, labels = _split(llrs, labels)
    _check_prior(p_target)
    accept = llrs >= bayes_threshold(p_target)
    p_miss, p_fa = float((~accept[labels]).mean()), float(accept[~labels].mean())
    return (p_target * p_miss + (1.0 - p_target) * p_fa) / min(p_target, 1.0 - p_target)


def calibration_metrics(llrs, labels):
    """``{"cllr", "min_cllr", "act_dcf_0.01", "act_dcf_0.001"}`` of scores read as LLRs."""
    m = {"cllr": cllr(llrs, labels), "min_cllr": min_cllr(llrs, labels)}
    m.update({f"act_dcf_{p:g}": act_dcf(llrs, labels, p) for p in DCF_PRIORS})
    return m


def fit_calibration(scores, labels, p_target, out, source):
    """Fit the calibration of ``scores [M]`` on ``labels [M]`` (bool) and save it to ``out`` with ``source``
    (a dict saying what the scores are), the trial counts and the calibration metrics before and after.
    Returns ``(LinearCalibration, the saved record without a/b/p_target)``."""
    cal = train_linear_calibration(scores, labels, p_target)
    record = {**source, "targets": int(labels.sum()), "nontargets": int((~labels).sum()),
              "before": calibration_metrics(scores, labels), "after": calibration_metrics(cal.apply(scores), labels)}
    cal.save(out, **record)
    return cal, record


def format_calibration_line(m):
    """``Cllr=<a> minCllr=<b> actDCF(0.01)=<c> actDCF(0.001)=<d>``."""
    return (f"Cllr={m['cllr']:.4f} minCllr={m['min_cllr']:.4f} "
            + " ".join(f"actDCF({p:g})={m[f'act_dcf_{p:g}']:.4f}" for p in DCF_PRIORS))
