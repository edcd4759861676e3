"""SimpleTrainer on synthetic speaker features: exact resume, NaN guard, learning, DDP (2 gloo ranks) with
the multi-process policies (lr scaling, SyncBatchNorm)."""
import copy
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from subtools.kaldi.fileio import atomic_write
from subtools.pytorch.launcher.config import resolve
from subtools.pytorch.libs.egs.egs import ChunkEgs, make_chunk_egs, make_train_loader, make_valid_loader
from subtools.pytorch.libs.nnet.framework import load_blueprint
from subtools.pytorch.libs.support.synthetic import make_feature_dir
from subtools.pytorch.libs.training import distributed
from subtools.pytorch.libs.training import reporter as reporter_lib
from subtools.pytorch.libs.training.checkpoint import load_checkpoint, write_model_config
from subtools.pytorch.libs.training.lr_scheduler import LRSchedulerWrapper
from subtools.pytorch.libs.training.optim import get_optimizer
from subtools.pytorch.libs.training.trainer import NonFiniteLossError, SimpleTrainer
from subtools.pytorch.pipeline.train import train

NUM_SPKS = 8


@pytest.fixture(scope="module")
def egs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    make_feature_dir(str(root / "data"), num_spks=NUM_SPKS, utts_per_spk=6, num_frames=(250, 400), dim=20,
                     separation=0.5, seed=3)
    make_chunk_egs(str(root / "data"), str(root / "egs"), chunk_size=100, valid_spks=4, valid_chunks_per_utt=2)
    return str(root / "egs")


def make_exp(exp_dir, egs_dir, **training):
    """Write EXP/config as the launcher does, for a small x-vector with dropout and AM-softmax warm-up."""
    cfg = resolve({
        "exp_dir": exp_dir, "train_set": "synthetic", "egs": {"dir": egs_dir},
        "model": {"blueprint": "subtools/pytorch/model/xvector.py", "class": "Xvector",
                  "params": {"channels": [32, 32, 32, 32, 64], "embd_dim": 32, "dropout": 0.2,
                             "loss": "am_softmax", "loss_params": {"m": 0.2, "s": 30, "warmup_epochs": 1.5}}},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
        "lr_scheduler": {"name": "step", "step": {"step_size": 1, "gamma": 0.5}},
        "training": {"epochs": 2, "batch_size": 16, "num_workers": 0, "report_interval": 5, "seed": 11,
                     "progress_bar": False, **training},
    })
    with atomic_write(os.path.join(exp_dir, "config", "config.yaml")) as f:
        yaml.safe_dump(cfg, f)
    write_model_config(exp_dir, cfg["model"], 20, NUM_SPKS)


@pytest.fixture
def losses(monkeypatch):
    """Per-iteration losses as seen by the reporter."""
    seen = []
    original = reporter_lib.Reporter.update

    def update(self, loss, acc, lr):
        seen.append(loss)
        original(self, loss, acc, lr)
    monkeypatch.setattr(reporter_lib.Reporter, "update", update)
    return seen


