"""Experiment records: the model's config dir and the per-epoch checkpoints.

``EXP/config/`` (written before training, as ASV-subtools does)::

    config.yaml   the merged experiment config (launcher): it always describes the weights beside it
    blueprint.py  copy of the model file the experiment was trained with (a record; see below)
    nnet.config   yaml {blueprint: blueprint.py, source: <the model file, relative to the repo>,
                  class: Name, inputs_dim: F, num_targets: S}
    params.dict   yaml of the model's constructor params (``model.params``)

**No code from an experiment dir runs unless the user trusts it.** The model is built from the project's
own model file (``subtools/pytorch/model/*.py``) that ``blueprint.py`` is byte-identical to; a copy that
matches none (the project's file changed since training, a blueprint of the user's own, or an experiment
from elsewhere) is refused with :class:`UntrustedBlueprintError` unless ``trust_blueprint`` (the CLIs'
``--trust-blueprint``; the launcher also trusts a copy identical to the blueprint its config names), after
which the copy is loaded. ``source`` only names the file in messages. Checkpoints load with
``torch.load(weights_only=True)``.

``EXP/<epoch>.params`` (epoch 1-based = number of finished epochs): a dict with ``epoch``, ``model``,
``optimizer``, ``lr_scheduler``, ``scaler`` (AMP, or None), ``rng`` (python/numpy/torch/cuda states, see
``support.utils.get_rng_state``). Written atomically; loaded with ``torch.load(weights_only=True)``.
The sampler state is the epoch itself (order = f(seed, epoch)).

``EXP/avg.params`` (``pipeline/average_checkpoints.py``): ``model`` (the mean weights),
``averaged_epochs`` and ``sources`` ({epoch: sha1 of its checkpoint}); the epoch name ``avg``
(:data:`AVERAGE`) reads it wherever an epoch number is accepted (``load_model``, extraction's
``--epoch``, ``extract.epochs``). It is never resumed from.

Fine-tuning (``training.init_from``): :func:`init_weights_from` loads another checkpoint's weights into a
freshly built model, the classifier (the loss layer, ``loss.*``) only where it fits.
"""
import glob
import os
import pickle
import re
import shutil

import torch
import yaml

from subtools import REPO_ROOT, resolve_path
from subtools.kaldi.fileio import atomic_write
from subtools.kaldi.fingerprint import content_hash
from subtools.pytorch.libs.nnet.framework import load_blueprint

TRUST_HELP = ("build the model from EXP/config/blueprint.py even when it differs from the project's own model "
              "file (it is Python code and runs on load: read it first)")


class UntrustedBlueprintError(ValueError):
    """An experiment's blueprint copy is not the project's file it names."""


def write_model_config(exp_dir, model_config, inputs_dim, num_targets, config_dir=None):
    """Copy the blueprint and write ``nnet.config`` / ``params.dict`` under ``config_dir``
    (default ``EXP/config``)."""
    config_dir = config_dir or os.path.join(exp_dir, "config")
    os.makedirs(config_dir, exist_ok=True)
    source = os.path.abspath(resolve_path(model_config["blueprint"]))
    with open(source) as src, atomic_write(os.path.join(config_dir, "blueprint.py")) as dst:
        shutil.copyfileobj(src, dst)
    inside = os.path.commonpath([source, REPO_ROOT]) == REPO_ROOT
    nnet = {"blueprint": "blueprint.py", "source": os.path.relpath(source, REPO_ROOT) if inside else source,
            "class": model_config["class"], "inputs_dim": int(inputs_dim), "num_targets": int(num_targets)}
    with atomic_write(os.path.join(config_dir, "nnet.config")) as f:
        yaml.safe_dump(nnet, f, sort_keys=False)
    with atomic_write(os.path.join(config_dir, "params.dict")) as f:
        yaml.safe_dump(dict(model_config.get("params") or {}), f, sort_keys=False)


def _same_bytes(a, b):
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()


def project_blueprints():
    """The model files of this project (the only code that runs without the user's say-so)."""
    return sorted(glob.glob(os.path.join(REPO_ROOT, "subtools", "pytorch", "model", "*.py")))


def copy_of(config_dir, path):
    """True when ``config_dir``'s blueprint copy is byte-identical to the file ``path`` (e.g. the blueprint
    the user's own config names: the launcher trusts a copy of that)."""
    copy = os.path.join(config_dir, "blueprint.py")
    return os.path.isfile(copy) and os.path.isfile(path) and _same_bytes(copy, path)


