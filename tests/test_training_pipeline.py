"""Launcher stages 0-4 on synthetic features, restartability, and the extraction CLI vs direct model calls."""
import math
import os
import shutil
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from subtools.kaldi.cmvn import sliding_cmn
from subtools.kaldi.fileio import read_table
from subtools.pytorch.launcher.stages import main
from subtools.pytorch.libs.support.synthetic import make_feature_dir
from subtools.pytorch.libs.training.checkpoint import load_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CHUNK = 300


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("pipeline")
    data = root / "data"
    make_feature_dir(str(data / "train"), num_spks=6, utts_per_spk=5, num_frames=(180, 400), dim=20, seed=1)
    feats = make_feature_dir(str(data / "test"), num_spks=3, utts_per_spk=2, num_frames=(40, 700), dim=20,
                             seed=2)
    silent = sorted(feats)[0]
    vads = {u: np.array(kaldiio.load_mat(v)) for u, v in read_table(data / "test" / "vad.scp").items()}
    vads[silent][:] = 0
    with kaldiio.WriteHelper(f"ark,scp:{data}/test/vad2.ark,{data}/test/vad.scp") as w:
        for utt in sorted(vads):
            w(utt, vads[utt])
    config = {
        "exp_dir": str(root / "exp"), "data_root": str(data), "train_set": "train",
        "stage0": {"nj": 1}, "stage1": {"min_frames": 200, "min_utts": 3},
        "egs": {"chunk_size": 100, "valid_spks": 3},
        "model": {"blueprint": "subtools/pytorch/model/xvector.py", "class": "Xvector",
                  "params": {"channels": [32, 32, 32, 32, 64], "embd_dim": 32}},
        "optimizer": {"lr": 0.05},
        "training": {"epochs": 2, "batch_size": 16, "num_workers": 0, "progress_bar": False},
        "extract": {"nj": 1, "max_chunk_frames": MAX_CHUNK},
        "backend": {"plda_train_set": "train", "cohort_set": "train"},
        "test_sets": [{"name": "t", "enroll": "test", "test": "test", "trials": "unused"}],
    }
    (root / "exp.yaml").write_text(yaml.safe_dump(config))
    assert main(["--config", str(root / "exp.yaml"), "--set", "training.report_interval=4"]) == 0
    return root, silent


def test_stages_write_the_experiment(experiment):
    root, silent = experiment
    exp = root / "exp"
    for name in ("config.yaml", "blueprint.py", "nnet.config", "params.dict"):
        assert (exp / "config" / name).exists(), name
    assert yaml.safe_load((exp / "config" / "config.yaml").read_text())["training"]["report_interval"] == 4
    assert (exp / "config" / "blueprint.py").read_text() == open(f"{REPO}/subtools/pytorch/model/xvector.py").read()
    assert (exp / "2.params").exists()
    kept = read_table(root / "data" / "train_nosil_filtered" / "utt2num_frames")
    assert kept and all(int(n) >= 200 for n in kept.values())
    test_dir = exp / "far_epoch_2" / "test"
    vectors = read_table(test_dir / "xvector.scp")
    utts = set(read_table(root / "data" / "test" / "utt2spk"))
    assert set(vectors) == utts - {silent}
    assert (test_dir / "skipped").read_text().startswith(f"{silent} 0 voiced frames")
    assert set(read_table(test_dir / "utt2spk")) == set(vectors)
    assert (exp / "far_epoch_2" / "train" / "xvector.scp").exists()


def test_rerun_skips_complete_stages(experiment):
    root, _ = experiment
    exp = root / "exp"
    stamps = {p: os.path.getmtime(p) for p in [exp / "2.params", exp / "far_epoch_2" / "test" / "xvector.scp",
                                              exp / "egs" / "train.egs.csv",
                                              root / "data" / "train_nosil" / "feats.scp"]}
    main(["--config", str(root / "exp.yaml"), "--set", "training.report_interval=4"])
    assert {p: os.path.getmtime(p) for p in stamps} == stamps


