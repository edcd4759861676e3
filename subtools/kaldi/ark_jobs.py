"""Parallel, restartable jobs that turn (utterance, value) items into Kaldi ark/scp files.

Shared by make_features, compute_vad, make_nosil and the embedding extraction. The sorted items are cut into
``nj`` contiguous parts; job j (1-based) writes, under ``ark_dir``:

- ``<name>.<j>.ark``      matrices/vectors (kaldiio; optional Kaldi compression), written under a temp name
                          unique to the process and renamed when the job is complete,
- ``<name>.<j>.scp``      ``utt ark_path:offset`` lines,
- ``<name>.<j>.len``      ``utt num_rows`` lines,
- ``<name>.<j>.failed``   ``utt reason`` lines for the items the worker rejected (ValueError),
- ``<name>.<j>.warnings`` ``utt message`` lines for items written with a warning (:class:`AudioWarning`,
                          e.g. a truncated wav),
- ``<name>.<j>.done``     the job's stamp, written last.

The **stamp** hashes the caller's ``config_stamp``, the job's items and the identity (inode, size,
mtime) of every file the items read (:func:`subtools.kaldi.fingerprint.entry_files`: audio files, arks),
so a changed conf, item list, audio file or upstream ark redoes the job. A job whose ``.done`` holds the
expected stamp is complete and skipped; any other job is redone from scratch.

**Side arks** (``side_arks``): a worker may return several arrays per item, e.g. features and the VAD
computed from the same decoded audio; each further one goes to ``<side>.<j>.ark/.scp`` beside the main
ark (uncompressed), under the same ``.done`` stamp, and is merged into ``JobsResult.side_scp[side]``.

**Failed items are retried**: when a complete job j has failed items, the next run redoes just those items
as the job ``<name>.<j>.retry`` (same set of files), until none fails; the retry's successes join job j's.

Before any job runs, the caller's merged ``outputs`` (e.g. feats.scp) are removed, because they may point
into arks that are about to be replaced: after a crash no merged output exists and a rerun only redoes
the unfinished jobs. The worker's ValueError (e.g. :class:`~subtools.kaldi.audio.AudioError`) means
"bad item": it is skipped and listed; any other exception fails the job and the command. Callers hold
the output directory's lock (:mod:`subtools.kaldi.lock`), so no two runs write one job.

**Beyond local processes** (``dispatch``, :mod:`subtools.parallel.dispatch`): with a stage's ``--cmd`` the
jobs to (re)run go through a Kaldi-style runner (local, SLURM, Kaldi's queue.pl...) as ``--job J``
processes of the stage's own script; each rebuilds the items, runs only job J (or its retry) as above and
merges nothing; the parent checks every job's stamp, names the logs of the jobs without one, and merges.
"""
import contextlib
import dataclasses
import glob
import hashlib
import multiprocessing
import os
import re
import sys
import time
import warnings

import kaldiio

from subtools.kaldi.audio import AudioWarning
from subtools.kaldi.fileio import atomic_write, read_table, write_lines
from subtools.kaldi.fingerprint import entry_files, identities
from subtools.parallel.dispatch import OneJob, token_path

KALDI_COMPRESSION_AUTO = 1  # Kaldi CompressionMethod kAutomaticMethod (copy-feats --compress=true)
KINDS = ("ark", "scp", "len", "failed", "warnings", "done")


@dataclasses.dataclass
class JobsResult:
    """Merged over jobs: ``scp`` {key: "ark:offset"}, ``lengths`` {key: rows}, ``failed`` {key: reason},
    ``warnings`` {key: message}; ``current``: nothing changed (no job redone, no retried item now
    written) and the caller's merged outputs all exist, so they are up to date (no need to rewrite them)."""

    scp: dict
    lengths: dict
    failed: dict
    warnings: dict
    current: bool
    side_scp: dict = dataclasses.field(default_factory=dict)  # {side ark name: {key: "ark:offset"}}


