"""The real-data recipe, end to end, on the built-in corpus laid out as VoxCeleb1/2 + SITW trees
(recipe/voxceleb/local/make_fake_corpora.py): prepare.sh stages 0-3, then the paper's recipe script
with the shipped conf/serialized-tdnn-xvector.yaml, changed only in paths and sizes (data_root,
exp_dir, epochs, batch, jobs), then gather_results_sitw_voxceleb1.sh. Checks that the set names,
trials paths and stages the configs expect are the ones prepare.sh writes: the "no edits" contract
of the VoxCeleb recipe."""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from subtools.score.metrics import compute_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, cwd=REPO):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd[:2]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_voxceleb_recipe_dry_run(tiny_corpus, tmp_path):
    corpora, data, exp = tmp_path / "corpora", tmp_path / "data", tmp_path / "exp"
    _run([sys.executable, "recipe/voxceleb/local/make_fake_corpora.py", "--mini-data", tiny_corpus.data_dir, corpora])
    out = _run(["bash", "recipe/voxceleb/prepare.sh", "--vox1", corpora / "voxceleb1", "--vox2", corpora / "voxceleb2",
                "--sitw", corpora / "sitw", "--musan", os.path.join(tiny_corpus.corpus_dir, "musan"),
                "--rirs", os.path.join(tiny_corpus.corpus_dir, "RIRS_NOISES"), "--data", data, "--nj", "2"])
    assert f"{data}/voxceleb2_dev_aug: 8 speakers, 96 utterances" in out      # 8 x 6 clean + 48 copies
    assert f"{data}/sitw_dev_test" in out and "trials/core-core.lst: 12 trials (6 target, 6 nontarget)" in out

    _run([sys.executable, "recipe/serialized-experiments/runSerialized-tdnn-xvector.py",
          "--set", f"data_root={data}", "--set", f"exp_dir={exp}", "--set", f"egs.dir={tmp_path / 'egs'}",
          "--set", "training.epochs=1", "--set", "training.batch_size=32", "--set", "training.num_workers=0",
          "--set", "training.progress_bar=false", "--set", "stage0.nj=2", "--set", "extract.nj=1"])
    assert os.path.isfile(exp / "1.params")
    # 48 PLDA-training vectors cannot fit a 256-dim LDA/PLDA; the cosine chain scores every test set
    _run(["bash", "recipe/serialized-experiments/gather_results_sitw_voxceleb1.sh", exp, "--backend", "cosine"])
    with open(exp / "cosine.results") as f:
        rows = {fields[1]: fields for fields in (line.split() for line in f) if fields and fields[0] == "1"}
    expected_trials = {"sitw_dev": 12, "sitw_eval": 12, "voxceleb1-E-clean": 120, "voxceleb1-H-clean": 56,
                       "voxceleb1-O": 120, "voxceleb1-E": 120, "voxceleb1-H": 56}
    assert {name: int(rows[name][2]) for name in rows} == expected_trials
    # every row against its own trials list and score file: the trial count is the list's line count and
    # EER / minDCF are those of the written scores (to the printed precision)
    config = yaml.safe_load((exp / "config" / "config.yaml").read_text())
    lists = {t["name"]: t["trials"] for t in config["test_sets"]}
    assert set(lists) == set(expected_trials)
    for name, path in lists.items():
        with open(path) as f:
            trials = {tuple(line.split()[:2]): line.split()[2] == "target" for line in f if line.strip()}
        with open(exp / "far_epoch_1" / "scores" / "cosine" / f"{name}.score") as f:
            scored = {tuple(line.split()[:2]): float(line.split()[2]) for line in f}
        assert int(rows[name][2]) == len(trials) == len(scored) and scored.keys() == trials.keys()
        m = compute_all(np.array([scored[k] for k in trials]), np.array(list(trials.values())))
        for printed, value in zip(rows[name][3:6], (m["eer"], m["mindcf_0.01"], m["mindcf_0.001"])):
            assert float(printed) == pytest.approx(value, abs=0.51 * 10 ** -len(printed.split(".")[1])), name
    # one epoch on 8 speakers is barely trained: this run gave 37.5 % on voxceleb1-O (chance: 50 %)
    assert float(rows["voxceleb1-O"][3]) < 45.0
