"""Draw the DET curves of several systems on the same axes (e.g. models of different EXP dirs).

Usage::

    python3 subtools/score/plot_det.py --out det.png [--title T] \\
        --system NAME=SCORES:TRIALS [--system NAME2=SCORES2:TRIALS2 ...]

Each SCORES file holds ``enroll test score`` lines, each TRIALS file ``enroll test target|nontarget``.
Prints the metrics line of each system; trials without a score stop the run (``--on-missing skip``
leaves them out).
"""
import argparse

from subtools.cli import run_cli
from subtools.score.metrics import compute_all, format_line, labelled_scores, plot_det
from subtools.score.trials import read_scores, read_trials


def parse_system(spec):
    """``NAME=SCORES:TRIALS`` -> (name, scores, trials)."""
    name, sep, rest = spec.partition("=")
    scores, sep2, trials = rest.rpartition(":")
    if not (sep and sep2 and name and scores and trials):
        raise argparse.ArgumentTypeError(f"--system '{spec}': expected NAME=SCORES:TRIALS")
    return name, scores, trials


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--title", default="DET")
    p.add_argument("--system", action="append", type=parse_system, required=True,
                   help="NAME=SCORES:TRIALS (repeat for each system)")
    p.add_argument("--on-missing", choices=["stop", "skip"], default="stop")
    args = p.parse_args(argv)
    systems = []
    for name, scores_path, trials_path in args.system:
        trials = read_trials(trials_path, need_labels=True)
        scores, labels = labelled_scores(trials, read_scores(scores_path), args.on_missing)
        print(f"{name}: {format_line(compute_all(scores, labels))}")
        systems.append((name, scores, labels))
    plot_det(systems, args.out, args.title)
    print(f"DET curves of {len(systems)} system(s) -> {args.out}")


if __name__ == "__main__":
    run_cli(main)
