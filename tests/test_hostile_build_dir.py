"""Hostile-input catalogue: build directories (issue 11, item 1; docs/build-dir.md).

A compile validates every option before it writes, builds in a temporary directory beside
the target and renames it into place: a failed compile leaves the previous build as it
was, a recompile leaves nothing of the previous build, and a user's file in the way is
never deleted or written through. The manifest records every artifact's size and CRC32C,
and a build whose files do not match is refused with one line.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from hostile import INPUT, digit, disk_full, mnist_file, npz, one_line_error, snapshot
from mrvl.driver.cli import main


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile-build")


@pytest.fixture(scope="module")
def model(work):
    return mnist_file(work / "mnist.onnx")


@pytest.fixture(scope="module")
def other_model(work):
    return mnist_file(work / "untrained.onnx", trained=False)


@pytest.fixture()
def build(tmp_path, model):
    out = tmp_path / "build"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    return out


def _run(build, tmp_path, capsys) -> str:
    capsys.readouterr()
    assert main(["run", str(build), "--inputs", str(npz(tmp_path / "x.npz", **{INPUT: digit()})),
                 "--check"]) == 0
    return capsys.readouterr().out


def test_bad_option_writes_nothing(build, other_model, capsys):
    before = snapshot(build)
    one_line_error(capsys, ["compile", str(other_model), "-o", str(build), "--page-size",
                            "3000"], "page_bytes must be one of")
    assert snapshot(build) == before


def test_failed_compile_leaves_the_previous_build(build, other_model, tmp_path, capsys,
                                                  monkeypatch):
    before = snapshot(build)
    with monkeypatch.context() as patch:  # the disk fills up while the binaries are written
        patch.setattr(pathlib.Path, "write_bytes", disk_full)
        one_line_error(capsys, ["compile", str(other_model), "-o", str(build)],
                       "No space left on device")
    assert snapshot(build) == before
    assert [p.name for p in build.parent.iterdir()] == ["build"]  # no staging left behind
    assert "PASS" in _run(build, tmp_path, capsys)


def test_recompile_leaves_nothing_of_the_previous_build(build, model, tmp_path, capsys):
    assert main(["compile", str(model), "-o", str(build), "--cpu-layers",
                 "max_pooling2d_1", "--no-require-compute"]) == 0
    _run(build, tmp_path, capsys)
    assert (build / "run_report.json").is_file() and list(build.glob("cpu_main_*.onnx"))
    assert main(["compile", str(model), "-o", str(build)]) == 0
    assert not (build / "run_report.json").exists()
    assert not list(build.glob("cpu_main_*.onnx"))
    manifest = json.loads((build / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {
        p.name for p in build.iterdir()} - {"manifest.json", ".mrvl-build"}


def test_recompile_from_the_build_itself(build, capsys, tmp_path):
    """`mrvl compile build/model.onnx -o build`: the model is read before the swap."""
    assert main(["compile", str(build / "model.onnx"), "-o", str(build), "--num-tiles",
                 "2"]) == 0
    assert json.loads((build / "manifest.json").read_text())["options"]["num_tiles"] == 2
    assert "PASS" in _run(build, tmp_path, capsys)


def test_swapped_binary_is_refused(build, other_model, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(["compile", str(other_model), "-o", str(other)]) == 0
    binary = "tvmgen_mrvl_main_0.bin"
    shutil.copyfile(other / binary, build / binary)
    one_line_error(capsys, ["run", str(build), "--inputs",
                            str(npz(tmp_path / "x.npz", **{INPUT: digit()}))],
                   "is not the file this build wrote")
    (build / binary).write_bytes((build / binary).read_bytes()[:-4])  # truncated
    one_line_error(capsys, ["report", str(build)], "is not the file this build wrote")


def test_user_symlink_is_never_written_through(tmp_path, model, other_model, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").symlink_to(other_model)
    before = other_model.read_bytes()
    one_line_error(capsys, ["compile", str(model), "-o", str(out)], "is not an mrvl build")
    assert other_model.read_bytes() == before and (out / "model.onnx").is_symlink()


def test_foreign_files_are_refused_and_kept(build, model, capsys):
    user_file = build / "my-inputs.npz"
    user_file.write_bytes(b"mine")
    one_line_error(capsys, ["compile", str(model), "-o", str(build)],
                   "holds files mrvl did not write (my-inputs.npz)")
    assert user_file.read_bytes() == b"mine"
    user_file.unlink()
    (build / "static_report.json").unlink()
    (build / "static_report.json").symlink_to(build / "offload.json")  # a symlink is not ours
    one_line_error(capsys, ["compile", str(model), "-o", str(build)], "static_report.json")


def test_output_that_is_a_file(tmp_path, model, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    one_line_error(capsys, ["compile", str(model), "-o", str(target)], "is a file")
    assert target.read_text() == "keep"


def test_unwritable_output_directory(tmp_path, model, capsys, monkeypatch):
    import tempfile

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    one_line_error(capsys, ["compile", str(model), "-o", str(tmp_path / "b")],
                   "Permission denied")


def test_hand_edited_manifests(build, tmp_path, capsys):
    x = str(npz(tmp_path / "x.npz", **{INPUT: digit()}))
    manifest = json.loads((build / "manifest.json").read_text())
    for edit, match in ((lambda m: m["model"].update(inputs=None), "inputs"),
                        (lambda m: m["model"]["inputs"][0].update(dtype="float99"), "dtype"),
                        (lambda m: m.update(steps=None), "steps"),
                        (lambda m: m.update(artifacts=[1]), "artifacts")):
        edited = json.loads(json.dumps(manifest))
        edit(edited)
        (build / "manifest.json").write_text(json.dumps(edited))
        one_line_error(capsys, ["run", str(build), "--inputs", x], match)


def test_paths_that_are_directories(build, tmp_path, capsys):
    x = str(npz(tmp_path / "x.npz", **{INPUT: digit()}))
    binary = build / "tvmgen_mrvl_main_0.bin"
    binary.unlink()
    binary.mkdir()
    one_line_error(capsys, ["run", str(build), "--inputs", x], "is a directory")
    (build / "manifest.json").unlink()
    (build / "manifest.json").mkdir()
    one_line_error(capsys, ["run", str(build), "--inputs", x], "manifest")


def test_external_data_in_a_subdirectory_rebuilds(tmp_path, capsys):
    """External data files (here in a subdirectory) are ours: listed in the marker and in the
    artifacts, so a rebuild may replace them, and a swapped data file is refused."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    src = tmp_path / "src"
    (src / "weights").mkdir(parents=True)
    onnx.save(model, src / "m.onnx", save_as_external_data=True, location="weights/w.data",
              size_threshold=0)
    build = tmp_path / "build"
    for _ in range(2):
        assert main(["compile", str(src / "m.onnx"), "-o", str(build)]) == 0
    assert (build / "weights" / "w.data").is_file()
    x = npz(tmp_path / "x.npz", x=np.ones((1, 3, 8, 8), np.float32))
    assert main(["run", str(build), "--inputs", str(x), "--check"]) == 0
    (build / "weights" / "w.data").write_bytes(b"\0" * 432)
    one_line_error(capsys, ["run", str(build), "--inputs", str(x)], "w.data")
    (build / "weights" / "notes.txt").write_text("mine")
    one_line_error(capsys, ["compile", str(src / "m.onnx"), "-o", str(build)],
                   "weights/notes.txt")


def test_unreadable_output_directory(build, model, capsys, monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pathlib.Path, "iterdir", denied)
    one_line_error(capsys, ["compile", str(model), "-o", str(build)], "Permission denied")
