"""The demo's results table: every system x back-end x test set, with parameter counts, training time,
95 % intervals and a paired comparison with a baseline system.

    python3 recipe/mini/summarize_results.py --out exp/mini_results.txt --det exp/mini_det.png \\
        --backends plda,cosine [--baseline mini_xvector_stats] [--ci 1000] \\
        [--calibration SYSTEM:BACKEND=CAL ...] EXP1 EXP2 ...

Reads what the earlier stages left in each EXP: ``config/config.yaml`` (test sets, extracted epoch),
``config/model_info.yaml`` (parameter counts, written when training starts), ``log/train.csv``
(``elapsed_s`` = training wall time) and the score files of ``gather_results_sitw_voxceleb1.sh``
(``far_epoch_<E>/scores/<backend>/<set>.score``). Writes the table atomically and one DET plot with
every system on the first back-end's score files.

Columns after the point figures: their 95 % bootstrap intervals (``--ci`` draws resampling the
enrollment speakers, seed 0; subtools/score/bootstrap.py), then, with ``--baseline NAME`` (an EXP's
directory name), the EER difference system - baseline on the same back-end and list, its
paired-bootstrap 95 % interval (the same draws for both) and ``P(better)``, the fraction of draws in
which the system's EER is lower. Systems that did not score the same trials as the baseline get
``-`` there (with a warning naming the first differing trial).

With ``--calibration SYSTEM:BACKEND=CAL`` (a calibration file of calibrate.py, e.g. a model package's
``calibration.json``; repeatable), the last columns are calibration figures (subtools/score/calibration.py):
Cllr, minCllr and actDCF(0.01) of every row's scores read as LLRs, then Cllr and actDCF(0.01) after that
row's calibration (``-`` for the rows of other systems or back-ends).
"""
import argparse
import csv
import os
import platform
import time

import yaml

from subtools.cli import run_cli
from subtools.kaldi.fileio import atomic_write
from subtools.score.bootstrap import (bootstrap_metrics, format_interval, interval_cells, paired_difference,
                                      resampling_units, system_draws)
from subtools.score.calibration import LinearCalibration, calibration_metrics
from subtools.score.compute_metrics import scored_trials
from subtools.score.gather_results import format_table, resolve_path
from subtools.score.metrics import compute_all, plot_det
from subtools.score.trials import read_trials

CI_SEED = 0


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def training_minutes(exp):
    """Training wall time (minutes) from the last row of ``log/train.csv``."""
    with open(os.path.join(exp, "log", "train.csv")) as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["elapsed_s"]) / 60.0


def system_name(exp):
    return os.path.basename(os.path.normpath(exp))


def score_lists(exp, backends):
    """``[(backend, test set name, trials path, score path)]`` of ``exp``, back-end by back-end."""
    config = read_yaml(os.path.join(exp, "config", "config.yaml"))
    epoch = config["extract"]["epochs"][-1]
    return [(backend, test["name"], resolve_path(test["trials"]),
             os.path.join(exp, f"far_epoch_{epoch}", "scores", backend, f"{test['name']}.score"))
            for backend in backends for test in config["test_sets"]]


def first_difference(a, b):
    """The first trial (``enroll test``) in one of the Trials ``a``, ``b`` and not at that place in the other."""
    for i, pair in enumerate(zip(a.enroll, a.test)):
        if i >= len(b) or pair != (b.enroll[i], b.test[i]):
            return " ".join(pair)
    return f"{b.enroll[len(a)]} {b.test[len(a)]}"


def joint_draws(scored, n_draws, by="speaker"):
    """Bootstrap draws ``{metric: [B]}`` of each ``(kept Trials, scores)`` in ``scored`` (one trials
    file): the systems that scored the same trials are drawn together, so their draws are paired."""
    groups = {}
    for i, (kept, _) in enumerate(scored):
        groups.setdefault((tuple(kept.enroll), tuple(kept.test)), []).append(i)
    out = [None] * len(scored)
    for members in groups.values():
        kept = scored[members[0]][0]
        units, _ = resampling_units(kept.enroll, by, source=kept.source)
        draws = bootstrap_metrics([scored[i][1] for i in members], kept.labels, units, n_draws, CI_SEED)
        for j, i in enumerate(members):
            out[i] = system_draws(draws, j)
    return out


def same_trials(a, b, log=print):
    """Whether the Trials ``a`` and ``b`` list the same trials (else a warning naming the first difference)."""
    if a.enroll == b.enroll and a.test == b.test:
        return True
    log(f"WARNING: {a.source}: two systems scored different trials (first difference: "
        f"{first_difference(a, b)}); no comparison")
    return False


def comparison_cells(diff, base_draws, draws):
    """``dEER, dEER CI95, P(better)`` cells: point difference ``diff`` (EER %) and the paired draws."""
    lo, hi, p_better = paired_difference(base_draws, draws)
    return [f"{diff:+.2f}", format_interval(lo, hi, 2), f"{p_better:.3f}"]


