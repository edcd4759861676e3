"""The authors' back-end (gather_results_sitw_voxceleb1.sh of the paper's code, Kaldi sitw/v2) through
score_sets.Backend, against the chain written out here from the formulas:

* global mean of the training vectors, subtracted;
* LDA with total-covariance factor 0: the top generalized eigenvectors of (between, within) from
  scipy.linalg.eigh, so that L W L^T = I;
* length normalisation to sqrt(dim);
* PLDA trained on those vectors (Plda.train, itself checked against Kaldi's EM in
  test_backend_plda.py), within-class covariance smoothed to W + s B (s = 0 as the authors; 0.2);
* SITW-style enrollment: a model's raw vectors averaged, n = count; VoxCeleb-style utterance trials;
* the LLR in the input space: vectors scaled about the PLDA mean so that
  (x - m)^T (B + W/n)^-1 (x - m) = dim (Kaldi's length normalisation inside PLDA), then the Gaussian
  likelihood ratio from scipy.stats.multivariate_normal.

Scores agree to 1e-9 (measured: 5e-13 of scores up to 90); the factor-0.1 LDA differs by more than
0.1 (measured 7.8), so the comparison is sensitive to the factor.
Also: the model cache refits when a training option changes and reuses the model for a new smoothing;
an unknown ``backend:`` key is refused.
"""
import numpy as np
import pytest
from scipy.linalg import eigh
from scipy.stats import multivariate_normal

from subtools.kaldi.fileio import write_lines
from subtools.score.plda import Plda
from subtools.score.score_sets import Backend, EmbeddingSet
from subtools.score.synthetic import random_model, sample, write_set
from subtools.score.trials import read_trials

LDA_DIM = 6
AUTHORS = {"chain": "submean-lda-norm-plda", "lda_dim": LDA_DIM, "lda_total_covariance_factor": 0.0,
           "plda_iters": 10, "plda_smoothing": 0.0, "plda_train_set": "train"}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Train (60 speakers, 2-8 utterances), SITW-like enroll (1-4 per model) / test, trials files."""
    d = tmp_path_factory.mktemp("authors")
    rng = np.random.default_rng(7)
    truth = random_model(rng, 12, between_scale=2.0, within_scale=0.7)
    train, u2s = sample(rng, truth, rng.integers(2, 9, size=60), "tr")
    write_set(str(d / "train"), train, u2s)
    enroll, e2s = sample(rng, truth, rng.integers(1, 5, size=10), "sw")
    write_set(str(d / "enroll"), enroll, e2s)
    test, t2s = sample(rng, truth, [3] * 10, "sw")       # the same speaker names: targets exist
    write_set(str(d / "test"), test, t2s)
    models = sorted(set(e2s.values()))
    write_lines(d / "sitw", [f"{m} {t} {'target' if t2s[t] == m else 'nontarget'}"
                             for m in models for t in test.keys])
    write_lines(d / "vox", [f"{a} {b} {'target' if t2s[a] == t2s[b] else 'nontarget'}"
                            for i, a in enumerate(test.keys) for b in test.keys[i + 1:]])
    return d


def reference_scores(d, trials, smoothing):
    """The authors' chain written out: trials (Trials) -> LLR per trial."""
    train = EmbeddingSet(str(d / "train"))
    X = train.vectors.X
    spk = np.array([train.utt2spk[k] for k in train.vectors.keys])
    mu = X.mean(axis=0)
    Xc = X - mu
    N = len(X)
    total = Xc.T @ Xc / N
    within = sum((Xc[spk == s] - Xc[spk == s].mean(axis=0)).T @ (Xc[spk == s] - Xc[spk == s].mean(axis=0))
                 for s in np.unique(spk)) / N
    _, V = eigh(total - within, within)                  # columns: v^T W v = 1, ascending
    V = V[:, ::-1][:, :LDA_DIM]

    def pre(x):
        y = (x - mu) @ V
        return y * np.sqrt(LDA_DIM) / np.linalg.norm(y)

    plda = Plda.train(np.array([pre(x) for x in X]), spk, 10)
    m, B = plda.mean, plda.between_covariance()
    W = plda.within_covariance() + smoothing * B

    def plda_norm(y, n):
        c = y - m
        return c * np.sqrt(LDA_DIM / (c @ np.linalg.solve(B + W / n, c)))

    enroll, test = EmbeddingSet(str(d / "enroll")), EmbeddingSet(str(d / "test"))

    def enroll_side(key):
        if key in test.vectors.index:                     # utterance trial (VoxCeleb): n = 1
            return test.vectors.X[test.vectors.index[key]], 1
        utts = enroll.spk2utt[key]
        return np.mean([enroll.vectors.X[enroll.vectors.index[u]] for u in utts], axis=0), len(utts)

    out = []
    zero = np.zeros(LDA_DIM)
    for e, t in zip(trials.enroll, trials.test):
        xe, n = enroll_side(e)
        a = plda_norm(pre(xe), n)
        b = plda_norm(pre(test.vectors.X[test.vectors.index[t]]), 1)
        joint = np.block([[B + W / n, B], [B, B + W]])
        out.append(multivariate_normal(np.zeros(2 * LDA_DIM), joint).logpdf(np.concatenate([a, b]))
                   - multivariate_normal(zero, B + W / n).logpdf(a)
                   - multivariate_normal(zero, B + W).logpdf(b))
    return np.array(out)


