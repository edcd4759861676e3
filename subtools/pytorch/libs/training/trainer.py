"""SimpleTrainer: epochs x iterations of chunk-level speaker classification.

The model follows the project's blueprint interface: ``outputs = model(x: [B, F, T])``,
``loss, logits = model.get_loss(outputs, targets: [B])``, ``model.step(epoch_progress)`` for margin
warm-up. Per iteration: margin warm-up and lr policy updated with the fractional epoch, then
:meth:`SimpleTrainer.train_step` (also what ``bench/gpu_check.py`` times): forward under autocast
(``amp: bf16|fp16`` on CUDA only; fp16 uses a GradScaler), NaN guard, backward, gradient clipping,
optimizer step. Every ``report_interval`` iterations (and at the end of each epoch) the
training averages and the validation loss/accuracy go to the reporter. After each epoch the lr policy
steps and rank 0 writes ``EXP/<epoch>.params`` (see ``checkpoint.py``).

Determinism: data order is a function of (seed, epoch) (DistributedSampler), augmentation of
(seed, epoch, index), and every global RNG is saved in the checkpoint, so resuming from ``N.params``
reproduces the uninterrupted run (bit-exact on CPU).

DDP: under torchrun (a process group joined, even of one process) the model is wrapped in
DistributedDataParallel; each
iteration's loss is summed over ranks (one scalar all-reduce) so every rank sees the same value for the
NaN guard; report averages are all-reduced; validation runs on rank 0 and its result is broadcast (the
reduceP policy must see the same metric everywhere); after each epoch rank 0's buffers (BatchNorm
statistics) are broadcast, so every rank holds the saved model; rank 0 logs and saves.
"""
import contextlib
import logging

import torch
from torch.nn.parallel import DistributedDataParallel

