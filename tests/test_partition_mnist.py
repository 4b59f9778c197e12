"""The RFC's MNIST walk-through: one accelerator sub-graph of 8 layers (Figure 2a), the
Figure 2b cut (4 accelerator layers + a CPU rest), the offload report, the Python API and the
`mrvl partition` / `mrvl show` verbs. Values are checked against onnxruntime (rtol 1e-4,
atol 1e-5: only float summation order differs)."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mrvl.dialects import graph, mrvl
from mrvl.driver.cli import main as cli_main
from mrvl.frontend.onnx_import import import_onnx
from mrvl.lowering.mrvl_json import check_json_pair
from mrvl.lowering.mrvl_partition import layers_of, partition_for_mrvl, run_graph_passes
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.lowering.offload_report import format_report, offload_report
from mrvl.models.mnist_cnn import mnist_cnn
from mrvl.sim.reference import run_function

RFC_ORDER = [
    "layout_transform",
    "Conv2D",
    "Maxpool2D",
    "Conv2D",
    "Maxpool2D",
    "nn.batch_flatten",
    "FC",
    "FC",
]
# MACs of the RFC model: conv 28*28*64*2*2*1, conv 14*14*32*2*2*64, dense 1568*256, 256*10.
CONV_MACS = 200704 + 1605632
ALL_MACS = CONV_MACS + 401408 + 2560


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return mnist_cnn(batch=1)


@pytest.fixture(scope="module")
def feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"permute_input": rng.standard_normal((1, 1, 28, 28)).astype(np.float32)}


@pytest.fixture(scope="module")
def expected(model, feeds) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]


def _names(functions) -> list[str]:
    return [f.sym_name.data for f in functions]


def _main_callees(module) -> list[str]:
    main = next(f for f in module.ops if f.sym_name.data == "main")
    return [op.callee.root_reference.data for op in main.body.block.ops if op.name == "func.call"]


def test_default_is_one_subgraph_of_eight_layers_in_rfc_order(model, feeds, expected):
    module = compile_to_partitioned(model, verify=True)
    accel = subgraph_functions(module, "accelerator")
    assert _names(accel) == ["tvmgen_mrvl_main_0"]
    assert subgraph_functions(module, "cpu") == []
    layers = layers_of(accel[0])
    assert [layer.LAYER_NAME for layer in layers] == RFC_ORDER
    assert [layer.name_str for layer in layers] == [f"tvmgen_mrvl_main_{k}" for k in range(8)]
    assert [layer.activation_str() for layer in layers if layer.LAYER_NAME in ("Conv2D", "FC")] == [
        "relu",
        "relu",
        "relu",
        "none",
    ]
    assert _main_callees(module) == ["tvmgen_mrvl_main_0"]
    got = run_function(module, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"max_layers": 4},
        {"mode": "rfc-first-revision", "cpu_layers": ["tvmgen_mrvl_main_4"]},
        {"mode": "rfc-first-revision", "cpu_layers": ["max_pooling2d_1"]},
    ],
    ids=["max-layers", "layer-name", "onnx-node-name"],
)
def test_figure_2b_cut(model, feeds, expected, options):
    module = compile_to_partitioned(model, verify=True, **options)
    accel = subgraph_functions(module, "accelerator")
    cpu = subgraph_functions(module, "cpu")
    assert _names(accel) == ["tvmgen_mrvl_main_0"]
    assert _names(cpu) == ["cpu_main_0"]
    assert [layer.LAYER_NAME for layer in layers_of(accel[0])] == RFC_ORDER[:4]
    assert _main_callees(module) == ["tvmgen_mrvl_main_0", "cpu_main_0"]
    cpu_ops = {op.name for op in cpu[0].body.block.ops}
    assert {"graph.max_pool2d", "graph.dense", "graph.relu"} <= cpu_ops
    assert not any(op.dialect_name() == "mrvl" for op in cpu[0].body.block.ops)
    # The accelerator sub-graph takes only the model input.
    assert [a.type for a in accel[0].args] == [graph.TensorType(graph.f32, [1, 1, 28, 28])]
    got = run_function(module, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_cpu_layer_in_default_mode_gives_alternating_subgraphs(model, feeds, expected):
    module = compile_to_partitioned(model, cpu_layers=("tvmgen_mrvl_main_4",))
    assert _main_callees(module) == ["tvmgen_mrvl_main_0", "cpu_main_0", "tvmgen_mrvl_main_1"]
    second = subgraph_functions(module, "accelerator")[1]
    # The second accelerator sub-graph takes an intermediate tensor (the CPU pool's output).
    assert [a.type for a in second.args] == [graph.TensorType(graph.f32, [1, 7, 7, 32])]
    assert [layer.name_str for layer in layers_of(second)] == [
        "tvmgen_mrvl_main_5",
        "tvmgen_mrvl_main_6",
        "tvmgen_mrvl_main_7",
    ]
    np.testing.assert_allclose(run_function(module, feeds)[0], expected, rtol=1e-4, atol=1e-5)


def test_offload_report_counts_macs_and_names_cpu_nodes(model):
    full = offload_report(compile_to_partitioned(model))
    assert full["macs_total"] == ALL_MACS
    assert full["macs_accelerator"] == ALL_MACS
    assert full["cpu_nodes"] == []
    cut = offload_report(compile_to_partitioned(model, max_layers=4))
    assert cut["macs_total"] == ALL_MACS
    assert cut["macs_accelerator"] == CONV_MACS
    assert cut["accelerator_mac_share"] == pytest.approx(CONV_MACS / ALL_MACS)
    nodes = {(n["node"], n["op"]): n for n in cut["cpu_nodes"]}
    pool = nodes[("max_pooling2d_1", "graph.max_pool2d")]
    assert pool["reason"] == "beyond max-layers 4"
    assert pool["layer"] == "tvmgen_mrvl_main_4"
    assert {n["subgraph"] for n in cut["cpu_nodes"]} == {"cpu_main_0"}
    text = format_report(cut)
    assert "81.72% of 2210304 MACs" in text
    assert "max_pooling2d_1 (graph.max_pool2d) [tvmgen_mrvl_main_4]: beyond max-layers 4" in text


def test_partition_for_mrvl_keeps_the_signature(model, feeds, expected):
    module = run_graph_passes(import_onnx(model))
    same = partition_for_mrvl(module, require_compute=True)
    assert same is module
    assert _names(subgraph_functions(module, "accelerator")) == ["tvmgen_mrvl_main_0"]
    np.testing.assert_allclose(run_function(module, feeds)[0], expected, rtol=1e-4, atol=1e-5)


def test_verbs_partition_and_show(model, tmp_path, capsys):
    path = tmp_path / "mnist.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out"
    argv = ["partition", str(path), "-o", str(out), "--report", "--dot", "--max-layers", "4"]
    rc = cli_main(argv)
    assert rc == 0
    printed = capsys.readouterr().out
    nodes_path = out / "tvmgen_mrvl_main_0-nodes.json"
    consts_path = out / "tvmgen_mrvl_main_0-consts.json"
    assert str(nodes_path) in printed and str(consts_path) in printed
    assert "beyond max-layers 4" in printed
    nodes = json.loads(nodes_path.read_text())
    assert check_json_pair(nodes, json.loads(consts_path.read_text())) == []
    assert [n["name"] for n in nodes["nodes"]] == ["mrvl_0_i0"] + [
        f"tvmgen_mrvl_main_{k}" for k in range(4)
    ]
    report = json.loads((out / "offload-report.json").read_text())
    assert report["macs_accelerator"] == CONV_MACS
    dot = (out / "partition.dot").read_text()
    assert 'subgraph "cluster_tvmgen_mrvl_main_0"' in dot
    assert 'subgraph "cluster_cpu_main_0"' in dot

    rc = cli_main(["show", str(path)])
    assert rc == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "mnist"')
    for k, kind in enumerate(RFC_ORDER):
        assert f"tvmgen_mrvl_main_{k}\\n{kind}" in dot
    assert "cluster_cpu_main" not in dot


def test_layer_ops_are_mrvl_dialect(model):
    module = compile_to_partitioned(model)
    accel = subgraph_functions(module, "accelerator")[0]
    kinds = {type(op) for op in accel.body.block.ops}
    assert mrvl.Conv2DOp in kinds and mrvl.FCOp in kinds
    assert kinds <= set(mrvl.LAYER_OPS) | {graph.ConstantOp, type(accel.body.block.last_op)}


def test_report_pass_option_writes_json_and_text(model, tmp_path):
    json_path, text_path = tmp_path / "report.json", tmp_path / "report.txt"
    compile_to_partitioned(model, max_layers=4, report=str(json_path))
    report = json.loads(json_path.read_text())
    assert report["macs_accelerator"] == CONV_MACS
    assert [s["name"] for s in report["accelerator_subgraphs"]] == ["tvmgen_mrvl_main_0"]
    compile_to_partitioned(model, report=str(text_path))
    assert text_path.read_text().startswith(
        "accelerator: 1 sub-graph(s), 8 layer(s), 100.00% of 2210304 MACs\n"
    )
