"""Two-covariance PLDA, equivalent to Kaldi ``ivector-compute-plda`` / ``ivector-plda-scoring``.

Model (Kaldi src/ivector/plda.cc): a vector is ``x = mu + y + e`` with speaker part ``y ~ N(0, B)``
and within-speaker part ``e ~ N(0, W)``. It is stored diagonalised: ``A: [D, D]`` with
``A W A^T = I`` and ``A B A^T = diag(psi)`` (psi >= 0, descending), so ``u = A (x - mu)``.

Training (:meth:`Plda.train`): per-speaker counts ``n_s`` and means ``m_s``; ``mu`` = mean of the
speaker means; pooled within-speaker scatter (count ``sum (n_s - 1)``). EM from ``W = B = I``,
``num_iters`` (10) iterations; for each centred speaker mean ``m``:
``C = (B^-1 + n W^-1)^-1``, ``w = C n W^-1 m``; between stats += ``C + w w^T`` (count 1),
within stats += ``n (C + (m - w)(m - w)^T)`` (count 1); ``W, B`` = stats / counts. Then
``W = L L^T``, ``T1 = L^-1``, ``T1 B T1^T = U diag(psi) U^T`` and ``A = U^T T1``.
Each EM iteration is computed in the space that diagonalises the current (W, B), where ``C`` is
diagonal for every ``n``: the same statistics as Kaldi's per-count inversions, with one
``D x D`` eigen-decomposition per iteration instead of one inversion per distinct count.

Smoothing (:meth:`Plda.smooth_within`, Kaldi ``ivector-copy-plda --smoothing=s``,
``Plda::SmoothWithinClassCovariance``): the within-class covariance becomes ``W + s B`` (B unchanged),
i.e. ``psi <- psi / (1 + s psi)`` and ``A <- diag(1 + s psi)^-1/2 A``. Kaldi's default and the
authors' value are s = 0 (no change); Kaldi's usage example shows 0.1.

Scoring (:meth:`Plda.transform` + :meth:`Plda.score_pairs`), enrollment with ``n`` utterances
averaged: ``u = A (x - mu)``; with ``normalize_length`` (Kaldi's default) scale ``u`` so that
``sum u_i^2 / (psi_i + 1/n) = D`` (``simple_length_norm``: ``|u| = sqrt(D)``). Test vectors use
n = 1. LLR per dimension: ``N(v; n psi/(n psi + 1) u, 1 + psi/(n psi + 1))`` against
``N(v; 0, 1 + psi)``. For speed it is split as ``llr = E[e] + Q[n(e), t] + P[e] . v_t``
(enroll-only term, per-count test term, one dot product per trial), vectorised over all trials.

Files: ``.npz`` with keys ``mean [D]``, ``transform [D, D]``, ``psi [D]`` (float64), or Kaldi's
text PLDA object (``<Plda> [ mean ] [ transform rows ] [ psi ] </Plda>``, as ``Plda::Write`` with
binary=false), chosen by the file name (``.npz`` or not) on write and by content on read.

CLI (contract)::

    python3 subtools/score/plda.py train --vectors SCP --utt2spk FILE --out MODEL [--num-iters 10]
    python3 subtools/score/plda.py score --model MODEL --enroll SCP --test SCP --trials TRIALS \\
        --out SCORES [--num-utts FILE] [--smoothing 0.0] [--simple-length-norm] \\
        [--no-normalize-length] [--on-missing stop|skip]

``train`` refuses data with no speaker having >= 2 vectors, or fewer vectors than dimensions.
``score`` takes enroll keys from the enroll scp (n from ``--num-utts``, a Kaldi table ``key n``,
default 1), smooths the model by ``--smoothing`` first (as ``ivector-copy-plda`` in a Kaldi scoring
pipe) and writes ``enroll test llr`` lines in trial order.
"""
import argparse
import io
import math

import numpy as np

from subtools.cli import run_cli
from subtools.kaldi.fileio import atomic_write, read_table
from subtools.score.vectors import group_sums, pair_dot


def _sym(M):
    return 0.5 * (M + M.T)


