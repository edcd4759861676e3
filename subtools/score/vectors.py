"""Embedding vectors for the back-end: Kaldi ark/scp I/O and the Kaldi vector tools.

A :class:`VectorSet` is an ordered set of keyed vectors ``X: [N, D]`` (float64) with
``counts: [N]``, the number of utterances averaged into each row (1 for an utterance,
``n`` for a speaker mean as Kaldi ``ivector-mean`` makes them for SITW enrollment).

The numeric tools mirror Kaldi's ivectorbin programs:

* :func:`global_mean` / :func:`subtract_mean`  -- ``ivector-subtract-global-mean``
* :func:`length_norm`                         -- ``ivector-normalize-length`` (norm -> sqrt(D))
* :func:`speaker_means`                       -- ``ivector-mean spk2utt`` (+ num_utts)
* :func:`apply_affine`                        -- ``transform-vec`` with a ``[d, D+1]`` matrix

Bad input policy: a vector with NaN/inf stops the run with an error naming the key(s)
and the scp; a dimension mismatch names the key.

CLI (each writes ark+scp or a Kaldi vector atomically)::

    python3 subtools/score/vectors.py mean      --vectors SCP --out mean.vec
    python3 subtools/score/vectors.py submean   --vectors SCP [--mean mean.vec] --out-scp OUT.scp
    python3 subtools/score/vectors.py norm      --vectors SCP --out-scp OUT.scp
    python3 subtools/score/vectors.py transform --vectors SCP --matrix lda.mat --out-scp OUT.scp
    python3 subtools/score/vectors.py spk-mean  --vectors SCP --spk2utt FILE --out-scp OUT.scp
"""
import argparse
import os
from dataclasses import dataclass, field

import kaldiio
import numpy as np

from subtools.cli import run_cli
from subtools.kaldi.data_dir import read_spk2utt
from subtools.kaldi.fileio import atomic_write, write_table


@dataclass
class VectorSet:
    """Keyed vectors: ``keys[i]`` names row ``X[i]`` (``[N, D]`` float64), averaged over ``counts[i]``."""

    keys: list
    X: np.ndarray
    counts: np.ndarray = None
    index: dict = field(init=False, repr=False)

    def __post_init__(self):
        self.X = np.asarray(self.X, dtype=np.float64)
        if self.X.ndim != 2 or self.X.shape[0] != len(self.keys):
            raise ValueError(f"VectorSet: {len(self.keys)} keys but matrix of shape {self.X.shape}")
        if self.counts is None:
            self.counts = np.ones(len(self.keys), dtype=np.int64)
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.index = {k: i for i, k in enumerate(self.keys)}

    @property
    def dim(self):
        return self.X.shape[1]

    def __len__(self):
        return len(self.keys)

    def with_matrix(self, X):
        """Same keys and counts, new rows (e.g. after a transform)."""
        return VectorSet(list(self.keys), X, self.counts.copy())

    def take(self, idx):
        """The rows ``idx`` (int array) as a new VectorSet."""
        return VectorSet([self.keys[i] for i in idx], self.X[idx], self.counts[idx])


def check_finite(keys, X, source):
    """Raise ValueError naming the keys (and ``source``) of rows that hold NaN or inf."""
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        first = ", ".join(keys[i] for i in bad[:5])
        raise ValueError(f"{source}: {bad.size} vector(s) contain NaN/inf, first: {first}")


def load_vectors(scp):
    """Read a Kaldi vector scp (or ``.ark`` file) into a :class:`VectorSet` (file order).

    Stops on a duplicate key, a dimension mismatch or a NaN/inf vector, naming the key(s).
    """
    items = kaldiio.load_ark(scp) if scp.endswith(".ark") else kaldiio.load_scp_sequential(scp)
    keys, rows, seen = [], [], set()
    for key, vec in items:
        vec = np.asarray(vec, dtype=np.float64).reshape(-1)
        if key in seen:
            raise ValueError(f"{scp}: duplicate key '{key}'")
        if rows and vec.size != rows[0].size:
            raise ValueError(f"{scp}: vector '{key}' has dimension {vec.size}, expected {rows[0].size}")
        seen.add(key)
        keys.append(key)
        rows.append(vec)
    if not keys:
        raise ValueError(f"{scp}: no vectors")
    X = np.stack(rows)
    check_finite(keys, X, scp)
    return VectorSet(keys, X)


def group_sums(inv, X, num_groups):
    """Row sums of ``X: [N, D]`` per group id ``inv: [N]`` (0..num_groups-1) -> ``[num_groups, D]``."""
    from scipy.sparse import csr_matrix

    onehot = csr_matrix((np.ones(len(inv)), (inv, np.arange(len(inv)))), shape=(num_groups, len(inv)))
    return np.asarray(onehot @ X)


def save_vectors(vs, scp, ark=None):
    """Write ``vs`` as a binary float32 Kaldi ark plus scp (both atomically; ark beside scp by default)."""
    ark = ark or os.path.splitext(scp)[0] + ".ark"
    ark_abs = os.path.abspath(ark)
    offsets = {}
    with atomic_write(ark, "wb") as f:
        for key, row in zip(vs.keys, vs.X):
            start = f.tell()
            kaldiio.save_ark(f, {key: row.astype(np.float32)})
            offsets[key] = start + len(key.encode()) + 1
    write_table(scp, {k: f"{ark_abs}:{o}" for k, o in offsets.items()}, sort=False)


