"""Runs the lit + FileCheck suite under tests/filecheck as part of pytest."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

FILECHECK_DIR = Path(__file__).parent / "filecheck"


def test_lit_suite():
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    lit = shutil.which("lit", path=env["PATH"])
    assert lit is not None, "lit is not installed: pip install -r requirements.txt"
    tests = list(FILECHECK_DIR.rglob("*.mlir"))
    assert tests, "no lit tests found under tests/filecheck"
    result = subprocess.run(
        [lit, "-v", str(FILECHECK_DIR)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
