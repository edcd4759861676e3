"""AS-norm (subtools/score/asnorm.py) against a slow per-trial reference written here.

For each trial the reference scores enroll and test against every cohort vector one by one with
the scorer's pair function, sorts, takes the top N, and applies
0.5 ((s - mu_e)/sd_e + (s - mu_t)/sd_t); vectorised result must match to 1e-9, for cosine and PLDA
scorers and for N larger than the cohort (all cohort scores used).
"""
import numpy as np
import pytest

from subtools.score.asnorm import asnorm
from subtools.score.cosine import CosineScorer
from subtools.score.plda import Plda, PldaScorer
from subtools.score.synthetic import random_model, sample


def reference(scorer, E, T, C, ie, it, top_n):
    Ep, Tp = scorer.enroll_side(E), scorer.test_side(T)
    Ct, Ce = scorer.test_side(C), scorer.enroll_side(C)
    out = []
    for e, t in zip(ie, it):
        s = scorer.pairs(Ep, Tp, [e], [t])[0]
        se = sorted((scorer.pairs(Ep, Ct, [e], [c])[0] for c in range(len(C))), reverse=True)[:top_n]
        st = sorted((scorer.pairs(Ce, Tp, [c], [t])[0] for c in range(len(C))), reverse=True)[:top_n]
        out.append(0.5 * ((s - np.mean(se)) / np.std(se) + (s - np.mean(st)) / np.std(st)))
    return np.array(out)


@pytest.mark.parametrize("kind", ["cosine", "plda"])
@pytest.mark.parametrize("top_n", [5, 1000])
def test_asnorm_matches_per_trial_reference(kind, top_n):
    rng = np.random.default_rng(0)
    truth = random_model(rng, 6)
    train, u2s = sample(rng, truth, [4] * 60, "tr")
    E, _ = sample(rng, truth, [2] * 6, "en")
    E.counts = np.array([1, 2, 3, 1, 1, 4] * 2)
    T, _ = sample(rng, truth, [3] * 5, "te")
    C, _ = sample(rng, truth, [1] * 25, "co")
    C.counts = rng.integers(1, 6, size=len(C))
    scorer = (CosineScorer() if kind == "cosine"
              else PldaScorer(Plda.train(train.X, [u2s[k] for k in train.keys])))
    ie = rng.integers(0, len(E), size=40)
    it = rng.integers(0, len(T), size=40)
    raw = scorer.pairs(scorer.enroll_side(E), scorer.test_side(T), ie, it)
    ours = asnorm(scorer, E, T, C, ie, it, raw, top_n, chunk=4)
    assert np.allclose(ours, reference(scorer, E, T, C, ie, it, top_n), rtol=1e-9, atol=1e-9)
