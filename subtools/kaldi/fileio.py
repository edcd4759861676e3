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


def text_lines(path):
    """Yield ``(lineno, line)`` (1-based, newline kept) of a UTF-8 text file; ValueError naming the file
    and line of bytes that are not UTF-8 (Kaldi tables are plain text: a binary or Latin-1 file given
    as a table must not surface as a UnicodeDecodeError traceback)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                 f"{e.start + 1}); is this a Kaldi text table?") from None


def read_table(path, allow_duplicates=False):
    """Read a Kaldi table ``key rest-of-line`` into a dict (insertion order = file order).

    Raises ValueError naming the file and line for a duplicate key or non-UTF-8 bytes.
    """
    table = {}
    for lineno, line in text_lines(path):
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
