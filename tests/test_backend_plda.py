"""PLDA (subtools/score/plda.py) against independent references.

* EM iterations equal Kaldi's per-speaker updates written out here (rtol 1e-8);
* EM recovers the between/within covariances of data sampled from a known two-covariance model
  (relative Frobenius error <= 0.12 for B from 3000 speakers, <= 0.05 for W);
* the diagonalised model satisfies A W A^T = I, A B A^T = diag(psi) (1e-8);
* the LLR (no length norm) equals the closed-form Gaussian likelihood ratio computed with
  scipy.stats.multivariate_normal in the input space (rtol 1e-7);
* with Kaldi length normalisation, vectorised scores equal a per-trial loop written here from
  Kaldi's formulas (rtol 1e-9), and sum u^2/(psi + 1/n) = D;
* within-class smoothing by s (Kaldi ivector-copy-plda) gives within W + s B and between B
  (1e-9), and the scores of the model built from those covariances (rtol 1e-9); s = 0 changes
  nothing; s outside [0, 1] is refused;
* Kaldi text and npz round trips are exact; bad training data is refused.
"""
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from subtools.score.plda import Plda
from subtools.score.synthetic import random_model, sample


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    truth = random_model(rng, 5)
    vs, utt2spk = sample(rng, truth, rng.integers(2, 10, size=3000))
    model = Plda.train(vs.X, [utt2spk[k] for k in vs.keys], num_iters=10)
    return truth, model


def test_em_recovers_covariances(trained):
    truth, model = trained
    assert rel(model.between_covariance(), truth.between) < 0.12
    assert rel(model.within_covariance(), truth.within) < 0.05
    assert np.allclose(model.mean, truth.mean, atol=0.1)


def kaldi_em_reference(X, spk, iters):
    """Kaldi PldaEstimator written out per speaker (one matrix inversion per speaker)."""
    labels = sorted(set(spk))
    groups = [X[np.array(spk) == s] for s in labels]
    means = np.array([g.mean(axis=0) for g in groups])
    mu = means.mean(axis=0)
    scatter = sum((g - g.mean(axis=0)).T @ (g - g.mean(axis=0)) for g in groups)
    D = X.shape[1]
    W, B = np.eye(D), np.eye(D)
    for _ in range(iters):
        Wi, Bi = np.linalg.inv(W), np.linalg.inv(B)
        bs, ws = np.zeros((D, D)), scatter.copy()
        for g, m in zip(groups, means - mu):
            n = len(g)
            C = np.linalg.inv(Bi + n * Wi)
            w = C @ (n * Wi @ m)
            bs += C + np.outer(w, w)
            ws += n * (C + np.outer(m - w, m - w))
        W, B = ws / len(X), bs / len(groups)
    return mu, W, B


def test_em_iterations_equal_kaldi_per_speaker_updates():
    rng = np.random.default_rng(4)
    truth = random_model(rng, 4)
    vs, utt2spk = sample(rng, truth, rng.integers(1, 7, size=40))
    spk = [utt2spk[k] for k in vs.keys]
    mu, W, B = kaldi_em_reference(vs.X, spk, 3)
    model = Plda.train(vs.X, spk, num_iters=3)
    assert np.allclose(model.mean, mu, atol=1e-12)
    assert np.allclose(model.within_covariance(), W, rtol=1e-8, atol=1e-10)
    assert np.allclose(model.between_covariance(), B, rtol=1e-8, atol=1e-10)


def test_simultaneous_diagonalisation(trained):
    _, model = trained
    A = model.transform_matrix
    W, B = model.within_covariance(), model.between_covariance()
    assert np.allclose(A @ W @ A.T, np.eye(model.dim), atol=1e-8)
    assert np.allclose(A @ B @ A.T, np.diag(model.psi), atol=1e-8)
    assert np.all(np.diff(model.psi) <= 0) and np.all(model.psi >= 0)


def test_llr_equals_gaussian_likelihood_ratio(trained):
    _, model = trained
    rng = np.random.default_rng(1)
    D = model.dim
    W, B, mu = model.within_covariance(), model.between_covariance(), model.mean
    for n in (1, 3):
        enroll_utts = rng.normal(size=(n, D)) * 2 + mu
        test = rng.normal(size=D) * 2 + mu
        xbar = enroll_utts.mean(axis=0) - mu
        y = test - mu
        same = np.block([[B + W / n, B], [B, B + W]])
        ref = (multivariate_normal(np.zeros(2 * D), same).logpdf(np.concatenate([xbar, y]))
               - multivariate_normal(np.zeros(D), B + W / n).logpdf(xbar)
               - multivariate_normal(np.zeros(D), B + W).logpdf(y))
        Ue = model.transform(enroll_utts.mean(axis=0)[None], n, normalize_length=False)
        Ut = model.transform(test[None], 1, normalize_length=False)
        ours = model.score_pairs(Ue, [n], Ut, [0], [0])[0]
        assert ours == pytest.approx(ref, rel=1e-7, abs=1e-9)


