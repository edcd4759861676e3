"""Small file helpers shared by every stage: atomic writes and Kaldi "key value" tables.

Every output file of the toolkit is written through :func:`atomic_write` (temp file in the
same directory, then ``os.replace``), so a killed job never leaves a half-written table.
"""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="w"):
    """Open a temp file beside ``path``; on success rename it onto ``path``, on error remove it."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def read_table(path, allow_duplicates=False):
    """Read a Kaldi table ``key rest-of-line`` into a dict (insertion order = file order).

    Raises ValueError naming the file and line for an empty key or a duplicate key.
    """
    table = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            parts = line.split(None, 1)
            key = parts[0]
            value = parts[1].strip() if len(parts) > 1 else ""
            if key in table and not allow_duplicates:
                raise ValueError(f"{path}:{lineno}: duplicate key '{key}'")
            table[key] = value
    return table


def write_table(path, table, sort=True):
    """Write a dict as ``key value`` lines (keys sorted in C order by default), atomically."""
    keys = sorted(table) if sort else list(table)
    with atomic_write(path) as f:
        for key in keys:
            f.write(f"{key} {table[key]}\n")


def write_lines(path, lines):
    """Write an iterable of lines (without newlines) atomically."""
    with atomic_write(path) as f:
        for line in lines:
            f.write(line + "\n")
