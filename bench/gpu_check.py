#!/usr/bin/env python3
"""GPU check (issue 14, item 4): ``bash bench/gpu_check.sh [--work DIR]`` (= ``python3 bench/gpu_check.py``).

One command, about 5 minutes at most on one GPU, no downloads (synthetic data). Without CUDA it says
so and exits 0. Otherwise it runs the parts below one after the other, each in its own process group
with a time limit (a failing or hanging part is reported, killed with its children, and the others
still run), then prints a summary: every ``RESULT`` line and each part's status. Exit status 0 when
every part passed, 1 otherwise. ``--work DIR`` keeps each part's files and ``DIR/<part>.log`` (default:
a temporary dir, removed). ``--dry-run`` runs the parts on the CPU with tiny sizes to check the
plumbing (its figures mean nothing). One part alone: ``python3 bench/gpu_check.py PART --work DIR``.

* ``throughput``: training samples/s of the paper model (conf/serialized-tdnn-xvector.yaml) and the
  statistics-pooling baseline (conf/xvector-stats.yaml), 80-dim input, 5,994 classes, batch 512 x 200
  frames, in fp32 and under bf16 / fp16 autocast (fp16 with a GradScaler): the trainer's own
  ``SimpleTrainer.train_step`` with each config's optimizer and gradient clipping, best (median) of 3
  timings of 5 steps after 3 warm-up steps. Writes ``step_rates.json`` for ``loader``.
* ``ddp``: synthetic features -> launcher stages 0-3 on one GPU (the plain run), then the same
  experiment's ``train.py`` under ``torchrun --nproc_per_node=1`` (NCCL, DDP, SyncBatchNorm): the
  two checkpoints compared (GPU kernels are not bitwise deterministic: a small difference is expected).
* ``extract``: ``extract_embeddings.extract`` of one data dir on cuda and on the CPU (random-init paper
  and baseline models, utterances of 150-2,500 frames cut at 1,000): max |difference| (target <= 1e-4).
* ``loader``: the egs loader (``ChunkEgs`` + ``make_train_loader``, batch 512 x 200 frames of 80 dims,
  pinned, copied to the device) in batches/s with 8 and 16 workers, beside the fastest step rate that
  ``throughput`` measured (``--step-rates``).
"""
import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import kaldiio
import numpy as np
import torch
import yaml

from subtools import resolve_path
from subtools.kaldi.fileio import read_table
from subtools.pytorch.launcher.config import load_config
from subtools.pytorch.libs.egs.egs import ChunkEgs, make_chunk_egs, make_train_loader
from subtools.pytorch.libs.nnet.framework import load_blueprint
from subtools.pytorch.libs.support.synthetic import make_feature_dir
from subtools.pytorch.libs.support.utils import set_seed
from subtools.pytorch.libs.training.checkpoint import build_model, load_checkpoint, save_checkpoint, write_model_config
from subtools.pytorch.libs.training.lr_scheduler import LRSchedulerWrapper
from subtools.pytorch.libs.training.optim import get_optimizer
from subtools.pytorch.libs.training.trainer import SimpleTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PARTS = {"throughput": 70, "ddp": 100, "extract": 80, "loader": 50}   # time limit of each part, seconds
MODELS = {"serialized (paper)": "conf/serialized-tdnn-xvector.yaml", "stats baseline": "conf/xvector-stats.yaml"}
FEAT_DIM, NUM_TARGETS = 80, 5994


