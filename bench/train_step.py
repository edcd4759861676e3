#!/usr/bin/env python3
"""Training-step and egs-loader throughput at the paper's size, with achieved FLOP/s vs a matmul peak.

    python3 bench/train_step.py [--repeats 5] [--steps 1] [--batch 64] [--frames 200] [--device cpu|cuda] [--workers 2]

For the stats-pooling x-vector (conf/xvector-stats.yaml) and the serialized-attention model
(conf/serialized-tdnn-xvector.yaml), with fbank-80 input and 5994 classes (VoxCeleb2-dev speakers):
ms/step and samples/s of a full SGD training step (forward, loss, backward, update), FLOPs per step
counted by torch.utils.flop_counter.FlopCounterMode, and achieved FLOP/s as a fraction of the
float32 matmul peak measured in the same run (the reference figure). The egs loader (ChunkEgs +
DataLoader on a synthetic 80-dim feature ark, chunk 200) is timed in batches/s beside the step rate.
Targets (issue 3): serialized step <= 1.3x the stats step; loader >= 5x the step rate.

The two models are timed alternately, ``--repeats`` times ``--steps`` steps each after two warm-up
steps, and the best (least disturbed) time per step is reported with the median beside it, because
a shared machine's speed drifts by tens of percent within minutes (as bench/features.py does); the
step-time ratio is taken from the best times (the medians' ratio beside it).
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from subtools.pytorch.launcher.config import load_config
from subtools.pytorch.libs.egs.egs import ChunkEgs, make_chunk_egs, make_train_loader
from subtools.pytorch.libs.nnet.framework import load_blueprint
from subtools.pytorch.libs.support.synthetic import make_feature_dir


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, n=2048, reps=10):
    """Best-of float32 ``n x n`` matmul rate in FLOP/s."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def build_step(config_path, args, device):
    """``(name, step, flops per step, params)`` of one model: ``step()`` runs one SGD training step."""
    cfg = load_config(config_path)
    cls = load_blueprint(cfg["model"]["blueprint"], cfg["model"]["class"])
    model = cls(80, args.num_targets, **cfg["model"]["params"]).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch, 80, args.frames, device=device)
    y = torch.randint(0, args.num_targets, (args.batch,), device=device)

    def step():
        loss, _ = model.get_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        step()
    name = cfg["model"]["class"] + "/" + str(cfg["model"]["params"].get("pooling", "serialized"))
    return name, step, counter.get_total_flops(), sum(p.numel() for p in model.parameters())


def time_alternately(steps, args, device):
    """Seconds per step ``[model][repeat]``: the models take turns, ``args.steps`` steps per turn."""
    for step in steps:
        for _ in range(2):
            step()
    times = [[] for _ in steps]
    for _ in range(args.repeats):
        for k, step in enumerate(steps):
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync(device)
            times[k].append((time.perf_counter() - t) / args.steps)
    return times


def bench_loader(args):
    with tempfile.TemporaryDirectory() as tmp:
        make_feature_dir(f"{tmp}/data", num_spks=32, utts_per_spk=8, num_frames=(400, 800), dim=80)
        make_chunk_egs(f"{tmp}/data", f"{tmp}/egs", chunk_size=args.frames, valid_spks=0)
        dataset = ChunkEgs(f"{tmp}/egs/train.egs.csv")
        loader = make_train_loader(dataset, args.batch, seed=0, num_workers=args.workers, prefetch_factor=4)
        batches, t, epoch = 0, time.perf_counter(), 0
        while batches < args.loader_batches:
            loader.sampler.set_epoch(epoch)
            for _ in loader:
                batches += 1
            epoch += 1
        return batches / (time.perf_counter() - t), len(dataset)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="alternating timings of each model (>= 5 for the README)")
    p.add_argument("--steps", type=int, default=1, help="training steps per timing")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--num-targets", type=int, default=5994)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: cores)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the loader bench")
    p.add_argument("--loader-batches", type=int, default=60)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch} x 80 x {args.frames}")
    peak = matmul_peak(device)
    print(f"reference: float32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    models = [build_step(path, args, device) for path in ("conf/xvector-stats.yaml", "conf/serialized-tdnn-xvector.yaml")]
    times = time_alternately([step for _, step, _, _ in models], args, device)
    print(f"time per step: best (median) of {args.repeats} alternating timings of {args.steps} step(s)")
    best = [min(t) for t in times]
    median = [float(np.median(t)) for t in times]
    for (name, _, flops, params), seconds, mid in zip(models, best, median):
        achieved = flops / seconds
        print(f"{name:<28} params {params / 1e6:6.2f} M  {seconds * 1e3:8.1f} ({mid * 1e3:.1f}) ms/step  "
              f"{args.batch / seconds:7.1f} samples/s  {flops / 1e9:7.1f} GFLOP/step  "
              f"{achieved / 1e9:7.1f} GFLOP/s = {100 * achieved / peak:5.1f} % of matmul peak")
    print(f"serialized / stats step time: {best[1] / best[0]:.2f}x ({median[1] / median[0]:.2f}x) (target <= 1.3x)")
    loader_rate, n_egs = bench_loader(args)
    step_rate = 1 / max(best)
    print(f"egs loader ({args.workers} workers, {n_egs} egs): {loader_rate:.1f} batches/s vs "
          f"{step_rate:.2f} steps/s of the slower model: {loader_rate / step_rate:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
