#!/usr/bin/env python3
"""The shipped local job runner, with Kaldi's ``run.pl`` convention (:mod:`subtools.parallel.convention`):

    python3 subtools/parallel/run.py [--max-jobs-run N] JOB=1:8 exp/log/name.JOB.log command args...

Runs the jobs as local processes, at most N at once (default: the number of CPUs). Each command is run
directly, without a shell (its arguments arrive as they are; a pipe needs ``bash -c "..."``). The resource
options of Kaldi's queue runners (``--mem``, ``--gpu``, ``--num-threads``, ``--time``, each with a value)
are accepted and ignored, as run.pl does, so that a ``--cmd`` string switches runner by its first word;
any other option is an error. Exit status 1 when a job failed, naming the failed jobs' logs.
"""
import concurrent.futures
import os
import shlex
import socket
import subprocess
import sys
import time

from subtools.cli import run_cli
from subtools.parallel.convention import ended_line, parse_range, started_line

IGNORED_OPTIONS = ("--mem", "--gpu", "--num-threads", "--time")
USAGE = "usage: run.py [--max-jobs-run N] [JOB=a:b] LOGFILE command args..."


def parse_args(argv):
    """``(max_jobs, [(log, command)] per job)`` from the runner's arguments."""
    args, max_jobs = list(argv), os.cpu_count() or 1
    while args and args[0].startswith("-"):
        option, has_value, value = args.pop(0).partition("=")
        if not has_value:
            if not args:
                raise ValueError(f"option {option} needs a value; {USAGE}")
            value = args.pop(0)
        if option == "--max-jobs-run":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"--max-jobs-run needs a positive integer, got '{value}'")
            max_jobs = int(value)
        elif option not in IGNORED_OPTIONS:
            raise ValueError(f"unknown option {option} (known: --max-jobs-run; accepted and ignored: "
                             f"{', '.join(IGNORED_OPTIONS)}); {USAGE}")
    job_range = parse_range(args[0]) if args else None
    if job_range:
        args.pop(0)
    if len(args) < 2:
        raise ValueError(USAGE)
    log, command = args[0], args[1:]
    if job_range is None:
        return max_jobs, [(log, command)]
    return max_jobs, [(job_range.substitute(log, n), [job_range.substitute(a, n) for a in command])
                      for n in job_range.numbers()]


def run_job(log_path, command):
    """Run one job with its output in ``log_path`` (header and ``# Ended`` lines); returns its exit code."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    start = time.time()
    with open(log_path, "w") as log:
        log.write(f"# {shlex.join(command)}\n{started_line(time.ctime(), socket.gethostname())}\n")
        log.flush()
        try:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        except OSError as e:   # the program cannot be started
            log.write(f"run.py: {e}\n")
            code = 127
        log.write(ended_line(code, time.ctime(), f"{time.time() - start:.1f}") + "\n")
    return code


def run(argv):
    max_jobs, jobs = parse_args(argv)
    with concurrent.futures.ThreadPoolExecutor(max_jobs) as pool:
        codes = list(pool.map(lambda job: run_job(*job), jobs))
    failed = [log for (log, _), code in zip(jobs, codes) if code != 0]
    if failed:
        print(f"run.py: {len(failed)} / {len(jobs)} jobs failed, see {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(run, sys.argv[1:]))
