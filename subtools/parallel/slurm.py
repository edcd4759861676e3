#!/usr/bin/env python3
"""The built-in SLURM runner, with Kaldi's runner convention (:mod:`subtools.parallel.convention`):

    python3 subtools/parallel/slurm.py [options] JOB=1:8 exp/log/name.JOB.log command args...
    a stage's option:  --cmd "slurm --partition cpu --mem 4G"

Submits the jobs as one SLURM job array (``sbatch --array=1-8``), waits until none of its tasks is pending or
running (``squeue``, every 0.5 s at first, then less often, every 5 s at most) and exits 1 naming the logs of
the jobs that failed. Task J runs ``command args...`` with JOB replaced by J, in the
submitting directory and environment (sbatch's defaults), its output in its log file (``--output``, with
Kaldi's header and ``# Ended (code N)`` lines; a log without that line: the task was killed, e.g. at its
time or memory limit, and SLURM's reason is the log's last line).

Options (everything before ``JOB=a:b``, which is required): Kaldi's queue options ``--max-jobs-run N`` (at
most N tasks at once: ``--array=...%N``), ``--num-threads N`` (``--cpus-per-task=N``) and ``--gpu N``
(``--gres=gpu:N``); any other option goes to sbatch as it is (``--partition cpu``, ``--mem 4G``, ``--time
1:00:00``, ``--account X``, ``--exclusive``...), and sbatch refuses what it does not know. Interrupting the
runner (Ctrl-C, SIGTERM) cancels the array (``scancel``).

The polling bounds the runner's overhead per stage (``bench/dispatch.py`` measures it); ``sbatch --wait``
would poll every 2 s, then every 10 s, adding up to 8 s to a short stage.
"""
import os
import shlex
import signal
import subprocess
import sys
import time

from subtools.cli import run_cli
from subtools.parallel.convention import ended_line, exit_code, parse_range, started_line

USAGE = "usage: slurm.py [options] JOB=a:b LOGFILE command args..."
TASK_ID = "$SLURM_ARRAY_TASK_ID"


def parse_args(argv):
    """``(sbatch options, max tasks at once or None, JobRange, log, command)``."""
    for i, arg in enumerate(argv):
        job_range = parse_range(arg)
        if job_range:
            break
    else:
        raise ValueError(f"the job range JOB=a:b is required; {USAGE}")
    rest = argv[i + 1:]
    if len(rest) < 2:
        raise ValueError(USAGE)
    options, max_jobs = sbatch_options(argv[:i])
    return options, max_jobs, job_range, rest[0], rest[1:]


def sbatch_options(args):
    """Kaldi's queue options translated to sbatch's (see the module docstring); the rest kept."""
    args, options, max_jobs = list(args), [], None
    while args:
        arg = args.pop(0)
        name, has_value, value = arg.partition("=")
        if name not in ("--max-jobs-run", "--num-threads", "--gpu"):
            options.append(arg)
            continue
        if not has_value:
            if not args:
                raise ValueError(f"option {name} needs a value")
            value = args.pop(0)
        if not value.isdigit() or (int(value) < 1 and name != "--gpu"):
            raise ValueError(f"{name} needs a {'non-negative' if name == '--gpu' else 'positive'} integer, "
                             f"got '{value}'")
        if name == "--max-jobs-run":
            max_jobs = int(value)
        elif name == "--num-threads":
            options.append(f"--cpus-per-task={value}")
        elif int(value) > 0:
            options.append(f"--gres=gpu:{value}")
    return options, max_jobs


def task_script(job_range, command):
    """The bash script of one array task: ``command`` with the job name replaced by the task id, between
    the log's header and ``# Ended`` lines."""
    name = job_range.name
    run = " ".join(f'"{TASK_ID}"'.join(shlex.quote(piece) for piece in arg.split(name)) for arg in command)
    return "\n".join([
        "#!/bin/bash",
        "start=$(date +%s)",
        f"line={shlex.quote('# ' + shlex.join(command))}",
        f'echo "${{line//{name}/{TASK_ID}}}"',
        f'echo "{started_line("$(date)", "$(hostname)")}"',
        run,
        "code=$?",
        f'echo "{ended_line("$code", "$(date)", "$(( $(date +%s) - start ))")}"',
        "exit $code",
        "",
    ])


def wait_for(job_id, first=0.5, longest=5.0):
    """Return once no task of job ``job_id`` is pending or running (squeue lists none, or no longer knows
    the job); a failing squeue (controller busy) is asked again."""
    delay = first
    while True:
        time.sleep(delay)
        queued = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
        if (queued.returncode == 0 and not queued.stdout.strip()) or "Invalid job id" in queued.stderr:
            return
        delay = min(delay * 1.2, longest)


def submit(options, max_jobs, job_range, log, command):
    """Submit the array and wait for it (cancelling it if interrupted); returns sbatch's exit code."""
    log = os.path.abspath(log)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    array = f"{job_range.first}-{job_range.last}" + (f"%{max_jobs}" if max_jobs else "")
    job_name = job_range.substitute(os.path.splitext(os.path.basename(log))[0], "").strip("._") or "job"
    output = log.replace("%", "%%").replace(job_range.name, "%a")
    sbatch = ["sbatch", "--parsable", f"--array={array}", f"--job-name={job_name}", f"--output={output}",
              "--open-mode=truncate", *options]
    submitted = subprocess.run(sbatch, input=task_script(job_range, command), stdout=subprocess.PIPE, text=True)
    job_id = submitted.stdout.strip().split(";")[0]
    if submitted.returncode != 0 or not job_id:
        return submitted.returncode or 1
    print(f"slurm.py: job array {job_id} ({job_range}): {log}", file=sys.stderr)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        wait_for(job_id)
    except BaseException:
        subprocess.run(["scancel", job_id], check=False)
        print(f"slurm.py: interrupted: cancelled job array {job_id}", file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def run(argv):
    options, max_jobs, job_range, log, command = parse_args(argv)
    logs = [job_range.substitute(os.path.abspath(log), n) for n in job_range.numbers()]
    for path in logs:   # an earlier run's "Ended (code 0)" must not pass for this run's
        if os.path.exists(path):
            os.remove(path)
    code = submit(options, max_jobs, job_range, log, command)
    failed = [path for path in logs if code or exit_code(path) != 0]
    if failed:
        print(f"slurm.py: {len(failed)} / {len(logs)} jobs failed{f' (sbatch exit code {code})' if code else ''}, "
              f"see {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(run, sys.argv[1:]))
