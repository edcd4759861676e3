#!/usr/bin/env python3
"""Train the model of an experiment dir (launcher stage 3; also the per-process entry under torchrun).

Reads ``EXP/config/config.yaml`` (the launcher's merged config) and the model record
``EXP/config/{blueprint.py,nnet.config,params.dict}``, the egs of ``egs.dir``, and writes
``EXP/<epoch>.params``, ``EXP/log/train.csv`` and ``EXP/config/model_info.yaml`` (parameter counts).

    python3 subtools/pytorch/pipeline/train.py --exp-dir EXP [--train-stage N] [--device cpu|cuda]
    torchrun --standalone --nproc_per_node=2 subtools/pytorch/pipeline/train.py --exp-dir EXP --device cuda

``--train-stage``: -1 (default) resumes from the latest ``N.params`` (from scratch if none; nothing to do
when all epochs are done); 0 starts from scratch; N resumes from ``N.params``.

Fine-tuning: with ``training.init_from: CHECKPOINT`` (launcher ``--init-from``) a start from scratch
loads that checkpoint's model weights (``checkpoint.init_weights_from``: the classifier is
re-initialised when the number of speakers differs, any other mismatch is an error naming the
parameter); the optimizer, lr policy and RNG start fresh. The log says what was loaded, and
``config/init_from.yaml`` records the checkpoint, its sha1 and the classifier's fate. A resumed run
(``--train-stage -1`` or N > 0) continues from its own checkpoints and never reads CHECKPOINT again.

``training.batch_size`` is per process. Under torchrun (even with one process) the backend is NCCL
with ``--device cuda`` and gloo otherwise, and, as ASV-subtools' launcher (``utils.auto_scale_lr``,
``utils.convert_synchronized_batchnorm``):
``training.scale_lr`` multiplies ``optimizer.lr`` by the number of processes, ``training.sync_bn``
turns every BatchNorm into ``torch.nn.SyncBatchNorm`` (batch statistics over all processes; GPU only:
torch's SyncBatchNorm refuses CPU tensors, so on CPU it is skipped with a warning).
"""
import argparse
import gc
import logging
import os
import sys

import torch
import yaml

from subtools.cli import run_cli
from subtools.kaldi.fileio import atomic_write
from subtools.pytorch.libs.egs.egs import ChunkEgs, make_train_loader, make_valid_loader
from subtools.pytorch.libs.support.utils import set_seed, setup_logging
from subtools.pytorch.libs.training import distributed
from subtools.pytorch.libs.training.checkpoint import (PENDING_CONFIG, TRUST_HELP, build_model, init_weights_from,
                                                       latest_epoch, promote_pending_run)
from subtools.pytorch.libs.training.lr_scheduler import LRSchedulerWrapper
from subtools.pytorch.libs.training.optim import get_optimizer
from subtools.pytorch.libs.training.trainer import SimpleTrainer

logger = logging.getLogger("train")


def train(exp_dir, train_stage=-1, device_type="cpu", pending=False, trust_blueprint=False):
    """Run (or resume) the training of ``exp_dir``; returns the trained model (None if all epochs were
    already done). ``pending``: a retraining from scratch over an old run, whose record the launcher wrote
    to ``EXP/config.new``; the old run is moved aside just before the first checkpoint is saved."""
    config_dir = os.path.join(exp_dir, PENDING_CONFIG if pending else "config")
    with open(os.path.join(config_dir, "config.yaml")) as f:
        config = yaml.safe_load(f)
    opts = config["training"]
    use_cuda = device_type == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch.cuda.is_available() is False")
    start = 0 if pending else (latest_epoch(exp_dir) if train_stage < 0 else train_stage)
    if start >= opts["epochs"]:
        logger.info("%s: %d of %d epochs already trained, nothing to do", exp_dir, start, opts["epochs"])
        return None
    # Joined after the early return above, which would otherwise leave the process group undestroyed.
    rank, world_size, local_rank = distributed.init_from_env(use_cuda)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    set_seed(int(opts["seed"]))
    model = build_model(exp_dir, trust_blueprint, config_dir)
    if start == 0 and opts.get("init_from"):
        start_from(model, opts["init_from"], config_dir, rank)
    if distributed.is_distributed() and opts.get("sync_bn", True):
        model = distributed.sync_batchnorm(model, use_cuda)
    if rank == 0:
        info = model.get_model_info()
        logger.info("model: %s", info)
        with atomic_write(os.path.join(config_dir, "model_info.yaml")) as f:
            yaml.safe_dump(info, f)
    optimizer_config = config["optimizer"]
    if distributed.is_distributed() and opts.get("scale_lr", True):
        optimizer_config = distributed.scale_lr(optimizer_config, world_size)
    optimizer = get_optimizer(model.parameters(), optimizer_config)
    scheduler = LRSchedulerWrapper(optimizer, config["lr_scheduler"])
    egs_dir = config["egs"]["dir"]
    train_set = ChunkEgs(os.path.join(egs_dir, "train.egs.csv"), specaug=config["egs"].get("specaug"),
                         seed=int(opts["seed"]))
    valid_set = ChunkEgs(os.path.join(egs_dir, "valid.egs.csv"))
    workers = int(opts.get("num_workers", 0))
    train_loader = make_train_loader(train_set, int(opts["batch_size"]), int(opts["seed"]), workers,
                                     int(opts.get("prefetch_factor", 2)), rank, world_size, pin_memory=use_cuda)
    valid_loader = make_valid_loader(valid_set, int(opts["batch_size"]), workers)
    trainer = SimpleTrainer(model, optimizer, scheduler, train_loader, valid_loader, exp_dir, opts["epochs"],
                            device=device, report_interval=opts.get("report_interval", 100),
                            clip_grad_norm=opts.get("clip_grad_norm"), amp=opts.get("amp"), rank=rank,
                            world_size=world_size, progress_bar=opts.get("progress_bar", True))
    if start > 0:
        logger.info("resuming %s from %d.params", exp_dir, start)
        trainer.load(start)
    try:
        trainer.run(start, before_first_save=(lambda: promote_pending_run(exp_dir)) if pending else None)
    finally:
        # The DDP wrapper's reducer holds the process group: drop it first, so that the group (and gloo's
        # worker threads) is destroyed here, not during interpreter shutdown, where gloo can abort.
        trainer.model = trainer.core
        gc.collect()
        distributed.cleanup()
    return trainer.core


def start_from(model, checkpoint, config_dir, rank=0):
    """Fine-tuning start: ``checkpoint``'s weights into ``model`` (see module docstring); rank 0 writes
    ``config_dir/init_from.yaml``."""
    record = init_weights_from(model, checkpoint)
    logger.info("initialised from %s (sha1 %s): %s", checkpoint, record["sha1"], record["classifier"])
    if rank == 0:
        with atomic_write(os.path.join(config_dir, "init_from.yaml")) as f:
            yaml.safe_dump(record, f, sort_keys=False)


def parse_args(argv=None):
    """The command line of this script (also that of ``train_nodes.py``, the multi-node entry)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="experiment dir with config/ written by the launcher")
    parser.add_argument("--train-stage", type=int, default=-1,
                        help="-1: resume from the latest checkpoint; 0: from scratch; N: from N.params")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--pending", action="store_true",
                        help="retrain from scratch with the record in EXP/config.new (written by the launcher)")
    parser.add_argument("--trust-blueprint", action="store_true", help=TRUST_HELP)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    train(args.exp_dir, args.train_stage, args.device, args.pending, args.trust_blueprint)


if __name__ == "__main__":
    sys.exit(run_cli(main))