def test_resume_reproduces_uninterrupted_run(tmp_path, egs_dir, losses):
    torch.set_num_threads(1)
    make_exp(str(tmp_path / "a"), egs_dir)
    straight = train(str(tmp_path / "a"))
    losses_a = list(losses)
    losses.clear()
    make_exp(str(tmp_path / "b"), egs_dir, epochs=1)
    train(str(tmp_path / "b"))
    losses_b1 = list(losses)
    losses.clear()
    torch.manual_seed(12345)                   # a new process would have other RNG states
    random.seed(1)
    np.random.seed(2)
    make_exp(str(tmp_path / "b"), egs_dir, epochs=2)
    resumed = train(str(tmp_path / "b"), train_stage=1)
    per_epoch = len(losses_a) // 2
    assert len(losses_b1) == per_epoch and len(losses) == per_epoch
    np.testing.assert_allclose(losses_b1 + losses, losses_a, rtol=0, atol=1e-6)
    assert losses_a[per_epoch] != losses_a[0]
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
    ck = load_checkpoint(str(tmp_path / "b" / "2.params"))
    assert ck["epoch"] == 2 and set(ck["rng"]) >= {"python", "numpy", "torch"}
    assert ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.05 * 0.5 ** 2)
    rows = (tmp_path / "b" / "log" / "train.csv").read_text().splitlines()
    assert rows[0] == "epoch,iter,train_loss,valid_loss,train_acc,valid_acc,lr,elapsed_s"
    elapsed = [float(r.split(",")[-1]) for r in rows[1:]]
    assert elapsed == sorted(elapsed) and elapsed[0] > 0      # the resumed run adds to the first part's time
    assert [r.split(",")[0] for r in rows[1:]] == [r.split(",")[0] for r in
                                                   (tmp_path / "a" / "log" / "train.csv").read_text().splitlines()[1:]]


class TinyModel(torch.nn.Module):
    """Minimal model of the blueprint interface (brief item 7), with a NaN switch."""

    def __init__(self, dim, classes):
        super().__init__()
        self.linear = torch.nn.Linear(2 * dim, classes)
        self.nan_at = None
        self.calls = 0
        self.progress = []

    def forward(self, x):
        return torch.cat([x.mean(2), x.std(2)], 1).unsqueeze(2)

    def get_loss(self, outputs, targets):
        self.calls += 1
        logits = self.linear(outputs.squeeze(2))
        loss = torch.nn.functional.cross_entropy(logits, targets)
        return (loss * float("nan") if self.calls == self.nan_at else loss), logits

    def step(self, epoch_progress):
        self.progress.append(epoch_progress)


def tiny_trainer(exp_dir, egs_dir, model, epochs):
    dataset = ChunkEgs(os.path.join(egs_dir, "train.egs.csv"))
    opt = get_optimizer(model.parameters(), {"name": "sgd", "lr": 0.1})
    return SimpleTrainer(model, opt, LRSchedulerWrapper(opt, {"name": "step"}),
                         make_train_loader(dataset, 16, seed=1),
                         make_valid_loader(ChunkEgs(os.path.join(egs_dir, "valid.egs.csv")), 16),
                         exp_dir, epochs, report_interval=100, progress_bar=False)


def test_sync_batchnorm_conversion_keeps_the_checkpoint_format():
    """training.sync_bn under DDP on GPU: every BatchNorm becomes a SyncBatchNorm with the same options,
    parameter and buffer names and values, so a checkpoint loads into the plain model (extraction) and
    eval outputs agree; without CUDA the model is left as it is."""
    torch.manual_seed(4)
    params = {"channels": [16, 16, 16, 16, 24], "embd_dim": 16, "pad": True, "bn_affine": True}
    plain = load_blueprint("subtools/pytorch/model/xvector.py", "Xvector")(20, 5, **params).eval()
    for module in plain.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-1, 1)
    assert distributed.sync_batchnorm(plain, use_cuda=False) is plain
    synced = distributed.sync_batchnorm(copy.deepcopy(plain), use_cuda=True)
    pairs = [(a, b) for a, b in zip(plain.modules(), synced.modules()) if isinstance(a, torch.nn.BatchNorm1d)]
    assert len(pairs) == 7 and all(type(b) is torch.nn.SyncBatchNorm for _, b in pairs)
    assert all((a.momentum, a.eps, a.affine) == (b.momentum, b.eps, b.affine) for a, b in pairs)
    state = synced.state_dict()
    assert list(state) == list(plain.state_dict())
    reloaded = load_blueprint("subtools/pytorch/model/xvector.py", "Xvector")(20, 5, **params).eval()
    reloaded.load_state_dict(state)
    x = torch.randn(2, 20, 30)
    with torch.no_grad():
        assert torch.equal(synced.extract_embedding(x), plain.extract_embedding(x))
        assert torch.equal(reloaded.extract_embedding(x), plain.extract_embedding(x))


