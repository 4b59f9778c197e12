"""Where gcc's sanitizer runtimes are, for the tests that build the C core with one."""

from __future__ import annotations

import os
import shutil
import subprocess


def gcc_runtime_library(name: str) -> str | None:
    """The path of gcc's `name` (e.g. "libasan.so", "libtsan.so"), None where gcc has none."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True,
                          text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None
