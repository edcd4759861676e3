"""Read parts of Kaldi binary matrices without loading them whole.

A ``feats.scp`` value is an rxspecifier ``/path/file.ark:OFFSET`` where OFFSET is the byte position of
the binary header ``\\0B`` of the matrix. A binary float matrix is laid out as::

    \\0B  "FM "  \\x04 <int32 rows>  \\x04 <int32 cols>  <rows*cols float32, row-major>

(``DM `` for float64), so row ``r`` starts at ``OFFSET + 15 + r * cols * itemsize`` and a chunk of rows is
one ``seek`` + one ``read``. Compressed matrices (``CM``, ``CM2``, ``CM3``) store per-column quantisation
headers before the data, so for them we fall back to ``kaldiio.load_mat`` of the whole matrix and slice
(documented cost: one whole-matrix decode per chunk; write features uncompressed for training egs).

Open file handles are cached per process (keyed by pid, so DataLoader workers forked from a parent do
not share a file position).
"""
import os
import struct

import kaldiio
import numpy as np

_HEADER_BYTES = 15  # \0B + "FM " + \x04 int32 + \x04 int32
_DTYPES = {b"FM ": np.dtype("<f4"), b"DM ": np.dtype("<f8")}
_handles = {}


def parse_rxspec(spec):
    """Split ``path:offset`` into ``(path, offset:int)``; raise ValueError for other forms."""
    path, sep, offset = spec.rpartition(":")
    if not sep or not offset.isdigit():
        raise ValueError(f"expected 'ark-path:byte-offset', got '{spec}'")
    return path, int(offset)


def _handle(path):
    key = (os.getpid(), path)
    f = _handles.get(key)
    if f is None:
        if len(_handles) > 64:
            for old in list(_handles.values()):
                old.close()
            _handles.clear()
        f = _handles[key] = open(path, "rb")
    return f


def read_header(spec):
    """Return ``(kind, rows, cols)`` of the matrix at ``spec``; kind is b"FM ", b"DM " or b"CM*"."""
    path, offset = parse_rxspec(spec)
    f = _handle(path)
    f.seek(offset)
    head = f.read(_HEADER_BYTES)
    if head[:2] != b"\0B":
        raise ValueError(f"{spec}: not a Kaldi binary matrix (header {head[:2]!r})")
    kind = head[2:5]
    if kind in _DTYPES:
        rows, cols = struct.unpack("<xixi", head[5:15])
        return kind, rows, cols
    if kind.startswith(b"CM"):
        mat = kaldiio.load_mat(spec)
        return kind, mat.shape[0], mat.shape[1]
    raise ValueError(f"{spec}: unsupported matrix type {kind!r}")


def read_rows(spec, start, end):
    """Rows ``start..end`` (inclusive, 0-based) of the matrix at ``spec`` as float32 ``[end-start+1, F]``.

    Uncompressed matrices: one seek and one read of exactly the needed bytes.
    Compressed matrices: whole-matrix decode via kaldiio, then slice.
    """
    path, offset = parse_rxspec(spec)
    f = _handle(path)
    f.seek(offset)
    head = f.read(_HEADER_BYTES)
    kind = head[2:5]
    if head[:2] == b"\0B" and kind in _DTYPES:
        rows, cols = struct.unpack("<xixi", head[5:15])
        if not 0 <= start <= end < rows:
            raise ValueError(f"{spec}: rows {start}..{end} outside matrix of {rows} rows")
        dtype = _DTYPES[kind]
        f.seek(offset + _HEADER_BYTES + start * cols * dtype.itemsize)
        n = end - start + 1
        buf = f.read(n * cols * dtype.itemsize)
        if len(buf) != n * cols * dtype.itemsize:
            raise ValueError(f"{spec}: ark truncated while reading rows {start}..{end}")
        return np.frombuffer(buf, dtype=dtype).reshape(n, cols).astype(np.float32)
    mat = kaldiio.load_mat(spec)
    if not 0 <= start <= end < mat.shape[0]:
        raise ValueError(f"{spec}: rows {start}..{end} outside matrix of {mat.shape[0]} rows")
    return np.ascontiguousarray(mat[start:end + 1], dtype=np.float32)
