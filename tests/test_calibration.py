"""Calibration and calibration-sensitive metrics (subtools/score/calibration.py, calibrate.py, the Cllr line of
compute_metrics.py), each against an independent reference:

* the linear calibration against a direct minimisation (scipy) of the BOSARIS cost written out, and against
  the closed form of equal-variance Gaussian scores (llr = 2 mu s / sigma^2 for N(+-mu, sigma^2));
* Cllr against per-trial log2 sums; the PAV LLRs against a brute-force isotonic regression (the max-min
  formula over all blocks) on tied integer scores; minCllr no larger than the Cllr of any monotone map;
* actDCF against counting the decisions trial by trial.
"""
import math
import re
import sys

import numpy as np
import pytest
from scipy.optimize import minimize

from subtools.score import calibrate, compute_metrics
from subtools.score.calibration import (LinearCalibration, act_dcf, bayes_threshold, calibration_metrics, cllr,
                                        format_calibration_line, logit, min_cllr, pav_llrs, train_linear_calibration)
from subtools.kaldi.fileio import write_lines


def gaussian_scores(n_target, n_nontarget, seed, shift=2.0, scale=1.0, offset=0.0):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(shift, 1.0, n_target), rng.normal(-1.0, 1.4, n_nontarget)]) * scale + offset
    return scores, np.arange(n_target + n_nontarget) < n_target


def bosaris_cost(a, b, scores, labels, p):
    """The prior-weighted logistic cost of llr = a s + b, written per trial."""
    tar = [math.log1p(math.exp(-(a * s + b + logit(p)))) for s in scores[labels]]
    non = [math.log1p(math.exp(a * s + b + logit(p))) for s in scores[~labels]]
    return p * sum(tar) / len(tar) + (1 - p) * sum(non) / len(non)


@pytest.mark.parametrize("n_target,n_nontarget,p,scale,offset", [
    (200, 2000, 0.01, 1.0, 0.0), (60, 900, 0.5, 40.0, -7.0), (500, 500, 0.001, 0.02, 3.0)])
def test_linear_calibration_minimises_the_bosaris_cost(n_target, n_nontarget, p, scale, offset):
    scores, labels = gaussian_scores(n_target, n_nontarget, seed=n_target, scale=scale, offset=offset)
    cal = train_linear_calibration(scores, labels, p)
    # reference: scipy on the cost written with numpy (a, b in the score's own units), polished by BFGS
    z = lambda v: p * np.logaddexp(0, -(v[0] * scores + v[1] + logit(p)))[labels].mean() + \
        (1 - p) * np.logaddexp(0, v[0] * scores + v[1] + logit(p))[~labels].mean()
    start = minimize(z, [1.0 / scale, -offset / scale], method="Nelder-Mead",
                     options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000}).x
    ref = minimize(z, start, method="BFGS", options={"gtol": 1e-11}).x
    np.testing.assert_allclose([cal.a, cal.b], ref, rtol=1e-4, atol=1e-6 / scale)
    assert cal.p_target == p
    assert bosaris_cost(cal.a, cal.b, scores, labels, p) <= bosaris_cost(*ref, scores, labels, p) + 1e-9
    np.testing.assert_allclose(cal.apply(scores), cal.a * scores + cal.b, rtol=1e-12)
    # the raw score at which the LLR reaches the Bayes threshold
    assert cal.a * cal.score_threshold() + cal.b == pytest.approx(-logit(p), abs=1e-9)


def test_gaussian_scores_calibrate_to_the_true_llr():
    # target N(mu, s^2), nontarget N(-mu, s^2): log N(x; mu) / N(x; -mu) = 2 mu x / s^2, at any prior
    rng = np.random.default_rng(3)
    mu, sigma, n = 1.5, 2.0, 100_000
    scores = np.concatenate([rng.normal(mu, sigma, n), rng.normal(-mu, sigma, n)])
    labels = np.arange(2 * n) < n
    for p in (0.5, 0.05):
        cal = train_linear_calibration(scores, labels, p)
        assert cal.a == pytest.approx(2 * mu / sigma ** 2, rel=0.03)
        assert abs(cal.b) < 0.05
    # the true LLRs are calibrated: their Cllr is within 0.01 bit of the minimum PAV reaches on the same trials
    llr = 2 * mu * scores / sigma ** 2
    assert cllr(llr, labels) - min_cllr(llr, labels) < 0.01