@dataclasses.dataclass
class _Job:
    label: str    # "3" or "3.retry"
    items: list
    paths: dict
    stamp: str
    sides: dict = dataclasses.field(default_factory=dict)  # {side ark name: its job_paths}

    def is_complete(self):
        """The ``.done`` stamp matches and the job's files are there."""
        scps = [self.paths["scp"]] + [paths["scp"] for paths in self.sides.values()]
        if not (os.path.isfile(self.paths["done"]) and all(os.path.isfile(scp) for scp in scps)):
            return False
        with open(self.paths["done"]) as f:
            return f.read().strip() == self.stamp

    def read(self, kind):
        path = self.paths[kind]
        return read_table(path) if os.path.isfile(path) else {}


def job_paths(ark_dir, name, label):
    """{kind: path} of job ``label``'s files (kinds: ark scp len failed warnings done)."""
    base = os.path.join(ark_dir, f"{name}.{label}")
    return {kind: f"{base}.{kind}" for kind in KINDS}


def _stamp(config_stamp, items, compress, files):
    h = hashlib.sha1(f"{config_stamp}\ncompress={compress}\n".encode())
    for key, value in items:
        h.update(f"{key} {value}\n".encode())
        for path in _item_files(value):
            h.update(f" {path} {files[path]}\n".encode())
    return h.hexdigest()


def _item_files(value):
    """Files read by an item value (one table entry, or several joined by tabs)."""
    return [path for entry in value.split("\t") for path in entry_files(entry)]


def _remove(*paths):
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


def _run_job(job, make_worker, compress, show_progress):
    """Write one job's files (see module docstring)."""
    paths = job.paths
    _remove(paths["done"], paths["scp"])
    worker = make_worker()
    failed, lengths, warned = {}, {}, {}
    suffix = f".{os.getpid()}.tmp"
    tmp_ark, tmp_scp = paths["ark"] + suffix, paths["scp"] + suffix
    sides = [(side["ark"], side["scp"], side["ark"] + suffix, side["scp"] + suffix) for side in job.sides.values()]
    method = KALDI_COMPRESSION_AUTO if compress else None
    start = time.time()
    iterator = job.items
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(job.items, desc=f"job {job.label}", unit="utt", disable=None, mininterval=5)
    try:
        with contextlib.ExitStack() as stack:
            writer = stack.enter_context(kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}", compression_method=method))
            side_writers = [stack.enter_context(kaldiio.WriteHelper(f"ark,scp:{a},{s}")) for _, _, a, s in sides]
            for key, value in iterator:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", AudioWarning)
                    try:
                        out = worker(key, value)
                    except ValueError as e:
                        failed[key] = " ".join(str(e).split())
                        continue
                notes = [str(w.message) for w in caught if issubclass(w.category, AudioWarning)]
                if notes:
                    warned[key] = " ".join(" ".join(notes).split())
                if side_writers:
                    out, *side_outs = out
                    for side_writer, side_out in zip(side_writers, side_outs, strict=True):
                        side_writer(key, side_out)
                writer(key, out)
                lengths[key] = out.shape[0]
        # the scp names the temp ark: point it at the final name before the ark is renamed into place
        for ark, scp_path, side_tmp_ark, side_tmp_scp in sides:
            side_scp = {k: f"{ark}:{v.rpartition(':')[2]}" for k, v in read_table(side_tmp_scp).items()}
            os.replace(side_tmp_ark, ark)
            write_lines(scp_path, [f"{k} {v}" for k, v in side_scp.items()])
        scp = {k: f"{paths['ark']}:{v.rpartition(':')[2]}" for k, v in read_table(tmp_scp).items()}
        write_lines(paths["failed"], [f"{k} {v}" for k, v in failed.items()])
        write_lines(paths["warnings"], [f"{k} {v}" for k, v in warned.items()])
        write_lines(paths["len"], [f"{k} {v}" for k, v in lengths.items()])
        os.replace(tmp_ark, paths["ark"])
        write_lines(paths["scp"], [f"{k} {v}" for k, v in scp.items()])
    finally:
        _remove(tmp_scp, tmp_ark, *(tmp for side in sides for tmp in side[2:]))
    with atomic_write(paths["done"]) as f:
        f.write(job.stamp + "\n")
    print(f"{os.path.basename(paths['ark'])}: {len(lengths)} written, {len(failed)} failed, "
          f"{time.time() - start:.1f} s", file=sys.stderr)


