"""Learning-rate policies behind one wrapper, in the shape of ASV-subtools ``LRSchedulerWrapper``.

    lr_scheduler:
      name: step            # step | warmR | reduceP
      step:    {step_size: 1, gamma: 0.5}          # lr0 * gamma ** floor(epoch / step_size)
      warmR:   {T_max: 10, T_mult: 1, lr_min: 1.0e-6}   # cosine annealing with warm restarts, per iteration
      reduceP: {factor: 0.5, patience: 1, min_lr: 1.0e-6, cooldown: 0, threshold: 1.0e-4}  # on valid loss

The trainer calls :meth:`on_iteration` before every optimizer step with the fractional epoch
(``epoch + iter / iters_per_epoch``, 0-based) and :meth:`on_epoch_end` after every epoch with the
epoch's validation loss (training loss when there is no validation set). ``step`` and ``reduceP`` change
the lr between epochs, ``warmR`` on every iteration. Epochs here are 0-based: during epoch ``e`` the
``step`` policy's lr is ``lr0 * gamma ** (e // step_size)``.
"""
from torch.optim import lr_scheduler

POLICY_OPTIONS = {"step": {"step_size", "gamma"}, "warmR": {"T_max", "T_mult", "lr_min"},
                  "reduceP": {"factor", "patience", "min_lr", "cooldown", "threshold"}}


def check_lr_scheduler_config(config):
    """``(policy name, its options)`` of the ``lr_scheduler`` section; ValueError for an unknown policy,
    section key or option (a misspelt option would otherwise silently take its default)."""
    config = dict(config or {"name": "step"})
    name = config.get("name", "step")
    if name not in POLICY_OPTIONS:
        raise ValueError(f"lr_scheduler.name '{name}' not one of {', '.join(POLICY_OPTIONS)}")
    unknown = set(config) - {"name", *POLICY_OPTIONS}
    if unknown:
        raise ValueError(f"lr_scheduler: unknown key(s) {sorted(unknown)} (known: name, {', '.join(POLICY_OPTIONS)})")
    for policy, allowed in POLICY_OPTIONS.items():
        bad = set(config.get(policy) or {}) - allowed
        if bad:
            raise ValueError(f"lr_scheduler.{policy}: unknown option(s) {sorted(bad)} (allowed: {sorted(allowed)})")
    return name, dict(config.get(name) or {})


class LRSchedulerWrapper:
    def __init__(self, optimizer, config):
        self.name, options = check_lr_scheduler_config(config)
        self.optimizer = optimizer
        if self.name == "step":
            self.scheduler = lr_scheduler.StepLR(optimizer, step_size=int(options.get("step_size", 1)),
                                                 gamma=float(options.get("gamma", 0.5)))
        elif self.name == "warmR":
            self.scheduler = lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=int(options.get("T_max", 10)), T_mult=int(options.get("T_mult", 1)),
                eta_min=float(options.get("lr_min", 1e-6)))
        elif self.name == "reduceP":
            self.scheduler = lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=float(options.get("factor", 0.5)),
                patience=int(options.get("patience", 1)), min_lr=float(options.get("min_lr", 1e-6)),
                cooldown=int(options.get("cooldown", 0)), threshold=float(options.get("threshold", 1e-4)))

    def on_iteration(self, epoch_progress):
        """Called before each optimizer step; ``epoch_progress`` is the 0-based fractional epoch."""
        if self.name == "warmR":
            self.scheduler.step(epoch_progress)

    def on_epoch_end(self, metric):
        """Called once after each epoch with the validation (or training) loss."""
        if self.name == "step":
            self.scheduler.step()
        elif self.name == "reduceP":
            self.scheduler.step(metric)

    def get_lr(self):
        """Current lr of the first parameter group."""
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state)
