"""Experiment configs: yaml files with ``include:`` and command-line ``--set`` overrides.

``include: FILE`` or ``include: [FILE1, FILE2]`` (paths relative to the including file) names base
configs; they are merged in order (later wins), then the including file's own keys are merged on top.
Merging is recursive for mappings; any other value (scalars, lists, null) replaces the base's value.
Includes may nest; a cycle is an error.

``--set a.b.c=VALUE`` (repeatable) sets a key after merging; VALUE is parsed as yaml (``3``, ``1.0e-3``,
``true``, ``null``, ``[1, 2]``, ``{x: 1}``), missing intermediate mappings are created and an integer
path element indexes a list (``test_sets.0.trials=...``); setting below a scalar
(``training.epochs.x=5``) or past the end of a list is an error.

**Unknown keys are errors** (:func:`validate`): every key must be one this toolkit reads (the sections of
:data:`DEFAULTS`, ``model``, ``backend`` (:data:`BACKEND_KEYS`), ``test_sets`` entries, the optimizer's
and lr policy's options); a misspelt key stops with "unknown key 'trainng' (did you mean 'training'?)"
instead of being silently ignored. ``model.params`` are checked by the launcher against the model's
constructor. ``extract.epochs`` lists epoch numbers or ``avg`` (``EXP/avg.params``, see
``pipeline/average_checkpoints.py``).

``stage0.cmd`` and ``extract.cmd`` (default "": local processes) name the Kaldi-style runner of stage 0's and
stage 4's jobs (``local``, ``slurm --partition cpu --mem 4G``, ``queue.pl ...``: a stage's ``--cmd``, see
:mod:`subtools.parallel.dispatch`); they do not change what is computed, so they are in no record.

``training.init_from`` (a checkpoint path, default null) starts a new experiment from another one's
weights (fine-tuning, ``pipeline/train.py``); like every training option it is part of
:func:`training_record`, so a trained experiment refuses a config that names another start.

:data:`DEFAULTS` fills what a config leaves out; the default SGD options fill the ``optimizer``
section only when it names SGD (or no optimizer), since other optimizers take other options.
``resolve`` also derives ``egs.dir`` when unset, and replaces ``${data_root}`` and ``${exp_dir}`` in
every string value by those keys' values (so ``trials: ${data_root}/voxceleb1/trials/O`` follows
``--set data_root=/big/disk/data``); any other ``${...}`` is an error.
"""
import copy
import difflib
import os
import re

import yaml

from subtools.pytorch.libs.training.checkpoint import parse_epoch
from subtools.pytorch.libs.training.lr_scheduler import check_lr_scheduler_config
from subtools.pytorch.libs.training.optim import check_optimizer_config
from subtools.score.score_sets import BACKEND_ARGS, BACKEND_NAMES

DEFAULTS = {
    "data_root": "data",
    "stage0": {"cmn_window": 300, "nj": 4, "cmd": ""},
    "stage1": {"min_frames": 200, "min_utts": 8},
    "egs": {"dir": None, "chunk_size": 200, "overlap": 0.1, "scale": 1.5, "valid_spks": 1024,
            "valid_chunks_per_utt": 2, "seed": 1024, "drop_last": False, "chunk_num": -1, "specaug": None},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 3.0e-4},
    "lr_scheduler": {"name": "step", "step": {"step_size": 1, "gamma": 0.5}},
    "training": {"epochs": 6, "batch_size": 128, "num_workers": 2, "prefetch_factor": 2,
                 "report_interval": 100, "clip_grad_norm": 10.0, "seed": 1024, "amp": None,
                 "progress_bar": True, "scale_lr": True, "sync_bn": True, "init_from": None},
    "extract": {"position": "far", "epochs": None, "nj": 4, "max_chunk_frames": 10000, "min_frames": 1, "cmd": ""},
    "backend": {},
    "test_sets": [],
}


TOP_LEVEL_KEYS = {"data_root", "exp_dir", "train_set", "model", "stage0", "stage1", "egs", "optimizer",
                  "lr_scheduler", "training", "extract", "backend", "test_sets"}