def result(text):
    print(f"RESULT {text}", flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def config_model(config_path, num_targets):
    """``(merged config, model)`` of a shipped experiment config, 80-dim input."""
    cfg = load_config(os.path.join(REPO, config_path))
    cls = load_blueprint(resolve_path(cfg["model"]["blueprint"]), cfg["model"]["class"])
    return cfg, cls(FEAT_DIM, num_targets, **cfg["model"]["params"])


# ---- training throughput -----------------------------------------------------------------------------
def step_time(trainer, x, y, device, steps, repeats=3):
    """Best and median seconds per ``train_step`` over ``repeats`` timings of ``steps`` steps."""
    for _ in range(3):
        trainer.train_step(x, y)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(x, y)
        sync(device)
        times.append((time.perf_counter() - start) / steps)
    return min(times), statistics.median(times)


def throughput(args):
    device = torch.device(args.device)
    batch, frames, steps = (8, 50, 2) if args.quick else (512, 200, 5)
    x = torch.randn(batch, FEAT_DIM, frames, device=device)
    y = torch.randint(0, NUM_TARGETS, (batch,), device=device)
    rates, failures = {}, 0
    for precision in ("fp32", "bf16", "fp16"):
        for name, config_path in MODELS.items():
            try:
                set_seed(0)
                cfg, model = config_model(config_path, NUM_TARGETS)
                optimizer = get_optimizer(model.parameters(), cfg["optimizer"])
                trainer = SimpleTrainer(model, optimizer, LRSchedulerWrapper(optimizer, cfg["lr_scheduler"]), None,
                                        None, args.work, 1, device=device,
                                        clip_grad_norm=cfg["training"]["clip_grad_norm"],
                                        amp=None if precision == "fp32" else precision)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                best, median = step_time(trainer, x, y, device, steps)
                memory = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
                rates[f"{name} {precision}"] = batch / best
                print(f"{name:<20} {precision}: {best * 1e3:7.1f} ({median * 1e3:.1f}) ms/step, peak memory "
                      f"{memory:.1f} GiB", flush=True)
            except Exception as e:  # one failing configuration (e.g. out of memory) must not hide the others
                failures += 1
                result(f"throughput {name} {precision}: FAILED: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
            finally:
                trainer = model = optimizer = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        paper, stats = (rates.get(f"{n} {precision}") for n in MODELS)
        for name in MODELS:
            rate, fp32 = rates.get(f"{name} {precision}"), rates.get(f"{name} fp32")
            if rate is None:
                continue
            speedup = f", {rate / fp32:.2f}x its fp32" if fp32 and precision != "fp32" else ""
            result(f"train {name:<18} {precision} batch {batch}x{frames}: {rate:8.0f} samples/s{speedup}")
        if paper and stats:
            result(f"train {precision}: paper / stats baseline step time {stats / paper:.2f}x "
                   "(bench/train_step.py target <= 1.3x)")
    with open(os.path.join(args.work, "step_rates.json"), "w") as f:
        json.dump({key: rate / batch for key, rate in rates.items()}, f)
    return 1 if failures else 0


# ---- one-process DDP under torchrun ------------------------------------------------------------------
def ddp(args):
    gpu = args.device == "cuda"
    data = os.path.join(args.work, "data")
    make_feature_dir(os.path.join(data, "train"), num_spks=8 if args.quick else 16, utts_per_spk=8,
                     num_frames=(300, 500), dim=FEAT_DIM, seed=0)
    plain, dist = os.path.join(args.work, "plain"), os.path.join(args.work, "ddp")
    config = {
        "include": os.path.join(REPO, MODELS["serialized (paper)"]), "data_root": data, "train_set": "train",
        "exp_dir": plain, "stage0": {"nj": 2}, "stage1": {"min_frames": 200, "min_utts": 4},
        "egs": {"dir": os.path.join(args.work, "egs"), "chunk_num": 8 if args.quick else 64, "valid_spks": 4},
        "training": {"epochs": 1, "batch_size": 16 if args.quick else 128, "num_workers": 2, "report_interval": 4,
                     "progress_bar": False},
    }
    config_path = os.path.join(args.work, "ddp.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f)
    launcher = [sys.executable, os.path.join(REPO, "recipe", "serialized-experiments", "runSerialized-tdnn-xvector.py"),
                "--config", config_path, "--endstage", "3", "--gpu-id", "0" if gpu else ""]
    print("plain run:", " ".join(launcher), flush=True)
    subprocess.run(launcher, check=True, cwd=REPO)
    shutil.copytree(os.path.join(plain, "config"), os.path.join(dist, "config"))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                os.path.join(REPO, "subtools", "pytorch", "pipeline", "train.py"), "--exp-dir", dist,
                *(["--device", "cuda"] if gpu else [])]
    print("DDP run:", " ".join(torchrun), flush=True)
    run = subprocess.run(torchrun, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(run.stdout, flush=True)
    if run.returncode != 0:
        result(f"ddp: torchrun train.py FAILED with exit code {run.returncode} (its output is above)")
        return 1
    joined = "x 1 processes" in run.stdout    # distributed.scale_lr logs this only in a process group
    a, b = (load_checkpoint(os.path.join(d, "1.params"))["model"] for d in (plain, dist))
    floats = [k for k in a if a[k].is_floating_point()]
    diff = max((a[k] - b[k]).abs().max().item() for k in floats)
    scale = max(a[k].abs().max().item() for k in floats)
    losses = [_last_valid_loss(d) for d in (plain, dist)]
    steps = _last_row(dist)["iter"]
    backend = "NCCL" if gpu else "gloo"
    result(f"ddp: torchrun --nproc_per_node=1 train.py ({backend}, process group joined: "
           f"{'yes' if joined else 'NO'}): {steps} steps of batch {config['training']['batch_size']}, 1.params written")
    result(f"ddp: weights vs the plain single-process run: max |diff| {diff:.2e} (max |w| {scale:.2f}); "
           f"valid loss {losses[1]:.4f} vs {losses[0]:.4f}")
    return 0 if joined else 1


def _last_row(exp_dir):
    with open(os.path.join(exp_dir, "log", "train.csv")) as f:
        return list(csv.DictReader(f))[-1]


def _last_valid_loss(exp_dir):
    return float(_last_row(exp_dir)["valid_loss"])


# ---- extraction on the device vs the CPU -------------------------------------------------------------
def extract_check(args):
    from subtools.pytorch.pipeline.extract_embeddings import extract
    data = os.path.join(args.work, "data", "test")
    make_feature_dir(data, num_spks=4, utts_per_spk=3, num_frames=(150, 600 if args.quick else 2500), dim=FEAT_DIM,
                     seed=7)
    worst = 0.0
    for name, config_path in MODELS.items():
        exp = os.path.join(args.work, name.split()[0])
        set_seed(0)
        cfg, _ = config_model(config_path, NUM_TARGETS)
        write_model_config(exp, cfg["model"], FEAT_DIM, NUM_TARGETS)
        save_checkpoint(os.path.join(exp, "1.params"), {"model": build_model(exp).state_dict()})
        outputs = {}
        for device in ("cpu", args.device):
            out = os.path.join(exp, f"embeddings_{device}")
            extract(exp, 1, data, out, nj=2, max_chunk_frames=1000, device=device, force=True)
            outputs[device] = {u: kaldiio.load_mat(v) for u, v in read_table(os.path.join(out, "xvector.scp")).items()}
        cpu, other = outputs["cpu"], outputs[args.device]
        diff = max(np.abs(cpu[u] - other[u]).max() for u in cpu)
        scale = max(np.abs(cpu[u]).max() for u in cpu)
        worst = max(worst, diff)
        verdict = "met" if diff <= 1e-4 else "NOT MET"
        result(f"extract {name:<18} {args.device} vs cpu, {len(cpu)} utterances: max |diff| {diff:.2e} "
               f"(max |e| {scale:.2f}); target <= 1e-4: {verdict}")
    return 0 if worst <= 1e-4 else 1


# ---- egs loader vs the step rate ---------------------------------------------------------------------
def loader(args):
    device = torch.device(args.device)
    batch, frames = (16, 50) if args.quick else (512, 200)
    data, egs = os.path.join(args.work, "data"), os.path.join(args.work, "egs")
    make_feature_dir(data, num_spks=16 if args.quick else 64, utts_per_spk=4, num_frames=(600, 1000), dim=FEAT_DIM,
                     seed=0)
    make_chunk_egs(data, egs, chunk_size=frames, valid_spks=0, chunk_num=40 if args.quick else 400)
    dataset = ChunkEgs(os.path.join(egs, "train.egs.csv"))
    step_rates = {}
    if args.step_rates and os.path.isfile(args.step_rates):
        with open(args.step_rates) as f:
            step_rates = json.load(f)
    fastest = max(step_rates.items(), key=lambda kv: kv[1], default=None)
    for workers in args.workers:
        data_loader = make_train_loader(dataset, batch, seed=0, num_workers=workers, prefetch_factor=4,
                                        pin_memory=device.type == "cuda")
        data_loader.sampler.set_epoch(0)
        batches, start = 0, None
        for x, _ in data_loader:
            x = x.to(device, non_blocking=True)
            if start is None:                   # the first batch waits for the workers to start
                sync(device)
                start = time.perf_counter()
                continue
            batches += 1
            if time.perf_counter() - start > 30:
                break
        sync(device)
        rate = batches / (time.perf_counter() - start)
        beside = (f"{rate / fastest[1]:.1f}x the fastest training step rate ({fastest[0]}: {fastest[1]:.2f} steps/s)"
                  if fastest else "no step rate to compare (the throughput part did not finish)")
        result(f"loader {workers:>2} workers, batch {batch}x{frames}x{FEAT_DIM}: {rate:7.1f} batches/s "
               f"({batches} after the first); {beside}")
    return 0


# ---- the whole check ---------------------------------------------------------------------------------
def environment():
    line = (f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
            f"{os.cpu_count()} CPUs")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        line += (f"; GPU {props.name}, {props.total_memory / 2 ** 30:.0f} GiB; fp32 precision (torch's defaults, "
                 f"which training keeps): matmul {torch.backends.cuda.matmul.fp32_precision}, "
                 f"cuDNN conv {torch.backends.cudnn.conv.fp32_precision}")
    return line


def run_part(part, limit, extra, work):
    """Run one part in its own process group, its output shown and kept in ``work/<part>.log``; the
    group is killed after ``limit`` seconds. Returns ``(status, seconds)``."""
    command = [sys.executable, os.path.abspath(__file__), part, "--work", os.path.join(work, part), *extra]
    print(f"\n=== {part} (time limit {limit} s) ===", flush=True)
    start = time.perf_counter()
    with open(os.path.join(work, f"{part}.log"), "w") as log:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

        def copy():
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)

        reader = threading.Thread(target=copy)
        reader.start()
        try:
            code = proc.wait(timeout=limit)
            status = "ok" if code == 0 else f"FAILED (exit status {code})"
        except subprocess.TimeoutExpired:
            status = f"TIMED OUT after {limit} s"
        finally:   # also on Ctrl-C or success: no torchrun or extraction job outlives its part
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        reader.join(timeout=10)
    sys.stdout.flush()
    return status, time.perf_counter() - start


def check(args):
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to measure, exiting 0")
        return 0
    if args.dry_run:
        print("gpu_check: dry run on the CPU with tiny sizes (--dry-run): the figures mean nothing")
    print(environment(), flush=True)
    work = args.work or tempfile.mkdtemp(prefix="gpu_check.")
    os.makedirs(work, exist_ok=True)
    common = ["--device", "cpu", "--quick"] if args.dry_run else ["--device", "cuda"]
    extra = {"loader": ["--step-rates", os.path.join(work, "throughput", "step_rates.json"),
                        *(["--workers", "1", "2"] if args.dry_run else [])]}
    statuses = {part: run_part(part, limit, common + extra.get(part, []), work) for part, limit in PARTS.items()}
    print(f"\n=== summary ({'cpu dry run' if args.dry_run else 'cuda'}) ===")
    for part in PARTS:
        with open(os.path.join(work, f"{part}.log")) as f:
            for line in f:
                if line.startswith("RESULT "):
                    print("  " + line[len("RESULT "):], end="")
    print("parts:")
    for part, (status, seconds) in statuses.items():
        print(f"  {part:<10} {status}, {seconds:.0f} s")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(status == "ok" for status, _ in statuses.values()) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", nargs="?", choices=list(PARTS), help="run one part only (default: the whole check)")
    p.add_argument("--work", help="scratch dir (one part: required; the whole check: kept when given)")
    p.add_argument("--dry-run", action="store_true", help="the whole check on the CPU with tiny sizes")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="one part: its device")
    p.add_argument("--quick", action="store_true", help="one part: tiny sizes (figures meaningless)")
    p.add_argument("--workers", type=int, nargs="+", default=[8, 16], help="loader: DataLoader workers to time")
    p.add_argument("--step-rates", help="loader: the step_rates.json the throughput part wrote")
    args = p.parse_args()
    if args.part is None:
        return check(args)
    if not args.work:
        p.error("a part needs --work DIR")
    os.makedirs(args.work, exist_ok=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check.py: --device cuda but torch.cuda.is_available() is False")
    parts = {"throughput": throughput, "ddp": ddp, "extract": extract_check, "loader": loader}
    return parts[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
