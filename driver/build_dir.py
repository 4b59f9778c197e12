"""How `mrvl compile` writes a build directory: whole or not at all, never over a user's file.

- `check_output_dir(out)`: refuse, before anything is read or written, an output path that is
  a file, or a directory holding anything `mrvl` did not write there. A directory is ours
  when it holds the `.mrvl-build` marker, which lists every file a compile wrote; besides
  those only `run_report.json` and `partition.dot` (written by `mrvl run` / `mrvl show`) may
  be present, as regular files. A symlink is never ours. Decision: we refuse rather than
  skip or keep unknown files, because a rebuild replaces the directory as a whole and
  anything kept would be mixed into the new build (or deleted by it).
- `staged_build_dir(out)`: a context manager yielding a fresh temporary directory beside
  `out`; when the block succeeds the marker is written and the directory takes `out`'s
  place (the old build is renamed aside, the new one renamed in, the old one removed), so a
  reader sees the old build or the new one, never a mix. When the block fails the temporary
  directory is removed and the old build is untouched.

Invariants: `out` is never opened for writing while a user's file could be there; every
failure (missing permissions, a full disk) is one `CompileError` line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mrvl.errors import CompileError
from mrvl.files import os_error_text

MARKER = ".mrvl-build"
LATER_FILES = ("run_report.json", "partition.dot")
"""Files other verbs write into a build directory after the compile."""


def _marker_files(out: Path) -> set[str] | None:
    """The relative paths the marker of `out` lists, or None when it is not a build of ours."""
    marker = out / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def _foreign_entries(out: Path, ours: set[str]) -> list[str]:
    """Entries of `out` (recursively, symlinks not followed) that a compile did not write."""
    foreign = []
    for dirpath, dirnames, filenames in os.walk(out):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            relative = path.relative_to(out).as_posix()
            if relative == MARKER:
                continue
            if path.is_symlink():
                foreign.append(relative)
            elif path.is_dir():
                if not any(f.startswith(relative + "/") for f in ours):
                    foreign.append(relative + "/")
            elif not (relative in ours or (here == out and name in LATER_FILES)):
                foreign.append(relative)
    return foreign


def check_output_dir(out: str | Path) -> Path:
    """The build directory `out` (a symlink resolved) if a compile may write it; raises
    CompileError naming what is in the way (module docstring)."""
    out = Path(out)
    if out.is_symlink():
        out = out.resolve()
    if out.exists() and not out.is_dir():
        raise CompileError(f"output '{out}' is a file, expected a build directory")
    if not out.exists():
        return out
    try:
        entries = list(out.iterdir())
    except OSError as error:
        raise CompileError(f"cannot read the output directory '{out}': "
                           f"{os_error_text(error)}") from None
    if not entries:
        return out
    ours = _marker_files(out)
    if ours is None:
        names = sorted(e.name for e in entries)
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise CompileError(f"output directory '{out}' is not empty and is not an mrvl build "
                           f"(it holds {shown}); give a new or empty directory")
    foreign = _foreign_entries(out, ours)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise CompileError(f"build directory '{out}' holds files mrvl did not write ({shown}); "
                           f"move them away or give another directory (a rebuild replaces "
                           f"the whole directory)")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_in(staging: Path, out: Path) -> None:
    """Rename `staging` to `out`, the previous `out` aside first and removed after."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_build_dir(out: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `out` that replaces it on success (module
    docstring). The caller has checked `out` with `check_output_dir`."""
    out = Path(out)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=parent))
    except OSError as error:
        raise CompileError(f"cannot create the build directory '{out}': "
                           f"{os_error_text(error)}") from None
    try:
        yield staging
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*")
                       if p.is_file())
        (staging / MARKER).write_text(json.dumps({"files": files}, indent=1) + "\n")
        os.chmod(staging, 0o777 & ~_umask())
        _swap_in(staging, out)
    except OSError as error:
        raise CompileError(f"cannot write the build directory '{out}': "
                           f"{os_error_text(error)}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
