"""Parallel, restartable jobs that turn (utterance, value) items into Kaldi ark/scp files.

Shared by make_features, compute_vad, make_nosil and the embedding extraction. The sorted items are cut into
``nj`` contiguous parts; job j (1-based) writes, under ``ark_dir``:

- ``<name>.<j>.ark``      matrices/vectors (kaldiio; optional Kaldi compression), written under a temp name
                          unique to the host and process and renamed when the job is complete,
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

**Failed items are retried**: when a complete job j has items that still fail, the next run tries just those
again as ``<name>.<j>.retry``, *appending* what now succeeds to ``<name>.<j>.retry.ark`` (its scp, len and
warnings tables grow; ``.retry.failed`` holds the items still failing). Appending leaves every earlier entry
where it is, so a retry that recovers nothing changes nothing downstream; a retry belongs to its job's stamp
and goes with it when the job is redone.

**Merged outputs** (``outputs``: the caller's feats.scp, vad.scp, ...) are removed before a job is redone,
since they point into arks about to be replaced. :attr:`JobsResult.current` says that they exist and were
written from exactly this result (the caller records that with :meth:`JobsResult.mark_current` once it has
written them), so a complete rerun rewrites nothing and a run killed between its jobs and its merge is never
mistaken for a complete one. The worker's ValueError (e.g. :class:`~subtools.kaldi.audio.AudioError`) means
"bad item": it is skipped and listed; any other exception fails the job and the command. Callers hold the
output directory's lock (:mod:`subtools.kaldi.lock`), so no two runs write one job (an ``--ark-dir`` shared
by two data dirs of the same base name would mix their arks: give each its own).

**Beyond local processes** (``dispatch``, :mod:`subtools.parallel.dispatch`): with a stage's ``--cmd`` the
jobs to (re)run go through a Kaldi-style runner (local, SLURM, Kaldi's queue.pl...) as ``--job J``
processes of the stage's own script; each rebuilds the items, runs only job J (and its retry) as above and
merges nothing; the parent checks every job's stamp, names the logs of the jobs without one, and merges.
"""
import contextlib
import dataclasses
import glob
import hashlib
import multiprocessing
import os
import re
import socket
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
    ``warnings`` {key: message}, ``side_scp`` {side ark name: {key: "ark:offset"}}; ``current``: the
    caller's merged outputs exist and were written from this very result (module docstring)."""

    scp: dict
    lengths: dict
    failed: dict
    warnings: dict
    side_scp: dict
    digest: str
    record: str
    current: bool = False

    def mark_current(self):
        """Record that the caller's merged outputs now hold this result (call after writing them)."""
        with atomic_write(self.record) as f:
            f.write(self.digest + "\n")


@dataclasses.dataclass
class _Job:
    label: str    # "3", or "3.retry": the items of job 3 that still fail, appended to its retry ark
    items: list
    paths: dict
    stamp: str
    sides: dict = dataclasses.field(default_factory=dict)  # {side ark name: its job_paths}

    @property
    def is_retry(self):
        return self.label.endswith(".retry")

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


def _make_job(ark_dir, name, label, items, stamp, side_arks):
    """Job ``label`` ("3" or "3.retry") of ark ``name`` with its side arks' paths."""
    return _Job(label, items, job_paths(ark_dir, name, label), stamp,
                {side: job_paths(ark_dir, side, label) for side in side_arks})


def _stamp(config_stamp, items, compress, files):
    h = hashlib.sha1(f"{config_stamp}\ncompress={compress}\n".encode())
    for key, value in items:
        h.update(f"{key} {value}\n".encode())
        for path in _item_files(value):
            h.update(f" {path} {files[path]}\n".encode())
    return h.hexdigest()


def inputs_digest(items):
    """sha1 of ``items`` (key, value) and the identities of every file they read: what the job stamps cover,
    for a caller that must tell later whether the same inputs are still there (whatever the job split)."""
    items = list(items)
    return _stamp("", items, False, identities(path for _, value in items for path in _item_files(value)))


def _item_files(value):
    """Files read by an item value (one table entry, or several joined by tabs)."""
    return [path for entry in value.split("\t") for path in entry_files(entry)]


def _remove(*paths):
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


