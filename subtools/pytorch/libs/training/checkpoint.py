"""Experiment records: the model's config dir and the per-epoch checkpoints.

``EXP/config/`` (written before training, as ASV-subtools does)::

    config.yaml   the merged experiment config (launcher)
    blueprint.py  copy of the model file, so the experiment rebuilds even if the repo's file changes
    nnet.config   yaml {blueprint: blueprint.py, class: Name, inputs_dim: F, num_targets: S}
    params.dict   yaml of the model's constructor params (``model.params``)

``EXP/<epoch>.params`` (epoch 1-based = number of finished epochs): a dict with ``epoch``, ``model``,
``optimizer``, ``lr_scheduler``, ``scaler`` (AMP, or None), ``rng`` (python/numpy/torch/cuda states, see
``support.utils.get_rng_state``). Written atomically; loaded with ``torch.load(weights_only=True)``.
The sampler state is the epoch itself (order = f(seed, epoch)).
"""
import os
import re
import shutil

import torch
import yaml

from subtools.kaldi.fileio import atomic_write
from subtools.pytorch.libs.nnet.framework import load_blueprint


def write_model_config(exp_dir, model_config, inputs_dim, num_targets):
    """Copy the blueprint and write ``nnet.config`` / ``params.dict`` under ``EXP/config``."""
    config_dir = os.path.join(exp_dir, "config")
    os.makedirs(config_dir, exist_ok=True)
    with open(model_config["blueprint"]) as src, atomic_write(os.path.join(config_dir, "blueprint.py")) as dst:
        shutil.copyfileobj(src, dst)
    nnet = {"blueprint": "blueprint.py", "class": model_config["class"], "inputs_dim": int(inputs_dim),
            "num_targets": int(num_targets)}
    with atomic_write(os.path.join(config_dir, "nnet.config")) as f:
        yaml.safe_dump(nnet, f, sort_keys=False)
    with atomic_write(os.path.join(config_dir, "params.dict")) as f:
        yaml.safe_dump(dict(model_config.get("params") or {}), f, sort_keys=False)


def build_model(exp_dir):
    """Instantiate the model recorded in ``EXP/config`` (random init)."""
    config_dir = os.path.join(exp_dir, "config")
    with open(os.path.join(config_dir, "nnet.config")) as f:
        nnet = yaml.safe_load(f)
    with open(os.path.join(config_dir, "params.dict")) as f:
        params = yaml.safe_load(f) or {}
    cls = load_blueprint(os.path.join(config_dir, nnet["blueprint"]), nnet["class"])
    return cls(nnet["inputs_dim"], nnet["num_targets"], **params)


def checkpoint_path(exp_dir, epoch):
    return os.path.join(exp_dir, f"{epoch}.params")


def saved_epochs(exp_dir):
    """Every N with ``EXP/N.params``."""
    if not os.path.isdir(exp_dir):
        return []
    return [int(m.group(1)) for m in map(re.compile(r"^(\d+)\.params$").match, os.listdir(exp_dir)) if m]


def latest_epoch(exp_dir):
    """Highest N with ``EXP/N.params`` (0 if none)."""
    return max(saved_epochs(exp_dir), default=0)


def remove_checkpoints(exp_dir):
    """Delete every ``EXP/N.params`` (training restarts from scratch: an old run's checkpoints must not
    be mistaken for the new run's by a later resume)."""
    for epoch in saved_epochs(exp_dir):
        os.remove(checkpoint_path(exp_dir, epoch))


def save_checkpoint(path, state):
    """``torch.save`` into a temp file, then rename."""
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path):
    """Load a checkpoint dict on CPU with ``weights_only=True``; FileNotFoundError names the path."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(exp_dir, epoch):
    """The model of ``EXP/config`` with the weights of ``EXP/<epoch>.params``, in eval mode."""
    model = build_model(exp_dir)
    model.load_state_dict(load_checkpoint(checkpoint_path(exp_dir, epoch))["model"])
    return model.eval()