CLOSED_SECTIONS = ("stage0", "stage1", "egs", "training", "extract")   # keys = those of DEFAULTS
MODEL_KEYS = {"blueprint", "class", "params"}
BACKEND_KEYS = {*BACKEND_ARGS, *BACKEND_NAMES}
TEST_SET_KEYS = {"name", "enroll", "test", "trials"}


def _unknown(path, key, known):
    """Message for an unknown ``key`` under ``path`` (a dotted prefix, "" at the top)."""
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    hint = f"did you mean '{path}{close[0]}'?" if close else f"known here: {', '.join(sorted(known))}"
    return f"unknown key '{path}{key}' ({hint})"


def validate(config):
    """Problems of a merged config (defaults filled): unknown keys, a mapping where a scalar belongs,
    malformed test sets, unknown optimizer / lr policy options. Returns a list of messages."""
    problems = [_unknown("", k, TOP_LEVEL_KEYS) for k in config if k not in TOP_LEVEL_KEYS]
    for section in CLOSED_SECTIONS:
        known = DEFAULTS[section]
        for key, value in (config.get(section) or {}).items():
            if key not in known:
                problems.append(_unknown(f"{section}.", key, known))
            elif isinstance(value, (dict, list)) and known[key] is not None and not isinstance(known[key], type(value)):
                problems.append(f"'{section}.{key}' must be a {type(known[key]).__name__}, got {value!r}")
    for section, known in (("model", MODEL_KEYS), ("backend", BACKEND_KEYS)):
        value = config.get(section)
        if not isinstance(value, dict):
            problems.append(f"'{section}' must be a mapping, got {value!r}")
            continue
        problems += [_unknown(f"{section}.", k, known) for k in value if k not in known]
    tests = config.get("test_sets")
    if not isinstance(tests, list):
        problems.append(f"'test_sets' must be a list of {{name, enroll, test, trials}}, got {tests!r}")
        tests = []
    for i, test in enumerate(tests):
        if not isinstance(test, dict):
            problems.append(f"'test_sets.{i}' must be a mapping {{name, enroll, test, trials}}, got {test!r}")
            continue
        problems += [_unknown(f"test_sets.{i}.", k, TEST_SET_KEYS) for k in test if k not in TEST_SET_KEYS]
        missing = sorted(TEST_SET_KEYS - set(test))
        if missing:
            problems.append(f"'test_sets.{i}' lacks {', '.join(missing)}")
    epochs = (config.get("extract") or {}).get("epochs")
    if epochs is not None and not isinstance(epochs, list):
        problems.append(f"'extract.epochs' must be a list of epochs (numbers or avg), got {epochs!r}")
    for epoch in epochs if isinstance(epochs, list) else []:
        try:
            parse_epoch(epoch)
        except ValueError as e:
            problems.append(f"'extract.epochs': {e}")
    for section, check in (("optimizer", check_optimizer_config), ("lr_scheduler", check_lr_scheduler_config)):
        try:
            check(config.get(section) or {})
        except ValueError as e:
            problems.append(str(e))
    return problems


def deep_merge(base, override):
    """Recursively merge mapping ``override`` into a copy of ``base``."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load(path, stack):
    path = os.path.normpath(path)
    if path in stack:
        raise ValueError(f"include cycle: {' -> '.join(stack + [path])}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a yaml mapping")
    includes = data.pop("include", None) or []
    if isinstance(includes, str):
        includes = [includes]
    merged = {}
    for inc in includes:
        merged = deep_merge(merged, _load(os.path.join(os.path.dirname(path), inc), stack + [path]))
    return deep_merge(merged, data)


def _list_index(node, key, where):
    try:
        index = int(key)
    except ValueError:
        raise ValueError(f"'{where}' is a list: '{key}' is not an index") from None
    if not -len(node) <= index < len(node):
        raise ValueError(f"'{where}' has {len(node)} entries: index {index} is out of range")
    return index


def set_key(config, dotted, value):
    """Set ``config[a][b][c] = value`` for ``dotted = "a.b.c"`` (see module docstring)."""
    keys = dotted.split(".")
    node, where = config, ""
    for key in keys[:-1]:
        where = f"{where}.{key}" if where else key
        if isinstance(node, list):
            node = node[_list_index(node, key, where.rpartition(".")[0])]
            continue
        if node.get(key) is None:
            node[key] = {}
        elif not isinstance(node[key], (dict, list)):
            raise ValueError(f"'{where}' is {node[key]!r}, not a mapping: cannot set '{dotted}'")
        node = node[key]
    if isinstance(node, list):
        node[_list_index(node, keys[-1], where)] = value
    else:
        node[keys[-1]] = value


def parse_override(text):
    """``"a.b=VALUE"`` -> ``("a.b", parsed VALUE)``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set expects KEY.SUB=VALUE, got '{text}'")
    return key.strip(), yaml.safe_load(value) if value.strip() else None