class _ArkWriter:
    """Appends ``key matrix`` records to an ark file and keeps the scp entries, which name ``final`` (the
    path the ark will have once renamed into place)."""

    def __init__(self, path, final, append, compression_method=None):
        self.file = open(path, "ab" if append else "wb")
        self.final, self.method = final, compression_method
        self.scp = {}

    def __call__(self, key, matrix):
        start = self.file.tell()
        kaldiio.save_ark(self.file, {key: matrix}, compression_method=self.method)
        self.scp[key] = f"{self.final}:{start + len(key.encode()) + 1}"   # after "key ", as Kaldi's scp

    def close(self):
        self.file.close()


def _run_job(job, make_worker, compress, show_progress, before_commit=None):
    """Write one job's files (see module docstring); a retry appends to its job's retry ark.
    ``before_commit()`` runs before anything is renamed into place (a dispatched job checks it is live)."""
    arks = [(job.paths, compress)] + [(side, False) for side in job.sides.values()]
    suffix = f".{socket.gethostname()}.{os.getpid()}.tmp"
    targets = [paths["ark"] if job.is_retry else paths["ark"] + suffix for paths, _ in arks]
    if not job.is_retry:
        _remove(job.paths["done"], *(paths["scp"] for paths, _ in arks))
    earlier = {kind: job.read(kind) if job.is_retry else {} for kind in ("scp", "len", "warnings")}
    earlier_sides = [read_table(side["scp"]) if job.is_retry and os.path.isfile(side["scp"]) else {}
                     for side in job.sides.values()]
    worker = make_worker()
    failed, lengths, warned = {}, {}, {}
    start = time.time()
    iterator = job.items
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(job.items, desc=f"job {job.label}", unit="utt", disable=None, mininterval=5)
    writers = [_ArkWriter(target, paths["ark"], job.is_retry, KALDI_COMPRESSION_AUTO if packed else None)
               for target, (paths, packed) in zip(targets, arks)]
    try:
        with contextlib.ExitStack() as stack:
            for writer in writers:
                stack.callback(writer.close)
            for key, value in iterator:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", AudioWarning)
                    try:
                        outs = worker(key, value)
                    except ValueError as e:
                        failed[key] = " ".join(str(e).split())
                        continue
                notes = [str(w.message) for w in caught if issubclass(w.category, AudioWarning)]
                if notes:
                    warned[key] = " ".join(" ".join(notes).split())
                outs = outs if job.sides else (outs,)
                for writer, out in zip(writers, outs, strict=True):
                    writer(key, out)
                lengths[key] = outs[0].shape[0]
        if before_commit is not None:
            before_commit()
        write_lines(job.paths["failed"], [f"{k} {v}" for k, v in failed.items()])
        for kind, new in (("warnings", warned), ("len", lengths)):
            write_lines(job.paths[kind], [f"{k} {v}" for k, v in {**earlier[kind], **new}.items()])
        for (paths, _), target, writer, before in zip(arks, targets, writers, [earlier["scp"], *earlier_sides]):
            if target != paths["ark"]:
                os.replace(target, paths["ark"])
            write_lines(paths["scp"], [f"{k} {v}" for k, v in {**before, **writer.scp}.items()])
    finally:
        _remove(*(target for target in targets if target.endswith(suffix)))
    with atomic_write(job.paths["done"]) as f:
        f.write(job.stamp + "\n")
    print(f"{os.path.basename(job.paths['ark'])}: {len(lengths)} written, {len(failed)} failed, "
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


def _retry_of(job, ark_dir, name, side_arks):
    """The retry of ``job``'s items that still fail (None when none does); stale retry files of an earlier
    run of the job are removed first."""
    retry = _make_job(ark_dir, name, f"{job.label}.retry", [], job.stamp, side_arks)
    if not retry.is_complete():
        _remove(*(path for paths in [retry.paths, *retry.sides.values()] for path in paths.values()))
    failed = retry.read("failed") if retry.is_complete() else job.read("failed")
    retry.items = [(k, v) for k, v in job.items if k in failed]
    return retry if retry.items else None


def run_jobs(items, make_worker, ark_dir, name, nj, config_stamp="", compress=False, outputs=(),
             start_method="fork", side_arks=(), dispatch=None, merge_stamp=""):
    """Run the jobs that are not complete (and the retries of failed items); return a :class:`JobsResult`.

    ``items``: sorted list of (key, value str); ``make_worker()`` builds, once per job (in the job's
    process), a callable ``worker(key, value) -> np.ndarray [rows, ...]`` that raises ValueError for
    a bad item (and may warn :class:`AudioWarning`). ``config_stamp``: string that changes when the
    computation changes. ``outputs``: merged files of the caller, removed before any job is redone.
    ``merge_stamp``: what else the caller's merged outputs are made from (e.g. tables it copies): part of
    :attr:`JobsResult.digest`, not of the job stamps. ``nj`` is capped at len(items). Jobs run in child
    processes (``start_method``: "fork", or "spawn" for workers holding torch models, which must not inherit
    a parent's CUDA or thread-pool state; ``make_worker`` must then be picklable) when more than one must
    run. RuntimeError if a job crashes. ``side_arks``: names of the further arks (module docstring); the
    worker then returns a tuple ``(main, side_1, ...)``.
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
    jobs = [_make_job(ark_dir, name, str(j), part, _stamp(config_stamp, part, compress, files), side_arks)
            for j, part in parts.items()]
    todo = [job for job in jobs if not job.is_complete()]
    redone = {job.label for job in todo}
    if only is None and todo:
        _remove(*outputs)   # they point into arks about to be replaced
        for ark_name in (name, *side_arks):
            _remove_stale_jobs(ark_dir, ark_name, nj)
    retries = [retry for retry in (_retry_of(job, ark_dir, name, side_arks) for job in jobs
                                   if job.label not in redone) if retry is not None]
    if only is not None:
        check = (lambda: dispatch.check(token_path(ark_dir, name)))
        check()
        for job in todo + retries:
            _run_job(job, make_worker, compress, True, check)
        return None
    if todo or retries:
        print(f"{name}: running {len(todo)} of {nj} jobs and {len(retries)} retries of failed items", file=sys.stderr)
        if dispatch is None:
            _run_all(todo + retries, make_worker, compress, start_method, name)
        else:
            _dispatch(dispatch, todo + retries, ark_dir, name)
    return _merge(jobs, ark_dir, name, side_arks, f"{config_stamp}\n{merge_stamp}", outputs)


def _merge(jobs, ark_dir, name, side_arks, stamp, outputs):
    """The :class:`JobsResult` of complete ``jobs`` and their retries."""
    result = JobsResult({}, {}, {}, {}, {side: {} for side in side_arks}, "", os.path.join(ark_dir, f"{name}.merged"))
    for job in jobs:
        retry = _make_job(ark_dir, name, f"{job.label}.retry", [], job.stamp, side_arks)
        parts = [job] + ([retry] if retry.is_complete() else [])
        for part in parts:
            result.scp.update(part.read("scp"))
            for side, paths in part.sides.items():
                result.side_scp[side].update(read_table(paths["scp"]))
            result.lengths.update({k: int(v) for k, v in part.read("len").items()})
            result.warnings.update(part.read("warnings"))
        result.failed.update(parts[-1].read("failed"))
    h = hashlib.sha1(stamp.encode())
    for table in (result.scp, result.lengths, result.failed, result.warnings, *result.side_scp.values()):
        h.update("".join(f"{k} {v}\n" for k, v in sorted(table.items())).encode() + b"\f")
    result.digest = h.hexdigest()
    recorded = open(result.record).read().strip() if os.path.isfile(result.record) else None
    result.current = recorded == result.digest and all(os.path.exists(path) for path in outputs)
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


def _remove_stale_jobs(ark_dir, name, nj):
    """Remove job files numbered above ``nj`` (left by an earlier run with more jobs) and the temp files of
    killed runs (ours, ``<file>.<host>.<pid>.tmp``, and fileio.atomic_write's hidden ``.<file>.*.tmp``)."""
    pattern = re.compile(r"\.?" + re.escape(name) + r"\.(\d+)(\.retry)?\.(" + "|".join(KINDS) + r")(\..+\.tmp)?")
    for path in glob.glob(os.path.join(glob.escape(ark_dir), f"{glob.escape(name)}.*")) + \
            glob.glob(os.path.join(glob.escape(ark_dir), f".{glob.escape(name)}.*")):
        match = pattern.fullmatch(os.path.basename(path))
        if match and (int(match.group(1)) > nj or match.group(4)):
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
