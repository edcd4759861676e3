"""Fingerprints of the inputs a cached product was made from, so that a rerun after any edit redoes it.

Two kinds, as cheap as the inputs allow:

- a **file's identity** ``(inode, size, mtime_ns)`` from ``os.stat`` (``missing`` when absent): audio
  and ark files named by ``wav.scp``/``feats.scp`` entries. Our arks are written to a temp file and
  renamed, so a rewritten ark gets a new inode even within one clock tick; audio replaced at the same
  path changes size or mtime.
- the **content hash** (sha1) of small or decisive files: the tables of a data dir, a checkpoint.

:func:`entry_files` finds the files a Kaldi table entry reads: the whole entry for a plain path,
``PATH`` of ``PATH:offset`` (ark entries; so a plain file name ending in ``:digits`` is not supported), and for a ``cmd |`` pipe every argument that looks like a
path (contains ``/`` or ends in ``.ext``), quoted arguments split again (an augmentation pipe quotes
its clean entry, which may itself be a pipe).
"""
import hashlib
import os
import re
import shlex
from concurrent.futures import ThreadPoolExecutor

_ARK_OFFSET = re.compile(r"^(?P<path>.+):\d+$")
_LOOKS_LIKE_PATH = re.compile(r"/|\.\w{1,5}$")


def entry_files(entry):
    """Paths of the files read by one table entry (see module docstring), in order, without repeats."""
    entry = entry.strip()
    if not entry.endswith("|"):
        match = _ARK_OFFSET.match(entry)
        return [match.group("path") if match else entry]
    try:
        tokens = shlex.split(entry[:-1])
    except ValueError:  # unbalanced quotes: the pipe itself will fail and be reported
        tokens = entry[:-1].split()
    paths = []
    for token in tokens:
        if any(c.isspace() for c in token):
            paths += entry_files(token)
        elif _LOOKS_LIKE_PATH.search(token) and not token.startswith("-"):
            paths.append(token)
    return list(dict.fromkeys(paths))


def file_identity(path):
    """``"inode size mtime_ns"`` of ``path``, or ``"missing"``."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns}"


def identities(paths, threads=16):
    """{path: :func:`file_identity`} for distinct ``paths``; stat calls run in threads (network file
    systems answer each one slowly, but many at a time)."""
    paths = list(dict.fromkeys(paths))
    if len(paths) < 64:
        return {p: file_identity(p) for p in paths}
    with ThreadPoolExecutor(threads) as pool:
        return dict(zip(paths, pool.map(file_identity, paths, chunksize=256)))


def content_hash(path, chunk=1 << 20):
    """sha1 hex digest of a file's bytes (``missing`` when absent)."""
    if not os.path.isfile(path):
        return "missing"
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def scp_fingerprint(path):
    """sha1 of an scp table's bytes and of the identities of the files its entries read (so an ark
    rewritten at the same offsets still changes it)."""
    h = hashlib.sha1(content_hash(path).encode())
    if os.path.isfile(path):
        from subtools.kaldi.fileio import read_table

        files = [f for entry in read_table(path).values() for f in entry_files(entry)]
        for name, ident in sorted(identities(files).items()):
            h.update(f"{name} {ident}\n".encode())
    return h.hexdigest()


def data_dir_fingerprint(directory, follow=("feats.scp", "vad.scp")):
    """:func:`dir_fingerprint` of every table of a Kaldi data dir: what a stage read from it."""
    from subtools.kaldi.data_dir import table_names

    return dir_fingerprint(directory, ["spk2utt", *table_names(directory)], follow)


def dir_fingerprint(directory, names, follow=()):
    """{table name: content hash} of the tables ``names`` of a data dir (absent ones: ``missing``), with
    :func:`scp_fingerprint` for the tables in ``follow`` (those whose referenced files were read too):
    a stage's record of the data dir it read."""
    return {name: (scp_fingerprint if name in follow else content_hash)(os.path.join(directory, name))
            for name in names}