def system_names(dirs):
    """The directory names of ``dirs`` (the systems' names in the tables), which must differ."""
    names = [system_name(d) for d in dirs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two systems share the directory name {twice[0]}")
    return names


def calibration_cells(scores, labels, calibration):
    """``Cllr, minCllr, actDCF(0.01)`` of the scores read as LLRs, then ``Cllr, actDCF(0.01)`` after
    ``calibration`` (``-`` without one)."""
    raw = calibration_metrics(scores, labels)
    cells = [f"{raw['cllr']:.4f}", f"{raw['min_cllr']:.4f}", f"{raw['act_dcf_0.01']:.4f}"]
    if calibration is None:
        return cells + ["-", "-"]
    cal = calibration_metrics(calibration.apply(scores), labels)
    return cells + [f"{cal['cllr']:.4f}", f"{cal['act_dcf_0.01']:.4f}"]


def summarize(exps, backends, baseline=None, n_draws=1000, log=print, calibrations=None):
    """``(header, rows, curves)``: the table's rows in EXP, back-end, test set order, and the DET inputs.
    ``calibrations``: ``{(system name, back-end): calibration file}`` for the calibration columns."""
    names = system_names(exps)
    if baseline is not None and baseline not in names:
        raise ValueError(f"--baseline {baseline} is none of the systems ({', '.join(names)})")
    for name, backend in calibrations or {}:
        if name not in names or backend not in backends:
            raise ValueError(f"--calibration {name}:{backend}: no such system ({', '.join(names)}) or back-end "
                             f"({', '.join(backends)})")
    calibrations = {key: LinearCalibration.load(path) for key, path in (calibrations or {}).items()} or None
    lists = [score_lists(exp, backends) for exp in exps]
    if len({tuple(entry[:3] for entry in one) for one in lists}) > 1:
        raise ValueError("the systems do not list the same test sets and trials files")
    prefix = {}
    for exp in exps:
        info = read_yaml(os.path.join(exp, "config", "model_info.yaml"))
        prefix[exp] = (system_name(exp), f"{info['num_params_without_loss'] / 1e6:.2f}M",
                       f"{training_minutes(exp):.1f}")
    cells = {}
    curves = []
    for j, (backend, test, trials_path, _) in enumerate(lists[0]):
        trials = read_trials(trials_path, need_labels=True)
        scored = [scored_trials(trials, one[j][3], on_missing="skip") for one in lists]
        draws = joint_draws(scored, n_draws)
        points = [compute_all(scores, kept.labels) for kept, scores in scored]
        for i, (exp, (kept, scores)) in enumerate(zip(exps, scored)):
            m = points[i]
            row = [backend, test, f"{m['eer']:.2f}", f"{m['mindcf_0.01']:.4f}", f"{m['mindcf_0.001']:.4f}",
                   *interval_cells(draws[i], digits=(2, 4, 4))]
            if baseline is not None:
                base = names.index(baseline)
                paired = i != base and same_trials(kept, scored[base][0], log)
                row += comparison_cells(m["eer"] - points[base]["eer"], draws[base]["eer"],
                                        draws[i]["eer"]) if paired else ["-"] * 3
            if calibrations is not None:
                row += calibration_cells(scores, kept.labels, calibrations.get((names[i], backend)))
            cells[exp, j] = row
            if backend == backends[0]:
                curves.append((f"{names[i]} {test}", scores, kept.labels))
    header = ["system", "params", "train min", "back-end", "test set", "EER(%)", "minDCF(0.01)", "minDCF(0.001)",
              "EER CI95", "minDCF(0.01) CI95", "minDCF(0.001) CI95"]
    if baseline is not None:
        header += [f"dEER vs {baseline}", "dEER CI95", "P(better)"]
    if calibrations is not None:
        header += ["Cllr", "minCllr", "actDCF(0.01)", "Cllr cal", "actDCF(0.01) cal"]
    rows = [prefix[exp] + tuple(cells[exp, j]) for exp in exps for j in range(len(lists[0]))]
    return tuple(header), rows, curves


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="text file for the table")
    p.add_argument("--det", required=True, help="PNG with the DET curves of every system")
    p.add_argument("--backends", default="plda,cosine", help="comma-separated back-ends (the first draws the DET)")
    p.add_argument("--baseline", help="system (EXP directory name) the others are compared with")
    p.add_argument("--ci", type=int, default=1000, metavar="N", help="bootstrap draws (default 1000)")
    p.add_argument("--calibration", action="append", default=[], metavar="SYSTEM:BACKEND=CAL",
                   help="calibration file of one system's back-end: adds the calibration columns (repeatable)")
    p.add_argument("exps", nargs="+", help="experiment dirs")
    args = p.parse_args(argv)
    if args.ci < 1:
        p.error("--ci needs at least 1 draw")
    backends = args.backends.split(",")
    calibrations = {}
    for item in args.calibration:
        key, _, path = item.partition("=")
        if key.count(":") != 1 or not path:
            p.error(f"--calibration {item}: expected SYSTEM:BACKEND=CAL")
        calibrations[tuple(key.split(":"))] = path
    try:
        header, rows, curves = summarize(args.exps, backends, args.baseline, args.ci, calibrations=calibrations)
    except ValueError as e:
        p.exit(1, f"summarize_results: {e}\n")
    stamp = (f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  {os.cpu_count()} CPU cores  "
             f"params = without the classifier; train min = wall time of launcher stage 3; "
             f"CI95 = 95 % bootstrap interval ({args.ci} draws over enrollment speakers, seed {CI_SEED})")
    table = stamp + "\n" + format_table(rows, header, left=(0, 3, 4))
    with atomic_write(args.out) as f:
        f.write(table + "\n")
    plot_det(curves, args.det, title=f"built-in corpus ({backends[0]})")
    print(table)
    print(f"table -> {args.out}, DET -> {args.det}")


if __name__ == "__main__":
    run_cli(main)