def kaldi_llr(psi, u, n, v):
    """Per-trial Kaldi Plda::LogLikelihoodRatio, written out plainly."""
    mean = n * psi / (n * psi + 1.0) * u
    var = 1.0 + psi / (n * psi + 1.0)
    given = -0.5 * np.sum(np.log(var) + np.log(2 * np.pi) + (v - mean) ** 2 / var)
    var0 = 1.0 + psi
    without = -0.5 * np.sum(np.log(var0) + np.log(2 * np.pi) + v ** 2 / var0)
    return given - without


@pytest.mark.parametrize("simple", [False, True])
def test_length_normalised_scores_match_per_trial_loop(trained, simple):
    _, model = trained
    rng = np.random.default_rng(2)
    D = model.dim
    Xe, Xt = rng.normal(size=(7, D)) * 3, rng.normal(size=(9, D)) * 3
    ne = np.array([1, 2, 3, 1, 5, 2, 4])
    Ue = model.transform(Xe, ne, simple_length_norm=simple)
    Ut = model.transform(Xt, 1, simple_length_norm=simple)
    if simple:
        assert np.allclose(np.linalg.norm(Ue, axis=1), np.sqrt(D))
    else:
        assert np.allclose(np.sum(Ue ** 2 / (model.psi + 1.0 / ne[:, None]), axis=1), D)
    ie, it = np.meshgrid(np.arange(7), np.arange(9), indexing="ij")
    ie, it = ie.ravel(), it.ravel()
    ref = np.array([kaldi_llr(model.psi, Ue[e], ne[e], Ut[t]) for e, t in zip(ie, it)])
    assert np.allclose(model.score_pairs(Ue, ne, Ut, ie, it), ref, rtol=1e-9, atol=1e-9)
    assert np.allclose(model.score_matrix(Ue, ne, Ut).ravel(), ref, rtol=1e-9, atol=1e-9)


def test_smoothing_adds_between_to_within(trained):
    _, model = trained
    W, B = model.within_covariance(), model.between_covariance()
    same = model.smooth_within(0.0)
    assert np.array_equal(same.transform_matrix, model.transform_matrix)
    assert np.array_equal(same.psi, model.psi)
    s = 0.3
    smoothed = model.smooth_within(s)
    assert np.allclose(smoothed.within_covariance(), W + s * B, rtol=1e-9, atol=1e-9)
    assert np.allclose(smoothed.between_covariance(), B, rtol=1e-9, atol=1e-9)
    assert not np.allclose(smoothed.psi, model.psi)
    direct = Plda.from_covariances(model.mean, W + s * B, B)
    rng = np.random.default_rng(5)
    Xe, Xt, ne = rng.normal(size=(6, model.dim)) * 3, rng.normal(size=(8, model.dim)) * 3, [1, 2, 3, 1, 4, 2]
    ours = smoothed.score_matrix(smoothed.transform(Xe, ne), ne, smoothed.transform(Xt))
    ref = direct.score_matrix(direct.transform(Xe, ne), ne, direct.transform(Xt))
    assert np.allclose(ours, ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match=r"smoothing factor 1.5 must be in \[0, 1\]"):
        model.smooth_within(1.5)


def test_kaldi_text_and_npz_round_trip(trained, tmp_path):
    _, model = trained
    for name in ("plda.txt", "plda.npz"):
        model.save(tmp_path / name)
        back = Plda.load(tmp_path / name)
        assert np.array_equal(back.mean, model.mean)
        assert np.array_equal(back.transform_matrix, model.transform_matrix)
        assert np.array_equal(back.psi, model.psi)
    text = (tmp_path / "plda.txt").read_text()
    assert text.startswith("<Plda>  [ ") and text.rstrip().endswith("</Plda>")


def test_reads_kaldi_written_layout(tmp_path):
    # the layout of Kaldi's Plda::Write(binary=false): token, vector, matrix rows, vector, token
    path = tmp_path / "kaldi_plda.txt"
    path.write_text("<Plda>  [ 1 -2 ]\n [\n  0.5 0 \n  0.25 2 ]\n [ 3 0.1 ]\n</Plda> \n")
    m = Plda.load(path)
    assert np.array_equal(m.mean, [1, -2])
    assert np.array_equal(m.transform_matrix, [[0.5, 0], [0.25, 2]])
    assert np.array_equal(m.psi, [3, 0.1])
    path.write_text("<Plda>  [ 1 -2 ]\n [\n  0.5 0 ]\n [ 3 0.1 ]\n</Plda> \n")
    with pytest.raises(ValueError, match="expected 2x2"):
        Plda.load(path)


def test_refuses_bad_training_data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 4))
    with pytest.raises(ValueError, match="2 or more"):
        Plda.train(X, np.arange(20))
    with pytest.raises(ValueError, match="at least as many vectors"):
        Plda.train(X[:3], [0, 0, 1])
