#!/usr/bin/env python3
"""Calibrate verification scores into log-likelihood ratios (linear, prior-weighted logistic regression).

    python3 subtools/score/calibrate.py train --trials TRIALS --scores SCORES --out CAL [--p-target 0.01]
    python3 subtools/score/calibrate.py apply --model CAL --scores SCORES --out LLR_SCORES

``train`` fits ``llr = a * score + b`` on labelled trials (BOSARIS ``train_linear_calibration``: the
logistic regression cost with the targets weighted by ``p`` and the nontargets by ``1 - p``, ``p`` =
``--p-target``; see subtools/score/calibration.py), writes CAL (JSON: ``a``, ``b``, ``p_target``, the
trials it was trained on and its Cllr / minCllr / actDCF before and after) and prints those figures.
Calibrate on trials held out from the test lists (speakers of neither the training nor the test set),
as the built-in demo does with ``mini-dev``.

``apply`` writes the score file with every score replaced by its LLR (same pairs, same order).
The Bayes decision at target prior ``p`` is then ``target`` iff ``llr >= log((1 - p) / p)`` (4.595 at
p = 0.01).
"""
import argparse
import sys

from subtools.cli import run_cli
from subtools.score.calibration import LinearCalibration, fit_calibration, format_calibration_line
from subtools.score.compute_metrics import scored_trials
from subtools.score.trials import Trials, read_scores, read_trials, write_scores


def train(trials_path, scores_path, out, p_target=0.01, on_missing="stop", log=print):
    """Fit and save the calibration of ``scores_path`` on ``trials_path``; returns the LinearCalibration."""
    trials, scores = scored_trials(read_trials(trials_path, need_labels=True), scores_path, on_missing)
    cal, record = fit_calibration(scores, trials.labels, p_target, out, {"trials": trials_path, "scores": scores_path})
    log(f"llr = {cal.a:.6g} * score + {cal.b:.6g} (p_target {p_target:g}, {len(trials)} trials) -> {out}")
    log(f"before: {format_calibration_line(record['before'])}")
    log(f"after:  {format_calibration_line(record['after'])}")
    return cal


def apply(model, scores_path, out):
    """Write ``scores_path`` with each score mapped through the calibration in ``model``."""
    cal = LinearCalibration.load(model)
    table = read_scores(scores_path)
    if not table:
        raise ValueError(f"{scores_path}: no scores")
    pairs = list(table)
    write_scores(out, Trials([e for e, _ in pairs], [t for _, t in pairs]), cal.apply(list(table.values())))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="fit llr = a * score + b on labelled trials")
    t.add_argument("--trials", required=True, help="Kaldi trials with target/nontarget labels")
    t.add_argument("--scores", required=True, help="score file 'enroll test score' of those trials")
    t.add_argument("--out", required=True, help="calibration file to write (JSON)")
    t.add_argument("--p-target", type=float, default=0.01, help="effective target prior of the fit (default 0.01)")
    t.add_argument("--on-missing", choices=["stop", "skip"], default="stop",
                   help="trials without a score: stop (default) or leave them out")
    a = sub.add_parser("apply", help="map a score file to calibrated LLRs")
    a.add_argument("--model", required=True, help="calibration file written by 'train'")
    a.add_argument("--scores", required=True)
    a.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.command == "train":
        run_cli(train, args.trials, args.scores, args.out, args.p_target, args.on_missing)
    else:
        run_cli(apply, args.model, args.scores, args.out)


if __name__ == "__main__":
    sys.exit(main())
