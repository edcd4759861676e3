"""Command-line tables with intervals, on small synthetic score files (subtools/score/bootstrap.py
itself is checked in test_bootstrap.py):

* compute_metrics.py --ci: the CI95 line is the library's interval of the same draws, by enroll-key
  speaker or by an utt2spk; the last line keeps its contract;
* compare_systems.py: the B - A row equals the point figures' difference, its interval and P(B<A)
  equal those of the paired draws computed here; a score file lacking a trial is named with it;
* recipe/mini/summarize_results.py: the old columns come first, then the intervals; each system's
  dEER against the baseline is paired (same draws); a system that scored other trials gets '-';
* recipe/mini/summarize_seeds.py: mean ± sd over seeds equals numpy's on the per-seed figures, the
  interval of the seed mean and the pooled comparison equal pool_seeds on the draws computed here.
"""
import csv
import os
import re

import numpy as np
import pytest
import yaml

from recipe.mini import summarize_results, summarize_seeds
from subtools.kaldi.fileio import write_lines
from subtools.score import compare_systems, compute_metrics
from subtools.score.bootstrap import (bootstrap_metrics, format_ci_line, format_interval, interval,
                                      paired_difference, pool_seeds, resampling_units, system_draws)
from subtools.score.metrics import compute_all

SPEAKERS, UTTS = 12, 5


@pytest.fixture(scope="module")
def trials_file(tmp_path_factory):
    """All pairs of 12 speakers x 5 utterances (1770 trials, 120 targets), ``spkNN-uM`` keys."""
    utts = [f"spk{s:02d}-u{i}" for s in range(SPEAKERS) for i in range(UTTS)]
    lines = [f"{a} {b} {'target' if a[:5] == b[:5] else 'nontarget'}"
             for n, a in enumerate(utts) for b in utts[n + 1:]]
    path = tmp_path_factory.mktemp("trials") / "mini-O"
    write_lines(path, lines)
    return str(path)


def read_labels(trials_path):
    rows = [line.split() for line in open(trials_path)]
    return rows, np.array([r[2] == "target" for r in rows])


def write_scores(path, trials_path, separation, seed, drop=0):
    """Scores ``N(separation * target + speaker effect, 1)`` for the trials (minus the last ``drop``)."""
    rows, labels = read_labels(trials_path)
    rng = np.random.default_rng(seed)
    effect = rng.normal(scale=0.7, size=SPEAKERS)
    scores = rng.normal(size=len(rows)) + separation * labels + effect[[int(r[0][3:5]) for r in rows]]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_lines(path, [f"{e} {t} {s:.6f}" for (e, t, _), s in list(zip(rows, scores))[:len(rows) - drop]])
    return scores


