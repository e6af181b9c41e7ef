"""IDX files (the format MNIST and Fashion-MNIST ship in): read with the header checked
against the length, never decompressing more than the header promises; written by tests
and tools."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from bench.errors import DataError

IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _read(fh, n: int, path: Path) -> bytes:
    try:
        return fh.read(n)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc} (truncated or corrupt file?)") from exc


def _open(path: Path):
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def read_idx(path: Path, *, kind: str, shape: tuple[int, int] | None = (28, 28)) -> np.ndarray:
    """Decode one IDX file (``kind``: images or labels), its header checked against its
    length and ``shape`` (rows, cols; None: any). Reads the header, then exactly what it
    promises and one byte more: a file longer than its header (a gzip bomb, a wrong file)
    is refused without decompressing the rest."""
    path = Path(path)
    with _open(path) as fh:
        head = _read(fh, 8, path)
        if len(head) < 8:
            raise DataError(f"{path}: too short to be an IDX file ({len(head)} bytes)")
        magic, count = struct.unpack(">II", head)
        wanted = IMAGE_MAGIC if kind == "images" else LABEL_MAGIC
        if magic != wanted:
            raise DataError(
                f"{path}: bad magic number 0x{magic:08x} for "
                f"{'an image' if kind == 'images' else 'a label'} file (expected 0x{wanted:08x})"
            )
        dims: tuple[int, ...] = (count,)
        if kind == "images":
            more = _read(fh, 8, path)
            if len(more) < 8:
                raise DataError(f"{path}: truncated header")
            rows, cols = struct.unpack(">II", more)
            if shape is not None and (rows, cols) != tuple(shape):
                raise DataError(f"{path}: images are {rows}x{cols}, expected {shape[0]}x{shape[1]}")
            dims = (count, rows, cols)
        size = int(np.prod(dims, dtype=np.int64))
        header = 16 if kind == "images" else 8
        body = _read(fh, size + 1, path)
    if len(body) != size:
        longer = len(body) > size
        raise DataError(
            f"{path}: header promises {count} items ({header + size} bytes) but the file has "
            + (
                "more (not the file its header describes)"
                if longer
                else f"{header + len(body)} bytes (truncated or corrupt)"
            )
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an array as an IDX file (gzip when the name ends in .gz). Used by tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim == 3:
        header = struct.pack(">IIII", IMAGE_MAGIC, *array.shape)
    elif array.ndim == 1:
        header = struct.pack(">II", LABEL_MAGIC, array.shape[0])
    else:
        raise ValueError("IDX writer supports images (N, rows, cols) and labels (N,)")
    payload = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=1) as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four standard IDX files in ``folder`` (``.gz`` or not), or None."""
    found = {}
    for key, stem in FILES.items():
        found[key] = next((c for c in (folder / f"{stem}.gz", folder / stem) if c.is_file()), None)
    return found if all(found.values()) else None  # type: ignore[return-value]
