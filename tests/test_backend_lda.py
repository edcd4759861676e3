"""Kaldi-style LDA (subtools/score/lda.py) against scipy.linalg.eigh of the generalized problem.

With within-class W (summed per speaker around the speaker's own mean), total T, between
Bs = T - W (so each speaker's mean counts once per utterance, as Kaldi ivector-compute-lda; all
normalised by N) and S = f T + (1 - f) W, the kept rows of the linear part must be the top generalized
eigenvectors of (Bs, S) from scipy (up to sign, 1e-8), the projected S unit and the projected Bs
diagonal with the scipy eigenvalues; the affine offset must centre the training data. Speakers have
1 to 50 utterances, so a between-class term without the per-speaker count (or normalised by the
number of speakers) fails.
"""
import numpy as np
import pytest
from scipy.linalg import eigh

from subtools.score.lda import compute_lda
from subtools.score.synthetic import random_model, sample
from subtools.score.vectors import apply_affine


def scatter(X, spk):
    X = X - X.mean(axis=0)
    N = len(X)
    T = X.T @ X / N
    W = np.zeros_like(T)
    for s in np.unique(spk):
        Xs = X[spk == s] - X[spk == s].mean(axis=0)
        W += Xs.T @ Xs
    return T, W / N


@pytest.mark.parametrize("factor", [0.0, 0.1])
def test_lda_equals_generalized_eigh(factor):
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 51, size=40)
    sizes[:3] = [1, 50, 2]
    vs, utt2spk = sample(rng, random_model(rng, 8), sizes)
    spk = np.array([utt2spk[k] for k in vs.keys])
    dim = 5
    M = compute_lda(vs.X, spk, dim, total_covariance_factor=factor)
    assert M.shape == (dim, 9)
    L = M[:, :8]
    T, W = scatter(vs.X, spk)
    S, Bs = factor * T + (1 - factor) * W, T - W
    evals, evecs = eigh(Bs, S)
    top_vals, top_vecs = evals[::-1][:dim], evecs[:, ::-1][:, :dim]
    signs = np.sign(np.sum(L * top_vecs.T, axis=1))
    assert np.allclose(L, top_vecs.T * signs[:, None], atol=1e-8)
    assert np.allclose(L @ S @ L.T, np.eye(dim), atol=1e-8)
    assert np.allclose(L @ Bs @ L.T, np.diag(top_vals), atol=1e-8)
    assert np.allclose(apply_affine(vs.X, M).mean(axis=0), 0, atol=1e-10)


def test_lda_errors_name_the_numbers():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 6))
    spk = np.repeat(np.arange(6), 5)
    with pytest.raises(ValueError, match="LDA dim 6 needs more than 6 speakers .* has 6"):
        compute_lda(X, spk, 6)
    with pytest.raises(ValueError, match="only 4 vectors for dimension 6"):
        compute_lda(X[:4], spk[:4], 2)
    with pytest.raises(ValueError, match="single vector"):
        compute_lda(X, np.arange(30), 2)
    with pytest.raises(ValueError, match="must be in 1..6"):
        compute_lda(X, spk, 7)
    with pytest.raises(ValueError, match=r"factor 1.5 must be in \[0, 1\]"):
        compute_lda(X, spk, 2, total_covariance_factor=1.5)