class Plda:
    """Diagonalised PLDA model: ``mean [D]``, ``transform A [D, D]``, ``psi [D]``."""

    def __init__(self, mean, transform, psi):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.transform_matrix = np.asarray(transform, dtype=np.float64)
        self.psi = np.asarray(psi, dtype=np.float64)
        D = self.mean.size
        if self.transform_matrix.shape != (D, D) or self.psi.shape != (D,):
            raise ValueError(f"PLDA: inconsistent shapes mean {self.mean.shape}, "
                             f"transform {self.transform_matrix.shape}, psi {self.psi.shape}")

    @property
    def dim(self):
        return self.mean.size

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, X, spk, num_iters=10, log=None):
        """EM on ``X: [N, D]`` with speaker labels ``spk: [N]``; returns the diagonalised model."""
        X = np.asarray(X, dtype=np.float64)
        N, D = X.shape
        labels, inv, n = np.unique(np.asarray(spk), return_inverse=True, return_counts=True)
        S = len(labels)
        if N < D:
            raise ValueError(f"PLDA: {N} vectors for dimension {D}: need at least as many vectors "
                             f"as dimensions")
        if n.max() < 2:
            raise ValueError(f"PLDA: none of the {S} speakers has 2 or more vectors: cannot "
                             f"estimate the within-speaker covariance")
        sums = group_sums(inv, X, S)
        means = sums / n[:, None]
        resid = X - means[inv]
        scatter = resid.T @ resid
        mu = means.mean(axis=0)
        mc = means - mu
        W, B = np.eye(D), np.eye(D)
        for it in range(num_iters):
            # In the space of A (A W A^T = I, A B A^T = diag(lam)) the posterior of each speaker's
            # offset is diagonal: C = diag(lam / (1 + n lam)), w = n lam / (1 + n lam) * z.
            cur = cls.from_covariances(mu, W, B)
            A, lam = cur.transform_matrix, cur.psi
            Z = mc @ A.T                                   # [S, D] centred speaker means
            c = lam / (1.0 + n[:, None] * lam)             # [S, D] posterior variances
            w = n[:, None] * c * Z                         # [S, D] posterior means
            r = Z - w
            between = np.diag(c.sum(axis=0)) + w.T @ w
            within = A @ scatter @ A.T + np.diag((n[:, None] * c).sum(axis=0)) + (r * n[:, None]).T @ r
            Ai = np.linalg.inv(A)
            W = _sym(Ai @ within @ Ai.T / N)               # count: sum(n_s - 1) + S = N
            B = _sym(Ai @ between @ Ai.T / S)
            if log:
                log(f"PLDA EM iteration {it + 1}/{num_iters}: trace(W)={np.trace(W):.4g} "
                    f"trace(B)={np.trace(B):.4g}")
        return cls.from_covariances(mu, W, B)

    @classmethod
    def from_covariances(cls, mean, within, between):
        """Simultaneous diagonalisation of (W, B) into (A, psi) as Kaldi PldaEstimator::GetOutput."""
        L = np.linalg.cholesky(within)
        T1 = np.linalg.inv(L)
        s, U = np.linalg.eigh(_sym(T1 @ between @ T1.T))
        s, U = np.maximum(s[::-1], 0.0), U[:, ::-1]
        return cls(mean, U.T @ T1, s)

    def smooth_within(self, factor):
        """The model with within-class covariance ``W + factor * B`` (Kaldi ``ivector-copy-plda
        --smoothing``); ``factor`` in [0, 1] as Kaldi asserts, 0 gives the same model."""
        if not 0.0 <= factor <= 1.0:
            raise ValueError(f"PLDA smoothing factor {factor} must be in [0, 1]")
        grown = 1.0 + factor * self.psi          # within variances in the diagonal space, [D]
        return Plda(self.mean, self.transform_matrix / np.sqrt(grown)[:, None], self.psi / grown)

    def within_covariance(self):
        """``W = A^-1 A^-T`` in the input space ``[D, D]``."""
        Ai = np.linalg.inv(self.transform_matrix)
        return Ai @ Ai.T

    def between_covariance(self):
        """``B = A^-1 diag(psi) A^-T`` in the input space ``[D, D]``."""
        Ai = np.linalg.inv(self.transform_matrix)
        return (Ai * self.psi) @ Ai.T

    # ------------------------------------------------------------------- scoring
    def transform(self, X, counts=1, normalize_length=True, simple_length_norm=False):
        """``u = A (x - mu)`` for ``X: [N, D]`` and the Kaldi length normalisation -> ``[N, D]``.

        ``counts``: scalar or ``[N]``, the number of utterances averaged into each row.
        """
        U = (np.asarray(X, dtype=np.float64) - self.mean) @ self.transform_matrix.T
        if not normalize_length:
            return U
        D = self.dim
        if simple_length_norm:
            scale = math.sqrt(D) / np.linalg.norm(U, axis=1)
        else:
            n = np.broadcast_to(np.asarray(counts, dtype=np.float64), (U.shape[0],))
            dot = np.einsum("ij,ij->i", U * U, 1.0 / (self.psi[None, :] + 1.0 / n[:, None]))
            scale = np.sqrt(D / dot)
        return U * scale[:, None]

    def _llr_parts(self, Ue, ne, Ut):
        """Split of the LLR: ``E [Ne]``, ``P [Ne, D]``, ``Q [G, Nt]``, group ``g [Ne]`` of each count."""
        psi = self.psi
        ne = np.broadcast_to(np.asarray(ne, dtype=np.int64), (Ue.shape[0],))
        uniq, g = np.unique(ne, return_inverse=True)
        a = uniq[:, None] * psi / (uniq[:, None] * psi + 1.0)            # [G, D]
        var1 = 1.0 + psi / (uniq[:, None] * psi + 1.0)                    # [G, D]
        var0 = 1.0 + psi
        const = -0.5 * np.log(var1).sum(axis=1) + 0.5 * np.log(var0).sum()   # [G]
        E = const[g] - 0.5 * np.einsum("ij,ij->i", Ue * Ue, (a * a / var1)[g])
        P = Ue * (a / var1)[g]
        Q = 0.5 * (Ut * Ut) @ (1.0 / var0[None, :] - 1.0 / var1).T        # [Nt, G]
        return E, P, np.ascontiguousarray(Q.T), g

    def score_pairs(self, Ue, ne, Ut, ie, it):
        """LLR of trials ``(ie[k], it[k])``: transformed enroll ``Ue [Ne, D]`` (counts ``ne``) vs ``Ut``."""
        E, P, Q, g = self._llr_parts(Ue, ne, Ut)
        ie, it = np.asarray(ie), np.asarray(it)
        return E[ie] + Q[g[ie], it] + pair_dot(P, ie, Ut, it)

    def score_matrix(self, Ue, ne, Ut):
        """LLR of every enroll row against every test row -> ``[Ne, Nt]``."""
        E, P, Q, g = self._llr_parts(Ue, ne, Ut)
        return E[:, None] + Q[g] + P @ Ut.T

    # ----------------------------------------------------------------------- I/O
    def save(self, path):
        """``.npz`` (keys mean, transform, psi) or otherwise Kaldi text format, atomically."""
        if str(path).endswith(".npz"):
            buf = io.BytesIO()
            np.savez(buf, mean=self.mean, transform=self.transform_matrix, psi=self.psi)
            with atomic_write(path, "wb") as f:
                f.write(buf.getvalue())
        else:
            with atomic_write(path) as f:
                f.write(self.to_kaldi_text())

    @classmethod
    def load(cls, path):
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(b"PK"):
            with np.load(path) as z:
                return cls(z["mean"], z["transform"], z["psi"])
        if head.startswith(b"\0B"):
            raise ValueError(f"{path}: binary Kaldi PLDA; convert it with "
                             f"'ivector-copy-plda --binary=false {path} plda.txt'")
        with open(path) as f:
            return cls.from_kaldi_text(f.read(), path)

    def to_kaldi_text(self):
        """Kaldi ``Plda::Write(binary=false)``: token, vector, matrix, vector, token."""
        def vec(v):
            return " [ " + " ".join(repr(float(x)) for x in v) + " ]\n"
        rows = "".join("\n  " + " ".join(repr(float(x)) for x in r) + " " for r in self.transform_matrix)
        return "<Plda> " + vec(self.mean) + " [" + rows + "]\n" + vec(self.psi) + "</Plda> \n"

    @classmethod
    def from_kaldi_text(cls, text, source="<text>"):
        """Parse Kaldi's text PLDA object (whitespace-insensitive, as Kaldi's own reader)."""
        tokens = text.split()
        pos = 0

        def expect(tok):
            nonlocal pos
            if pos >= len(tokens) or tokens[pos] != tok:
                found = tokens[pos] if pos < len(tokens) else "end of file"
                raise ValueError(f"{source}: expected '{tok}' in Kaldi PLDA text, found '{found}'")
            pos += 1

        def numbers():
            nonlocal pos
            expect("[")
            try:
                end = tokens.index("]", pos)
            except ValueError:
                raise ValueError(f"{source}: unterminated '[' in Kaldi PLDA text") from None
            vals = np.array([float(t) for t in tokens[pos:end]])
            pos = end + 1
            return vals

        expect("<Plda>")
        mean = numbers()
        D = mean.size
        flat = numbers()
        psi = numbers()
        expect("</Plda>")
        if flat.size != D * D:
            raise ValueError(f"{source}: PLDA transform has {flat.size} values, expected {D}x{D}")
        return cls(mean, flat.reshape(D, D), psi)


