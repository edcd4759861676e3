"""Optimizers, lr policies (StepLR closed form), yaml include/--set overrides."""
import math

import pytest
import torch

from subtools.pytorch.launcher.config import load_config
from subtools.pytorch.libs.training.lr_scheduler import LRSchedulerWrapper
from subtools.pytorch.libs.training.optim import get_optimizer


def params():
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize("lr0, step_size, gamma", [(0.01, 1, 0.5), (0.2, 3, 0.1)])
def test_step_lr_sequence_matches_closed_form(lr0, step_size, gamma):
    opt = get_optimizer(params(), {"name": "sgd", "lr": lr0, "momentum": 0.9})
    sched = LRSchedulerWrapper(opt, {"name": "step", "step": {"step_size": step_size, "gamma": gamma}})
    for epoch in range(10):
        for it in range(4):
            sched.on_iteration(epoch + it / 4)
            assert sched.get_lr() == pytest.approx(lr0 * gamma ** math.floor(epoch / step_size), rel=1e-12)
            opt.step()
        sched.on_epoch_end(metric=1.0)


def test_warm_restarts_follow_cosine():
    opt = get_optimizer(params(), {"name": "adamw", "lr": 0.1, "weight_decay": 0.01})
    sched = LRSchedulerWrapper(opt, {"name": "warmR", "warmR": {"T_max": 2, "T_mult": 1, "lr_min": 0.0}})
    for progress in (0.0, 0.5, 1.0, 1.5, 2.25):
        sched.on_iteration(progress)
        t = progress % 2
        assert sched.get_lr() == pytest.approx(0.05 * (1 + math.cos(math.pi * t / 2)), abs=1e-12)


def test_reduce_on_plateau_and_state_roundtrip():
    """Halve the lr after more than 1 epoch without improvement; a scheduler + optimizer restored from
    their state dicts (as a resumed run) holds the same state and follows the same lr sequence."""
    opt = get_optimizer(params(), {"name": "adam", "lr": 1.0, "betas": [0.9, 0.99]})
    sched = LRSchedulerWrapper(opt, {"name": "reduceP", "reduceP": {"factor": 0.5, "patience": 1}})
    lrs = []
    for loss in (3.0, 2.0, 2.0, 2.0):  # best 3, 2; then 1 and 2 bad epochs -> halved
        sched.on_epoch_end(loss)
        lrs.append(sched.get_lr())
    assert lrs == [1.0, 1.0, 1.0, 0.5]
    opt2 = get_optimizer(params(), {"name": "adam", "lr": 1.0})
    sched2 = LRSchedulerWrapper(opt2, {"name": "reduceP", "reduceP": {"factor": 0.1, "patience": 3}})
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert sched2.state_dict() == sched.state_dict() and sched2.state_dict()["best"] == 2.0
    for loss in (2.5, 2.5, 1.0, 1.5, 1.5):  # 2 bad -> 0.25; improved; 2 bad -> 0.125
        sched.on_epoch_end(loss)
        sched2.on_epoch_end(loss)
        assert sched2.get_lr() == sched.get_lr()
        lrs.append(sched.get_lr())
    assert lrs[4:] == [0.5, 0.25, 0.25, 0.25, 0.125]


def test_bad_optimizer_options():
    with pytest.raises(ValueError, match="momentum"):
        get_optimizer(params(), {"name": "adam", "lr": 0.1, "momentum": 0.9})
    with pytest.raises(ValueError, match="rmsprop"):
        get_optimizer(params(), {"name": "rmsprop"})