def trusted_blueprint(config_dir, nnet, trust_blueprint=False):
    """The blueprint file to load for the record ``nnet`` of ``config_dir`` (see module docstring): the
    project's model file identical to the copy, else the copy itself only when ``trust_blueprint``. The
    record's ``source`` names a file for the message only: it is part of the experiment, so it decides
    nothing."""
    copy = os.path.join(config_dir, nnet["blueprint"])
    if not os.path.isfile(copy):
        raise FileNotFoundError(f"{copy}: missing (the experiment's record of its model file)")
    for project in project_blueprints():
        if _same_bytes(project, copy):
            return project
    if trust_blueprint:
        return copy
    named = f"the project's {nnet['source']}" if nnet.get("source") else "every model file of this project"
    raise UntrustedBlueprintError(
        f"{copy} differs from {named} (the project file changed since this model was trained, or the experiment "
        "comes from elsewhere); it is Python code that would run when the model is built: read it, then pass "
        "--trust-blueprint to use it")


def build_model(exp_dir, trust_blueprint=False, config_dir=None):
    """Instantiate the model recorded in ``config_dir`` (default ``EXP/config``; random init)."""
    config_dir = config_dir or os.path.join(exp_dir, "config")
    with open(os.path.join(config_dir, "nnet.config")) as f:
        nnet = yaml.safe_load(f)
    with open(os.path.join(config_dir, "params.dict")) as f:
        params = yaml.safe_load(f) or {}
    cls = load_blueprint(trusted_blueprint(config_dir, nnet, trust_blueprint), nnet["class"])
    try:
        return cls(nnet["inputs_dim"], nnet["num_targets"], **params)
    except TypeError as e:  # an unknown or missing constructor parameter in model.params
        raise ValueError(f"{config_dir}/params.dict (model.params): {nnet['class']}: {e}") from None


AVERAGE = "avg"       # the epoch name of the averaged checkpoint EXP/avg.params


def parse_epoch(text):
    """An epoch name of the command line or a config: a positive int, or ``avg``; ValueError otherwise."""
    name = str(text).strip()
    if name == AVERAGE:
        return AVERAGE
    if not name.isdigit() or int(name) < 1:
        raise ValueError(f"an epoch is a positive number (EXP/<N>.params) or '{AVERAGE}' (EXP/{AVERAGE}.params, "
                         f"written by average_checkpoints.py), got {text!r}")
    return int(name)


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


PENDING_CONFIG = "config.new"      # the record of a retraining that has not saved a checkpoint yet
PREVIOUS_RUN = "previous_run"      # the run a retraining replaced
_OF_A_RUN = re.compile(r"^((\d+|avg)\.params|(far|near)_epoch_(\d+|avg)|.*\.results|det_.*\.png|config|model)$")


def keep_training_log(exp_dir):
    """Copy the old run's ``log/train.csv`` aside before a retraining starts reporting over it; a copy made
    by an earlier retraining that failed before its first checkpoint is kept (the log now beside it is that
    failed run's, not the old run's)."""
    log, kept = os.path.join(exp_dir, "log", "train.csv"), os.path.join(exp_dir, PENDING_CONFIG, "previous_train.csv")
    if os.path.isfile(log) and not os.path.isfile(kept):
        shutil.copyfile(log, kept)


def promote_pending_run(exp_dir):
    """Called by a retraining just before it saves its first checkpoint: move the old run (config,
    checkpoints, embeddings, result tables, DET plots) into ``EXP/previous_run/`` (replacing an older one)
    and make ``EXP/config.new`` the experiment's ``config``. Until then the old run stays intact, so a
    retraining that fails early (no GPU, bad data) loses nothing."""
    pending = os.path.join(exp_dir, PENDING_CONFIG)
    if not os.path.isdir(pending):
        return
    previous = os.path.join(exp_dir, PREVIOUS_RUN)
    if os.path.exists(previous):
        shutil.rmtree(previous)
    os.makedirs(os.path.join(previous, "log"))
    for name in sorted(os.listdir(exp_dir)):
        if _OF_A_RUN.match(name):
            os.replace(os.path.join(exp_dir, name), os.path.join(previous, name))
    if os.path.isfile(os.path.join(pending, "previous_train.csv")):
        os.replace(os.path.join(pending, "previous_train.csv"), os.path.join(previous, "log", "train.csv"))
    os.replace(pending, os.path.join(exp_dir, "config"))


def save_checkpoint(path, state):
    """``torch.save`` into a temp file, then rename."""
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def _epochs_note(exp_dir):
    epochs = sorted(saved_epochs(exp_dir))
    return f"{exp_dir} has epochs {' '.join(map(str, epochs))}" if epochs else f"{exp_dir} has no checkpoint"