class PldaScorer:
    """Scorer interface (see :mod:`subtools.score.cosine`) over a :class:`Plda` model.

    The enroll side is transformed with its utterance counts, the test side with n = 1.
    """

    name = "plda"

    def __init__(self, model, normalize_length=True, simple_length_norm=False):
        self.model = model
        self.cfg = dict(normalize_length=normalize_length, simple_length_norm=simple_length_norm)

    def enroll_side(self, vs):
        return vs.with_matrix(self.model.transform(vs.X, vs.counts, **self.cfg))

    def test_side(self, vs):
        return vs.with_matrix(self.model.transform(vs.X, 1, **self.cfg))

    def pairs(self, E, T, ie, it):
        return self.model.score_pairs(E.X, E.counts, T.X, ie, it)

    def matrix(self, E, T):
        return self.model.score_matrix(E.X, E.counts, T.X)


# ---------------------------------------------------------------------------- CLI
def _train_cli(args):
    from subtools.score.vectors import load_vectors

    vs = load_vectors(args.vectors)
    utt2spk = read_table(args.utt2spk)
    missing = [k for k in vs.keys if k not in utt2spk]
    if missing:
        raise SystemExit(f"{args.utt2spk}: no speaker for {len(missing)} vector(s), first: {missing[:5]}")
    model = Plda.train(vs.X, [utt2spk[k] for k in vs.keys], args.num_iters, log=print)
    model.save(args.out)
    print(f"PLDA: {len(vs)} vectors of dim {vs.dim}, {len(set(utt2spk[k] for k in vs.keys))} "
          f"speakers -> {args.out}")