def test_compute_metrics_ci_line(trials_file, tmp_path, capsys):
    scores = write_scores(str(tmp_path / "a.score"), trials_file, 2.0, seed=1)
    rows, labels = read_labels(trials_file)
    compute_metrics.main(["--trials", trials_file, "--scores", str(tmp_path / "a.score"), "--ci", "300", "--seed", "5"])
    out = capsys.readouterr().out.strip().splitlines()
    units, n = resampling_units([r[0] for r in rows])
    assert n == SPEAKERS
    assert out[-2] == format_ci_line(system_draws(bootstrap_metrics([scores], labels, units, 300, seed=5), 0))
    assert out[-3] == "bootstrap: 300 draws resampling 12 speakers, seed 5"
    assert re.fullmatch(r"EER=\d+\.\d+% minDCF\(0\.01\)=\d+\.\d+ minDCF\(0\.001\)=\d+\.\d+", out[-1])
    # an utt2spk that pairs the speakers: 6 units
    write_lines(tmp_path / "utt2spk", sorted({f"{r[0]} pair{int(r[0][3:5]) // 2}" for r in rows}))
    compute_metrics.main(["--trials", trials_file, "--scores", str(tmp_path / "a.score"), "--ci", "300",
                          "--seed", "5", "--utt2spk", str(tmp_path / "utt2spk")])
    out = capsys.readouterr().out.strip().splitlines()
    units = np.array([int(r[0][3:5]) // 2 for r in rows])
    assert out[-3].startswith("bootstrap: 300 draws resampling 6 speakers")
    assert out[-2] == format_ci_line(system_draws(bootstrap_metrics([scores], labels, units, 300, seed=5), 0))
    write_lines(tmp_path / "utt2spk", ["spk00-u0 s0"])
    with pytest.raises(SystemExit, match="enroll keys are not in the utt2spk, first: spk00-u1"):
        compute_metrics.main(["--trials", trials_file, "--scores", str(tmp_path / "a.score"), "--ci", "10",
                              "--utt2spk", str(tmp_path / "utt2spk")])


def test_compare_systems_table(trials_file, tmp_path, capsys):
    a = write_scores(str(tmp_path / "a.score"), trials_file, 2.0, seed=1)
    b = write_scores(str(tmp_path / "b.score"), trials_file, 2.6, seed=2)
    rows, labels = read_labels(trials_file)
    a, b = np.round(a, 6), np.round(b, 6)                 # as written
    compare_systems.main(["--trials", trials_file, "--scores", str(tmp_path / "a.score"),
                          str(tmp_path / "b.score"), "--ci", "400"])
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "1770 trials (120 target); bootstrap: 400 draws resampling 12 speakers, seed 0"
    table = {line.split()[0]: line.split() for line in out[4:]}
    draws = bootstrap_metrics([a, b], labels, resampling_units([r[0] for r in rows])[0], 400, seed=0)
    pa, pb = compute_all(a, labels), compute_all(b, labels)
    for key, m in (("EER(%)", "eer"), ("minDCF(0.01)", "mindcf_0.01"), ("minDCF(0.001)", "mindcf_0.001")):
        lo, hi, p_better = paired_difference(draws[m][0], draws[m][1])
        assert table[key][1:] == [f"{pa[m]:.4f}", format_interval(*interval(draws[m][0]), 4), f"{pb[m]:.4f}",
                                  format_interval(*interval(draws[m][1]), 4), f"{pb[m] - pa[m]:+.4f}",
                                  format_interval(lo, hi, 4), f"{p_better:.3f}"]
    assert float(table["EER(%)"][5]) < 0 and float(table["EER(%)"][7]) > 0.9      # B separates better
    write_scores(str(tmp_path / "c.score"), trials_file, 2.0, seed=3, drop=2)
    with pytest.raises(SystemExit, match=r"c.score does not score every trial: .*2 of 1770 trials have no "
                                         r"score, first: spk11-u2 spk11-u4, spk11-u3 spk11-u4"):
        compare_systems.main(["--trials", trials_file, "--scores", str(tmp_path / "a.score"),
                              str(tmp_path / "c.score")])


def fake_exp(exp, trials_file, separation, seed, drop=0):
    """An experiment dir as the demo leaves it: config, model info, train log, plda/cosine score files."""
    os.makedirs(os.path.join(exp, "config"))
    os.makedirs(os.path.join(exp, "log"))
    with open(os.path.join(exp, "config", "config.yaml"), "w") as f:
        yaml.safe_dump({"extract": {"epochs": [2]}, "test_sets": [
            {"name": "mini-O", "enroll": "t", "test": "t", "trials": trials_file}]}, f)
    with open(os.path.join(exp, "config", "model_info.yaml"), "w") as f:
        yaml.safe_dump({"num_params_without_loss": 360000}, f)
    with open(os.path.join(exp, "log", "train.csv"), "w") as f:
        csv.writer(f).writerows([["epoch", "elapsed_s"], [2, 150.0]])
    return {backend: write_scores(os.path.join(exp, "far_epoch_2", "scores", backend, "mini-O.score"),
                                  trials_file, separation + shift, seed + k, drop)
            for k, (backend, shift) in enumerate((("plda", 0.5), ("cosine", 0.0)))}


def test_summarize_results_columns_and_baseline(trials_file, tmp_path):
    _, labels = read_labels(trials_file)
    units = resampling_units([line.split()[0] for line in open(trials_file)])[0]
    exps = [str(tmp_path / name) for name in ("serialized", "stats", "short")]
    scores = [fake_exp(exps[0], trials_file, 2.4, 10), fake_exp(exps[1], trials_file, 2.0, 20),
              fake_exp(exps[2], trials_file, 2.0, 30, drop=1)]
    warnings = []
    header, rows, _ = summarize_results.summarize(exps, ["plda", "cosine"], "stats", n_draws=200,
                                                  log=warnings.append)
    assert header[:8] == ("system", "params", "train min", "back-end", "test set", "EER(%)", "minDCF(0.01)",
                          "minDCF(0.001)")
    assert header[8:] == ("EER CI95", "minDCF(0.01) CI95", "minDCF(0.001) CI95", "dEER vs stats", "dEER CI95",
                          "P(better)")
    assert [r[:5] for r in rows[:2]] == [("serialized", "0.36M", "2.5", "plda", "mini-O"),
                                         ("serialized", "0.36M", "2.5", "cosine", "mini-O")]
    for j, backend in enumerate(("plda", "cosine")):
        a, b = np.round(scores[0][backend], 6), np.round(scores[1][backend], 6)
        draws = bootstrap_metrics([a, b], labels, units, 200, seed=0)
        lo, hi, p_better = paired_difference(draws["eer"][1], draws["eer"][0])
        diff = compute_all(a, labels)["eer"] - compute_all(b, labels)["eer"]
        assert rows[j][8] == format_interval(*interval(draws["eer"][0]), 2)
        assert rows[j][11:] == (f"{diff:+.2f}", format_interval(lo, hi, 2), f"{p_better:.3f}")
        assert rows[2 + j][11:] == ("-", "-", "-")                      # the baseline itself
        assert rows[4 + j][11:] == ("-", "-", "-")                      # scored one trial less
    assert len(warnings) == 2 and "first difference: spk11-u3 spk11-u4" in warnings[0]
    with pytest.raises(ValueError, match="--baseline xvector is none of the systems"):
        summarize_results.summarize(exps, ["plda"], "xvector")
    with pytest.raises(ValueError, match="two systems share the directory name stats"):
        summarize_results.summarize(exps + [exps[1] + "/"], ["plda"])


def test_summarize_seeds_means_and_pooled_comparison(trials_file, tmp_path):
    _, labels = read_labels(trials_file)
    units = resampling_units([line.split()[0] for line in open(trials_file)])[0]
    seeds = (1024, 1025, 1026)
    scores = {name: [np.round(fake_exp(str(tmp_path / name / f"seed{s}"), trials_file, sep, s)["plda"], 6)
                     for s in seeds] for name, sep in (("stats", 2.0), ("serialized", 2.3))}
    header, rows = summarize_seeds.summarize([str(tmp_path / "serialized"), str(tmp_path / "stats")], ["plda"],
                                             "stats", n_draws=200)
    assert header[:6] == ("system", "back-end", "test set", "seeds", "EER(%) mean±sd", "EER CI95")
    assert [r[:4] for r in rows] == [("serialized", "plda", "mini-O", "3"), ("stats", "plda", "mini-O", "3")]
    draws = bootstrap_metrics(scores["serialized"] + scores["stats"], labels, units, 200, seed=0)
    eers = {name: [compute_all(s, labels)["eer"] for s in scores[name]] for name in scores}
    mine, base = draws["eer"][:3], draws["eer"][3:]
    assert rows[0][4] == f"{np.mean(eers['serialized']):.2f}±{np.std(eers['serialized'], ddof=1):.2f}"
    assert rows[0][5] == format_interval(*interval(pool_seeds(mine)), 2)
    lo, hi, p_better = paired_difference(pool_seeds(base), pool_seeds(mine))
    diff = np.mean(eers["serialized"]) - np.mean(eers["stats"])
    assert rows[0][-3:] == (f"{diff:+.2f}", format_interval(lo, hi, 2), f"{p_better:.3f}")
    assert rows[1][-3:] == ("-", "-", "-")
    os.rename(tmp_path / "stats" / "seed1026", tmp_path / "stats" / "seed7")
    with pytest.raises(ValueError, match=r"not trained with the same seeds: serialized: \[1024, 1025, 1026\]; "
                                         r"stats: \[7, 1024, 1025\]"):
        summarize_seeds.summarize([str(tmp_path / "serialized"), str(tmp_path / "stats")], ["plda"])
