"""torch.distributed helpers for runs under ``torchrun`` (NCCL on GPU, gloo on CPU).

Outside torchrun (no ``WORLD_SIZE`` in the environment) everything is a single process and the
helpers are no-ops. Under torchrun the process group is joined even with one process (so a one-GPU
``torchrun --nproc_per_node=1`` run goes through NCCL and DDP: ``bench/gpu_check.sh``). ``scale_lr`` and ``sync_batchnorm`` are ASV-subtools' multi-GPU launcher policies
(``libs/support/utils.py``: ``auto_scale_lr``, ``convert_synchronized_batchnorm``), applied by
``pipeline/train.py`` under DDP when ``training.scale_lr`` / ``training.sync_bn`` are true.
"""
import logging
import os

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def init_from_env(use_cuda):
    """Join the process group torchrun describes. Returns ``(rank, world_size, local_rank)``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world_size, local_rank


def scale_lr(optimizer_config, world_size):
    """Copy of the ``optimizer`` config with ``lr`` multiplied by ``world_size`` (the number of processes)."""
    if "lr" not in optimizer_config:
        raise ValueError("training.scale_lr needs optimizer.lr in the config (or set training.scale_lr: false)")
    scaled = dict(optimizer_config, lr=float(optimizer_config["lr"]) * world_size)
    logger.info("training.scale_lr: lr %g x %d processes = %g", optimizer_config["lr"], world_size, scaled["lr"])
    return scaled


def sync_batchnorm(model, use_cuda):
    """``model`` with every BatchNorm replaced by ``torch.nn.SyncBatchNorm`` (training statistics over all
    processes), same parameter and buffer names, so its checkpoints load into the plain model. GPU only:
    torch's SyncBatchNorm raises on CPU input in training, so without CUDA the model is returned unchanged
    (per-process BatchNorm) with a warning."""
    if not use_cuda:
        logger.warning("training.sync_bn ignored on CPU: torch's SyncBatchNorm runs on GPU only")
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def is_distributed():
    """A process group is joined (under torchrun, any number of processes)."""
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor):
    """Sum ``tensor`` over ranks in place (no-op in a single process); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(tensor, src=0):
    """Broadcast ``tensor`` from ``src`` in place (no-op in a single process); returns it."""
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def broadcast_buffers(module, src=0):
    """Copy ``src``'s buffers (BatchNorm running statistics) to every rank. DDP broadcasts them before
    each forward, so after the last forward of an epoch each rank holds its own update."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src)


def barrier():
    if is_distributed():
        dist.barrier()


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
