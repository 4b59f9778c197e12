"""Helpers of the hostile-input catalogue (tests/test_hostile_*.py).

The catalogue's classes, one file each: garbage and invalid ONNX and valid-but-unusual ONNX
(test_hostile_onnx.py), bad options and corrupt builds and data loss (test_hostile_build_dir.py),
bad .npz and calibration data (test_hostile_inputs.py), full disk and read-only paths
(test_hostile_outputs.py), `mrvl-opt` on garbage (test_hostile_opt.py), vacuous checks
(test_hostile_check.py).
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import onnx

from mrvl.driver.cli import main
from mrvl.driver.verb_example import fix_batch
from mrvl.models import mnist_cnn, mnist_cnn_trained

INPUT, OUTPUT = "permute_input", "dense_1"


def one_line_error(capsys, argv: list[str], match: str) -> str:
    """Run `mrvl argv`: exit 2, stderr one `mrvl VERB: error:` line containing `match`."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"mrvl {argv[0]}: error: "), err
    assert match in lines[0], err
    return lines[0]


def mnist_file(path: Path, trained: bool = True) -> Path:
    onnx.save(fix_batch(mnist_cnn_trained() if trained else mnist_cnn(), 1), path)
    return path


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def digit(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 1, 28, 28), dtype=np.float32)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (relative path -> bytes)."""
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def disk_full(*_args, **_kwargs):
    """A stand-in for a write that finds the disk full."""
    raise OSError(errno.ENOSPC, "No space left on device")
