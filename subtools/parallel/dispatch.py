"""What a job stage does with ``--cmd`` (the ``dispatch`` of :func:`subtools.kaldi.ark_jobs.run_jobs`).

Without ``--cmd`` a stage runs its jobs as local processes, as always. With it, the stage (the *parent*)
works out its jobs and their stamps as always, removes its merged outputs, then runs the jobs it must
(re)run through a runner with Kaldi's convention (:mod:`subtools.parallel.convention`)::

    RUNNER [opts] JOB=a:b LOGDIR/<name>.JOB.log env PYTHONPATH=<repo> python3 <script> <args> --job JOB --job-token T

once per contiguous range of those job numbers, the ranges at once (one call on a first run; after
failures, calls for the failed jobs only), then checks every job's ``.done`` stamp: a job without it
failed, and the stage stops naming the job logs; otherwise it merges exactly as a local run. A rerun
redoes only the jobs whose stamps are missing.

``--cmd`` values:

- ``local [--max-jobs-run N]``: the shipped local runner (``subtools/parallel/run.py``);
- ``slurm [options]``: the built-in SLURM runner (``subtools/parallel/slurm.py``: one ``sbatch --array`` per
  range, followed with squeue; options such as ``--partition cpu --mem 4G`` go to sbatch);
- ``run.pl [opts]``: Kaldi's run.pl when it is on PATH, else the shipped local runner;
- any other program (``queue.pl -q all.q``, ``slurm.pl --mem 4G``, a path): run as it is; it must be found.

**A job process** (``--job J --job-token T``, what the runner starts) rebuilds the stage's items from the
same inputs, runs job J (or the retry of its failed items) exactly as a local job does (temp names renamed
into place, the stamp last), and exits without merging. It does not take the output directory's lock, which
its parent holds for the whole dispatch; instead it checks that the parent's dispatch is live: the parent
writes a random token to ``<ark_dir>/<name>.dispatch`` before the first job and removes it after the last,
and a job whose ``--job-token`` does not match stops before writing anything (a job command copied from an
old log cannot write beside a later run). The check is a file read, so it works for jobs on any node of a
shared file system, including ones whose ``flock`` is local to a node (only the parent locks; two parents on
different nodes exclude each other only where the storage supports flock across nodes: NFSv4, Lustre or GPFS
mounted with flock). A parent stopped with Ctrl-C or SIGTERM stops its runners, which cancel their jobs
(the built-in ones do; Kaldi's queue.pl and slurm.pl too); one killed with SIGKILL leaves its jobs queued:
cancel them (``scancel``) before a rerun. A job also checks the token again before it renames its outputs
into place, so one that outlived its dispatch writes nothing.

Jobs run in the parent's working directory (the runners' and sbatch's default, queue.pl's ``-cwd``), so
relative paths in tables and on the command line mean the same on every node of the shared file system.
"""
import contextlib
import dataclasses
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys

from subtools import REPO_ROOT
from subtools.kaldi.fileio import atomic_write
from subtools.kaldi.lock import locked
from subtools.parallel.convention import contiguous_ranges

JOB = "JOB"
RUNNERS = {"local": os.path.join(REPO_ROOT, "subtools", "parallel", "run.py"),
           "slurm": os.path.join(REPO_ROOT, "subtools", "parallel", "slurm.py")}
CMD_HELP = ("run the jobs through this Kaldi-style runner instead of local processes: 'local', 'slurm "
            "[sbatch options]' (e.g. 'slurm --partition cpu --mem 4G'), 'run.pl', 'queue.pl ...', 'slurm.pl ...' "
            "(see the README, Running on a cluster)")


def python_command(script, *args):
    """argv running a project script with this Python and the repo on PYTHONPATH (for any node)."""
    return ["env", f"PYTHONPATH={REPO_ROOT}", sys.executable, os.path.abspath(script), *map(str, args)]


def runner_argv(cmd):
    """The argv prefix of the runner ``cmd`` names (see the module docstring); ValueError if not found."""
    words = shlex.split(cmd)
    if not words:
        raise ValueError("--cmd is empty (leave it out for local processes)")
    program, options = words[0], words[1:]
    if program == "slurm" and shutil.which("sbatch") is None:
        raise ValueError(f"--cmd '{cmd}': sbatch is not on PATH (SLURM's client commands are needed)")
    if program in RUNNERS:
        return python_command(RUNNERS[program], *options)
    found = shutil.which(program)
    if found is None and program == "run.pl":
        return python_command(RUNNERS["local"], *options)
    if found is None:
        raise ValueError(f"--cmd '{cmd}': {program} not found on PATH (built-in runners: local, slurm; "
                         "Kaldi's run.pl, queue.pl, slurm.pl are in egs/wsj/s5/utils/parallel/)")
    return [found, *options]


