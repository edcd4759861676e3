"""Command contracts of the back-end, run as subprocesses on generated embeddings.

* plda.py train/score + compute_metrics.py (last line format; a separable set has low EER);
  score --smoothing equals the library's smoothed model;
* missing trial keys: stop with the count and first keys, or skip by flag;
* a NaN vector stops training, naming the key;
* score_sets.py with speaker-keyed enrollment (SITW style);
* gather_results_sitw_voxceleb1.sh on a fake EXP (config.yaml + far_epoch_<E> sets): aligned table,
  .results file, DET PNG, skip message for a set without embeddings; AS-norm and cosine back-ends.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from subtools.kaldi.fileio import read_table, write_lines
from subtools.score.lda import compute_lda
from subtools.score.plda import Plda
from subtools.score.synthetic import random_model, random_trials, sample, write_set
from subtools.score.vectors import VectorSet, apply_affine, length_norm, load_vectors, save_vectors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS_LINE = re.compile(r"^EER=\d+\.\d+% minDCF\(0\.01\)=\d+\.\d+ minDCF\(0\.001\)=\d+\.\d+$")


def run(*args, ok=True):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def split_set(vs, utt2spk, n_enroll):
    """First ``n_enroll`` utterances of each speaker -> enroll, the rest -> test."""
    seen, enroll, test = {}, [], []
    for i, k in enumerate(vs.keys):
        spk = utt2spk[k]
        seen[spk] = seen.get(spk, 0) + 1
        (enroll if seen[spk] <= n_enroll else test).append(i)
    return vs.take(enroll), vs.take(test)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A train set, an utterance-trial test set and a speaker-enrolled (SITW-like) pair, dim 16."""
    d = tmp_path_factory.mktemp("backend")
    rng = np.random.default_rng(0)
    truth = random_model(rng, 16, between_scale=2.0, within_scale=0.5)
    sets = {}
    sets["train"] = sample(rng, truth, [6] * 60, "tr")
    sets["mini_test"] = sample(rng, truth, [4] * 15, "mt")
    vs, u2s = sample(rng, truth, [5] * 12, "sw")
    enr, tst = split_set(vs, u2s, 2)
    sets["sitw_enroll"] = (enr, {k: u2s[k] for k in enr.keys})
    sets["sitw_test"] = (tst, {k: u2s[k] for k in tst.keys})
    exp = d / "exp"
    emb = exp / "far_epoch_3"
    for name, (s, u) in sets.items():
        write_set(str(emb / name), s, u)
    mt, mu = sets["mini_test"]
    write_lines(d / "mini-O", random_trials(rng, mt.keys, mu, mt.keys, mu, 400))
    spk_of = {s: s for s in set(sets["sitw_enroll"][1].values())}
    write_lines(d / "sitw-core", random_trials(rng, sorted(spk_of), spk_of, tst.keys,
                                               sets["sitw_test"][1], 150))
    cfg = {"exp_dir": str(exp), "extract": {"epochs": [3]},
           "backend": {"plda_train_set": "train", "chain": "submean-lda-norm-plda", "lda_dim": 10,
                       "lda_total_covariance_factor": 0.0, "plda_iters": 10, "plda_smoothing": 0.0,
                       "cohort_set": "train", "asnorm_top_n": 20},
           "test_sets": [{"name": "mini-O", "enroll": "mini_test", "test": "mini_test",
                          "trials": str(d / "mini-O")},
                         {"name": "sitw_dev", "enroll": "sitw_enroll", "test": "sitw_test",
                          "trials": str(d / "sitw-core")},
                         {"name": "voxceleb1-E", "enroll": "voxceleb1", "test": "voxceleb1",
                          "trials": str(d / "absent")}]}
    (exp / "config").mkdir(parents=True)
    (exp / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return d, exp, emb


def test_plda_and_metrics_contracts(world, tmp_path):
    d, _, emb = world
    model = tmp_path / "plda.txt"
    run(sys.executable, "subtools/score/plda.py", "train", "--vectors", str(emb / "train/xvector.scp"),
        "--utt2spk", str(emb / "train/utt2spk"), "--out", str(model))
    assert model.read_text().startswith("<Plda>")
    scp = str(emb / "mini_test/xvector.scp")
    run(sys.executable, "subtools/score/plda.py", "score", "--model", str(model), "--enroll", scp,
        "--test", scp, "--trials", str(d / "mini-O"), "--out", str(tmp_path / "s"))
    lines = (tmp_path / "s").read_text().splitlines()
    assert len(lines) == 400 and len(lines[0].split()) == 3
    run(sys.executable, "subtools/score/plda.py", "score", "--model", str(model), "--enroll", scp, "--test",
        scp, "--trials", str(d / "mini-O"), "--out", str(tmp_path / "smoothed"), "--smoothing", "0.2")
    smoothed = Plda.load(model).smooth_within(0.2)
    vs = load_vectors(scp)
    pairs = [line.split() for line in lines]
    U = smoothed.transform(vs.X)
    ref = smoothed.score_pairs(U, 1, U, [vs.index[p[0]] for p in pairs], [vs.index[p[1]] for p in pairs])
    got = [float(line.split()[2]) for line in (tmp_path / "smoothed").read_text().splitlines()]
    assert np.allclose(got, ref, rtol=1e-6, atol=1e-5)                # scores written with 6 decimals
    assert not np.allclose(got, [float(p[2]) for p in pairs], atol=1e-3)
    det = tmp_path / "det.png"
    out = run(sys.executable, "subtools/score/compute_metrics.py", "--trials", str(d / "mini-O"),
              "--scores", str(tmp_path / "s"), "--det", str(det)).stdout.strip().splitlines()[-1]
    assert METRICS_LINE.match(out), out
    assert float(out.split("=")[1].rstrip("% minDCF(0.01)")) < 10.0
    assert det.read_bytes()[:4] == b"\x89PNG"
    both = run(sys.executable, "subtools/score/plot_det.py", "--out", str(tmp_path / "two.png"),
               "--system", f"A={tmp_path / 's'}:{d / 'mini-O'}",
               "--system", f"B={tmp_path / 's'}:{d / 'mini-O'}").stdout
    assert both.count("EER=") == 2 and (tmp_path / "two.png").exists()


def test_missing_keys_stop_or_skip(world, tmp_path):
    d, _, emb = world
    trials = tmp_path / "trials"
    good = (d / "mini-O").read_text().splitlines()[:10]
    write_lines(trials, good + ["ghost1 mt0000-utt00000 nontarget", "ghost2 mt0000-utt00001 target"])
    model = tmp_path / "plda.npz"
    run(sys.executable, "subtools/score/plda.py", "train", "--vectors", str(emb / "train/xvector.scp"),
        "--utt2spk", str(emb / "train/utt2spk"), "--out", str(model))
    scp = str(emb / "mini_test/xvector.scp")
    args = [sys.executable, "subtools/score/plda.py", "score", "--model", str(model), "--enroll", scp,
            "--test", scp, "--trials", str(trials), "--out", str(tmp_path / "s")]
    proc = run(*args, ok=False)
    assert proc.returncode != 0
    assert "2 of 12 trials name enroll keys absent" in proc.stderr and "ghost1, ghost2" in proc.stderr
    run(*args, "--on-missing", "skip")
    assert len((tmp_path / "s").read_text().splitlines()) == 10


def test_nan_vector_is_named(tmp_path):
    X = np.ones((4, 3))
    X[2, 1] = np.nan
    save_vectors(VectorSet(["a", "b", "bad-utt", "d"], X), str(tmp_path / "x.scp"))
    write_lines(tmp_path / "utt2spk", ["a s1", "b s1", "bad-utt s2", "d s2"])
    proc = run(sys.executable, "subtools/score/plda.py", "train", "--vectors", str(tmp_path / "x.scp"),
               "--utt2spk", str(tmp_path / "utt2spk"), "--out", str(tmp_path / "m.txt"), ok=False)
    assert proc.returncode != 0 and "NaN/inf, first: bad-utt" in proc.stderr


def test_vector_tool_clis_match_library(world, tmp_path):
    _, _, emb = world
    train = str(emb / "train")
    run(sys.executable, "subtools/score/lda.py", "--vectors", f"{train}/xvector.scp", "--utt2spk",
        f"{train}/utt2spk", "--dim", "10", "--out", str(tmp_path / "lda.mat"))
    run(sys.executable, "subtools/score/vectors.py", "transform", "--vectors", f"{train}/xvector.scp",
        "--matrix", str(tmp_path / "lda.mat"), "--out-scp", str(tmp_path / "lda.scp"))
    run(sys.executable, "subtools/score/vectors.py", "norm", "--vectors", str(tmp_path / "lda.scp"),
        "--out-scp", str(tmp_path / "norm.scp"))
    run(sys.executable, "subtools/score/vectors.py", "spk-mean", "--vectors", f"{train}/xvector.scp",
        "--spk2utt", f"{train}/spk2utt", "--out-scp", str(tmp_path / "spk.scp"),
        "--num-utts", str(tmp_path / "num_utts"))
    vs = load_vectors(f"{train}/xvector.scp")
    u2s = read_table(f"{train}/utt2spk")
    ref = length_norm(apply_affine(vs.X, compute_lda(vs.X, [u2s[k] for k in vs.keys], 10)))
    got = load_vectors(str(tmp_path / "norm.scp"))
    assert got.keys == vs.keys and np.allclose(got.X, ref, atol=1e-4)     # float32 arks
    spk = load_vectors(str(tmp_path / "spk.scp"))
    assert len(spk) == 60 and np.allclose(spk.X[0], vs.X[:6].mean(axis=0), atol=1e-5)
    assert read_table(tmp_path / "num_utts")[spk.keys[0]] == "6"


def test_score_sets_speaker_enrollment(world, tmp_path):
    d, _, emb = world
    out = run(sys.executable, "subtools/score/score_sets.py", "--chain", "submean-lda-norm-plda",
              "--lda-dim", "10", "--train-dir", str(emb / "train"), "--enroll-dir",
              str(emb / "sitw_enroll"), "--test-dir", str(emb / "sitw_test"), "--trials",
              str(d / "sitw-core"), "--scores", str(tmp_path / "s"),
              "--model-dir", str(tmp_path / "models")).stdout
    assert "scored 150 trials" in out and METRICS_LINE.match(out.strip().splitlines()[-1])
    assert (tmp_path / "models" / "plda.txt").exists() and (tmp_path / "models" / "step1_lda.mat").exists()


def test_gather_results_table(world):
    _, exp, emb = world
    script = "recipe/serialized-experiments/gather_results_sitw_voxceleb1.sh"
    for backend in ("plda", "cosine", "asnorm"):
        proc = run("bash", script, str(exp), "--backend", backend)
        out = proc.stdout
        assert "SKIP voxceleb1-E (epoch 3): embeddings missing" in out
        table = (exp / f"{backend}.results").read_text().splitlines()
        assert table[1].split()[:3] == ["epoch", "test", "set"]
        rows = {line.split()[1]: line.split() for line in table[2:]}
        assert set(rows) == {"mini-O", "sitw_dev"}
        assert rows["mini-O"][2] == "400" and rows["sitw_dev"][2] == "150"
        assert float(rows["sitw_dev"][3]) < 20.0
        assert len({len(line) for line in table[1:]}) == 1     # aligned columns
        assert "\n".join(table[1:]) in out
        assert (exp / f"det_{backend}_epoch3.png").exists()
        assert (emb / "scores" / backend / "sitw_dev.score").exists()
        if backend == "asnorm":      # shares the cosine chain's trained steps
            assert "reusing models" in out
    proc = run("bash", script, str(exp), "--epochs", "9", ok=False)
    assert proc.returncode != 0 and "SKIP epoch 9" in proc.stdout + proc.stderr
