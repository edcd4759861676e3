"""The seeds table of recipe/mini/seeds.sh: every system trained with several seeds, mean ± sd of each
figure over the seeds per back-end and test list, 95 % intervals of the seed mean, and the paired
comparison with a baseline pooled over the seeds.

    python3 recipe/mini/summarize_seeds.py --out exp/mini_seeds/results.txt --backends plda,cosine \\
        [--baseline mini_xvector_stats] [--ci 1000] SYSTEM_DIR1 SYSTEM_DIR2 ...

A SYSTEM_DIR holds one experiment per seed, ``seed<N>/`` (as summarize_results.py reads them: config,
score files of gather_results); every system must have the same seeds. Columns: ``seeds`` (their
number), ``mean±sd`` of EER (%), minDCF(0.01), minDCF(0.001) over the seeds (sample sd), and the
95 % interval of the seed mean: each of ``--ci`` bootstrap draws resamples the enrollment speakers
(the same draws for every system and seed) and the seeds (with replacement), so the interval holds
both trial and training-seed variation (subtools/score/bootstrap.py pool_seeds). With ``--baseline``:
the difference of seed-mean EERs system - baseline, its interval from the same draws (seed s of the
system paired with seed s of the baseline, which shares its data order) and ``P(better)``.
"""
import argparse
import glob
import os
import re

import numpy as np

from recipe.mini.summarize_results import joint_draws, same_trials, score_lists, system_names
from subtools.cli import run_cli
from subtools.kaldi.fileio import atomic_write
from subtools.score.bootstrap import FORMATS, METRICS, format_interval, interval, paired_difference, pool_seeds
from subtools.score.compute_metrics import scored_trials
from subtools.score.gather_results import format_table
from subtools.score.metrics import compute_all
from subtools.score.trials import read_trials

POOL_SEED = 0
DIGITS = {"eer": 2, "mindcf_0.01": 4, "mindcf_0.001": 4}


def seed_dirs(system_dir):
    """``{seed: experiment dir}`` of the ``seed<N>`` subdirectories of ``system_dir``."""
    found = {int(m.group(1)): path for path in glob.glob(os.path.join(system_dir, "seed*"))
             if (m := re.fullmatch(r"seed(\d+)", os.path.basename(path))) and os.path.isdir(path)}
    if not found:
        raise ValueError(f"{system_dir}: no seed<N>/ experiment directories")
    return dict(sorted(found.items()))


def mean_sd(values, digits):
    """``mean±sd`` (sample sd; ``mean±-`` for one value)."""
    sd = f"{np.std(values, ddof=1):.{digits}f}" if len(values) > 1 else "-"
    return f"{np.mean(values):.{digits}f}±{sd}"


def summarize(system_dirs, backends, baseline=None, n_draws=1000, log=print):
    """``(header, rows)`` of the seeds table (systems in the given order, then back-end, test set)."""
    names = system_names(system_dirs)
    if baseline is not None and baseline not in names:
        raise ValueError(f"--baseline {baseline} is none of the systems ({', '.join(names)})")
    seeds = [seed_dirs(d) for d in system_dirs]
    if any(list(s) != list(seeds[0]) for s in seeds):
        raise ValueError("the systems were not trained with the same seeds: "
                         + "; ".join(f"{n}: {list(s)}" for n, s in zip(names, seeds)))
    lists = {(name, seed): score_lists(exp, backends) for name, s in zip(names, seeds) for seed, exp in s.items()}
    first = next(iter(lists.values()))
    if len({tuple(entry[:3] for entry in one) for one in lists.values()}) > 1:
        raise ValueError("the experiments do not list the same test sets and trials files")
    rows = {name: [] for name in names}
    for j, (backend, test, trials_path, _) in enumerate(first):
        trials = read_trials(trials_path, need_labels=True)
        keys = list(lists)
        scored = [scored_trials(trials, lists[key][j][3], on_missing="skip") for key in keys]
        draws = dict(zip(keys, joint_draws(scored, n_draws)))
        points = {key: compute_all(scores, kept.labels) for key, (kept, scores) in zip(keys, scored)}
        kept_of = dict(zip(keys, (kept for kept, _ in scored)))
        for name in names:
            mine = [(name, seed) for seed in seeds[0]]
            row = [name, backend, test, str(len(mine))]
            for m in METRICS:
                pooled = pool_seeds([draws[key][m] for key in mine], POOL_SEED)
                row += [mean_sd([points[key][m] for key in mine], DIGITS[m]),
                        format_interval(*interval(pooled), DIGITS[m])]
            if baseline is not None:
                theirs = [(baseline, seed) for seed in seeds[0]]
                if name != baseline and all(same_trials(kept_of[a], kept_of[b], log) for a, b in zip(mine, theirs)):
                    diff = np.mean([points[a]["eer"] - points[b]["eer"] for a, b in zip(mine, theirs)])
                    lo, hi, p_better = paired_difference(pool_seeds([draws[b]["eer"] for b in theirs], POOL_SEED),
                                                         pool_seeds([draws[a]["eer"] for a in mine], POOL_SEED))
                    row += [f"{diff:+.2f}", format_interval(lo, hi, 2), f"{p_better:.3f}"]
                else:
                    row += ["-"] * 3
            rows[name].append(tuple(row))
    header = ["system", "back-end", "test set", "seeds"]
    for m in METRICS:
        label = FORMATS[m][0] + ("(%)" if m == "eer" else "")
        header += [f"{label} mean±sd", f"{FORMATS[m][0]} CI95"]
    if baseline is not None:
        header += [f"dEER vs {baseline}", "dEER CI95", "P(better)"]
    return tuple(header), [row for name in names for row in rows[name]]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="text file for the table")
    p.add_argument("--backends", default="plda,cosine", help="comma-separated back-ends")
    p.add_argument("--baseline", help="system (SYSTEM_DIR name) the others are compared with")
    p.add_argument("--ci", type=int, default=1000, metavar="N", help="bootstrap draws (default 1000)")
    p.add_argument("systems", nargs="+", help="system dirs, each with seed<N>/ experiments")
    args = p.parse_args(argv)
    if args.ci < 1:
        p.error("--ci needs at least 1 draw")
    try:
        header, rows = summarize(args.systems, args.backends.split(","), args.baseline, args.ci)
    except ValueError as e:
        p.exit(1, f"summarize_seeds: {e}\n")
    table = (f"# mean±sd over training seeds; CI95 = 95 % bootstrap interval of the seed mean ({args.ci} draws "
             f"over enrollment speakers and seeds)\n" + format_table(rows, header, left=(0, 1, 2)))
    with atomic_write(args.out) as f:
        f.write(table + "\n")
    print(table)
    print(f"table -> {args.out}")


if __name__ == "__main__":
    run_cli(main)