from subtools.pytorch.libs.support.utils import get_rng_state, set_rng_state
from subtools.pytorch.libs.training import distributed
from subtools.pytorch.libs.training.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from subtools.pytorch.libs.training.reporter import Reporter

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient norm; the last good checkpoint is kept."""


class SimpleTrainer:
    def __init__(self, model, optimizer, lr_scheduler, train_loader, valid_loader, exp_dir, epochs,
                 device=torch.device("cpu"), report_interval=100, clip_grad_norm=None, amp=None,
                 rank=0, world_size=1, progress_bar=True):
        self.core = model.to(device)
        self.device = device
        self.model = self.core
        if distributed.is_distributed():
            self.model = DistributedDataParallel(
                self.core, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.exp_dir, self.epochs = exp_dir, int(epochs)
        self.report_interval = int(report_interval)
        self.clip_grad_norm = clip_grad_norm
        self.rank, self.world_size = rank, world_size
        self.progress_bar = progress_bar
        self.amp_dtype = None
        if amp:
            if device.type != "cuda":
                logger.warning("training.amp=%s ignored: AMP is used on CUDA only", amp)
            elif amp not in ("bf16", "fp16"):
                raise ValueError(f"training.amp must be bf16, fp16 or null, got {amp}")
            else:
                self.amp_dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self, epoch):
        return {"epoch": epoch, "model": self.core.state_dict(), "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": self.lr_scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": get_rng_state()}

    def load(self, epoch):
        """Restore everything from ``EXP/<epoch>.params`` (the state after ``epoch`` finished epochs)."""
        state = load_checkpoint(checkpoint_path(self.exp_dir, epoch))
        self.core.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])

    # ---- one pass --------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    @torch.no_grad()
    def validate(self):
        """``(loss, acc)`` over the validation loader on rank 0, broadcast to all ranks; None if no set."""
        if self.valid_loader is None or len(self.valid_loader.dataset) == 0:
            return None, None
        result = torch.zeros(3, dtype=torch.float64, device=self.device)
        if self.rank == 0:
            self.core.eval()
            for x, y in self.valid_loader:
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                with self._autocast():
                    loss, logits = self.core.get_loss(self.core(x), y)
                result += torch.stack([loss.double() * len(y), (logits.argmax(1) == y).sum().double(),
                                       torch.tensor(float(len(y)), dtype=torch.float64, device=self.device)])
            self.core.train()
        distributed.broadcast(result)
        return (result[0] / result[2]).item(), (result[1] / result[2]).item()

    def _nonfinite(self, what, value, epoch, iteration):
        last = (f"the last good checkpoint is {checkpoint_path(self.exp_dir, epoch)}" if epoch > 0
                else "no checkpoint was written yet")
        raise NonFiniteLossError(
            f"{what} is {value} at epoch {epoch + 1}, iteration {iteration}: training stopped; {last} "
            f"(lower the lr, check the features for NaN/inf, or resume with --train-stage {epoch})")

    def train_step(self, x, y, epoch=0, iteration=1):
        """One update on the batch ``x [B, F, T]``, ``y [B]`` (on the device): forward under autocast,
        loss summed over ranks (NaN guard; ``epoch``/``iteration`` name the place in its message), backward
        (scaled for fp16), clipping, optimizer step. Returns ``(loss, loss summed over ranks, logits)``."""
        with self._autocast():
            loss, logits = self.core.get_loss(self.model(x), y)
        loss_sum = distributed.all_reduce_sum(loss.detach().double().clone())
        if not torch.isfinite(loss_sum):
            self._nonfinite("the training loss", loss_sum.item() / self.world_size, epoch, iteration)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.clip_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.core.parameters(), float(self.clip_grad_norm))
            if self.scaler is None and not torch.isfinite(norm):
                self._nonfinite("the gradient norm", norm.item(), epoch, iteration)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss, loss_sum, logits

    def train_epoch(self, epoch, reporter):
        loader = self.train_loader
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        num_iters = len(loader)
        if num_iters == 0:
            raise ValueError(f"no training batch: {len(loader.dataset)} egs split over {self.world_size} "
                             f"process(es) is less than one batch of {loader.batch_size}")
        self.model.train()
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss*n, correct, n
        reporter.begin_epoch(epoch)
        valid_loss = None
        for i, (x, y) in enumerate(loader):
            progress = epoch + i / num_iters
            self.core.step(progress)
            self.lr_scheduler.on_iteration(progress)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss, loss_sum, logits = self.train_step(x, y, epoch, i + 1)
            correct = (logits.detach().argmax(1) == y).sum()
            totals += torch.stack([loss.detach().double() * len(y), correct.double(),
                                   torch.tensor(float(len(y)), dtype=torch.float64, device=self.device)])
            lr = self.lr_scheduler.get_lr()
            reporter.update(loss_sum.item() / self.world_size, correct.item() / len(y), lr)
            if (i + 1) % self.report_interval == 0 or i + 1 == num_iters:
                distributed.all_reduce_sum(totals)
                train_loss, train_acc = (totals[:2] / totals[2]).tolist()
                valid_loss, valid_acc = self.validate()
                reporter.report(epoch, i + 1, train_loss, train_acc, valid_loss, valid_acc, lr)
                totals.zero_()
        reporter.end_epoch()
        return valid_loss if valid_loss is not None else train_loss

    def run(self, start_epoch=0, before_first_save=None):
        """Train epochs ``start_epoch .. epochs-1`` (0-based; ``start_epoch`` finished epochs are assumed
        loaded via :meth:`load`). Returns the list of per-epoch metrics given to the lr policy.
        ``before_first_save()`` runs on rank 0 once, just before the first checkpoint is written."""
        reporter = Reporter(self.exp_dir, self.epochs, len(self.train_loader), start_epoch,
                            enabled=self.rank == 0, progress_bar=self.progress_bar)
        metrics = []
        try:
            for epoch in range(start_epoch, self.epochs):
                metric = self.train_epoch(epoch, reporter)
                distributed.broadcast_buffers(self.core)
                self.lr_scheduler.on_epoch_end(metric)
                metrics.append(metric)
                if self.rank == 0:
                    if before_first_save is not None:
                        before_first_save()
                        before_first_save = None
                    save_checkpoint(checkpoint_path(self.exp_dir, epoch + 1), self.state_dict(epoch + 1))
                distributed.barrier()
        finally:
            reporter.close()
        return metrics