def test_config_include_merge_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("train_set: a\ntraining: {epochs: 6, batch_size: 128}\n"
                                        "model: {blueprint: m.py, class: M, params: {x: 1, y: [1, 2]}}\n")
    (tmp_path / "mid.yaml").write_text("include: base.yaml\nmodel: {params: {y: [3]}}\n")
    (tmp_path / "exp.yaml").write_text("include: [mid.yaml]\nexp_dir: exp/e\ntraining: {epochs: 3}\n"
                                       "test_sets: [{name: t, enroll: e, test: t, trials: a}]\n")
    cfg = load_config(str(tmp_path / "exp.yaml"),
                      ["training.batch_size=32", "optimizer.lr=1.0e-3", "model.params.z={w: true}",
                       "test_sets.0.trials=b"])
    assert cfg["training"]["epochs"] == 3 and cfg["training"]["batch_size"] == 32
    assert cfg["training"]["clip_grad_norm"] == 10.0                   # default filled
    assert cfg["model"]["params"] == {"x": 1, "y": [3], "z": {"w": True}}  # lists replaced, maps merged
    assert cfg["optimizer"]["lr"] == 1.0e-3 and cfg["optimizer"]["name"] == "sgd"
    assert cfg["test_sets"][0]["trials"] == "b"
    assert cfg["egs"]["dir"] == "exp/e/egs" and cfg["extract"]["epochs"] == [3]
    (tmp_path / "vars.yaml").write_text("include: exp.yaml\ntest_sets: [{name: t, enroll: e, test: t, "
                                        "trials: \"${data_root}/t/trials\"}]\n"
                                        "egs: {dir: \"${exp_dir}/my_egs\"}\n")
    cfg = load_config(str(tmp_path / "vars.yaml"), ["data_root=/big/data"])
    assert cfg["test_sets"][0]["trials"] == "/big/data/t/trials" and cfg["egs"]["dir"] == "exp/e/my_egs"
    assert load_config(str(tmp_path / "vars.yaml"))["test_sets"][0]["trials"] == "data/t/trials"  # default
    with pytest.raises(ValueError, match=r"test_sets.0.trials.*unknown variable '\$\{root\}'"):
        load_config(str(tmp_path / "vars.yaml"), ["test_sets.0.trials=${root}/x"])
    (tmp_path / "loop.yaml").write_text("include: loop.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config(str(tmp_path / "loop.yaml"))


@pytest.mark.parametrize("name", ["serialized-tdnn-xvector", "xvector-stats", "xvector-attentive",
                                  "mini-serialized", "mini-xvector-stats", "mini-xvector-attentive"])
def test_shipped_configs_build_their_models(name):
    from subtools.pytorch.libs.nnet.framework import load_blueprint
    cfg = load_config(f"conf/{name}.yaml")
    cls = load_blueprint(cfg["model"]["blueprint"], cfg["model"]["class"])
    params = cfg["model"]["params"]
    torch.manual_seed(0)
    model = cls(80, 10, **params)
    x, targets = torch.randn(3, 80, 60), torch.tensor([0, 1, 9])
    loss, logits = model.get_loss(model(x), targets)
    assert logits.shape == (3, 10)
    cross_entropy = torch.nn.functional.cross_entropy(logits, targets)  # logits without any margin
    if params.get("loss", "softmax") == "softmax":
        assert torch.allclose(loss, cross_entropy, atol=1e-6)
    else:
        assert loss >= cross_entropy - 1e-6                            # a margin only lowers target logits
    info = model.get_model_info()
    assert info["embedding_dims"]["near"] == params["embd_dim"]
    model.eval()
    with torch.no_grad():
        batch = model.extract_embedding(x)
        alone = model.extract_embedding(x[1:2])
    assert batch.shape == (3, info["embedding_dims"]["far"]) and torch.allclose(alone[0], batch[1], atol=1e-5)
    if name == "serialized-tdnn-xvector":                               # the paper config (README)
        pool = params["pooling_params"]
        assert (pool["num_layers"], pool["num_heads"], pool["d_model"], params["embd_dim"]) == (6, 1, 256, 512)
    assert {t["name"] for t in cfg["test_sets"]} >= ({"mini-O", "mini-H"} if name.startswith("mini")
                                                     else {"sitw_dev", "sitw_eval", "voxceleb1-O"})


def test_stage4_names_missing_checkpoints(tmp_path):
    from subtools.pytorch.launcher import stages
    cfg = load_config("conf/mini-serialized.yaml", [f"exp_dir={tmp_path}", "training.epochs=2"])
    assert cfg["extract"]["epochs"] == [2]                     # follows training.epochs
    (tmp_path / "2.params").write_bytes(b"")
    cfg["extract"]["epochs"] = [2, 3]
    with pytest.raises(FileNotFoundError, match=r"params for extract.epochs \[3\]"):
        stages.stage4(cfg, [], wait=False, trust_blueprint=False)
