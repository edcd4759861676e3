"""EER / minDCF (subtools/score/metrics.py) against plain references written here.

* EER equals a literal loop port of Kaldi compute-eer (exact), and lies within 1/T + 1/N of the
  brute-force crossing min_t max(FNR(t), FPR(t));
* minDCF equals a brute-force sweep over every threshold (score > t accepted) for tie-free scores
  (1e-12), and a literal port of Kaldi compute_min_dcf.py's loop when scores have ties;
* DET plots of one and two systems are written as PNG.
"""
import numpy as np
import pytest

from subtools.score.metrics import compute_all, eer, min_dcf, plot_det


def kaldi_eer_loop(tgt, non):
    tgt, non = sorted(np.float32(tgt)), sorted(np.float32(non))
    T, N = len(tgt), len(non)
    p = 0
    while p + 1 < T:
        pos = max(N - 1 - int(N * p * 1.0 / T), 0)
        if non[pos] < tgt[p]:
            break
        p += 1
    return p / T


def kaldi_min_dcf_loop(scores, labels, p_target):
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    fn = fp = 0
    fnrs, fprs = [], []
    for i in order:
        fn += labels[i]
        fp += 1 - labels[i]
        fnrs.append(fn)
        fprs.append(fp)
    T = sum(labels)
    N = len(labels) - T
    best = min(f / T * p_target + (1 - a / N) * (1 - p_target) for f, a in zip(fnrs, fprs))
    return best / min(p_target, 1 - p_target)


def brute_force_dcf(scores, labels, p_target):
    tgt, non = scores[labels], scores[~labels]
    best = np.inf
    for t in scores:
        fnr = np.mean(tgt <= t)
        fpr = np.mean(non > t)
        best = min(best, fnr * p_target + fpr * (1 - p_target))
    return best / min(p_target, 1 - p_target)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    labels = rng.random(3000) < 0.2
    scores = rng.normal(size=3000) + 2.0 * labels
    return scores, labels


def test_eer_equals_kaldi_loop_and_brute_force(data):
    scores, labels = data
    ours = eer(scores, labels)
    assert ours == kaldi_eer_loop(scores[labels], scores[~labels])
    tgt, non = scores[labels], scores[~labels]
    cross = min(max(np.mean(tgt < t), np.mean(non >= t)) for t in scores)
    assert abs(ours - cross) <= 1 / len(tgt) + 1 / len(non)


@pytest.mark.parametrize("p_target", [0.01, 0.001])
def test_min_dcf_equals_threshold_sweep(data, p_target):
    scores, labels = data
    assert min_dcf(scores, labels, p_target) == pytest.approx(
        brute_force_dcf(scores, labels, p_target), abs=1e-12)


def test_min_dcf_with_ties_follows_kaldi_order(data):
    scores, labels = data
    coarse = np.round(scores, 1)
    for p in (0.01, 0.001):
        assert min_dcf(coarse, labels, p) == pytest.approx(
            kaldi_min_dcf_loop(list(coarse), list(labels.astype(int)), p), abs=1e-12)


def test_perfect_and_bad_input():
    m = compute_all(np.array([3.0, 2.0, -1.0, -2.0]), np.array([True, True, False, False]))
    assert m["eer"] == 0.0 and m["mindcf_0.01"] == 0.0
    with pytest.raises(ValueError, match="both target and nontarget"):
        eer(np.array([1.0, 2.0]), np.array([True, True]))
    with pytest.raises(ValueError, match="NaN"):
        eer(np.array([np.nan, 2.0]), np.array([True, False]))


def test_det_png(data, tmp_path):
    scores, labels = data
    plot_det([("a", scores, labels), ("b", scores * 0.5, labels)], tmp_path / "det.png")
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