def require_checkpoint(exp_dir, epoch):
    """``EXP/<epoch>.params``; FileNotFoundError naming it and the epochs that exist when it is absent."""
    path = checkpoint_path(exp_dir, epoch)
    if not os.path.isfile(path):
        make = ("average epochs with average_checkpoints.py" if epoch == AVERAGE
                else "train with launcher stage 3 or pick an existing epoch")
        raise FileNotFoundError(f"checkpoint {path} does not exist ({_epochs_note(exp_dir)}; {make})")
    return path


def load_checkpoint(path):
    """Load a checkpoint dict on CPU with ``weights_only=True``; FileNotFoundError names a missing path,
    ValueError a truncated or foreign file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist ({_epochs_note(os.path.dirname(path) or '.')})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as e:
        raise ValueError(f"checkpoint {path} is unreadable (truncated, or not written by this toolkit): "
                         f"{str(e).splitlines()[0]} ({_epochs_note(os.path.dirname(path) or '.')})") from None


def load_model(exp_dir, epoch, trust_blueprint=False):
    """The model of ``EXP/config`` with the weights of ``EXP/<epoch>.params`` (``epoch`` a number or
    ``avg``), in eval mode."""
    path = require_checkpoint(exp_dir, epoch)
    model = build_model(exp_dir, trust_blueprint)
    model.load_state_dict(load_checkpoint(path)["model"])
    return model.eval()


CLASSIFIER = "loss."     # state-dict prefix of the classifier (the loss layer), re-initialised when it does not fit


def _classifier_weight(state):
    """The ``[classes, dim]`` matrix of a classifier state (``loss.weight`` of a margin loss or
    ``loss.affine.weight`` of softmax) and its key; ``(None, None)`` if neither."""
    for key in ("loss.weight", "loss.affine.weight"):
        if key in state:
            return key, state[key]
    return None, None


def init_weights_from(model, path):
    """Load the weights of checkpoint ``path`` (``state["model"]`` only; ``weights_only`` load) into
    ``model`` to start a fine-tuning. Every parameter and buffer outside the classifier must exist in
    both with the same shape (ValueError naming the first that does not). The classifier is taken whole
    when it has the same keys and shapes; a softmax classifier's weight goes into a margin loss's
    ``loss.weight`` and back (the bias keeps its fresh zeros), as ASV-subtools' ``rename_transform_keys``
    for ``transfer_from: softmax_loss``; with another number of classes (speakers) the classifier keeps
    its fresh initialisation. Returns ``{"checkpoint", "sha1", "classifier"}``, the last a sentence for the
    log."""
    sha1 = content_hash(path)
    source = load_checkpoint(path)
    if not isinstance(source, dict) or not isinstance(source.get("model"), dict):
        raise ValueError(f"checkpoint {path} holds no model weights ('model' entry)")
    source, target = source["model"], model.state_dict()
    body = sorted(k for k in target if not k.startswith(CLASSIFIER))
    missing = [k for k in body if k not in source]
    unexpected = sorted(k for k in source if not k.startswith(CLASSIFIER) and k not in target)
    if missing or unexpected:
        raise ValueError(f"--init-from {path}: not this model's layers (missing: {', '.join(missing[:5]) or '-'}; "
                         f"unexpected: {', '.join(unexpected[:5]) or '-'}); the model config must build the same "
                         "network as the checkpoint's, except the loss layer")
    for key in body:
        if source[key].shape != target[key].shape:
            raise ValueError(f"--init-from {path}: parameter {key} has shape {list(source[key].shape)} in the "
                             f"checkpoint and {list(target[key].shape)} in this model")
    merged = {**target, **{k: source[k] for k in body}}
    source_key, source_weight = _classifier_weight(source)
    target_key, target_weight = _classifier_weight(target)
    classifier_keys = {k for k in target if k.startswith(CLASSIFIER)}
    same = classifier_keys == {k for k in source if k.startswith(CLASSIFIER)} and all(
        source[k].shape == target[k].shape for k in classifier_keys)
    if same:
        merged.update({k: source[k] for k in classifier_keys})
        note = f"classifier loaded ({', '.join(sorted(classifier_keys)) or 'no parameters'})"
    elif source_weight is not None and target_weight is not None and source_weight.shape == target_weight.shape:
        merged[target_key] = source_weight
        note = f"classifier weight {source_key} loaded as {target_key} ({target_weight.shape[0]} classes)"
    else:
        note = (f"classifier re-initialised: the checkpoint has {_classes(source_weight)} classes, this model "
                f"{_classes(target_weight)} (another training set's speakers)")
    model.load_state_dict(merged)
    return {"checkpoint": path, "sha1": sha1, "classifier": note}


def _classes(weight):
    return "no" if weight is None else weight.shape[0]