def save_vector(path, vec):
    """Write one Kaldi binary vector (e.g. ``mean.vec``) atomically."""
    with atomic_write(path, "wb") as f:
        kaldiio.save_mat(f, np.asarray(vec, dtype=np.float64))


def save_matrix(path, mat):
    """Write one Kaldi binary matrix (e.g. an LDA ``transform.mat``) atomically."""
    with atomic_write(path, "wb") as f:
        kaldiio.save_mat(f, np.asarray(mat, dtype=np.float64))


def load_object(path):
    """Read one Kaldi vector or matrix file (binary or text) as float64."""
    return np.asarray(kaldiio.load_mat(path), dtype=np.float64)


def global_mean(X):
    """Mean row of ``X: [N, D]`` -> ``[D]`` (Kaldi ivector-subtract-global-mean)."""
    return X.mean(axis=0)


def subtract_mean(X, mean):
    return X - mean[None, :]


def length_norm(X):
    """Scale every row of ``X: [N, D]`` to Euclidean norm sqrt(D) (Kaldi ivector-normalize-length)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X * (np.sqrt(X.shape[1]) / np.maximum(norms, np.finfo(np.float64).tiny))


def apply_affine(X, M):
    """Kaldi transform-vec: ``M: [d, D]`` (linear) or ``[d, D+1]`` (affine, last column offset)."""
    D = X.shape[1]
    if M.shape[1] == D:
        return X @ M.T
    if M.shape[1] == D + 1:
        return X @ M[:, :D].T + M[:, D][None, :]
    raise ValueError(f"transform of shape {M.shape} does not fit vectors of dimension {D}")


def speaker_means(vs, spk2utt):
    """Average the vectors of each speaker (Kaldi ivector-mean): VectorSet keyed by speaker.

    Utterances absent from ``vs`` are ignored; a speaker with none present is left out.
    Returns (speaker VectorSet with counts = utterances averaged, list of absent utterances).
    """
    keys, rows, counts, absent = [], [], [], []
    for spk, utts in spk2utt.items():
        idx = [vs.index[u] for u in utts if u in vs.index]
        absent.extend(u for u in utts if u not in vs.index)
        if idx:
            keys.append(spk)
            rows.append(vs.X[idx].mean(axis=0))
            counts.append(len(idx))
    X = np.stack(rows) if rows else np.zeros((0, vs.dim))
    return VectorSet(keys, X, np.array(counts, dtype=np.int64)), absent


def concat(sets):
    """Rows of several VectorSets (same dimension) in order."""
    return VectorSet([k for s in sets for k in s.keys], np.concatenate([s.X for s in sets]),
                     np.concatenate([s.counts for s in sets]))


def pair_dot(A, ia, B, ib, chunk=1 << 15):
    """Row-wise dot products ``out[k] = A[ia[k]] . B[ib[k]]`` in chunks (``[M]``, no [M, D] blow-up)."""
    out = np.empty(len(ia), dtype=np.result_type(A, B))
    for s in range(0, len(ia), chunk):
        e = s + chunk
        out[s:e] = np.einsum("ij,ij->i", A[ia[s:e]], B[ib[s:e]])
    return out


def _cli():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("mean", "submean", "norm", "transform", "spk-mean"):
        s = sub.add_parser(name)
        s.add_argument("--vectors", required=True, help="input vector scp")
        if name == "mean":
            s.add_argument("--out", required=True, help="output Kaldi vector (binary)")
        else:
            s.add_argument("--out-scp", required=True, help="output scp (ark written beside it)")
        if name == "submean":
            s.add_argument("--mean", help="mean vector to subtract (default: the input's own mean)")
        if name == "transform":
            s.add_argument("--matrix", required=True, help="Kaldi matrix [d, D] or [d, D+1]")
        if name == "spk-mean":
            s.add_argument("--spk2utt", required=True)
            s.add_argument("--num-utts", help="optional output table 'spk count'")
    args = p.parse_args()
    vs = load_vectors(args.vectors)
    if args.cmd == "mean":
        save_vector(args.out, global_mean(vs.X))
        return
    if args.cmd == "submean":
        mean = load_object(args.mean) if args.mean else global_mean(vs.X)
        out = vs.with_matrix(subtract_mean(vs.X, mean))
    elif args.cmd == "norm":
        out = vs.with_matrix(length_norm(vs.X))
    elif args.cmd == "transform":
        out = vs.with_matrix(apply_affine(vs.X, load_object(args.matrix)))
    else:
        out, absent = speaker_means(vs, read_spk2utt(args.spk2utt))
        if not len(out):
            raise SystemExit(f"{args.spk2utt}: no speaker has a vector in {args.vectors}")
        if absent:
            print(f"spk-mean: {len(absent)} utterance(s) of {args.spk2utt} have no vector, first: "
                  + ", ".join(absent[:5]))
        if args.num_utts:
            write_table(args.num_utts, dict(zip(out.keys, map(str, out.counts))))
    save_vectors(out, args.out_scp)


if __name__ == "__main__":
    run_cli(_cli)