@dataclasses.dataclass
class ClusterJobs:
    """The parent's side: run jobs through ``cmd``. ``command``: one job's argv without ``--job`` and
    ``--job-token`` (:func:`python_command`); ``log_dir``: where ``<name>.<J>.log`` go."""

    cmd: str
    command: list
    log_dir: str

    def __post_init__(self):
        self.runner = runner_argv(self.cmd)
        clash = [arg for arg in self.command + [self.log_dir] if JOB in arg]
        if clash:
            raise ValueError(f"--cmd: '{clash[0]}' contains '{JOB}', which the runner would replace by the job "
                             "number; use a path without it")

    def log_path(self, name, number):
        return os.path.join(self.log_dir, f"{name}.{number}.log")

    def run(self, numbers, name, token_path):
        """Run jobs ``numbers`` of the stage ``name`` (see the module docstring): one runner per contiguous
        range, all at once; returns the runners' exit codes (the jobs' stamps, not these, tell which jobs
        completed). Interrupted (Ctrl-C, SIGTERM), it stops the runners (which cancel what they queued) and
        ends the dispatch before it returns."""
        token = secrets.token_hex(8)
        with atomic_write(token_path) as f:
            f.write(token + "\n")
        runners = []
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            for first, last in contiguous_ranges(numbers):
                argv = [*self.runner, f"{JOB}={first}:{last}", os.path.join(self.log_dir, f"{name}.{JOB}.log"),
                        *self.command, "--job", JOB, "--job-token", token]
                runners.append(subprocess.Popen(argv))
            return [runner.wait() for runner in runners]
        finally:
            signal.signal(signal.SIGTERM, previous)
            for runner in runners:
                if runner.poll() is None:
                    runner.terminate()
            for runner in runners:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    runner.wait(timeout=30)
            with contextlib.suppress(FileNotFoundError):
                os.remove(token_path)


@dataclasses.dataclass
class OneJob:
    """The job's side: this process is job ``number`` of the dispatch holding ``token``."""

    number: int
    token: str

    def check(self, token_path):
        """RuntimeError unless the dispatch that started this job is still running."""
        try:
            with open(token_path) as f:
                live = f.read().strip()
        except FileNotFoundError:
            live = None
        if live != self.token:
            raise RuntimeError(f"job {self.number}: the dispatch that started it is over ({token_path} holds "
                               f"{live or 'no token'}, not {self.token}); jobs are started by the stage's own "
                               "command with --cmd, which holds the output's lock")


def token_path(ark_dir, name):
    """The file holding the live dispatch's token of the jobs ``name`` in ``ark_dir``."""
    return os.path.join(ark_dir, f"{name}.dispatch")


def add_options(parser):
    """``--cmd``, and the ``--job``/``--job-token`` pair that the runners pass to a job."""
    parser.add_argument("--cmd", default="", help=CMD_HELP)
    parser.add_argument("--job", type=int, help="(given by --cmd's runner) run only job JOB of a dispatched stage")
    parser.add_argument("--job-token", help="(given by --cmd's runner) the dispatch that runs --job")


def job_from_args(parser, args):
    """The :class:`OneJob` of ``--job``/``--job-token`` (None without them); a bad combination is a usage
    error."""
    if (args.job is None) != (args.job_token is None):
        parser.error("--job and --job-token go together (the runner of --cmd passes both)")
    if args.job is None:
        return None
    if args.cmd:
        parser.error("--job runs one job of a dispatched stage: it takes no --cmd")
    if args.job < 1:
        parser.error(f"--job must be >= 1, got {args.job}")
    return OneJob(args.job, args.job_token)


def stage_dispatch(cmd, job, script, args, log_dir):
    """What a stage gives run_jobs: ``job`` (this process is one dispatched job), else
    :class:`ClusterJobs` when ``cmd`` names a runner (``script args`` is one job's command line), else None
    (local processes)."""
    if job is not None:
        return job
    if cmd and cmd.strip():
        return ClusterJobs(cmd, python_command(script, *args), log_dir)
    return None


def output_lock(directory, wait, what, job, create=True):
    """The lock of a stage's output ``directory`` (see lock.locked); none in a dispatched job (its parent
    holds it)."""
    return contextlib.nullcontext() if job is not None else locked(directory, wait, what, create)
