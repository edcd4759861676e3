"""The demo's results table: every system x back-end x test set, with parameter counts and training time.

    python3 recipe/mini/summarize_results.py --out exp/mini_results.txt --det exp/mini_det.png \\
        --backends plda,cosine EXP1 EXP2 ...

Reads what the earlier stages left in each EXP: ``config/config.yaml`` (test sets, extracted epoch),
``config/model_info.yaml`` (parameter counts, written when training starts), ``log/train.csv``
(``elapsed_s`` = training wall time) and the score files of ``gather_results_sitw_voxceleb1.sh``
(``far_epoch_<E>/scores/<backend>/<set>.score``). Writes the table atomically and one DET plot with
every system on the first back-end's score files.
"""
import argparse
import csv
import os
import platform
import time

import yaml

from subtools.kaldi.fileio import atomic_write
from subtools.score.gather_results import format_table, resolve_path
from subtools.score.metrics import compute_all, labelled_scores, plot_det
from subtools.score.trials import read_scores, read_trials


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def training_minutes(exp):
    """Training wall time (minutes) from the last row of ``log/train.csv``."""
    with open(os.path.join(exp, "log", "train.csv")) as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["elapsed_s"]) / 60.0


def system_rows(exp, backends):
    """One row per (back-end, test set) of ``exp``: name, params, time, metrics; plus DET inputs."""
    config = read_yaml(os.path.join(exp, "config", "config.yaml"))
    info = read_yaml(os.path.join(exp, "config", "model_info.yaml"))
    epoch = config["extract"]["epochs"][-1]
    name = os.path.basename(os.path.normpath(exp))
    params = f"{info['num_params_without_loss'] / 1e6:.2f}M"
    minutes = f"{training_minutes(exp):.1f}"
    rows, curves = [], []
    for backend in backends:
        for test in config["test_sets"]:
            trials = read_trials(resolve_path(test["trials"]), need_labels=True)
            score_file = os.path.join(exp, f"far_epoch_{epoch}", "scores", backend, f"{test['name']}.score")
            scores, labels = labelled_scores(trials, read_scores(score_file), on_missing="skip")
            m = compute_all(scores, labels)
            rows.append((name, params, minutes, backend, test["name"], f"{m['eer']:.2f}",
                         f"{m['mindcf_0.01']:.4f}", f"{m['mindcf_0.001']:.4f}"))
            if backend == backends[0]:
                curves.append((f"{name} {test['name']}", scores, labels))
    return rows, curves


HEADER = ("system", "params", "train min", "back-end", "test set", "EER(%)", "minDCF(0.01)", "minDCF(0.001)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="text file for the table")
    p.add_argument("--det", required=True, help="PNG with the DET curves of every system")
    p.add_argument("--backends", default="plda,cosine", help="comma-separated back-ends (the first draws the DET)")
    p.add_argument("exps", nargs="+", help="experiment dirs")
    args = p.parse_args(argv)
    rows, curves = [], []
    for exp in args.exps:
        r, c = system_rows(exp, args.backends.split(","))
        rows += r
        curves += c
    stamp = (f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} CPU cores  "
             f"params = without the classifier; train min = wall time of launcher stage 3")
    table = stamp + "\n" + format_table(rows, HEADER, left=(0, 3, 4))
    with atomic_write(args.out) as f:
        f.write(table + "\n")
    plot_det(curves, args.det, title=f"built-in corpus ({args.backends.split(',')[0]})")
    print(table)
    print(f"table -> {args.out}, DET -> {args.det}")


if __name__ == "__main__":
    main()
