"""Synthetic embeddings from a known two-covariance model, for back-end tests and benchmarks.

``x = mu + y_s + e`` with speaker part ``y_s ~ N(0, B)`` and within part ``e ~ N(0, W)``.

CLI (writes an embedding set dir as extraction does: xvector.scp/ark, utt2spk, spk2utt, and
optionally a trials file)::

    python3 subtools/score/synthetic.py --out DIR --dim 32 --speakers 50 --utts 6 --seed 1 \\
        [--trials DIR/trials --num-trials 2000]
"""
import argparse
import os
from dataclasses import dataclass

import numpy as np

from subtools.cli import run_cli
from subtools.kaldi.data_dir import utt2spk_to_spk2utt, write_spk2utt
from subtools.kaldi.fileio import write_lines, write_table
from subtools.score.vectors import VectorSet, save_vectors


@dataclass
class TwoCovModel:
    """Ground truth: ``mean [D]``, between ``B [D, D]``, within ``W [D, D]``."""

    mean: np.ndarray
    between: np.ndarray
    within: np.ndarray


def random_model(rng, dim, between_scale=1.0, within_scale=0.5):
    """A random well-conditioned two-covariance model of dimension ``dim``."""
    def spd(scale):
        A = rng.normal(size=(dim, dim))
        return scale * (A @ A.T / dim + 0.3 * np.eye(dim))
    return TwoCovModel(rng.normal(size=dim), spd(between_scale), spd(within_scale))


def sample(rng, model, utts_per_spk, prefix="spk"):
    """Sample vectors: ``utts_per_spk [S]`` ints -> (VectorSet keyed ``spkXXXX-uttYYY``, utt2spk)."""
    D = model.mean.size
    S = len(utts_per_spk)
    y = rng.multivariate_normal(np.zeros(D), model.between, size=S)
    spk_idx = np.repeat(np.arange(S), utts_per_spk)
    X = model.mean + y[spk_idx] + rng.multivariate_normal(np.zeros(D), model.within, size=spk_idx.size)
    spks = [f"{prefix}{s:04d}" for s in range(S)]
    keys, utt2spk = [], {}
    for i, s in enumerate(spk_idx):
        key = f"{spks[s]}-utt{i:05d}"
        keys.append(key)
        utt2spk[key] = spks[s]
    return VectorSet(keys, X), utt2spk


def random_trials(rng, enroll_keys, enroll_spk, test_keys, test_spk, num, target_fraction=0.3):
    """``num`` trial lines ``enroll test target|nontarget`` (about ``target_fraction`` targets)."""
    by_spk = {}
    for k in test_keys:
        by_spk.setdefault(test_spk[k], []).append(k)
    lines = set()
    while len(lines) < num:
        e = enroll_keys[rng.integers(len(enroll_keys))]
        if rng.random() < target_fraction and by_spk.get(enroll_spk[e]):
            cands = by_spk[enroll_spk[e]]
        else:
            cands = test_keys
        t = cands[rng.integers(len(cands))]
        if e != t:
            lines.add(f"{e} {t} {'target' if enroll_spk[e] == test_spk[t] else 'nontarget'}")
    return sorted(lines)


def write_set(path, vs, utt2spk):
    """Write an embedding set dir: ``xvector.scp`` + ark, ``utt2spk``, ``spk2utt``."""
    os.makedirs(path, exist_ok=True)
    save_vectors(vs, os.path.join(path, "xvector.scp"), os.path.join(path, "xvector.1.ark"))
    write_table(os.path.join(path, "utt2spk"), utt2spk)
    write_spk2utt(os.path.join(path, "spk2utt"), utt2spk_to_spk2utt(utt2spk))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--speakers", type=int, default=50)
    p.add_argument("--utts", type=int, default=6)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--trials", help="also write a trials file here (utterance vs utterance)")
    p.add_argument("--num-trials", type=int, default=2000)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    vs, utt2spk = sample(rng, random_model(rng, args.dim), [args.utts] * args.speakers)
    write_set(args.out, vs, utt2spk)
    if args.trials:
        write_lines(args.trials, random_trials(rng, vs.keys, utt2spk, vs.keys, utt2spk, args.num_trials))


if __name__ == "__main__":
    run_cli(main)
