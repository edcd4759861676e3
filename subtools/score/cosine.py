"""Cosine scoring, vectorised over trials.

A scorer (this one and :class:`subtools.score.plda.PldaScorer`) prepares each side once
(``enroll_side`` / ``test_side``: VectorSet -> VectorSet) and then scores trial pairs
(``pairs(E, T, ie, it) -> [M]``) or whole blocks (``matrix(E, T) -> [Ne, Nt]``, used by AS-norm).
"""
import numpy as np

from subtools.score.vectors import pair_dot


class CosineScorer:
    """Cosine similarity of rows; enroll speaker vectors are the mean of their utterance vectors."""

    name = "cosine"

    @staticmethod
    def _unit(vs):
        norms = np.linalg.norm(vs.X, axis=1, keepdims=True)
        return vs.with_matrix(vs.X / np.maximum(norms, np.finfo(np.float64).tiny))

    def enroll_side(self, vs):
        return self._unit(vs)

    def test_side(self, vs):
        return self._unit(vs)

    def pairs(self, E, T, ie, it):
        return pair_dot(E.X, ie, T.X, it)

    def matrix(self, E, T):
        return E.X @ T.X.T
