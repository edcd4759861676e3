"""Adaptive symmetric score normalisation (AS-norm, Matejka et al. 2017, "AS-norm1").

For a trial (e, t) with raw score s, the cohort is a set of vectors C (in ASV use: the speaker
means of a training set, processed by the same chain). ``mu_e, sd_e`` are the mean and standard
deviation (population, ddof = 0) of the ``top_n`` highest scores of e against C (e on the enroll
side, cohort on the test side); ``mu_t, sd_t`` those of C (enroll side, with its utterance counts)
against t. Then ``s' = 0.5 ((s - mu_e) / sd_e + (s - mu_t) / sd_t)``.

The cohort score blocks are computed ``chunk`` rows at a time so memory stays
``chunk x |C|`` whatever the number of enroll/test vectors.
"""
import numpy as np


def top_n_stats(block_fn, num_rows, top_n, chunk=1024):
    """Mean and std ``[num_rows]`` of the ``top_n`` largest entries of each row of a score block.

    ``block_fn(start, stop) -> [stop - start, num_cohort]`` returns those rows' cohort scores.
    """
    mean, std = np.empty(num_rows), np.empty(num_rows)
    for s in range(0, num_rows, chunk):
        e = min(s + chunk, num_rows)
        block = block_fn(s, e)
        k = min(top_n, block.shape[1])
        top = np.partition(block, block.shape[1] - k, axis=1)[:, block.shape[1] - k:]
        mean[s:e] = top.mean(axis=1)
        std[s:e] = top.std(axis=1)
    return mean, np.maximum(std, np.finfo(np.float64).tiny)


def asnorm(scorer, E, T, cohort, ie, it, scores, top_n, chunk=1024):
    """AS-norm of ``scores [M]`` for trials ``(ie, it)``; ``E``, ``T``, ``cohort`` are raw VectorSets
    (already pre-processed by the chain, not yet by the scorer)."""
    if top_n < 1:
        raise ValueError(f"AS-norm top_n must be >= 1, got {top_n}")
    Ep, Tp = scorer.enroll_side(E), scorer.test_side(T)
    C_test, C_enroll = scorer.test_side(cohort), scorer.enroll_side(cohort)
    rows_e, ie_local = np.unique(ie, return_inverse=True)
    rows_t, it_local = np.unique(it, return_inverse=True)
    Eu, Tu = Ep.take(rows_e), Tp.take(rows_t)
    mu_e, sd_e = top_n_stats(lambda s, e: scorer.matrix(Eu.take(np.arange(s, e)), C_test),
                             len(rows_e), top_n, chunk)
    mu_t, sd_t = top_n_stats(lambda s, e: scorer.matrix(C_enroll, Tu.take(np.arange(s, e))).T,
                             len(rows_t), top_n, chunk)
    return 0.5 * ((scores - mu_e[ie_local]) / sd_e[ie_local] + (scores - mu_t[it_local]) / sd_t[it_local])