def _score_cli(args):
    from subtools.score.trials import read_trials, resolve_trials, write_scores
    from subtools.score.vectors import load_vectors

    model = Plda.load(args.model).smooth_within(args.smoothing)
    enroll, test = load_vectors(args.enroll), load_vectors(args.test)
    if args.num_utts:
        table = read_table(args.num_utts)
        enroll.counts = np.array([int(table.get(k, 1)) for k in enroll.keys])
    trials = read_trials(args.trials)
    ie, it, keep = resolve_trials(trials, enroll, test, args.on_missing, args.enroll, args.test)
    scorer = PldaScorer(model, not args.no_normalize_length, args.simple_length_norm)
    scores = scorer.pairs(scorer.enroll_side(enroll), scorer.test_side(test), ie, it)
    write_scores(args.out, trials.subset(keep), scores)
    print(f"PLDA scored {len(scores)} trials -> {args.out}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="estimate a PLDA model (Kaldi ivector-compute-plda)")
    t.add_argument("--vectors", required=True, help="training vector scp (already pre-processed)")
    t.add_argument("--utt2spk", required=True)
    t.add_argument("--out", required=True, help="model file: *.npz or Kaldi text")
    t.add_argument("--num-iters", type=int, default=10)
    s = sub.add_parser("score", help="score trials (Kaldi ivector-plda-scoring)")
    s.add_argument("--model", required=True)
    s.add_argument("--enroll", required=True, help="enroll vector scp (keys = trial enroll keys)")
    s.add_argument("--test", required=True, help="test vector scp")
    s.add_argument("--trials", required=True, help="'enroll test [target|nontarget]' lines")
    s.add_argument("--out", required=True, help="output 'enroll test score' lines")
    s.add_argument("--num-utts", help="table 'enroll-key n' (default n = 1)")
    s.add_argument("--smoothing", type=float, default=0.0,
                   help="within-class smoothing of the model before scoring (ivector-copy-plda; default 0)")
    s.add_argument("--simple-length-norm", action="store_true")
    s.add_argument("--no-normalize-length", action="store_true")
    s.add_argument("--on-missing", choices=["stop", "skip"], default="stop",
                   help="trials naming absent vectors: stop (default) or skip them")
    args = p.parse_args(argv)
    (_train_cli if args.cmd == "train" else _score_cli)(args)


if __name__ == "__main__":
    run_cli(main)
