"""Optimizers from the yaml ``optimizer`` section (ASV-subtools ``get_optimizer`` options).

    optimizer: {name: sgd, lr: 0.01, momentum: 0.9, nesterov: true, weight_decay: 3.0e-4}
    optimizer: {name: adam|adamw, lr: 0.001, betas: [0.9, 0.999], eps: 1.0e-8, weight_decay: 0, amsgrad: false}
"""
import torch

_OPTIMIZERS = {
    "sgd": (torch.optim.SGD, {"lr", "momentum", "nesterov", "weight_decay", "dampening"}),
    "adam": (torch.optim.Adam, {"lr", "betas", "eps", "weight_decay", "amsgrad"}),
    "adamw": (torch.optim.AdamW, {"lr", "betas", "eps", "weight_decay", "amsgrad"}),
}


def check_optimizer_config(config):
    """``(optimizer class, options)`` of the ``optimizer`` section; ValueError for an unknown name or
    option (checked when the config is loaded, before any stage runs)."""
    options = dict(config)
    name = str(options.pop("name", "sgd")).lower()
    if name not in _OPTIMIZERS:
        raise ValueError(f"optimizer.name '{name}' not one of {sorted(_OPTIMIZERS)}")
    cls, allowed = _OPTIMIZERS[name]
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"optimizer '{name}' does not take {sorted(unknown)} (allowed: {sorted(allowed)})")
    return cls, options


def get_optimizer(params, config):
    """Build the optimizer named ``config["name"]``; unknown names or options raise ValueError."""
    cls, options = check_optimizer_config(config)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    return cls(params, **options)
