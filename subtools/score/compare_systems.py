"""Paired comparison of two systems scored on the same trials: the EER and minDCF difference B - A
with its paired-bootstrap 95 % interval and the fraction of draws in which B beats A.

Usage::

    python3 subtools/score/compare_systems.py --trials TRIALS --scores A.score B.score \\
        [--ci 1000] [--ci-by speaker|trial] [--utt2spk FILE] [--seed 0]

Both score files must score every trial of TRIALS (the first trial one of them lacks is named
otherwise). Each bootstrap draw resamples the trials once (by enrollment speaker by default, see
compute_metrics.py) and scores both systems on that same draw, so the interval of B - A holds only
what the two systems do differently. "P(B<A)": fraction of draws in which B's figure is strictly
lower (better) than A's.
"""
import argparse
import sys

from subtools.cli import run_cli
from subtools.score.bootstrap import FORMATS, bootstrap_metrics, format_interval, interval, paired_difference
from subtools.score.compute_metrics import add_ci_options, ci_units, scored_trials
from subtools.score.gather_results import format_table
from subtools.score.metrics import compute_all
from subtools.score.trials import MissingVectorsError, read_trials

HEADER = ("metric", "A", "A CI95", "B", "B CI95", "B-A", "B-A CI95", "P(B<A)")


def compare(trials, score_paths, units, n_draws, seed):
    """Rows of the comparison table (strings) for the two score files ``score_paths``."""
    systems = []
    for path in score_paths:
        try:
            systems.append(scored_trials(trials, path, "stop")[1])
        except MissingVectorsError as e:   # other errors (a bad line, a repeated pair) name the file themselves
            raise ValueError(f"{path} does not score every trial: {e}") from None
    points = [compute_all(scores, trials.labels) for scores in systems]
    draws = bootstrap_metrics(systems, trials.labels, units, n_draws, seed)
    rows = []
    for m, (label, unit, digits) in FORMATS.items():
        a, b = draws[m]
        lo, hi, p_better = paired_difference(a, b)
        rows.append((f"{label}{'(%)' if unit else ''}", f"{points[0][m]:.{digits}f}",
                     format_interval(*interval(a), digits), f"{points[1][m]:.{digits}f}",
                     format_interval(*interval(b), digits), f"{points[1][m] - points[0][m]:+.{digits}f}",
                     format_interval(lo, hi, digits), f"{p_better:.3f}"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", required=True)
    p.add_argument("--scores", nargs=2, required=True, metavar=("A", "B"), help="score files of systems A and B")
    add_ci_options(p, default_draws=1000)
    args = p.parse_args(argv)
    if args.ci < 1:
        p.error("--ci needs at least 1 draw")
    try:
        trials = read_trials(args.trials, need_labels=True)
        units, about = ci_units(args, trials)
        rows = compare(trials, args.scores, units, args.ci, args.seed)
    except ValueError as e:
        sys.exit(f"compare_systems: {e}")
    print(f"A = {args.scores[0]}\nB = {args.scores[1]}")
    print(f"{len(trials)} trials ({int(trials.labels.sum())} target); {about}")
    print(format_table(rows, HEADER, left=(0,)))


if __name__ == "__main__":
    run_cli(main)
