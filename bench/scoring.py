"""Benchmark: PLDA scoring, EER/minDCF and their bootstrap intervals at VoxCeleb1-E scale, on one core.

600,000 trials over 4,800 enroll x 4,800 test vectors of dimension 256, a PLDA model of the same
dimension. Ours: subtools/score (PldaScorer: transform + length norm of both sides, vectorised LLR;
metrics.compute_all: EER + minDCF 0.01 + minDCF 0.001; bootstrap.bootstrap_metrics: 1,000 draws of
all three, resampling 1,200 enrollment speakers of 4 enroll vectors each, or single trials).
Reference, measured in the same run: a plain per-trial Python loop (Kaldi's LogLikelihoodRatio per
trial on the transformed vectors; the Kaldi compute-eer / compute_min_dcf.py loops for the metrics)
on a 10,000-trial subset, extrapolated linearly to 600,000; for the bootstrap, a per-draw loop that
builds each resampled trial list and runs compute_all on it, for a few draws, extrapolated to 1,000.
Targets: scoring <= 2 s, metrics <= 1 s (SPEC section 9), 1,000 bootstrap draws <= 10 s (issue 12).
Times are CPU time of this process (one thread), best of 3 (of 2 for the bootstrap), so that other
work on a shared machine disturbs them less.

Usage: python3 bench/scoring.py [--trials 600000] [--vectors 4800] [--dim 256] [--draws 1000]
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from subtools.score.bootstrap import bootstrap_metrics  # noqa: E402
from subtools.score.metrics import compute_all  # noqa: E402
from subtools.score.plda import Plda, PldaScorer  # noqa: E402
from subtools.score.synthetic import random_model  # noqa: E402
from subtools.score.vectors import VectorSet  # noqa: E402


def loop_llr(psi, Ue, ne, Ut, ie, it):
    """Per-trial reference: Kaldi Plda::LogLikelihoodRatio, one trial at a time."""
    out = []
    log2pi = np.log(2 * np.pi)
    for e, t in zip(ie, it):
        n, u, v = ne[e], Ue[e], Ut[t]
        mean = n * psi / (n * psi + 1.0) * u
        var = 1.0 + psi / (n * psi + 1.0)
        given = -0.5 * (np.log(var).sum() + log2pi * len(psi) + ((v - mean) ** 2 / var).sum())
        var0 = 1.0 + psi
        without = -0.5 * (np.log(var0).sum() + log2pi * len(psi) + (v ** 2 / var0).sum())
        out.append(given - without)
    return np.array(out)


def loop_metrics(scores, labels):
    """Reference: Kaldi compute-eer and compute_min_dcf.py loops (sort, then walk in Python)."""
    tgt = sorted(s for s, l in zip(scores, labels) if l)
    non = sorted(s for s, l in zip(scores, labels) if not l)
    p = 0
    while p + 1 < len(tgt):
        if non[max(len(non) - 1 - int(len(non) * p / len(tgt)), 0)] < tgt[p]:
            break
        p += 1
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    fn = fp = 0
    best = {0.01: np.inf, 0.001: np.inf}
    T, N = len(tgt), len(non)
    for i in order:
        fn += labels[i]
        fp += 1 - labels[i]
        for pt in best:
            best[pt] = min(best[pt], fn / T * pt + (1 - fp / N) * (1 - pt))
    return 100 * p / T, best[0.01] / 0.01, best[0.001] / 0.001


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return min(times), out


def loop_bootstrap(scores, labels, units, draws, seed=0):
    """Reference: each draw's trial list built explicitly (np.repeat) and scored with compute_all;
    returns the EERs [draws]."""
    n_units = int(units.max()) + 1
    rng = np.random.default_rng(seed)
    eers = []
    for _ in range(draws):
        counts = np.bincount(rng.integers(0, n_units, size=n_units), minlength=n_units)
        copies = np.repeat(np.arange(labels.size), counts[units])
        eers.append(compute_all(scores[copies], labels[copies])["eer"])
    return np.array(eers)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=600_000)
    p.add_argument("--vectors", type=int, default=4800)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--subset", type=int, default=10_000)
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    p.add_argument("--loop-draws", type=int, default=5, help="draws of the per-draw reference loop")
    args = p.parse_args()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    truth = random_model(rng, args.dim)
    model = Plda.from_covariances(truth.mean, truth.within, truth.between)
    L = np.linalg.cholesky(truth.between + truth.within)
    E = VectorSet([f"e{i}" for i in range(args.vectors)],
                  truth.mean + rng.normal(size=(args.vectors, args.dim)) @ L.T,
                  rng.integers(1, 4, size=args.vectors))
    T = VectorSet([f"t{i}" for i in range(args.vectors)],
                  truth.mean + rng.normal(size=(args.vectors, args.dim)) @ L.T)
    ie = rng.integers(0, args.vectors, size=args.trials)
    it = rng.integers(0, args.vectors, size=args.trials)
    scorer = PldaScorer(model)

    def ours_plda():
        Ep, Tp = scorer.enroll_side(E), scorer.test_side(T)
        return scorer.pairs(Ep, Tp, ie, it)

    t_plda, scores = best_of(ours_plda)
    Ep, Tp = scorer.enroll_side(E), scorer.test_side(T)
    sub = slice(0, args.subset)
    t0 = time.process_time()
    ref = loop_llr(model.psi, Ep.X, Ep.counts, Tp.X, ie[sub], it[sub])
    t_loop = (time.process_time() - t0) * args.trials / args.subset
    assert np.allclose(ref, scores[sub], rtol=1e-9, atol=1e-9), "PLDA scores differ from the loop"

    labels = rng.random(args.trials) < 0.5          # VoxCeleb1-E is about half targets
    scores_m = scores + 2.0 * scores.std() * labels
    t_met, m = best_of(lambda: compute_all(scores_m, labels))
    t0 = time.process_time()
    loop_metrics(list(scores_m[sub]), list(labels[sub].astype(int)))
    t_met_loop = (time.process_time() - t0) * args.trials / args.subset

    speakers = ie // 4                              # 1,200 enrollment speakers of 4 vectors each
    t_boot, boot = {}, {}
    for by, units in (("speaker", speakers), ("trial", np.arange(args.trials))):
        t_boot[by], boot[by] = best_of(lambda: bootstrap_metrics([scores_m], labels, units, args.draws), repeat=2)
    t0 = time.process_time()
    ref = loop_bootstrap(scores_m, labels, speakers, args.loop_draws)
    t_boot_loop = (time.process_time() - t0) * args.draws / args.loop_draws
    assert np.array_equal(ref, boot["speaker"]["eer"][0, :args.loop_draws]), "bootstrap EERs differ from the loop"

    def row(label, seconds, note):
        print(f"  {label:<58}{seconds:8.3f} s   {note}")

    print(f"PLDA scoring, {args.trials} trials, {args.vectors} enroll x {args.vectors} test, "
          f"dim {args.dim}, 1 thread")
    row("ours (vectorised, incl. transform + length norm)", t_plda,
        f"target <= 2 s: {'PASS' if t_plda <= 2 else 'FAIL'}")
    row(f"per-trial Python loop ({args.subset} trials, extrapolated)", t_loop,
        f"ours is x{t_loop / t_plda:.0f} faster")
    print(f"EER + minDCF(0.01) + minDCF(0.001) on {args.trials} scores")
    row("ours (vectorised)", t_met, f"target <= 1 s: {'PASS' if t_met <= 1 else 'FAIL'} "
        f"(EER={m['eer']:.3f}%)")
    row(f"Kaldi-style Python loops ({args.subset} scores, extrapolated)", t_met_loop,
        f"ours is x{t_met_loop / t_met:.0f} faster")
    print(f"bootstrap intervals of the three metrics, {args.draws} draws on {args.trials} scores")
    for by in t_boot:
        row(f"ours (vectorised), resampling {by}s", t_boot[by],
            f"target <= 10 s: {'PASS' if t_boot[by] <= 10 else 'FAIL'}")
    row(f"per-draw expand + compute_all loop ({args.loop_draws} draws, extrapolated)", t_boot_loop,
        f"ours (by speaker) is x{t_boot_loop / t_boot['speaker']:.0f} faster")

if __name__ == "__main__":
    main()