def backend_scores(d, trials, enroll_dir, log=lambda *_: None, model_dir=None, **changes):
    backend = Backend.from_config(AUTHORS["chain"], dict(AUTHORS, **changes))
    backend.fit(EmbeddingSet(str(d / "train")), model_dir, log=log)
    kept, scores = backend.score(trials, EmbeddingSet(str(d / enroll_dir)), EmbeddingSet(str(d / "test")))
    assert len(kept) == len(trials)
    return scores


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("trials_name, enroll_dir", [("sitw", "enroll"), ("vox", "test")])
def test_authors_chain_equals_direct_formula(sets, smoothing, trials_name, enroll_dir):
    trials = read_trials(str(sets / trials_name))
    ours = backend_scores(sets, trials, enroll_dir, plda_smoothing=smoothing)
    ref = reference_scores(sets, trials, smoothing)
    assert np.allclose(ours, ref, rtol=1e-9, atol=1e-9)
    if smoothing == 0.0:
        other = backend_scores(sets, trials, enroll_dir, lda_total_covariance_factor=0.1)
        assert np.abs(other - ref).max() > 0.1


def test_cache_refits_on_training_options_only(sets, tmp_path):
    trials = read_trials(str(sets / "sitw"))
    model_dir = str(tmp_path / "models")

    def run(**changes):
        lines = []
        scores = backend_scores(sets, trials, "enroll", lines.append, model_dir, **changes)
        return scores, " ".join(lines)

    first, log = run()
    assert "trained on" in log
    again, log = run()
    assert "reusing" in log and np.array_equal(again, first)
    smoothed, log = run(plda_smoothing=0.2)
    assert "reusing" in log
    assert np.allclose(smoothed, backend_scores(sets, trials, "enroll", plda_smoothing=0.2))
    assert not np.allclose(smoothed, first)
    for change in ({"lda_total_covariance_factor": 0.1}, {"lda_dim": 5}, {"plda_iters": 3}):
        _, log = run(**change)
        assert "trained on" in log, change


def test_unknown_backend_key_is_refused():
    with pytest.raises(ValueError, match="config.yaml: unknown backend key.s. plda_smothing; known: lda_dim"):
        Backend.from_config("submean-lda-norm-plda", {"lda_dim": 128, "plda_smothing": 0.0},
                            "exp/config.yaml")
    backend = Backend.from_config("submean-norm-cosine", {"plda_train_set": "x", "cohort_set": "x",
                                                          "asnorm_top_n": 7, "cosine_chain": "c"})
    assert backend.asnorm_top_n == 7