def test_cllr_against_per_trial_sums():
    llrs, labels = gaussian_scores(37, 211, seed=1, shift=3.0)
    ref = (sum(math.log2(1 + math.exp(-x)) for x in llrs[labels]) / labels.sum()
           + sum(math.log2(1 + math.exp(x)) for x in llrs[~labels]) / (~labels).sum()) / 2
    assert cllr(llrs, labels) == pytest.approx(ref, rel=1e-12)
    assert cllr(np.zeros(10), np.arange(10) < 3) == pytest.approx(1.0, rel=1e-15)      # "always llr 0" is 1 bit
    assert cllr(np.array([np.inf, np.inf, -np.inf]), np.array([True, True, False])) == 0.0


def brute_force_isotonic(scores, labels):
    """Isotonic regression of the labels on the scores by the max-min formula over all blocks of the
    distinct sorted scores (O(n^3)), evaluated at each trial."""
    values = np.unique(scores)
    sums = np.array([labels[scores == v].sum() for v in values], dtype=float)
    counts = np.array([(scores == v).sum() for v in values], dtype=float)
    fit = [max(min(sums[j:k + 1].sum() / counts[j:k + 1].sum() for k in range(i, len(values)))
               for j in range(i + 1)) for i in range(len(values))]
    return np.array(fit)[np.searchsorted(values, scores)]