def test_scale_lr_multiplies_by_the_process_count():
    config = {"name": "adamw", "lr": 1.0e-3, "weight_decay": 0.5}
    assert distributed.scale_lr(config, 4) == {"name": "adamw", "lr": 4.0e-3, "weight_decay": 0.5}
    assert config["lr"] == 1.0e-3
    with pytest.raises(ValueError, match="optimizer.lr"):
        distributed.scale_lr({"name": "adam"}, 2)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, egs_dir):
    model = TinyModel(20, NUM_SPKS)
    trainer = tiny_trainer(str(tmp_path), egs_dir, model, epochs=3)
    per_epoch = len(trainer.train_loader)
    model.nan_at = per_epoch + 3 + 1          # +1: the validation pass at the end of epoch 1
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, iteration 3.*1\.params"):
        trainer.run()
    assert (tmp_path / "1.params").exists() and not (tmp_path / "2.params").exists()
    assert model.progress[:2] == [0.0, 1 / per_epoch]          # margin warm-up driven per iteration
    assert load_checkpoint(str(tmp_path / "1.params"))["epoch"] == 1


def test_training_accuracy_rises_well_above_chance(tmp_path, egs_dir):
    torch.set_num_threads(2)
    make_exp(str(tmp_path), egs_dir, epochs=3, num_workers=1, prefetch_factor=2)
    train(str(tmp_path))
    rows = [r.split(",") for r in (tmp_path / "log" / "train.csv").read_text().splitlines()[1:]]
    first_acc, last_acc, last_valid = float(rows[0][4]), float(rows[-1][4]), float(rows[-1][5])
    assert last_acc > 0.6 > 3 / NUM_SPKS and last_acc > first_acc
    assert last_valid > 3 / NUM_SPKS
    assert float(rows[-1][2]) < float(rows[0][2])


DDP_WORKER = """
import os, sys, torch
torch.set_num_threads(1)
from subtools.pytorch.pipeline.train import train
model = train(sys.argv[1], 0, "cpu")
torch.save(model.state_dict(), os.path.join(sys.argv[1], "rank%s.pt" % os.environ["RANK"]))
norms = {type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
with open(os.path.join(sys.argv[1], "rank%s.norms" % os.environ["RANK"]), "w") as f:
    f.write(" ".join(sorted(norms)))
"""


def test_ddp_two_gloo_ranks_end_identical(tmp_path, egs_dir):
    """Also ASV-subtools' launcher policies (training.scale_lr, training.sync_bn, both on by default): the
    lr is doubled for 2 processes; SyncBatchNorm is skipped on CPU (torch runs it on GPU only)."""
    exp = str(tmp_path / "exp")
    make_exp(exp, egs_dir, epochs=1)
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    str(tmp_path / "worker.py"), exp], check=True, env=env, timeout=1800,  # hang guard only
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for rank in (0, 1):
        assert (tmp_path / "exp" / f"rank{rank}.norms").read_text() == "BatchNorm1d"
    group = load_checkpoint(os.path.join(exp, "1.params"))["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(2 * 0.05) and group["lr"] == pytest.approx(2 * 0.05 * 0.5)
    w0 = torch.load(os.path.join(exp, "rank0.pt"), weights_only=True)
    w1 = torch.load(os.path.join(exp, "rank1.pt"), weights_only=True)
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    saved = load_checkpoint(os.path.join(exp, "1.params"))["model"]
    assert all(torch.equal(saved[n], w0[n]) for n in w0)
    rows = (tmp_path / "exp" / "log" / "train.csv").read_text().splitlines()
    n_egs = len(ChunkEgs(os.path.join(egs_dir, "train.egs.csv")))
    assert rows[-1].split(",")[1] == str(n_egs // 2 // 16)     # each rank sees half the egs