def test_extract_cli_matches_direct_model_call(experiment):
    root, silent = experiment
    out = root / "cli_out"
    subprocess.run([sys.executable, f"{REPO}/subtools/pytorch/pipeline/extract_embeddings.py",
                    "--model-dir", str(root / "exp"), "--epoch", "2", "--nj", "2",
                    "--max-chunk-frames", str(MAX_CHUNK), str(root / "data" / "test"), str(out)],
                   check=True, cwd=REPO)
    model = load_model(str(root / "exp"), 2)
    feats = read_table(root / "data" / "test" / "feats.scp")
    vads = read_table(root / "data" / "test" / "vad.scp")
    got = {u: kaldiio.load_mat(v) for u, v in read_table(out / "xvector.scp").items()}
    assert silent not in got and len(got) == len(feats) - 1
    longest = 0
    for utt, vec in got.items():
        x = sliding_cmn(kaldiio.load_mat(feats[utt]), window=300)[kaldiio.load_mat(vads[utt]) > 0.5]
        longest = max(longest, len(x))
        n = math.ceil(len(x) / MAX_CHUNK)                      # ASV-subtools: n-1 chunks of T // n, rest last
        pieces = [x[k * (len(x) // n):(k + 1) * (len(x) // n)] for k in range(n - 1)] + [x[(n - 1) * (len(x) // n):]]
        with torch.no_grad():
            embs = [model.extract_embedding(torch.from_numpy(p.T.copy())[None], "far")[0].numpy() for p in pieces]
        expected = sum(len(p) * e for p, e in zip(pieces, embs)) / len(x)
        np.testing.assert_allclose(vec, expected, rtol=1e-4, atol=1e-5)
    assert longest > MAX_CHUNK                                  # the chunked path was exercised
    assert sorted(read_table(out / "spk2utt")) == sorted(read_table(root / "exp" / "far_epoch_2" / "test" / "spk2utt"))


def test_tiny_corpus_training_learns_speakers(tiny_corpus, tmp_path):
    """Real pipeline on the built-in tiny corpus: fbank + VAD, launcher stages 0-3, accuracy >> chance."""
    torch.set_num_threads(2)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copytree(tiny_corpus.train, data / "mini_train")
    for cmd in (["subtools/make_features.py", "--nj", "2", "--conf", "conf/fbank.conf", "fbank"],
                ["subtools/compute_vad.py", "--conf", "conf/vad.conf"]):
        subprocess.run([sys.executable, *cmd, str(data / "mini_train")], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
    num_spks = len(read_table(data / "mini_train" / "spk2utt"))
    config = {
        "exp_dir": str(tmp_path / "exp"), "data_root": str(data), "train_set": "mini_train",
        "stage0": {"nj": 2}, "stage1": {"min_frames": 100, "min_utts": 2},
        "egs": {"chunk_size": 100, "valid_spks": 4, "chunk_num": 40},
        "model": {"blueprint": "subtools/pytorch/model/xvector.py", "class": "Xvector",
                  "params": {"channels": [64, 64, 64, 64, 128], "embd_dim": 64}},
        "optimizer": {"lr": 0.05},
        "training": {"epochs": 4, "batch_size": 16, "num_workers": 0, "progress_bar": False,
                     "report_interval": 10},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    main(["--config", str(tmp_path / "exp.yaml"), "--endstage", "3"])
    rows = [r.split(",") for r in (tmp_path / "exp" / "log" / "train.csv").read_text().splitlines()[1:]]
    chance = 1 / num_spks
    assert float(rows[-1][4]) > max(0.6, 4 * chance) and float(rows[-1][4]) > float(rows[0][4]), rows
    assert float(rows[-1][5]) >= 2 * chance, rows[-1]                  # 8 validation chunks only


def test_same_seed_gives_identical_embeddings(experiment):
    """Determinism: a second experiment from the same config (own egs, own training) gives the same
    checkpoint and bit-identical embeddings."""
    root, _ = experiment
    exp2 = root / "exp_again"
    assert main(["--config", str(root / "exp.yaml"), "--set", "training.report_interval=4",
                 "--set", f"exp_dir={exp2}"]) == 0
    first = torch.load(root / "exp" / "2.params", weights_only=True)["model"]
    second = torch.load(exp2 / "2.params", weights_only=True)["model"]
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    for name in ("test", "train"):
        a = {u: kaldiio.load_mat(v) for u, v in read_table(root / "exp" / "far_epoch_2" / name / "xvector.scp").items()}
        b = {u: kaldiio.load_mat(v) for u, v in read_table(exp2 / "far_epoch_2" / name / "xvector.scp").items()}
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[u], b[u]) for u in a), name


def test_train_stage_0_discards_an_old_runs_checkpoints(experiment):
    """--train-stage 0 over an existing experiment: checkpoints of the old run cannot leak into a resume."""
    root, _ = experiment
    exp3 = root / "exp_restart"
    shutil.copytree(root / "exp", exp3)
    (exp3 / "7.params").write_bytes((exp3 / "2.params").read_bytes())
    assert main(["--config", str(root / "exp.yaml"), "--set", f"exp_dir={exp3}", "--stage", "3",
                 "--endstage", "3", "--train-stage", "0"]) == 0
    assert sorted(p.name for p in exp3.glob("*.params")) == ["1.params", "2.params"]
