"""Fine-tuning (training.init_from / --init-from) and checkpoint averaging (average_checkpoints.py, the epoch
name avg): weights loaded and classifier shapes checked against the checkpoints themselves, a resumed
fine-tuning against the uninterrupted one, the average against the arithmetic mean computed in numpy, and
extraction of avg against the model built from those mean weights."""
import hashlib
import logging
import os
import shutil
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from subtools.kaldi.fileio import read_table
from subtools.pytorch.launcher.config import config_diff, load_config, resolve
from subtools.pytorch.launcher.stages import main
from subtools.pytorch.libs.nnet.framework import load_blueprint
from subtools.pytorch.libs.support.synthetic import make_feature_dir
from subtools.pytorch.libs.support.utils import set_seed
from subtools.pytorch.libs.training.checkpoint import (build_model, init_weights_from, load_checkpoint, parse_epoch,
                                                       promote_pending_run)
from subtools.pytorch.pipeline.average_checkpoints import average_checkpoints
from test_reliability_launcher import direct_embeddings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIPELINE = os.path.join(REPO, "subtools", "pytorch", "pipeline")
CHANNELS = [16, 16, 16, 16, 32]


def write_config(path, root, exp, train_set="train", **changes):
    """A tiny x-vector experiment on the synthetic data of ``root`` (softmax loss unless changed)."""
    config = {
        "exp_dir": str(exp), "data_root": str(root / "data"), "train_set": train_set,
        "stage0": {"nj": 1}, "stage1": {"min_frames": 150, "min_utts": 3},
        "egs": {"dir": str(root / f"egs_{train_set}"), "chunk_size": 100, "valid_spks": 2},
        "model": {"blueprint": "subtools/pytorch/model/xvector.py", "class": "Xvector",
                  "params": {"channels": CHANNELS, "embd_dim": 16}},
        "optimizer": {"lr": 0.05},
        "training": {"epochs": 3, "batch_size": 16, "num_workers": 0, "progress_bar": False, "seed": 5},
        "extract": {"nj": 1},
        "backend": {"plda_train_set": "train", "cohort_set": "train"},
        "test_sets": [{"name": "t", "enroll": "test", "test": "test", "trials": "unused"}],
    }
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A trained base experiment (3 epochs, softmax, 6 speakers) and data: ``train`` (the base's 6 speakers),
    ``other`` (4 other speakers), ``test``."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("finetune")
    make_feature_dir(str(root / "data" / "train"), num_spks=6, utts_per_spk=5, num_frames=(160, 300), dim=12, seed=1)
    make_feature_dir(str(root / "data" / "other"), num_spks=4, utts_per_spk=5, num_frames=(160, 300), dim=12, seed=3)
    make_feature_dir(str(root / "data" / "test"), num_spks=3, utts_per_spk=2, num_frames=(60, 200), dim=12, seed=2)
    assert main(["--config", write_config(root / "base.yaml", root, root / "base"), "--endstage", "3"]) == 0
    return root


def model_state(path):
    return load_checkpoint(str(path))["model"]


def xvector(**params):
    cls = load_blueprint(os.path.join(REPO, "subtools/pytorch/model/xvector.py"), "Xvector")
    return cls(12, params.pop("num_targets", 6), **{"channels": CHANNELS, "embd_dim": 16, **params})


def test_init_from_loads_the_weights_and_reinitialises_a_classifier_of_other_speakers(base, tmp_path, caplog):
    """lr 0: after one epoch the parameters are still the loaded ones, so they can be compared directly."""
    caplog.set_level(logging.INFO)
    source = base / "base" / "3.params"
    exp = tmp_path / "ft"
    config = write_config(tmp_path / "ft.yaml", base, exp, train_set="other", optimizer={"lr": 0.0},
                          training={"epochs": 1})
    assert main(["--config", config, "--endstage", "3", "--init-from", str(source)]) == 0
    loaded, before = model_state(exp / "1.params"), model_state(source)
    params = [name for name, _ in build_model(str(exp)).named_parameters()]
    body = [name for name in params if not name.startswith("loss.")]
    assert len(body) > 10
    for name in body:
        assert torch.equal(loaded[name], before[name]), name
    set_seed(5)                                     # training.seed: the fresh model train() built
    fresh = build_model(str(exp)).state_dict()
    assert before["loss.affine.weight"].shape == (6, 16)
    assert loaded["loss.affine.weight"].shape == (4, 16)
    assert torch.equal(loaded["loss.affine.weight"], fresh["loss.affine.weight"])
    assert torch.equal(loaded["loss.affine.bias"], fresh["loss.affine.bias"])
    record = yaml.safe_load((exp / "config" / "init_from.yaml").read_text())
    assert record["sha1"] == hashlib.sha1(source.read_bytes()).hexdigest()
    assert record["checkpoint"] == str(source)
    assert "re-initialised" in record["classifier"] and "6 classes" in record["classifier"]
    assert "classifier re-initialised" in caplog.text
    assert load_config(config, [f"training.init_from={source}"])["training"]["init_from"] == str(source)
    assert yaml.safe_load((exp / "config" / "config.yaml").read_text())["training"]["init_from"] == str(source)


@pytest.mark.parametrize("loss, carried", [("softmax", ["loss.affine.weight", "loss.affine.bias"]),
                                           ("aam_softmax", ["loss.weight"])])
def test_init_from_keeps_a_classifier_of_the_same_speakers(base, loss, carried):
    """Same speakers: the classifier is taken whole (same loss) or its weight goes into the AAM loss."""
    source = model_state(base / "base" / "3.params")
    model = xvector(loss=loss, loss_params={"m": 0.5, "s": 30.0} if loss != "softmax" else {})
    record = init_weights_from(model, str(base / "base" / "3.params"))
    state = model.state_dict()
    for name in state:
        expected = source["loss.affine.weight"] if name == "loss.weight" else source[name]
        assert torch.equal(state[name], expected), name
    assert sorted(k for k in state if k.startswith("loss.")) == sorted(carried)
    assert "loaded" in record["classifier"]


def test_init_from_refuses_another_network_naming_the_parameter(base):
    path = str(base / "base" / "3.params")
    source, model = model_state(path), xvector(channels=[16, 16, 24, 16, 32])
    differing = [k for k, v in model.state_dict().items() if k in source and v.shape != source[k].shape]
    first = sorted(k for k in differing if not k.startswith("loss."))[0]
    with pytest.raises(ValueError, match=rf"parameter {first} has shape \[{', '.join(map(str, source[first].shape))}\]"):
        init_weights_from(model, path)
    with pytest.raises(ValueError, match="missing: .*unexpected"):
        init_weights_from(xvector(pooling="attentive"), path)


def test_a_resumed_finetuning_continues_from_its_own_checkpoints(base, tmp_path):
    """Interrupted after epoch 1 (the init checkpoint deleted meanwhile) and resumed = uninterrupted."""
    shutil.copyfile(base / "base" / "3.params", tmp_path / "init.params")
    init = ["--init-from", str(tmp_path / "init.params")]
    whole = write_config(tmp_path / "whole.yaml", base, tmp_path / "whole", training={"epochs": 2})
    assert main(["--config", whole, "--endstage", "3", *init]) == 0
    parts = write_config(tmp_path / "parts.yaml", base, tmp_path / "parts", training={"epochs": 2})
    assert main(["--config", parts, "--endstage", "3", *init, "--set", "training.epochs=1"]) == 0
    os.remove(tmp_path / "init.params")
    assert main(["--config", parts, "--endstage", "3", *init]) == 0
    a, b = model_state(tmp_path / "whole" / "2.params"), model_state(tmp_path / "parts" / "2.params")
    assert not torch.equal(a["frames.0.affine.weight"], model_state(base / "base" / "3.params")[
        "frames.0.affine.weight"])                           # it trained
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_changing_the_start_of_a_trained_experiment_is_a_difference():
    old = resolve({"exp_dir": "e", "train_set": "t", "model": {"blueprint": "b", "class": "C"}})
    new = resolve({**old, "training": {**old["training"], "init_from": "exp/x/9.params"}})
    assert config_diff(old, new) == ["training.init_from: None -> 'exp/x/9.params'"]


def test_average_is_the_arithmetic_mean_of_the_epochs(base, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(base / "base", exp)
    out = average_checkpoints(str(exp), ["3", "1", "2"])
    assert out == str(exp / "avg.params")
    averaged = load_checkpoint(out)
    states = [model_state(exp / f"{e}.params") for e in (1, 2, 3)]
    assert averaged["averaged_epochs"] == [1, 2, 3]
    assert averaged["sources"] == {str(e): hashlib.sha1((exp / f"{e}.params").read_bytes()).hexdigest()
                                   for e in (1, 2, 3)}
    tracked = [k for k in averaged["model"] if k.endswith("num_batches_tracked")]
    assert tracked and all(averaged["model"][k] == states[2][k] != states[0][k] for k in tracked)
    for name, value in averaged["model"].items():
        if name in tracked:
            continue
        mean = np.mean([s[name].numpy().astype(np.float64) for s in states], axis=0)
        np.testing.assert_allclose(value.numpy(), mean, rtol=1e-6, atol=1e-7, err_msg=name)
        assert value.dtype == states[0][name].dtype
    with pytest.raises(ValueError, match="distinct"):
        average_checkpoints(str(exp), ["2", "2"])
    with pytest.raises(FileNotFoundError, match="has epochs 1 2 3"):
        average_checkpoints(str(exp), ["3", "4"])


def mean_model(exp, epochs):
    """The experiment's model with weights averaged here, in numpy (last epoch's integer buffers)."""
    states = [model_state(exp / f"{e}.params") for e in epochs]
    mean = {k: torch.from_numpy(np.mean([s[k].numpy().astype(np.float64) for s in states], axis=0).astype(np.float32))
            if v.is_floating_point() else v for k, v in states[-1].items()}
    model = build_model(str(exp))
    model.load_state_dict(mean)
    return model.eval()


def test_extraction_of_avg_equals_the_model_of_the_mean_weights(base, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(base / "base", exp)
    config = write_config(tmp_path / "exp.yaml", base, exp)
    subprocess.run([sys.executable, f"{PIPELINE}/average_checkpoints.py", "--exp-dir", str(exp), "--epochs", "2 3"],
                   check=True, cwd=REPO)
    assert main(["--config", config, "--stage", "4", "--set", "extract.epochs=[avg]"]) == 0
    out = exp / "far_epoch_avg" / "test"
    expected = direct_embeddings(mean_model(exp, [2, 3]), base / "data" / "test")
    got = {u: kaldiio.load_mat(v) for u, v in read_table(out / "xvector.scp").items()}
    assert sorted(got) == sorted(expected)
    for utt in expected:
        np.testing.assert_allclose(got[utt], expected[utt], rtol=1e-5, atol=1e-5, err_msg=utt)
    # another set of epochs: the same output dir is re-extracted, never served stale
    average_checkpoints(str(exp), ["1", "2", "3"])
    subprocess.run([sys.executable, f"{PIPELINE}/extract_embeddings.py", "--model-dir", str(exp), "--epoch", "avg",
                    "--nj", "1", str(base / "data" / "test"), str(out)], check=True, cwd=REPO)
    expected = direct_embeddings(mean_model(exp, [1, 2, 3]), base / "data" / "test")
    got = {u: kaldiio.load_mat(v) for u, v in read_table(out / "xvector.scp").items()}
    for utt in expected:
        np.testing.assert_allclose(got[utt], expected[utt], rtol=1e-5, atol=1e-5, err_msg=utt)


def test_epoch_names(base):
    assert parse_epoch("avg") == "avg" and parse_epoch(7) == 7 and parse_epoch("12") == 12
    for bad in ("0", "-1", "best", "7.5", True, None):
        with pytest.raises(ValueError, match="positive number"):
            parse_epoch(bad)
    config = str(base / "base.yaml")
    assert load_config(config, ["extract.epochs=[2, avg]"])["extract"]["epochs"] == [2, "avg"]
    with pytest.raises(ValueError, match="'extract.epochs'.*'best'"):
        load_config(config, ["extract.epochs=[best]"])
    with pytest.raises(ValueError, match="'extract.epochs' must be a list"):
        load_config(config, ["extract.epochs=3"])


def test_a_retraining_moves_the_average_and_its_embeddings_aside(tmp_path):
    for name in ("1.params", "avg.params", "far_epoch_avg/x", "far_epoch_1/x", "config.new/config.yaml",
                 "config/config.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    promote_pending_run(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["config", "previous_run"]
    assert sorted(os.listdir(tmp_path / "previous_run")) == ["1.params", "avg.params", "config", "far_epoch_1",
                                                             "far_epoch_avg", "log"]
