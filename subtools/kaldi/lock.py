"""Exclusive locks on output directories: two runs never write into one output at the same time.

A command that writes into ``DIR`` (a data dir, an egs dir, an experiment, an embedding dir) holds
``fcntl.flock`` on ``DIR/.lock`` while it runs. The lock file records who holds it (pid, host, start
time, command line); a second run stops at once with a :class:`LockedError` naming the holder, or, with
``wait=True`` (the CLIs' ``--wait``), waits until the holder is done. The operating system releases the
lock when the holder exits or is killed, so a stale lock never blocks a rerun.
"""
import contextlib
import fcntl
import os
import socket
import sys
import time

LOCK_NAME = ".lock"
WAIT_HELP = "if another run holds this output's lock, wait for it instead of stopping"


class LockedError(RuntimeError):
    """The output directory is being written by another run."""


@contextlib.contextmanager
def locked(directory, wait=False, what=None, create=True):
    """Hold the exclusive lock of ``directory`` for the ``with`` block. ``create``: make the directory when
    absent (a new output); else FileNotFoundError (a command that works in an existing dir must not leave a
    mistyped one behind). ``what`` names the output in messages (default: the directory).
    """
    if not create and not os.path.isdir(directory):
        raise FileNotFoundError(f"{what or directory}: no such directory")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_NAME)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = " ".join(f.read().split()) or "another process"
            if not wait:
                raise LockedError(f"{what or directory} is in use by {holder} (lock {path}); wait for that run "
                                  "to finish, or pass --wait to wait for it") from None
            print(f"waiting for {what or directory}: in use by {holder}", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.truncate(0)
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{' '.join(sys.argv)}\n")
        f.flush()
        try:
            yield path
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
