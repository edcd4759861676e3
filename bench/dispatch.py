#!/usr/bin/env python3
"""Overhead of the job dispatchers (issue 15), per stage and per job.

One job stage, make_nosil.py (sliding CMN + voiced frames: milliseconds of work per job, so the time is
the dispatch), run from the command line with N jobs:

- ``local processes``: no ``--cmd`` (forked jobs, the default);
- ``--cmd local``: the shipped runner, one ``python3 make_nosil.py --job J`` process per job;
- ``--cmd slurm``: the built-in SLURM runner (one ``sbatch --array``, followed with squeue) on a private single-node SLURM
  (:mod:`subtools.parallel.local_slurm`; needs root, installs slurm-wlm + munge when missing; the row says
  why it is absent otherwise).

Each configuration runs --repeats times from scratch (output removed); the best and the median wall time
are printed, and the extra seconds over local processes, per stage and per job (the extra divided by N).

    python3 bench/dispatch.py [--jobs 1 4] [--repeats 3]
"""
import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from subtools import REPO_ROOT
from subtools.parallel import local_slurm
from subtools.pytorch.libs.support.synthetic import make_feature_dir

MAKE_NOSIL = [sys.executable, os.path.join(REPO_ROOT, "subtools", "make_nosil.py")]


def time_stage(src, dst, jobs, cmd, repeats):
    """Wall seconds of ``repeats`` runs of make_nosil from scratch."""
    seconds = []
    for _ in range(repeats):
        shutil.rmtree(dst, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([*MAKE_NOSIL, "--nj", str(jobs), *(["--cmd", cmd] if cmd else []), src, dst], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-dispatch-")
    src = os.path.join(root, "src")
    make_feature_dir(src, num_spks=8, utts_per_spk=4, num_frames=(200, 400), dim=20)
    print(f"make_nosil.py on {os.cpu_count()} CPUs, 32 utterances; wall seconds, best and median of {args.repeats}")
    print(f"{'dispatcher':<18} {'jobs':>4} {'best':>7} {'median':>7} {'extra/stage':>12} {'extra/job':>10}")
    with contextlib.ExitStack() as stack:
        try:
            os.environ["SLURM_CONF"] = stack.enter_context(local_slurm.running())
            slurm = "slurm"
        except local_slurm.SlurmUnavailable as e:
            slurm = None
            print(f"(no SLURM row: {e})")
        for jobs in args.jobs:
            local = None
            for label, cmd in (("local processes", ""), ("--cmd local", "local"), ("--cmd slurm", slurm)):
                if cmd is None:
                    continue
                seconds = time_stage(src, os.path.join(root, "dst"), jobs, cmd, args.repeats)
                best, median = min(seconds), statistics.median(seconds)
                local = best if local is None else local
                extra = best - local
                print(f"{label:<18} {jobs:>4} {best:>7.2f} {median:>7.2f} {extra:>12.2f} {extra / jobs:>10.2f}")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
