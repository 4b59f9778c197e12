"""Hostile-input catalogue: bad .npz files and calibration data (issue 11, items 5, 9, 11).

`--inputs` and `--calibration` read through one reader (mrvl/files.py `read_arrays`): a
directory, a missing file, text, an .npy where an .npz is needed, a damaged archive,
pickled or string arrays are each one line naming the file and exit 2. Calibration data
holding NaN / Inf or only zeros are refused, and `--calibration` under fp16 is an error
rather than silently ignored.
"""

from __future__ import annotations

import numpy as np
import pytest

from hostile import INPUT, digit, mnist_file, npz, one_line_error
from mrvl.driver.cli import main


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile-inputs")


@pytest.fixture(scope="module")
def model(work):
    return mnist_file(work / "mnist.onnx")


@pytest.fixture(scope="module")
def build(work, model):
    out = work / "build"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def bad_files(work):
    (work / "text.npz").write_text("hello, not an archive\n")
    (work / "damaged.npz").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    np.savez(work / "strings.npz", **{INPUT: np.array(["a", "b"])})
    np.savez(work / "objects.npz", **{INPUT: np.array([{"a": 1}], dtype=object)})
    np.save(work / "one.npy", digit())
    (work / "folder.npz").mkdir()
    return {
        "text.npz": "is not an .npz archive",
        "damaged.npz": "cannot read",
        "strings.npz": "is not numeric",
        "objects.npz": "pickled",
        "folder.npz": "is a directory",
        "missing.npz": "does not exist",
    }


def test_bad_inputs_files(work, build, bad_files, capsys):
    for name, needle in bad_files.items():
        line = one_line_error(capsys, ["run", str(build), "--inputs", str(work / name)], needle)
        assert name in line


def test_bad_calibration_files(work, model, bad_files, capsys):
    cases = {**bad_files, "one.npy": "an .npy file"}
    for name, needle in cases.items():
        out = work / f"cal-{name}"
        line = one_line_error(capsys, ["compile", str(model), "-o", str(out), "--quantize",
                                       "int8", "--calibration", str(work / name)], needle)
        assert name in line and not out.exists()


@pytest.mark.parametrize("fill, needle", [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"),
                                          (0.0, "all zeros")])
def test_degenerate_calibration_is_refused(work, model, capsys, fill, needle):
    data = np.full((4, 1, 28, 28), fill, np.float32)
    cal = npz(work / "degenerate.npz", **{INPUT: data})
    one_line_error(capsys, ["compile", str(model), "-o", str(work / "deg"), "--quantize",
                            "int8", "--calibration", str(cal)], needle)


def test_calibration_under_fp16_is_an_error(work, model, capsys):
    cal = npz(work / "wrong-shape.npz", **{INPUT: np.ones((2, 3, 5, 5), np.float32)})
    one_line_error(capsys, ["compile", str(model), "-o", str(work / "fp16"), "--calibration",
                            str(cal)], "applies to --quantize int8 only")
    assert not (work / "fp16").exists()


def test_npy_inputs_still_work(work, build, capsys):
    capsys.readouterr()
    assert main(["run", str(build), "--inputs", str(work / "one.npy")]) == 0
