#!/usr/bin/env python3
"""Per-process entry of a multi-node training (launcher ``--nnodes N``), under torchrun on every node.

    torchrun --nnodes 2 --node-rank R --master-addr HOST --master-port 29500 --nproc_per_node 4 \\
        subtools/pytorch/pipeline/train_nodes.py --exp-dir EXP --device cuda

Joins the process group first, then takes ``--train-stage`` and ``--pending`` from global rank 0: the
processes of node 0, whose launcher prepared the experiment (wrote ``EXP/config``) and decided where the
training starts; another node's launcher cannot know that (it may look at ``EXP`` while node 0 writes it).
torchrun starts the processes only once every node has joined the rendezvous at node 0, which happens after
node 0's launcher has prepared the experiment. Then it trains as ``pipeline/train.py`` (its arguments).
"""
import sys

import torch

from subtools.cli import run_cli
from subtools.pytorch.libs.support.utils import setup_logging
from subtools.pytorch.libs.training import distributed
from subtools.pytorch.pipeline.train import parse_args, train


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    use_cuda = args.device == "cuda"
    _, _, local_rank = distributed.init_from_env(use_cuda)
    decided = torch.tensor([args.train_stage, int(args.pending)], device=f"cuda:{local_rank}" if use_cuda else "cpu")
    distributed.broadcast(decided, src=0)
    train_stage, pending = decided.tolist()
    try:
        train(args.exp_dir, train_stage, args.device, bool(pending), args.trust_blueprint)
    finally:
        distributed.cleanup()   # train() returns before its own cleanup when no epoch is left


if __name__ == "__main__":
    sys.exit(run_cli(main))