def _child(forked, *args):
    """Process target: run one job. A forked child leaves with ``os._exit`` (the parent's atexit
    handlers must not run twice); a spawned one exits normally so its resources are released."""
    code = 0
    try:
        _run_job(*args)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if forked:
        os._exit(code)
    sys.exit(code)


def _run_all(todo, make_worker, compress, start_method, name):
    if len(todo) == 1:
        _run_job(todo[0], make_worker, compress, True)
        return
    ctx = multiprocessing.get_context(start_method)
    procs = [(job.label, ctx.Process(target=_child, args=(start_method == "fork", job, make_worker, compress, i == 0)))
             for i, job in enumerate(todo)]
    for _, proc in procs:
        proc.start()
    for _, proc in procs:
        proc.join()
    crashed = [label for label, proc in procs if proc.exitcode != 0]
    if crashed:
        raise RuntimeError(f"{name}: jobs [{', '.join(crashed)}] failed (see the traceback above); rerun to redo "
                           "only them")


def run_jobs(items, make_worker, ark_dir, name, nj, config_stamp="", compress=False, outputs=(),
             start_method="fork", side_arks=(), dispatch=None):
    """Run the jobs that are not complete (and the retries of failed items); return a :class:`JobsResult`.

    ``items``: sorted list of (key, value str); ``make_worker()`` builds, once per job (in the job's
    process), a callable ``worker(key, value) -> np.ndarray [rows, ...]`` that raises ValueError for
    a bad item (and may warn :class:`AudioWarning`). ``config_stamp``: string that changes when the
    computation changes. ``outputs``: merged files of the caller, removed before any job is (re)run.
    ``nj`` is capped at len(items). Jobs run in child processes (``start_method``: "fork", or "spawn"
    for workers holding torch models, which must not inherit a parent's CUDA or thread-pool state;
    ``make_worker`` must then be picklable) when more than one must run. RuntimeError if a job crashes.
    ``side_arks``: names of the further arks (module docstring); the worker then returns a tuple
    ``(main, side_1, ...)``.
    ``dispatch`` (module docstring): None, local processes; a :class:`~subtools.parallel.dispatch.ClusterJobs`,
    the jobs through its runner; a :class:`~subtools.parallel.dispatch.OneJob`: this process is that
    dispatched job, which runs only its job and returns None.
    """
    if not items:
        raise ValueError(f"{name}: nothing to process")
    nj = max(1, min(nj, len(items)))
    os.makedirs(ark_dir, exist_ok=True)
    parts = [items[k * len(items) // nj: (k + 1) * len(items) // nj] for k in range(nj)]
    only = dispatch.number if isinstance(dispatch, OneJob) else None
    if only is not None and only > nj:
        raise ValueError(f"{name}: --job {only}, but the {len(items)} items make {nj} jobs")
    parts = {j: part for j, part in enumerate(parts, 1) if only in (None, j)}
    files = identities(path for part in parts.values() for _, value in part for path in _item_files(value))
    jobs = [_Job(str(j), part, job_paths(ark_dir, name, j), _stamp(config_stamp, part, compress, files),
                 {side: job_paths(ark_dir, side, j) for side in side_arks})
            for j, part in parts.items()]
    todo = [job for job in jobs if not job.is_complete()]
    redone = {job.label for job in todo}
    retries, retry_todo = {}, []
    for job in jobs:
        failed = job.read("failed") if job.label not in redone else {}
        if failed:
            retry = _Job(f"{job.label}.retry", [(k, v) for k, v in job.items if k in failed],
                         job_paths(ark_dir, name, f"{job.label}.retry"), job.stamp,
                         {side: job_paths(ark_dir, side, f"{job.label}.retry") for side in side_arks})
            retries[job.label] = retry
            if not retry.is_complete() or retry.read("failed"):
                retry_todo.append(retry)
    if only is not None:
        dispatch.check(token_path(ark_dir, name))
        for job in todo + retry_todo:
            _run_job(job, make_worker, compress, True)
        return None
    # the merged outputs point into the arks about to be replaced: a redone job's, a retry's with successes
    stale = bool(todo) or any(retry.read("scp") for retry in retry_todo)
    if stale:
        _remove(*outputs)
    if todo or retry_todo:
        for ark_name in (name, *side_arks):
            _remove_stale_jobs(ark_dir, ark_name, nj, keep_retries=retries)
        print(f"{name}: running {len(todo)} of {nj} jobs and {len(retry_todo)} retries of failed items",
              file=sys.stderr)
        if dispatch is None:
            _run_all(todo + retry_todo, make_worker, compress, start_method, name)
        else:
            _dispatch(dispatch, todo + retry_todo, ark_dir, name)
    changed = stale or any(retry.read("scp") for retry in retry_todo)   # a retry that now succeeds
    result = JobsResult({}, {}, {}, {}, not changed and all(os.path.exists(path) for path in outputs),
                        {side: {} for side in side_arks})
    for job in jobs:
        parts = [job] + ([retries[job.label]] if job.label in retries else [])
        for part in parts:
            result.scp.update(part.read("scp"))
            for side, paths in part.sides.items():
                result.side_scp[side].update(read_table(paths["scp"]))
            result.lengths.update({k: int(v) for k, v in part.read("len").items()})
            result.warnings.update(part.read("warnings"))
        result.failed.update(parts[-1].read("failed"))
    return result


def _dispatch(cluster, todo, ark_dir, name):
    """Run the jobs ``todo`` through ``cluster`` (a ClusterJobs); RuntimeError naming the logs of those
    that left no stamp."""
    numbers = sorted({_number(job) for job in todo})
    print(f"{name}: jobs through --cmd '{cluster.cmd}', logs {cluster.log_path(name, 'JOB')}", file=sys.stderr)
    codes = cluster.run(numbers, name, token_path(ark_dir, name))
    failed = sorted({_number(job) for job in todo if not job.is_complete()})
    if failed:
        logs = [cluster.log_path(name, n) for n in failed]
        raise RuntimeError(f"{name}: {len(failed)} of the {len(numbers)} jobs run through --cmd '{cluster.cmd}' "
                           f"failed (runner exit codes {codes}); see {', '.join(logs[:5])}"
                           f"{f' and {len(logs) - 5} more' if len(logs) > 5 else ''}; rerun to redo only them")


def _number(job):
    """The job number of a job or of its retry (label "3" or "3.retry")."""
    return int(job.label.split(".")[0])


def _remove_stale_jobs(ark_dir, name, nj, keep_retries):
    """Remove job files numbered above ``nj`` (left by an earlier run with more jobs), retry files of
    jobs that have no retry now (their job was redone) and temp files of killed runs."""
    pattern = re.compile(re.escape(name) + r"\.(\d+)(\.retry)?\.(" + "|".join(KINDS) + r")(\.\d+\.tmp)?$")
    for path in glob.glob(os.path.join(glob.escape(ark_dir), f"{glob.escape(name)}.*")):
        match = pattern.fullmatch(os.path.basename(path))
        if match and (int(match.group(1)) > nj or match.group(4)
                      or (match.group(2) and match.group(1) not in keep_retries)):
            os.remove(path)


def report_items(path, items, what, kind="skipped"):
    """Write the ``utt reason`` list ``items`` to ``path`` (or remove a stale one) and warn on stderr."""
    if items:
        write_lines(path, [f"{k} {v}" for k, v in sorted(items.items())])
        first = min(items)
        print(f"WARNING: {what}: {len(items)} utterances {kind}, listed in {path}; first: {first} {items[first]}",
              file=sys.stderr)
    elif os.path.exists(path):
        os.remove(path)


def report_failed(path, failed, what):
    """:func:`report_items` for the skipped (failed) items."""
    report_items(path, failed, what)
