"""Kaldi's job-runner convention (``utils/parallel/{run,queue,slurm}.pl``), which every ``--cmd`` runner follows:

    RUNNER [options] JOB=a:b LOGFILE command args...

runs ``command args...`` once per job number J in a..b (``JOB=a``: the one job a), with the name ``JOB``
replaced by J in LOGFILE and in every argument, the job's stdout and stderr going to its log file (whose
directory is created). The runner exits 0 when every job exited 0. The name may be any identifier (``JOB``
by convention); as in Kaldi it is replaced wherever it occurs, so a path that contains it changes too.

A job's log starts with ``# <command>`` and ``# Started at <date> on <host>`` and ends with ``# Ended (code
N) at <date>, elapsed S s`` (Kaldi's lines): a log without that last line belongs to a job that was killed
(time limit, memory, node failure) or is still running.
"""
import dataclasses
import os
import re

_RANGE = re.compile(r"([A-Za-z_]\w*)=(\d+)(?::(\d+))?")
_ENDED = re.compile(r"^# Ended \(code (-?\d+)\)", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class JobRange:
    """``NAME=first:last`` (1-based, inclusive)."""

    name: str
    first: int
    last: int

    def numbers(self):
        return range(self.first, self.last + 1)

    def substitute(self, text, number):
        """``text`` with the job name replaced by ``number``."""
        return text.replace(self.name, str(number))

    def __str__(self):
        return f"{self.name}={self.first}:{self.last}"


def parse_range(arg):
    """The :class:`JobRange` of ``NAME=a:b`` or ``NAME=a``; None when ``arg`` is not one; ValueError for a
    range that starts below 1 or ends before it starts."""
    match = _RANGE.fullmatch(arg)
    if not match:
        return None
    first = int(match.group(2))
    last = int(match.group(3) or first)
    if not 1 <= first <= last:
        raise ValueError(f"invalid job range {arg}: need 1 <= first <= last")
    return JobRange(match.group(1), first, last)


def contiguous_ranges(numbers):
    """[(first, last)] covering the sorted job ``numbers`` with the fewest ranges."""
    ranges = []
    for n in sorted(numbers):
        if ranges and n == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return ranges


def exit_code(log_path):
    """The exit code a finished job's log records (its last ``# Ended (code N)`` line); None when the log
    is missing or has no such line (the job was killed or never ran)."""
    if not os.path.isfile(log_path):
        return None
    with open(log_path, errors="replace") as f:
        codes = _ENDED.findall(f.read())
    return int(codes[-1]) if codes else None


def started_line(date, host):
    return f"# Started at {date} on {host}"


def ended_line(code, date, seconds):
    return f"# Ended (code {code}) at {date}, elapsed {seconds} s"
