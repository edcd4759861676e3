"""EER, minDCF(0.01), minDCF(0.001) of a score file against a Kaldi trials file (+ optional DET PNG
and bootstrap confidence intervals).

Usage::

    python3 subtools/score/compute_metrics.py --trials TRIALS --scores SCORES [--det out.png] \\
        [--ci 1000 [--ci-by speaker|trial] [--utt2spk FILE] [--seed 0]]

TRIALS: ``enroll test target|nontarget``; SCORES: ``enroll test score``. The last line printed is
``EER=<x>% minDCF(0.01)=<y> minDCF(0.001)=<z>`` (EER as Kaldi compute-eer, minDCF as Kaldi
sid/compute_min_dcf.py with c_miss = c_fa = 1). Trials without a score stop the run (count and
first trials named) unless ``--on-missing skip``.

Before it (and before the ``--ci`` lines), the calibration-sensitive figures of the scores read as
log-likelihood ratios: ``Cllr=<a> minCllr=<b> actDCF(0.01)=<c> actDCF(0.001)=<d>`` (Cllr in bits;
minCllr after the optimal monotone (PAV) calibration; actDCF at the Bayes threshold -logit(p); see
subtools/score/calibration.py and calibrate.py).

``--ci N`` adds, on the line before, ``CI95: EER=[lo,hi]% minDCF(0.01)=[lo,hi] minDCF(0.001)=[lo,hi]``:
95 % percentile intervals from N bootstrap draws (subtools/score/bootstrap.py) that resample the
enrollment speakers (default: a trial's speaker is ``utt2spk[enroll key]`` with ``--utt2spk``, else
the enroll key up to its first '-') or single trials (``--ci-by trial``), seeded by ``--seed``.
"""
import argparse
import sys

from subtools.cli import run_cli
from subtools.kaldi.fileio import read_table
from subtools.score.bootstrap import bootstrap_metrics, format_ci_line, resampling_units, system_draws
from subtools.score.calibration import calibration_metrics, format_calibration_line
from subtools.score.metrics import compute_all, format_line, labelled_scores, plot_det
from subtools.score.trials import read_scores, read_trials


def add_ci_options(parser, default_draws=None):
    """The bootstrap options shared by the scoring CLIs: --ci, --ci-by, --utt2spk, --seed."""
    parser.add_argument("--ci", type=int, default=default_draws, metavar="N",
                        help="bootstrap draws for 95 %% intervals" + (f" (default {default_draws})" if default_draws else ""))
    parser.add_argument("--ci-by", choices=["speaker", "trial"], default="speaker",
                        help="resampling unit (default: speaker of the enroll key)")
    parser.add_argument("--utt2spk", help="enroll key -> speaker for --ci-by speaker (default: key up to its first '-')")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def scored_trials(trials, score_path, on_missing="stop"):
    """``(kept Trials, scores [M'])``: the trials of ``trials`` that ``score_path`` scores (trials
    without a score: see :func:`metrics.labelled_scores`), and their scores in trial order."""
    table = read_scores(score_path)
    scores, _ = labelled_scores(trials, table, on_missing)
    if len(scores) == len(trials):
        return trials, scores
    return trials.subset([(e, t) in table for e, t in zip(trials.enroll, trials.test)]), scores


def ci_units(args, trials):
    """``(units [M], description)`` of the resampling chosen by the --ci-by/--utt2spk options."""
    utt2spk = read_table(args.utt2spk) if args.utt2spk else None
    units, n = resampling_units(trials.enroll, args.ci_by, utt2spk, trials.source)
    return units, f"bootstrap: {args.ci} draws resampling {n} {args.ci_by}s, seed {args.seed}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", required=True)
    p.add_argument("--scores", required=True)
    p.add_argument("--det", help="write a DET curve PNG here")
    p.add_argument("--name", default="system", help="legend name in the DET plot")
    p.add_argument("--on-missing", choices=["stop", "skip"], default="stop")
    add_ci_options(p)
    args = p.parse_args(argv)
    if args.ci is not None and args.ci < 1:
        p.error("--ci needs at least 1 draw")
    trials = read_trials(args.trials, need_labels=True)
    trials, scores = scored_trials(trials, args.scores, args.on_missing)
    labels = trials.labels
    m = compute_all(scores, labels)
    if args.det:
        plot_det([(args.name, scores, labels)], args.det, title=args.name)
        print(f"DET curve -> {args.det}")
    print(f"{m['trials']} trials ({m['targets']} target)")
    print(format_calibration_line(calibration_metrics(scores, labels)))
    if args.ci:
        try:
            units, about = ci_units(args, trials)
            draws = bootstrap_metrics([scores], labels, units, args.ci, args.seed)
        except ValueError as e:
            sys.exit(f"compute_metrics: {e}")
        print(about)
        print(format_ci_line(system_draws(draws, 0)))
    print(format_line(m))


if __name__ == "__main__":
    run_cli(main)
