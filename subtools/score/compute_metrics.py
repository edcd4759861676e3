"""EER, minDCF(0.01), minDCF(0.001) of a score file against a Kaldi trials file (+ optional DET PNG).

Usage::

    python3 subtools/score/compute_metrics.py --trials TRIALS --scores SCORES [--det out.png]

TRIALS: ``enroll test target|nontarget``; SCORES: ``enroll test score``. The last line printed is
``EER=<x>% minDCF(0.01)=<y> minDCF(0.001)=<z>`` (EER as Kaldi compute-eer, minDCF as Kaldi
sid/compute_min_dcf.py with c_miss = c_fa = 1). Trials without a score stop the run (count and
first trials named) unless ``--on-missing skip``.
"""
import argparse

from subtools.score.metrics import compute_all, format_line, labelled_scores, plot_det
from subtools.score.trials import read_scores, read_trials


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", required=True)
    p.add_argument("--scores", required=True)
    p.add_argument("--det", help="write a DET curve PNG here")
    p.add_argument("--name", default="system", help="legend name in the DET plot")
    p.add_argument("--on-missing", choices=["stop", "skip"], default="stop")
    args = p.parse_args(argv)
    trials = read_trials(args.trials, need_labels=True)
    scores, labels = labelled_scores(trials, read_scores(args.scores), args.on_missing)
    m = compute_all(scores, labels)
    if args.det:
        plot_det([(args.name, scores, labels)], args.det, title=args.name)
        print(f"DET curve -> {args.det}")
    print(f"{m['trials']} trials ({m['targets']} target)")
    print(format_line(m))


if __name__ == "__main__":
    main()
