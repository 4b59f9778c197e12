"""Hostile-input catalogue: full disks, read-only paths, misleading successes (issue 11,
items 5, 6, 10, 11).

Every file mrvl writes goes through mrvl/files.py (temporary file + os.replace): a full disk
leaves the previous file as it was and no temporary behind; output paths are checked before
any work; a read-only build still runs (the run report is skipped with a warning).
"""

from __future__ import annotations

import errno

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hostile import INPUT, OUTPUT, digit, disk_full, mnist_file, npz, one_line_error
from mrvl.driver.cli import main


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile-outputs")


@pytest.fixture(scope="module")
def model(work):
    return mnist_file(work / "mnist.onnx")


@pytest.fixture(scope="module")
def build(work, model):
    out = work / "build"
    assert main(["compile", str(model), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def x(work):
    return str(npz(work / "x.npz", **{INPUT: digit()}))


def _no_temporaries(directory) -> None:
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_outputs_into_a_directory_or_a_missing_one(work, build, x, capsys):
    folder = work / "folder"
    folder.mkdir()
    one_line_error(capsys, ["run", str(build), "--inputs", x, "-o", str(folder)],
                   "is a directory")
    one_line_error(capsys, ["run", str(build), "--inputs", x, "-o",
                            str(work / "nowhere" / "y.npz")], "does not exist")
    one_line_error(capsys, ["run", str(build), "--inputs", x, "--trace",
                            str(work / "nowhere" / "t.json")], "does not exist")
    assert list(folder.iterdir()) == []


def test_outputs_go_exactly_where_asked(work, build, x, capsys):
    target = work / "outputs-without-suffix"
    capsys.readouterr()
    assert main(["run", str(build), "--inputs", x, "-o", str(target)]) == 0
    assert f"wrote {target}\n" in capsys.readouterr().out
    with np.load(target) as data:
        assert data[OUTPUT].shape == (1, 10)
    assert not (work / "outputs-without-suffix.npz").exists()


def test_full_disk_keeps_the_previous_outputs(work, build, x, capsys, monkeypatch):
    previous = work / "old.npz"
    np.savez(previous, kept=np.arange(3))
    before = previous.read_bytes()

    def half_then_full(file, **_arrays):
        file.write(b"PK\x03\x04" + b"\0" * 4096)
        disk_full()

    monkeypatch.setattr(np, "savez", half_then_full)
    one_line_error(capsys, ["run", str(build), "--inputs", x, "-o", str(previous)],
                   "No space left on device")
    assert previous.read_bytes() == before
    _no_temporaries(work)


def test_full_disk_while_writing_text(work, monkeypatch):
    from mrvl.files import OutputFileError, write_text

    target = work / "notes.json"
    target.write_text("{}")
    monkeypatch.setattr("os.replace", disk_full)
    with pytest.raises(OutputFileError, match="No space left on device"):
        write_text(target, "{\"new\": 1}")
    assert target.read_text() == "{}"
    _no_temporaries(work)


def test_symlinked_output_is_replaced_not_written_through(work, build, x):
    user_file = work / "precious.npz"
    user_file.write_bytes(b"user data")
    link = work / "link.npz"
    link.symlink_to(user_file)
    assert main(["run", str(build), "--inputs", x, "-o", str(link)]) == 0
    assert user_file.read_bytes() == b"user data" and not link.is_symlink()


def test_read_only_build_still_runs(build, x, capsys, monkeypatch):
    import tempfile

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    capsys.readouterr()
    assert main(["run", str(build), "--inputs", x, "--check"]) == 0
    captured = capsys.readouterr()
    assert "check: PASS" in captured.out
    assert "warning" in captured.err and "Read-only file system" in captured.err


def test_show_refuses_wrong_picture_paths(work, build, model, capsys):
    one_line_error(capsys, ["show", str(model), "-o", str(work / "x.png")], "not '.png'")
    assert not (work / "x.png").exists()
    one_line_error(capsys, ["show", str(build), "-o", str(work / "nowhere" / "x.svg")],
                   "directory")
    assert main(["show", str(model), "-o", str(work / "p.dot")]) == 0
    assert (work / "p.dot").read_text().startswith("digraph")


def test_json_pair_outputs(work, model, capsys):
    from mrvl.driver.compiler import write_json_pairs

    (nodes, consts), = write_json_pairs(str(model), work / "pair")
    base = ["compile", "--nodes", str(nodes), "--consts", str(consts)]
    folder = work / "bin-folder"
    folder.mkdir()
    one_line_error(capsys, [*base, "-o", str(folder)], "is a directory")
    one_line_error(capsys, [*base, "-o", str(work / "m.bin"), "--asm",
                            str(work / "nowhere" / "m.s")], "does not exist")
    assert not (work / "m.bin").exists()
    one_line_error(capsys, ["compile", str(model), "-o", str(work / "b2"), "--asm",
                            str(work / "m.s")], "--emit mlip")


def test_example_limit_must_be_positive(work, capsys):
    one_line_error(capsys, ["example", "mnist", "--limit", "-1", "--out", str(work / "ex")],
                   "--limit must be at least 1")
    assert not (work / "ex").exists()


def test_bfloat16_model_inputs_are_refused(work, capsys):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
         helper.make_node("Relu", ["xf"], ["y"])], "bf16",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = work / "bf16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), path)
    one_line_error(capsys, ["compile", str(path), "-o", str(work / "bf16-build")], "bfloat16")
    assert not (work / "bf16-build").exists()


@pytest.mark.parametrize("argv", [["compile", "m.onnx", "-o", "b", "--num-tiles", "3"],
                                  ["run"], ["bogus-verb"], ["show", "--no-such-option", "m"]])
def test_usage_errors_are_two_lines(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("usage: mrvl") and "error:" in lines[1]
