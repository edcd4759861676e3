"""LDA for embeddings, as Kaldi ``ivector-compute-lda`` (affine output, global mean folded in).

Algorithm (Kaldi src/ivectorbin/ivector-compute-lda.cc), for vectors ``X: [N, D]`` with speakers:

1. subtract the global mean ``mu`` of all N vectors;
2. total covariance ``T = sum_x x x^T / N``; between ``Bs = sum_s n_s m_s m_s^T / N``;
   within ``W = T - Bs``;
3. ``S = f T + (1 - f) W`` with ``f = total_covariance_factor`` in [0, 1] (Kaldi's default 0.0,
   used by the authors' back-end and Kaldi sitw/v2; ASV-subtools' score/process.sh uses 0.1);
   eigen-decompose ``S``, floor its eigenvalues at ``floor * max`` and build ``P = diag(s^-1/2) U^T``
   so that ``P S P^T = I``;
4. eigen-decompose ``P Bs P^T`` (descending) and keep the top ``dim`` eigenvectors ``V``;
5. ``L = V^T P: [dim, D]``; output ``[L, -L mu]: [dim, D+1]`` (apply with ``vectors.apply_affine``).

So the projected interpolated covariance is unit and the projected between-class covariance is
diagonal with the (sorted) generalised eigenvalues of ``(Bs, S)``.

Errors (stop, with the numbers): ``f`` outside [0, 1], fewer vectors than dimensions (singular
total covariance), no speaker with two or more vectors (no within-class scatter), ``dim > D``, or
``dim`` at least as large as the number of speakers (the between-class scatter has rank <=
speakers - 1, so the extra directions would be noise: lower ``backend.lda_dim`` or use more speakers).

CLI::

    python3 subtools/score/lda.py --vectors SCP --utt2spk FILE --dim 128 --out transform.mat \
        [--total-covariance-factor 0.0]
"""
import argparse

import numpy as np

from subtools.cli import run_cli
from subtools.kaldi.fileio import read_table
from subtools.score.vectors import group_sums


def compute_lda(X, spk, dim, total_covariance_factor=0.0, covariance_floor=1e-6):
    """Kaldi LDA: ``X: [N, D]`` float, ``spk: [N]`` speaker labels -> affine matrix ``[dim, D+1]``."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    labels, inv, counts = np.unique(np.asarray(spk), return_inverse=True, return_counts=True)
    S = len(labels)
    if not 0.0 <= total_covariance_factor <= 1.0:
        raise ValueError(f"LDA total covariance factor {total_covariance_factor} must be in [0, 1]")
    if not 0 < dim <= D:
        raise ValueError(f"LDA dim {dim} must be in 1..{D} (the vector dimension)")
    if N < D:
        raise ValueError(f"LDA: only {N} vectors for dimension {D}: total covariance is singular")
    if N == S:
        raise ValueError(f"LDA: all {S} speakers have a single vector: no within-class scatter")
    if dim >= S:
        raise ValueError(f"LDA dim {dim} needs more than {dim} speakers (between-class rank <= "
                         f"speakers - 1) but the training set has {S}: lower the LDA dim")
    mu = X.mean(axis=0)
    Xc = X - mu
    total = Xc.T @ Xc / N
    sums = group_sums(inv, Xc, S)
    means = sums / counts[:, None]
    between = (means * counts[:, None]).T @ means / N
    within = total - between
    mix = total_covariance_factor * total + (1.0 - total_covariance_factor) * within
    s, U = np.linalg.eigh(mix)
    s, U = s[::-1], U[:, ::-1]
    s = np.maximum(s, covariance_floor * s[0])
    P = (U / np.sqrt(s)).T
    b, V = np.linalg.eigh(P @ between @ P.T)
    V = V[:, ::-1][:, :dim]
    L = V.T @ P
    return np.concatenate([L, -(L @ mu)[:, None]], axis=1)


def _cli():
    from subtools.score.vectors import load_vectors, save_matrix

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vectors", required=True, help="training vector scp")
    p.add_argument("--utt2spk", required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--total-covariance-factor", type=float, default=0.0,
                   help="S = f T + (1 - f) W is made unit (default 0.0: the within-class covariance)")
    p.add_argument("--covariance-floor", type=float, default=1e-6)
    p.add_argument("--out", required=True, help="output Kaldi matrix [dim, D+1] (binary)")
    args = p.parse_args()
    vs = load_vectors(args.vectors)
    utt2spk = read_table(args.utt2spk)
    missing = [k for k in vs.keys if k not in utt2spk]
    if missing:
        raise SystemExit(f"{args.utt2spk}: no speaker for {len(missing)} vector(s), first: {missing[:5]}")
    M = compute_lda(vs.X, [utt2spk[k] for k in vs.keys], args.dim,
                    args.total_covariance_factor, args.covariance_floor)
    save_matrix(args.out, M)


if __name__ == "__main__":
    run_cli(_cli)
