"""The examples run end to end: compile, simulate the accelerator parts, run the CPU parts.

- MNIST (the README's first command): on the 450 held-out digits, the simulated fp16 model's
  accuracy equals onnxruntime's fp32 accuracy within 0.5 % and the predicted labels agree on at
  least 99.5 % of the images.
- SSD-style detector: the backbone runs on the accelerator, box decoding and NMS on the CPU,
  and every output passes Marvell's fp16 rule against onnxruntime (integer outputs, such as
  NMS indices, must match exactly).
"""

from __future__ import annotations

import json

from mrvl.driver.cli import main
from mrvl.driver.verb_example import run_mnist, run_single


def test_mnist_example(tmp_path):
    r = run_mnist(tmp_path / "mnist", num_tiles=8, batch=8)
    assert r["images"] == 450
    assert abs(r["accuracy_sim"] - r["accuracy_ort"]) <= 0.005, r
    assert r["label_agreement"] >= 0.995, r
    assert r["accuracy_ort"] >= 0.9, r  # the trained model is a real classifier
    assert r["cycles_per_batch"] > 0


def test_ssd_backbone_on_accelerator_nms_on_cpu(tmp_path):
    r = run_single("ssd", tmp_path / "ssd", num_tiles=8)
    kinds = [kind for kind, _ in r["steps"]]
    assert "accelerator" in kinds and kinds[-1] == "cpu", r["steps"]
    manifest = json.loads((tmp_path / "ssd" / "manifest.json").read_text())
    offload = json.loads((tmp_path / "ssd" / "offload.json").read_text())
    cpu_ops = {node["op"] for node in offload["cpu_nodes"]}
    assert any("NonMaxSuppression" in op or op == "graph.onnx" for op in cpu_ops), cpu_ops
    conv_on_cpu = [n for n in offload["cpu_nodes"] if "conv" in n["op"].lower()]
    assert not conv_on_cpu, conv_on_cpu
    assert manifest["steps"][0]["kind"] == "accelerator"
    assert r["checks"], "the acceptance check compared no output"
    for check in r["checks"]:
        assert check.passed, check.summary()


def test_example_verb_limit(tmp_path, capsys):
    assert main(["example", "mnist", "-o", str(tmp_path / "ex"), "--limit", "20", "-q"]) == 0
    text = capsys.readouterr().out
    assert "accuracy, simulated fp16 model:" in text and "predicted labels agree:" in text
    assert "offload: 100.00%" in text
