"""Every file mrvl writes goes through here: atomic, never through a user's symlink, and every
failure one `MrvlError` line.

- `atomic_output(path)`: a context manager yielding a temporary path beside `path`; when the
  block ends without an exception the temporary file replaces `path` (`os.replace`), else it
  is removed. A disk that fills up halfway leaves the previous file as it was.
- `write_bytes(path, data)` / `write_text(path, text)`: the same for data in memory.
- `file_digest(path)`: (size, CRC32C) of a file, read in chunks (the manifest records them).
- `os_error_text(error)`: the short reason of an `OSError` ("No space left on device").
- `read_arrays(path, what)`: the numeric arrays of an .npz (or .npy), every fault one line.

Invariant: `path` itself is only ever renamed onto, never opened for writing, so a symlink at
`path` is replaced, not written through; a directory at `path` is refused.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crc32c as _crc32c

from mrvl.errors import MrvlError

_CHUNK = 1 << 22


class OutputFileError(MrvlError):
    """An output file cannot be written (missing or read-only directory, full disk)."""


def os_error_text(error: OSError) -> str:
    """The reason of an OSError without Python's decoration."""
    return error.strerror or str(error)


def check_output_path(path: str | Path, what: str = "output") -> Path:
    """`path` as a Path if a file can be written there (not a directory, its directory
    exists); raises OutputFileError. Verbs call it before doing any work."""
    target = Path(path)
    if target.is_dir():
        raise OutputFileError(f"cannot write the {what} '{target}': it is a directory")
    parent = target.parent
    if not parent.is_dir():
        raise OutputFileError(f"cannot write the {what} '{target}': directory '{parent}' "
                              f"does not exist")
    return target


@contextlib.contextmanager
def atomic_output(path: str | Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` (module docstring).
    Raises OutputFileError (one line) when the file cannot be written."""
    target = check_output_path(path, what)
    parent = target.parent
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                             dir=parent)
        os.close(handle)
    except OSError as error:
        raise OutputFileError(f"cannot write the {what} '{target}': "
                              f"{os_error_text(error)}") from None
    temp_path = Path(temporary)
    try:
        yield temp_path
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temp_path, 0o666 & ~mask)
        os.replace(temp_path, target)
    except OSError as error:
        raise OutputFileError(f"cannot write the {what} '{target}': "
                              f"{os_error_text(error)}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp_path.unlink()


def write_bytes(path: str | Path, data: bytes, what: str = "output") -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_output(path, what) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, what: str = "output") -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    return write_bytes(path, text.encode(), what)


def file_digest(path: str | Path) -> tuple[int, int]:
    """(size in bytes, CRC32C) of the file at `path` (raises OSError)."""
    size = 0
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            size += len(chunk)
            crc = _crc32c.crc32c(chunk, crc)
    return size, crc


__all__ = ["OutputFileError", "atomic_output", "check_output_path", "file_digest",
           "os_error_text", "read_arrays", "write_bytes", "write_text"]


_NPZ_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


def read_arrays(path: str | Path, what: str, error: type[MrvlError] = MrvlError,
                allow_npy: bool = False) -> dict[str, Any] | Any:
    """The arrays of an .npz (name -> array), or with `allow_npy` the array of an .npy;
    every way the file can be wrong is one `error` line naming `what` (e.g. "--inputs").
    Arrays must be numeric (bool, integer or floating)."""
    import numpy as np

    path = Path(path)
    if path.is_dir():
        raise error(f"{what}: '{path}' is a directory, expected an .npz file")
    if not path.is_file():
        raise error(f"{what}: input file '{path}' does not exist")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
            handle.seek(0)
            if head.startswith(_NPY_MAGIC) and allow_npy:
                return _numeric(np.load(handle, allow_pickle=False), f"{what}: '{path}'", error)
            if head.startswith(_NPY_MAGIC):
                raise error(f"{what}: '{path}' is not an .npz archive but an .npy file (one "
                            "array); give an .npz keyed by input name (numpy.savez)")
            if not head.startswith(_NPZ_MAGIC):
                raise error(f"{what}: '{path}' is not an .npz archive (write it with "
                            "numpy.savez, one array per input)")
            with np.load(handle, allow_pickle=False) as data:
                return {name: _numeric(data[name], f"{what}: '{path}': array '{name}'", error)
                        for name in data.files}
    except MrvlError:
        raise
    except ValueError as failure:
        if "pickle" in str(failure):
            raise error(f"{what}: '{path}' holds object (pickled) arrays, which mrvl does not "
                        "load; save numeric arrays") from None
        raise error(f"{what}: cannot read '{path}': {failure}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as failure:
        reason = failure.strerror if isinstance(failure, OSError) and failure.strerror else (
            failure)
        raise error(f"{what}: cannot read '{path}': {reason} (a damaged .npz)") from None


def _numeric(array: Any, where: str, error: type[MrvlError]) -> Any:
    if array.dtype.kind not in "biuf":
        raise error(f"{where} is not numeric (dtype {array.dtype})")
    return array
