#!/usr/bin/env python3
"""Average the weights of several epochs of an experiment into one checkpoint.

    python3 subtools/pytorch/pipeline/average_checkpoints.py --exp-dir EXP --epochs "7 8 9" [--out EXP/avg.params]

Reads ``EXP/<N>.params`` for each listed epoch and writes (atomically) ``{"model": mean weights,
"averaged_epochs": [7, 8, 9], "sources": {"7": sha1, ...}}``. Floating tensors are the arithmetic mean
(accumulated in float64, stored in their own dtype); integer buffers (BatchNorm's
``num_batches_tracked``) are the last epoch's. The default output ``EXP/avg.params`` is what the epoch
name ``avg`` reads: ``extract_embeddings.py --epoch avg``, ``extract.epochs: [avg]`` (embeddings in
``EXP/far_epoch_avg/``), ``checkpoint.load_model(EXP, "avg")``. Since the file records its epochs, its
content (which extraction stamps) changes whenever the averaged set does.
"""
import argparse
import logging
import sys

from subtools.cli import run_cli
from subtools.kaldi.fingerprint import content_hash
from subtools.pytorch.libs.support.utils import setup_logging
from subtools.pytorch.libs.training.checkpoint import (AVERAGE, checkpoint_path, load_checkpoint, parse_epoch,
                                                       require_checkpoint, save_checkpoint)

logger = logging.getLogger("average")


def average_states(states, names):
    """Mean of the state dicts ``states`` (same keys and shapes; ``names`` label them in errors);
    integer tensors come from the last one."""
    keys = list(states[-1])
    for state, name in zip(states, names):
        if set(state) != set(keys):
            odd = sorted(set(state) ^ set(keys))
            raise ValueError(f"{name} and {names[-1]} hold different layers ({', '.join(odd[:5])}): not one model")
        for key in keys:
            if state[key].shape != states[-1][key].shape:
                raise ValueError(f"{key} has shape {list(state[key].shape)} in {name} and "
                                 f"{list(states[-1][key].shape)} in {names[-1]}")
    mean = {}
    for key in keys:
        last = states[-1][key]
        if last.is_floating_point():
            total = sum(state[key].double() for state in states)
            mean[key] = (total / len(states)).to(last.dtype)
        else:
            mean[key] = last.clone()
    return mean


def average_checkpoints(exp_dir, epochs, out=None):
    """Write the average of ``EXP/<e>.params`` for ``e`` in ``epochs`` to ``out`` (default
    ``EXP/avg.params``); returns the output path."""
    epochs = [parse_epoch(e) for e in epochs]
    if not epochs or AVERAGE in epochs or len(set(epochs)) != len(epochs):
        raise ValueError(f"--epochs: give distinct epoch numbers, got {' '.join(map(str, epochs)) or 'none'}")
    epochs = sorted(epochs)
    paths = [require_checkpoint(exp_dir, e) for e in epochs]
    states = [load_checkpoint(p)["model"] for p in paths]
    out = out or checkpoint_path(exp_dir, AVERAGE)
    save_checkpoint(out, {"model": average_states(states, paths), "averaged_epochs": epochs,
                          "sources": {str(e): content_hash(p) for e, p in zip(epochs, paths)}})
    logger.info("%s = mean of epochs %s of %s", out, " ".join(map(str, epochs)), exp_dir)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="experiment dir with <N>.params")
    p.add_argument("--epochs", required=True, help='epochs to average, e.g. "7 8 9" (or "7,8,9")')
    p.add_argument("--out", help=f"output checkpoint (default EXP/{AVERAGE}.params, read by --epoch {AVERAGE})")
    args = p.parse_args(argv)
    setup_logging()
    run_cli(average_checkpoints, args.exp_dir, args.epochs.replace(",", " ").split(), args.out)


if __name__ == "__main__":
    sys.exit(main())
