"""Experiment configs: yaml files with ``include:`` and command-line ``--set`` overrides.

``include: FILE`` or ``include: [FILE1, FILE2]`` (paths relative to the including file) names base
configs; they are merged in order (later wins), then the including file's own keys are merged on top.
Merging is recursive for mappings; any other value (scalars, lists, null) replaces the base's value.
Includes may nest; a cycle is an error.

``--set a.b.c=VALUE`` (repeatable) sets a key after merging; VALUE is parsed as yaml (``3``, ``1.0e-3``,
``true``, ``null``, ``[1, 2]``, ``{x: 1}``), missing intermediate mappings are created and an integer
path element indexes a list (``test_sets.0.trials=...``).

:data:`DEFAULTS` fills what a config leaves out; the default SGD options fill the ``optimizer``
section only when it names SGD (or no optimizer), since other optimizers take other options.
``resolve`` also derives ``egs.dir`` when unset, and replaces ``${data_root}`` and ``${exp_dir}`` in
every string value by those keys' values (so ``trials: ${data_root}/voxceleb1/trials/O`` follows
``--set data_root=/big/disk/data``); any other ``${...}`` is an error.
"""
import copy
import os
import re

import yaml

DEFAULTS = {
    "data_root": "data",
    "stage0": {"cmn_window": 300, "nj": 4},
    "stage1": {"min_frames": 200, "min_utts": 8},
    "egs": {"dir": None, "chunk_size": 200, "overlap": 0.1, "scale": 1.5, "valid_spks": 1024,
            "valid_chunks_per_utt": 2, "seed": 1024, "drop_last": False, "chunk_num": -1, "specaug": None},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 3.0e-4},
    "lr_scheduler": {"name": "step", "step": {"step_size": 1, "gamma": 0.5}},
    "training": {"epochs": 6, "batch_size": 128, "num_workers": 2, "prefetch_factor": 2,
                 "report_interval": 100, "clip_grad_norm": 10.0, "seed": 1024, "amp": None,
                 "progress_bar": True},
    "extract": {"position": "far", "epochs": None, "nj": 4, "max_chunk_frames": 10000, "min_frames": 25},
    "backend": {},
    "test_sets": [],
}


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


def set_key(config, dotted, value):
    """Set ``config[a][b][c] = value`` for ``dotted = "a.b.c"`` (see module docstring)."""
    keys = dotted.split(".")
    node = config
    for key in keys[:-1]:
        if isinstance(node, list):
            node = node[int(key)]
        else:
            if not isinstance(node.get(key), (dict, list)):
                node[key] = {}
            node = node[key]
    if isinstance(node, list):
        node[int(keys[-1])] = value
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


def load_config(path, overrides=()):
    """Load ``path`` with its includes, apply ``--set`` strings, fill defaults."""
    config = _load(path, [])
    for text in overrides:
        set_key(config, *parse_override(text))
    return resolve(config)