VARIABLES = ("data_root", "exp_dir")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def substitute(node, values, where=""):
    """Copy of ``node`` with ``${name}`` replaced by ``values[name]`` in every string; ValueError naming
    the key path of an unknown name."""
    if isinstance(node, dict):
        return {k: substitute(v, values, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values, f"{where}.{i}") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def value(match):
        if match.group(1) not in values:
            raise ValueError(f"config key '{where}': unknown variable '${{{match.group(1)}}}' in '{node}' "
                             f"(known: {', '.join('${' + n + '}' for n in values)})")
        return str(values[match.group(1)])

    return _VARIABLE.sub(value, node)


def resolve(config):
    """Fill defaults and derived paths; returns a new dict."""
    names_sgd = str((config.get("optimizer") or {}).get("name", "sgd")).lower() == "sgd"
    defaults = DEFAULTS if names_sgd else {k: v for k, v in DEFAULTS.items() if k != "optimizer"}
    config = deep_merge(defaults, config)
    for key in ("exp_dir", "train_set", "model"):
        if not config.get(key):
            raise ValueError(f"config lacks '{key}'")
    config = substitute(config, {name: config[name] for name in VARIABLES})
    if not config["egs"].get("dir"):
        config["egs"]["dir"] = os.path.join(config["exp_dir"], "egs")
    if not config["extract"].get("epochs"):
        config["extract"]["epochs"] = [config["training"]["epochs"]]
    return config


# Training options that change how training runs, not what it learns: they may differ on a resume.
RUNTIME_TRAINING_KEYS = ("epochs", "num_workers", "prefetch_factor", "report_interval", "progress_bar")


def training_record(config):
    """The part of a config that decides the trained weights, flattened to {"a.b": value}: the model,
    optimizer, lr policy, training options (but :data:`RUNTIME_TRAINING_KEYS`), training set and egs
    options (but their dir)."""
    config = deep_merge({s: DEFAULTS[s] for s in ("training", "egs")}, config)
    record = {k: config.get(k) for k in ("train_set", "model", "optimizer", "lr_scheduler")}
    record["training"] = {k: v for k, v in config["training"].items() if k not in RUNTIME_TRAINING_KEYS}
    record["egs"] = {k: v for k, v in config["egs"].items() if k != "dir"}
    flat = {}

    def walk(node, prefix):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = node

    walk(record, "")
    return flat


def config_diff(old, new):
    """``"key: old -> new"`` lines of the keys whose :func:`training_record` values differ."""
    a, b = training_record(old), training_record(new)
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, "(unset)") != b.get(k, "(unset)")]


def load_config(path, overrides=()):
    """Load ``path`` with its includes, apply ``--set`` strings, fill defaults, :func:`validate`;
    ValueError naming the file (and the ``--set`` that introduced a bad key) otherwise."""
    config = _load(path, [])
    for text in overrides:
        try:
            set_key(config, *parse_override(text))
        except ValueError as e:
            raise ValueError(f"--set {text}: {e}") from None
    config = resolve(config)
    problems = validate(config)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(_blame(p, overrides) for p in problems))
    return config


def _blame(problem, overrides):
    """``problem`` + " (from --set ...)" when the key it names was set on the command line."""
    named = re.search(r"'([^']+)'", problem)
    for text in overrides:
        key = parse_override(text)[0]
        if named and (key == named.group(1) or key.startswith(named.group(1) + ".")):
            return f"{problem} (from --set {text})"
    return problem