@pytest.mark.parametrize("seed", range(4))
def test_pav_against_brute_force_isotonic_regression(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(60) < 0.3
    scores = np.round(rng.normal(labels * 1.2, 1.0) * 2)          # integers: many ties
    posterior = brute_force_isotonic(scores, labels)
    with np.errstate(divide="ignore"):
        ref = np.log(posterior) - np.log1p(-posterior) - logit(labels.mean())
    got = pav_llrs(scores, labels)
    assert np.array_equal(np.isinf(got), np.isinf(ref)) and np.array_equal(got[np.isinf(got)], ref[np.isinf(ref)])
    np.testing.assert_allclose(got[np.isfinite(got)], ref[np.isfinite(ref)], rtol=1e-9, atol=1e-9)
    ordered = got[np.argsort(scores, kind="stable")]
    assert np.all(ordered[1:] >= ordered[:-1])                              # monotone (infinities included)
    assert all(len(set(got[scores == v])) == 1 for v in np.unique(scores))  # tied scores, one LLR
    best = min_cllr(scores, labels)
    assert best == pytest.approx(cllr(ref, labels), rel=1e-9)
    cal = train_linear_calibration(scores, labels, 0.3)
    for a, b in [(cal.a, cal.b), (0.5, -1.0), (3.0, 2.0)]:                # no monotone map does better
        assert best <= cllr(a * scores + b, labels) + 1e-12


def test_act_dcf_against_counted_decisions():
    llrs, labels = gaussian_scores(150, 3000, seed=5, shift=4.0, offset=2.5)
    llrs[:3] = bayes_threshold(0.01)                       # on the threshold: accepted
    for p in (0.01, 0.001, 0.3):
        t = math.log((1 - p) / p)
        miss = sum(1 for x, y in zip(llrs, labels) if y and not x >= t) / labels.sum()
        fa = sum(1 for x, y in zip(llrs, labels) if not y and x >= t) / (~labels).sum()
        assert act_dcf(llrs, labels, p) == pytest.approx((p * miss + (1 - p) * fa) / min(p, 1 - p), rel=1e-12)
    assert act_dcf(np.full(4, -50.0), np.array([True, False, False, False]), 0.01) == 1.0   # reject all: 1


def test_bad_input():
    scores, labels = gaussian_scores(10, 10, seed=0)
    with pytest.raises(ValueError, match="separable"):
        train_linear_calibration(np.where(labels, 5.0, -5.0) + scores * 0.01, labels)
    with pytest.raises(ValueError, match="target and nontarget"):
        train_linear_calibration(scores, np.ones(20, dtype=bool))
    with pytest.raises(ValueError, match="prior"):
        train_linear_calibration(scores, labels, 1.0)
    with pytest.raises(ValueError, match="not positive"):          # higher scores less target-like
        train_linear_calibration(-scores, labels)


def test_calibrate_cli_and_compute_metrics_line(tmp_path, capsys):
    scores, labels = gaussian_scores(80, 400, seed=7, scale=6.0, offset=-3.0)
    keys = [(f"spk{i % 9:02d}-e{i}", f"t{i}") for i in range(len(scores))]
    write_lines(tmp_path / "trials", [f"{e} {t} {'target' if y else 'nontarget'}" for (e, t), y in zip(keys, labels)])
    write_lines(tmp_path / "raw", [f"{e} {t} {s:.6f}" for (e, t), s in zip(keys, scores)])
    calibrate.main(["train", "--trials", str(tmp_path / "trials"), "--scores", str(tmp_path / "raw"),
                    "--out", str(tmp_path / "cal.json"), "--p-target", "0.05"])
    out = capsys.readouterr().out
    cal = LinearCalibration.load(tmp_path / "cal.json")
    ref = train_linear_calibration(np.round(scores, 6), labels, 0.05)
    assert (cal.a, cal.b, cal.p_target) == pytest.approx((ref.a, ref.b, 0.05), rel=1e-9)
    assert f"after:  {format_calibration_line(calibration_metrics(ref.apply(np.round(scores, 6)), labels))}" in out
    calibrate.main(["apply", "--model", str(tmp_path / "cal.json"), "--scores", str(tmp_path / "raw"),
                    "--out", str(tmp_path / "llr")])
    rows = [line.split() for line in open(tmp_path / "llr")]
    assert [tuple(r[:2]) for r in rows] == keys
    np.testing.assert_allclose([float(r[2]) for r in rows], ref.apply(np.round(scores, 6)), atol=1e-6)
    # compute_metrics: the calibration line of the scores read as LLRs, before the unchanged last line
    for name, values in (("raw", np.round(scores, 6)), ("llr", np.array([float(r[2]) for r in rows]))):
        compute_metrics.main(["--trials", str(tmp_path / "trials"), "--scores", str(tmp_path / name)])
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[-2] == format_calibration_line(calibration_metrics(values, labels))
        assert re.fullmatch(r"EER=\d+\.\d+% minDCF\(0\.01\)=\d+\.\d+ minDCF\(0\.001\)=\d+\.\d+", lines[-1])
    m = re.fullmatch(r"Cllr=(\S+) minCllr=(\S+) actDCF\(0\.01\)=(\S+) actDCF\(0\.001\)=(\S+)", lines[-2])
    assert float(m.group(1)) < 1.0 and float(m.group(2)) <= float(m.group(1))
    # a file that is not a calibration: one line naming it, exit 1
    write_lines(tmp_path / "bad.json", ["{}"])
    sys.argv = ["calibrate.py"]
    with pytest.raises(SystemExit, match="bad.json: not a calibration file"):
        calibrate.main(["apply", "--model", str(tmp_path / "bad.json"), "--scores", str(tmp_path / "raw"),
                        "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_summarize_results_calibration_columns(tmp_path):
    from recipe.mini.summarize_results import summarize
    from test_compare_systems import fake_exp          # the demo's experiment layout, synthetic score files

    utts = [f"spk{s:02d}-u{i}" for s in range(12) for i in range(5)]
    pairs = [(a, b) for n, a in enumerate(utts) for b in utts[n + 1:]]
    labels = np.array([a[:5] == b[:5] for a, b in pairs])
    write_lines(tmp_path / "trials", [f"{a} {b} {'target' if y else 'nontarget'}" for (a, b), y in zip(pairs, labels)])
    exps = [str(tmp_path / "serialized"), str(tmp_path / "stats")]
    scores = [fake_exp(exp, str(tmp_path / "trials"), sep, seed) for exp, sep, seed in zip(exps, (2.4, 2.0), (1, 2))]
    LinearCalibration(0.8, -1.5, 0.01).save(tmp_path / "cal.json")
    header, rows, _ = summarize(exps, ["plda", "cosine"], n_draws=20,
                                calibrations={("serialized", "plda"): str(tmp_path / "cal.json")})
    assert header[-5:] == ("Cllr", "minCllr", "actDCF(0.01)", "Cllr cal", "actDCF(0.01) cal")
    raw = np.round(scores[0]["plda"], 6)                                   # as the score file holds them
    before, after = calibration_metrics(raw, labels), calibration_metrics(0.8 * raw - 1.5, labels)
    assert rows[0][:5] == ("serialized", "0.36M", "2.5", "plda", "mini-O")
    assert rows[0][-5:] == (f"{before['cllr']:.4f}", f"{before['min_cllr']:.4f}", f"{before['act_dcf_0.01']:.4f}",
                            f"{after['cllr']:.4f}", f"{after['act_dcf_0.01']:.4f}")
    cosine = calibration_metrics(np.round(scores[0]["cosine"], 6), labels)
    assert rows[1][-5:] == (f"{cosine['cllr']:.4f}", f"{cosine['min_cllr']:.4f}", f"{cosine['act_dcf_0.01']:.4f}",
                            "-", "-")                                       # no calibration for that back-end
    assert rows[2][-2:] == ("-", "-") and rows[3][-2:] == ("-", "-")
    with pytest.raises(ValueError, match="--calibration xvector:plda: no such system"):
        summarize(exps, ["plda"], calibrations={("xvector", "plda"): str(tmp_path / "cal.json")})
