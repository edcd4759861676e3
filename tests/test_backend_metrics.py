"""EER / minDCF (subtools/score/metrics.py) against plain references written here.

* EER equals, exactly, two references on 200 seeded score sets (1 to 10 000 targets and nontargets
  drawn independently, so most sets are imbalanced; continuous, integer-valued and heavily tied
  scores, and scores that only tie in float32): a literal loop port of Kaldi ``compute-eer``, and the
  same rule written with counts -- the first sorted target position p (p < T - 1, else T - 1) at which
  ``#{nontargets >= target_p} * T <= p * N``, i.e. the false-alarm rate at that target's score is at
  most p / T. On tie-free scores it also lies within 1/T + 1/N of the crossing
  ``min_t max(FNR(t), FPR(t))`` (a bound only: Kaldi's EER is a position on the sorted targets, not the
  crossing);
* minDCF equals a brute-force sweep over every threshold (score > t accepted) for tie-free scores
  (1e-12), and a literal port of Kaldi compute_min_dcf.py's loop (1e-12) on the tied and integer sets;
* DET curves: the plotted points are the error rates at the sorted thresholds, the PNG is 660 x 660
  and both systems' curves are drawn in it.
"""
import bisect

import numpy as np
import pytest

from subtools.score.metrics import compute_all, det_points, eer, error_rates, min_dcf, plot_det


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


def eer_by_counts(tgt, non):
    """Kaldi's rule in integer arithmetic: first p with #{non >= tgt_p} * T <= p * N."""
    tgt, non = sorted(np.float32(tgt)), sorted(np.float32(non))
    T, N = len(tgt), len(non)
    for p in range(T - 1):
        if (N - bisect.bisect_left(non, tgt[p])) * T <= p * N:
            return p / T
    return (T - 1) / T


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


SCORE_KINDS = ("continuous", "integer", "tied", "float32-ties")


def seeded_set(seed):
    """Seed -> (kind, scores [M], labels [M]): T and N log-uniform in 1..10 000, four score kinds."""
    rng = np.random.default_rng(seed)
    T, N = np.exp(rng.uniform(0, np.log(10_000), 2)).astype(int)
    labels = np.concatenate([np.ones(T, bool), np.zeros(N, bool)])
    rng.shuffle(labels)
    separation = rng.uniform(0, 3)
    scores = rng.normal(size=T + N) + separation * labels
    kind = SCORE_KINDS[seed % 4]
    if kind == "integer":
        scores = np.round(scores * rng.integers(1, 4))          # 5-20 distinct values
    elif kind == "tied":
        scores = np.round(scores * 4) / 4 + 0.1
    elif kind == "float32-ties":
        scores = np.round(scores, 2) + rng.integers(0, 3, T + N) * 1e-12  # distinct in float64 only
    return kind, scores, labels


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    labels = rng.random(3000) < 0.2
    scores = rng.normal(size=3000) + 2.0 * labels
    return scores, labels


def test_eer_equals_kaldi_on_seeded_sets():
    for seed in range(200):
        kind, scores, labels = seeded_set(seed)
        tgt, non = scores[labels], scores[~labels]
        ours = eer(scores, labels)
        assert ours == kaldi_eer_loop(tgt, non) == eer_by_counts(tgt, non), (seed, kind, labels.sum(), len(labels))
        assert compute_all(scores, labels)["eer"] == 100.0 * ours


def test_eer_within_bound_of_crossing(data):
    scores, labels = data
    tgt, non = scores[labels], scores[~labels]
    cross = min(max(np.mean(tgt < t), np.mean(non >= t)) for t in scores)
    assert abs(eer(scores, labels) - cross) <= 1 / len(tgt) + 1 / len(non)


def test_eer_small_cases_by_hand():
    # T = 1: the loop never runs, EER = 0 whatever the scores
    assert eer(np.array([0.0, 5.0, 6.0]), np.array([True, False, False])) == 0.0
    # all scores equal: no nontarget is ever below a target -> (T - 1) / T
    assert eer(np.zeros(7), np.array([True] * 4 + [False] * 3)) == 0.75
    # T = 4, N = 2; p = 1: #{non >= 2} = 2, 2 * 4 <= 1 * 2 fails; p = 2: #{non >= 3} = 1, 4 <= 4 holds
    assert eer(np.array([1, 2, 3, 4, 2.5, 3.0]), np.array([True] * 4 + [False] * 2)) == 0.5


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
    for seed in (1, 2, 5, 6, 9, 10):  # integer and tied kinds
        _, scores, labels = seeded_set(seed)
        assert min_dcf(scores, labels, 0.01) == pytest.approx(
            kaldi_min_dcf_loop(list(scores), list(labels.astype(int)), 0.01), abs=1e-12), seed


def test_perfect_and_bad_input():
    m = compute_all(np.array([3.0, 2.0, -1.0, -2.0]), np.array([True, True, False, False]))
    assert m["eer"] == 0.0 and m["mindcf_0.01"] == 0.0
    with pytest.raises(ValueError, match="both target and nontarget"):
        eer(np.array([1.0, 2.0]), np.array([True, True]))
    with pytest.raises(ValueError, match="NaN"):
        eer(np.array([np.nan, 2.0]), np.array([True, False]))


def test_det_points_and_png(data, tmp_path):
    import matplotlib.image

    scores, labels = data
    p_fa, p_miss = det_points(scores, labels)
    fnr, fpr, _ = error_rates(scores, labels)
    assert (p_fa[0], p_miss[0]) == (1.0, 0.0) and (p_fa[-1], p_miss[-1]) == (0.0, 1.0)
    assert set(zip(p_fa[1:], p_miss[1:])) <= set(zip(fpr, fnr))       # thinned, never invented
    assert np.all(np.diff(p_fa) <= 0) and np.all(np.diff(p_miss) >= 0)
    plot_det([("a", scores, labels), ("b", scores * 0.5 + 0.3 * np.sin(scores * 7), labels)],
             tmp_path / "det.png")
    image = matplotlib.image.imread(tmp_path / "det.png")
    assert image.shape == (660, 660, 4)                                 # 5.5 in at 120 dpi
    for colour in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):             # matplotlib C0 and C1 lines
        near = np.abs(image[:, :, :3] * 255 - np.array(colour)).max(axis=2) < 10
        assert near.sum() > 300, colour
