"""`mrvl sim`: inputs as raw fp32 .bin / .npy / .npz, outputs as <out>-<i>.bin, report text
and JSON; bad input gives a one-line error and exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrvl.driver.cli import main
from mrvl.sim.simulator import Simulator
from mrvl.sim.sim_fuzz import seed_binaries


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim_cli") / "conv.bin"
    path.write_bytes(seed_binaries()[0])  # input x (5, 6, 4); outputs p (3,3,8), e (5,6,8)
    return path


def _expected(model, x):
    outputs, report = Simulator.load(model).run([x])
    return outputs, report


@pytest.mark.parametrize("kind", ["bin", "npy", "npz"])
def test_sim_verb_writes_outputs(model, tmp_path, kind, capsys):
    x = np.random.default_rng(3).standard_normal((5, 6, 4)).astype(np.float32)
    data = tmp_path / f"in.{kind}"
    if kind == "bin":
        x.astype("<f4").tofile(data)
    elif kind == "npy":
        np.save(data, x)
    else:
        np.savez(data, x=x)
    out = tmp_path / "res" / "out"
    report_path = tmp_path / "report.json"
    status = main(["sim", "-m", str(model), "-d", str(data), "-o", str(out), "--perf-debug",
                   "--json", str(report_path), "--machine", "dram_gbps=32"])
    assert status == 0
    expected, _ = _expected(model, x)
    for i, ref in enumerate(expected):
        got = np.fromfile(f"{out}-{i}.bin", dtype="<f4").reshape(ref.shape)
        assert np.array_equal(got, ref)
    text = capsys.readouterr().out
    assert "total cycles" in text and "matrix engine util" in text and "layer0" in text
    report = json.loads(report_path.read_text())
    assert report["cycles"] >= report["traffic_roofline_cycles"] > 0
    assert report["layers"][0]["name"] == "layer0"
    assert report["machine"]["dram_gbps"] == 32.0 and report["machine"]["dram_bytes_per_cycle"] == 32
    assert "machine: 1 tile(s), 1000 MHz, DRAM 32 GB/s" in text


def test_sim_verb_errors_are_one_line(model, tmp_path, capsys):
    bad = tmp_path / "short.bin"
    np.zeros(7, "<f4").tofile(bad)
    assert main(["sim", "-m", str(model), "-d", str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "holds 7 fp32 values" in err and "Traceback" not in err
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(model.read_bytes()[:-5])
    assert main(["sim", "-m", str(corrupt), "-d", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "truncated" in capsys.readouterr().err
    assert main(["sim", "-m", str(model), "-d", str(bad), "-o", str(tmp_path / "o"),
                 "--param", "warp_speed=9"]) == 2
    assert "--param 'warp_speed=9'" in capsys.readouterr().err


def test_sim_verb_bad_npz_and_unwritable_output_are_one_line(model, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip archive")
    assert main(["sim", "-m", str(model), "-d", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "cannot read inputs" in capsys.readouterr().err
    misnamed = tmp_path / "misnamed.npz"
    np.savez(misnamed, image=np.zeros((5, 6, 4), np.float32))
    assert main(["sim", "-m", str(model), "-d", str(misnamed), "-o", str(tmp_path / "o")]) == 2
    assert "holds ['image']; the model takes ['x']" in capsys.readouterr().err
    positional = tmp_path / "positional.npz"
    np.savez(positional, np.ones((5, 6, 4), np.float32))  # stored as arr_0
    assert main(["sim", "-m", str(model), "-d", str(positional), "-o",
                 str(tmp_path / "pos")]) == 0
    good = tmp_path / "x.npy"
    np.save(good, np.zeros((5, 6, 4), np.float32))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["sim", "-m", str(model), "-d", str(good), "-o", str(blocker / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the outputs" in err and "Traceback" not in err
