"""A private single-node SLURM on this machine, for the tests and ``bench/dispatch.py`` (not for production).

    with local_slurm.running() as conf:     # the private cluster's slurm.conf
        os.environ["SLURM_CONF"] = conf     # sbatch/srun/sinfo now talk to it

Needs root (the daemons run as root) and Debian's ``slurm-wlm`` and ``munge``; :func:`install` installs them
with apt-get when they are missing (root only; about half a minute). :func:`running` writes a slurm.conf for
this host alone (partition ``debug`` with every CPU, ports that are free now, state and spool directories in
a temporary directory) and a munge key and socket of its own, so it neither needs nor disturbs a SLURM or
munge already on the machine; it starts ``munged``, ``slurmctld`` and ``slurmd`` in the foreground as its
children, waits until the node is idle, and on leaving stops them (by their pids) and removes the directory.
:class:`SlurmUnavailable` says why a cluster cannot start (not root, no apt-get, a failed install, a daemon
that exits, with the tail of its log).
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PACKAGES = ("slurm-wlm", "munge")
PROGRAMS = ("sbatch", "sinfo", "scancel", "slurmctld", "slurmd", "munged")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class SlurmUnavailable(RuntimeError):
    """A private SLURM cannot run on this machine (the message says why)."""


def missing_programs():
    return [p for p in PROGRAMS if shutil.which(p, path=SBIN_PATH) is None]


def install(timeout=180):
    """Install SLURM and munge with apt-get when a program of theirs is missing (root only)."""
    missing = missing_programs()
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed, and installing needs root: "
                               f"sudo apt-get install {' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and no apt-get to install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:   # no or stale package lists: update them once
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=timeout)
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} took over {timeout} s") from None
    if done.returncode != 0:
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-500:]}")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(root, name, lines=5):
    """The last lines a daemon wrote: its log file, then its stdout and stderr."""
    text = ""
    for path in (f"{root}/{name}.log", f"{root}/{name}.out"):
        if os.path.isfile(path):
            with open(path, errors="replace") as f:
                text += f.read()
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


def write_conf(root, munge_socket):
    """slurm.conf of a one-node cluster on this host, everything under ``root``; returns its path."""
    host = socket.gethostname().split(".")[0]
    with open("/proc/meminfo") as f:
        mem_mb = int(f.readline().split()[1]) // 1024 * 9 // 10
    settings = {
        "ClusterName": "subtools", "SlurmctldHost": f"{host}(127.0.0.1)",
        "SlurmctldPort": _free_port(), "SlurmdPort": _free_port(), "SlurmUser": "root", "SlurmdUser": "root",
        "AuthType": "auth/munge", "CredType": "cred/munge", "AuthInfo": f"socket={munge_socket}",
        "StateSaveLocation": f"{root}/state", "SlurmdSpoolDir": f"{root}/spool",
        "SlurmctldPidFile": f"{root}/slurmctld.pid", "SlurmdPidFile": f"{root}/slurmd.pid",
        "SlurmctldLogFile": f"{root}/slurmctld.log", "SlurmdLogFile": f"{root}/slurmd.log",
        "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none", "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none", "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_CPU", "SchedulerType": "sched/builtin", "ReturnToService": 2, "MpiDefault": "none",
        "NodeName": f"{host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN",
        "PartitionName": f"debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    }
    for name in ("state", "spool"):
        os.makedirs(os.path.join(root, name))
    path = os.path.join(root, "slurm.conf")
    with open(path, "w") as f:
        f.writelines(f"{key}={value}\n" for key, value in settings.items())
    return path


def _wait_until(ready, root, daemons, timeout, what):
    """Poll ``ready()`` until true; SlurmUnavailable when a daemon exits or after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while not ready():
        for name, proc in daemons.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with code {proc.returncode}: {_tail(root, name)}")
        if time.time() > deadline:
            raise SlurmUnavailable(f"{what} not ready after {timeout} s: "
                                   + "; ".join(f"{name}: {_tail(root, name, 2)}" for name in daemons))
        time.sleep(0.2)


def _node_idle(conf):
    done = subprocess.run([shutil.which("sinfo", path=SBIN_PATH), "-h", "-o", "%T"], capture_output=True,
                          text=True, env={**os.environ, "SLURM_CONF": conf})
    return done.returncode == 0 and done.stdout.strip() == "idle"


@contextlib.contextmanager
def running(timeout=30):
    """Install if needed, start the private cluster, yield its slurm.conf path, stop it (module docstring)."""
    install()
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"a private SLURM runs its daemons as root; this process runs as uid {os.geteuid()}")
    root = tempfile.mkdtemp(prefix="subtools-slurm-")
    os.chmod(root, 0o755)   # munged wants its socket's directory open to every user
    daemons = {}
    try:
        key = os.path.join(root, "munge.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
            f.write(os.urandom(128))
        munge_socket = os.path.join(root, "munge.socket")
        conf = write_conf(root, munge_socket)
        env = {**os.environ, "SLURM_CONF": conf}
        commands = {
            "munged": ["munged", "-F", f"--socket={munge_socket}", f"--key-file={key}", f"--pid-file={root}/munged.pid",
                       f"--log-file={root}/munged.log", f"--seed-file={root}/munged.seed"],
            "slurmctld": ["slurmctld", "-D"],
            "slurmd": ["slurmd", "-D"],
        }
        for name, command in commands.items():
            with open(os.path.join(root, f"{name}.out"), "w") as out:
                daemons[name] = subprocess.Popen([shutil.which(command[0], path=SBIN_PATH), *command[1:]], env=env,
                                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if name == "munged":
                _wait_until(lambda: os.path.exists(munge_socket), root, daemons, timeout, "munged")
        _wait_until(lambda: _node_idle(conf), root, daemons, timeout, "the SLURM node")
        yield conf
    finally:
        for proc in reversed(list(daemons.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(root, ignore_errors=True)
