"""Parallel, restartable jobs that turn (utterance, value) items into Kaldi ark/scp files.

Shared by make_features, compute_vad, make_nosil and the embedding extraction. The sorted items are cut into ``nj``
contiguous parts; job j (1-based) writes, under ``ark_dir``:

- ``<name>.<j>.ark``   matrices/vectors (kaldiio; optional Kaldi compression),
- ``<name>.<j>.scp``   ``utt ark_path:offset`` lines (written to a temp file, then renamed),
- ``<name>.<j>.len``   ``utt num_rows`` lines,
- ``<name>.<j>.failed`` ``utt reason`` lines for the items the worker rejected (ValueError),
- ``<name>.<j>.done``  a stamp (hash of the job's items and the caller's config), written last.

A job whose ``.done`` holds the expected stamp is complete and skipped on a rerun; any other job
is redone from scratch (its done/scp are removed before its ark is rewritten). Before any job runs,
the caller's merged ``outputs`` (e.g. feats.scp) are removed, because they may point into arks that
are about to be rewritten: after a crash no merged output exists and a rerun only redoes the
unfinished jobs. The worker's ValueError (e.g. :class:`~subtools.kaldi.audio.AudioError`) means
"bad item": it is skipped and listed; any other exception fails the job and the command.
"""
import glob
import hashlib
import multiprocessing
import os
import re
import sys
import time

import kaldiio

from subtools.kaldi.fileio import atomic_write, read_table, write_lines

KALDI_COMPRESSION_AUTO = 1  # Kaldi CompressionMethod kAutomaticMethod (copy-feats --compress=true)


def job_paths(ark_dir, name, job):
    """{kind: path} of job ``job``'s files (kinds: ark scp len failed done)."""
    base = os.path.join(ark_dir, f"{name}.{job}")
    return {kind: f"{base}.{kind}" for kind in ("ark", "scp", "len", "failed", "done")}


def _stamp(config_stamp, items, compress):
    h = hashlib.sha1(f"{config_stamp}\ncompress={compress}\n".encode())
    for key, value in items:
        h.update(f"{key} {value}\n".encode())
    return h.hexdigest()


def _is_done(paths, stamp):
    if not (os.path.isfile(paths["done"]) and os.path.isfile(paths["scp"])):
        return False
    with open(paths["done"]) as f:
        return f.read().strip() == stamp


def _remove(*paths):
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


def _run_job(job, items, paths, stamp, make_worker, compress, show_progress):
    """Write one job's ark/scp/len/failed/done files (see module docstring)."""
    _remove(paths["done"], paths["scp"])
    worker = make_worker()
    failed, lengths = {}, {}
    tmp_scp = paths["scp"] + ".tmp"
    method = KALDI_COMPRESSION_AUTO if compress else None
    start = time.time()
    iterator = items
    if show_progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc=f"job {job}", unit="utt", disable=None, mininterval=5)
    try:
        with kaldiio.WriteHelper(f"ark,scp:{paths['ark']},{tmp_scp}", compression_method=method) as writer:
            for key, value in iterator:
                try:
                    out = worker(key, value)
                except ValueError as e:
                    failed[key] = " ".join(str(e).split())
                    continue
                writer(key, out)
                lengths[key] = out.shape[0]
        write_lines(paths["failed"], [f"{k} {v}" for k, v in failed.items()])
        write_lines(paths["len"], [f"{k} {v}" for k, v in lengths.items()])
        os.replace(tmp_scp, paths["scp"])
    finally:
        _remove(tmp_scp)
    with atomic_write(paths["done"]) as f:
        f.write(stamp + "\n")
    print(
        f"{os.path.basename(paths['ark'])}: {len(lengths)} written, {len(failed)} failed, "
        f"{time.time() - start:.1f} s",
        file=sys.stderr,
    )


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


def run_jobs(items, make_worker, ark_dir, name, nj, config_stamp="", compress=False, outputs=(),
             start_method="fork"):
    """Run the jobs; return ``(scp, lengths, failed)`` merged over jobs.

    ``items``: sorted list of (key, value str); ``make_worker()`` builds, once per job (in the job's
    process), a callable ``worker(key, value) -> np.ndarray [rows, ...]`` that raises ValueError for
    a bad item. ``config_stamp``: string that changes when the computation changes. ``outputs``:
    merged files of the caller, removed before any job is (re)run. ``nj`` is capped at len(items).
    Jobs run in child processes (``start_method``: "fork", or "spawn" for workers holding torch models,
    which must not inherit a parent's CUDA or thread-pool state; ``make_worker`` must then be picklable)
    when more than one must run. RuntimeError if a job crashes.
    Returns scp {key: "ark:offset"}, lengths {key: rows}, failed {key: reason}.
    """
    if not items:
        raise ValueError(f"{name}: nothing to process")
    nj = max(1, min(nj, len(items)))
    os.makedirs(ark_dir, exist_ok=True)
    parts = [items[k * len(items) // nj : (k + 1) * len(items) // nj] for k in range(nj)]
    jobs = []
    for job, part in enumerate(parts, 1):
        paths = job_paths(ark_dir, name, job)
        stamp = _stamp(config_stamp, part, compress)
        jobs.append((job, part, paths, stamp))
    todo = [j for j in jobs if not _is_done(j[2], j[3])]
    if todo:
        _remove(*outputs)
        _remove_stale_jobs(ark_dir, name, nj)
        print(f"{name}: running {len(todo)} of {nj} jobs ({nj - len(todo)} already complete)", file=sys.stderr)
    if len(todo) == 1:
        job, part, paths, stamp = todo[0]
        _run_job(job, part, paths, stamp, make_worker, compress, True)
    elif todo:
        ctx = multiprocessing.get_context(start_method)
        procs = [
            (job, ctx.Process(target=_child,
                              args=(start_method == "fork", job, part, paths, stamp, make_worker, compress, i == 0)))
            for i, (job, part, paths, stamp) in enumerate(todo)
        ]
        for _, proc in procs:
            proc.start()
        for _, proc in procs:
            proc.join()
        crashed = [job for job, proc in procs if proc.exitcode != 0]
        if crashed:
            raise RuntimeError(f"{name}: jobs {crashed} failed (see the traceback above); rerun to redo only them")
    scp, lengths, failed = {}, {}, {}
    for _, _, paths, _ in jobs:
        scp.update(read_table(paths["scp"]))
        lengths.update({k: int(v) for k, v in read_table(paths["len"]).items()})
        failed.update(read_table(paths["failed"]))
    return scp, lengths, failed


def _remove_stale_jobs(ark_dir, name, nj):
    """Remove job files numbered above ``nj`` (left by an earlier run with more jobs)."""
    pattern = re.compile(re.escape(name) + r"\.(\d+)\.(ark|scp|len|failed|done)$")
    for path in glob.glob(os.path.join(glob.escape(ark_dir), f"{glob.escape(name)}.*")):
        match = pattern.search(os.path.basename(path))
        if match and int(match.group(1)) > nj:
            os.remove(path)


def report_failed(path, failed, what):
    """Write the ``utt reason`` list of skipped items to ``path`` (or remove a stale one) and warn."""
    if failed:
        write_lines(path, [f"{k} {v}" for k, v in sorted(failed.items())])
        first = min(failed)
        print(f"WARNING: {what}: {len(failed)} utterances skipped, listed in {path}; first: {first} {failed[first]}",
              file=sys.stderr)
    elif os.path.exists(path):
        os.remove(path)
