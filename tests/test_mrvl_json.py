"""The Nodes-JSON / Constants-JSON pair (docs/mrvl-json.md): format facts, the integrity
checker, the reader (back to the same mrvl function), byte-identical re-runs, the target."""

import base64
import copy
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from xdsl.printer import Printer

from mrvl.lowering.mrvl_json import (
    JsonPairError,
    check_json_pair,
    json_to_function,
    read_json_pair,
    subgraph_to_json,
    write_module_json,
)
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.compiler import compile_to_partitioned, write_json_pairs
from mrvl.models.mnist_cnn import init_weights, mnist_cnn


def _text(op) -> str:
    """Printed form without SSA name hints (the JSON pair does not keep them)."""
    op = op.clone()
    for inner in op.walk():
        for value in inner.results:
            value.name_hint = None
        for region in inner.regions:
            for block in region.blocks:
                for arg in block.args:
                    arg.name_hint = None
    stream = io.StringIO()
    Printer(stream=stream).print_op(op)
    return stream.getvalue()


@pytest.fixture(scope="module")
def split_module():
    """MNIST with layer 4 on the CPU: two accelerator sub-graphs."""
    return compile_to_partitioned(mnist_cnn(batch=1), cpu_layers=["tvmgen_mrvl_main_4"])


@pytest.fixture(scope="module")
def mnist_pair():
    module = compile_to_partitioned(mnist_cnn(batch=1))
    return subgraph_to_json(subgraph_functions(module, "accelerator")[0])


def test_pairs_pass_the_checker_and_read_back_to_the_same_function(split_module, tmp_path):
    pairs = write_module_json(split_module, tmp_path)
    assert [p[0].name for p in pairs] == [
        "tvmgen_mrvl_main_0-nodes.json",
        "tvmgen_mrvl_main_1-nodes.json",
    ]
    accelerator = subgraph_functions(split_module, "accelerator")
    for fn, (nodes_path, consts_path) in zip(accelerator, pairs):
        nodes = json.loads(nodes_path.read_text())
        consts = json.loads(consts_path.read_text())
        assert check_json_pair(nodes, consts) == []
        back = read_json_pair(nodes_path, consts_path)
        back.verify()
        assert _text(back.ops.first) == _text(fn)


def test_output_is_byte_identical_across_runs(tmp_path):
    model = mnist_cnn(batch=1)
    first = write_json_pairs(model, tmp_path / "a", max_layers=4)
    second = write_json_pairs(model, tmp_path / "b", max_layers=4)
    assert len(first) == 1
    for (n1, c1), (n2, c2) in zip(first, second):
        assert n1.read_bytes() == n2.read_bytes()
        assert c1.read_bytes() == c2.read_bytes()


def test_format_facts(mnist_pair):
    nodes, consts = mnist_pair
    assert nodes["symbol"] == "tvmgen_mrvl_main_0"
    assert (nodes["batch_size"], nodes["num_subgraph_inputs"], nodes["num_subgraph_outputs"]) == (
        "1",
        "1",
        "1",
    )
    assert nodes["arg_nodes"] == [0]
    assert nodes["heads"] == [[8, 0, 0]]
    first = nodes["nodes"][0]
    assert first["op"] == "input" and first["name"] == "mrvl_0_i0"
    assert first["attrs"]["data_layout"] == ["NCHW"]
    assert first["attrs"]["shape"] == [[1, 1, 28, 28]]
    assert nodes["attrs"]["shape"][0] == "list_shape"
    assert nodes["attrs"]["shape"][1][1] == [1, 28, 28, 1]
    assert nodes["attrs"]["dltype"] == ["list_str", ["float32"] * 9]
    conv = nodes["nodes"][2]["attrs"]
    assert nodes["nodes"][2]["name"] == "tvmgen_mrvl_main_1"
    assert nodes["nodes"][2]["inputs"] == [[1, 0, 0]]
    assert conv["layer_name"] == ["Conv2D"]
    assert conv["composite_name"] == ["mrvl.conv2d_nhwc2nhwc"]
    assert conv["func_name"] == ["n1_Conv2D_NHWC"]
    assert conv["padding"] == ["0", "0", "1", "1"]
    assert conv["strides"] == ["1", "1"] and conv["kernel_size"] == ["2", "2"]
    assert conv["channels"] == ["64"] and conv["groups"] == ["1"]
    assert conv["kernel_layout"] == ["OHWI"] and conv["bias_layout"] == ["---O"]
    assert conv["activation_type"] == ["relu"]
    assert conv["mrvl_nodes_idx"] == [2] and conv["num_inputs"] == "3"
    assert conv["shape"] == [[1, 28, 28, 64]] and conv["dtype"] == ["float32"]
    assert conv["gamma_const"] == {} and conv["var_const"] == {}
    assert conv["kernel_const_name"] == ["tvmgen_mrvl_main_1_const_0"]
    assert conv["bias_const_name"] == ["tvmgen_mrvl_main_1_const_1"]
    weights = init_weights(0)
    ohwi = weights["conv2d.weight"].transpose(0, 2, 3, 1)
    kernel = consts["tvmgen_mrvl_main_1_const_0"]
    assert kernel["shape"] == [64, 2, 2, 1] and kernel["dtype"] == "float32"
    raw = base64.b64decode(kernel["data_base64"])
    assert raw == np.ascontiguousarray(ohwi, dtype="<f4").tobytes()
    assert kernel["min"] == f"{float(ohwi.min()):.17g}"
    assert kernel["max"] == f"{float(ohwi.max()):.17g}"
    assert conv["kernel_const"]["name"] == "tvmgen_mrvl_main_1_const_0"
    assert conv["kernel_const"]["min"] == kernel["min"]
    assert consts["tvmgen_mrvl_main_1_const_1"]["shape"] == [1, 1, 1, 64]
    fc = nodes["nodes"][7]["attrs"]
    assert fc["layer_name"] == ["FC"] and fc["bias_layout"] == ["-O"]
    assert consts["tvmgen_mrvl_main_6_const_0"]["shape"] == [256, 1568]
    assert consts["tvmgen_mrvl_main_6_const_1"]["shape"] == [1, 256]
    flatten = nodes["nodes"][6]["attrs"]
    assert flatten["layer_name"] == ["nn.batch_flatten"]
    assert flatten["data_layout"] == ["NHWC"] and flatten["out_layout"] == ["NC"]


def _broken(pair, edit):
    nodes, consts = copy.deepcopy(pair)
    edit(nodes, consts)
    return check_json_pair(nodes, consts)


def test_checker_finds_each_kind_of_problem(mnist_pair):
    assert check_json_pair(*mnist_pair) == []

    def drop_const(nodes, consts):
        del consts["tvmgen_mrvl_main_1_const_0"]

    def forward_input(nodes, consts):
        nodes["nodes"][2]["inputs"] = [[5, 0, 0]]

    def bad_kind(nodes, consts):
        nodes["nodes"][3]["attrs"]["layer_name"] = ["Gelu"]

    def bad_name(nodes, consts):
        nodes["nodes"][3]["name"] = "layer3"

    def bad_shape(nodes, consts):
        nodes["nodes"][2]["attrs"]["kernel_const"]["shape"] = [64, 2, 2, 2]

    def bad_min(nodes, consts):
        consts["tvmgen_mrvl_main_1_const_1"]["min"] = "0"

    def no_heads(nodes, consts):
        del nodes["heads"]

    cases = {
        drop_const: "constant 'tvmgen_mrvl_main_1_const_0' is not in the Constants-JSON",
        forward_input: "input [5, 0, 0] does not point at an earlier node",
        bad_kind: "unknown layer_name 'Gelu'",
        bad_name: "name does not match tvmgen_mrvl_main_[0-9]+",
        bad_shape: "shape [64, 2, 2, 1] != [64, 2, 2, 2]",
        bad_min: "min/max do not match its data",
        no_heads: 'missing top-level key "heads"',
    }
    for edit, message in cases.items():
        problems = _broken(mnist_pair, edit)
        assert any(message in p for p in problems), (edit.__name__, problems)


def test_reader_rejects_bad_files(mnist_pair, tmp_path):
    nodes, consts = mnist_pair
    nodes_path, consts_path = tmp_path / "n.json", tmp_path / "c.json"
    nodes_path.write_text(json.dumps(nodes)[:100])
    consts_path.write_text(json.dumps(consts))
    with pytest.raises(JsonPairError, match="Nodes-JSON '.*n.json' is not valid JSON"):
        read_json_pair(nodes_path, consts_path)
    broken = copy.deepcopy(consts)
    del broken["tvmgen_mrvl_main_6_const_1"]
    nodes_path.write_text(json.dumps(nodes))
    consts_path.write_text(json.dumps(broken))
    with pytest.raises(JsonPairError, match="is malformed: .*tvmgen_mrvl_main_6_const_1"):
        read_json_pair(nodes_path, consts_path)
    with pytest.raises(JsonPairError, match="cannot read Nodes-JSON"):
        read_json_pair(tmp_path / "missing.json", consts_path)


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


@pytest.mark.parametrize(
    "where, path, value",
    [
        ("nodes", ("nodes", 3), None),
        ("nodes", ("nodes", 3, "attrs"), "x"),
        ("nodes", ("nodes", 3, "attrs", "layer_name"), 1.5),
        ("nodes", ("nodes", 3, "attrs", "layer_name", 0), []),
        ("nodes", ("nodes", 2, "attrs", "kernel_const", "name"), ["1"]),
        ("nodes", ("nodes", 2, "attrs", "bias_const"), [0, 0, 0]),
        ("nodes", ("nodes", 2, "attrs", "kernel_const_name"), None),
        ("nodes", ("nodes", 2, "attrs", "dilation", 1), -1),
        ("nodes", ("nodes", 2, "attrs", "shape", 0, 3), "1"),
        ("nodes", ("nodes", 2, "attrs", "activation_type"), [-1]),
        ("nodes", ("nodes", 2, "attrs", "groups"), [0]),
        ("nodes", ("nodes", 3, "inputs"), 7),
        ("nodes", ("nodes", 3, "inputs", 0), ["1"]),
        ("nodes", ("nodes", 0, "attrs", "shape", 0), 10),
        ("nodes", ("heads", 0, 0), "x"),
        ("nodes", ("arg_nodes", 0), [-1]),
        ("nodes", ("arg_nodes",), []),
        ("nodes", ("attrs", "shape"), -1),
        ("nodes", ("symbol",), {"a": 1}),
        ("consts", ("tvmgen_mrvl_main_1_const_0",), [-1]),
        ("consts", ("tvmgen_mrvl_main_1_const_1", "shape", 2), None),
        ("consts", ("tvmgen_mrvl_main_1_const_1", "data_base64"), {"a": 1}),
    ],
)
def test_reader_reports_hostile_structure_in_one_line(mnist_pair, tmp_path, where, path, value):
    """A document of the wrong structure is a JsonPairError naming the files, never a
    TypeError/KeyError/VerifyException traceback from deep inside the reader."""
    nodes, consts = copy.deepcopy(mnist_pair)
    _set(nodes if where == "nodes" else consts, path, value)
    nodes_path, consts_path = tmp_path / "n.json", tmp_path / "c.json"
    nodes_path.write_text(json.dumps(nodes))
    consts_path.write_text(json.dumps(consts))
    with pytest.raises(JsonPairError) as info:
        read_json_pair(nodes_path, consts_path)
    assert "\n" not in str(info.value).strip()


def test_mrvl_opt_target_writes_the_same_files(split_module, tmp_path):
    mlir = tmp_path / "partitioned.mlir"
    mlir.write_text(_text(split_module))
    api_dir, tool_dir = tmp_path / "api", tmp_path / "tool"
    pairs = write_module_json(split_module, api_dir)
    opt = [sys.executable, "-m", "mrvl.driver.opt", str(mlir)]
    result = subprocess.run(
        [*opt, "-t", f"mrvl-json{{out-dir=\"{tool_dir}\"}}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tool_dir / p.name) for pair in pairs for p in pair]
    for nodes_path, consts_path in pairs:
        assert (tool_dir / nodes_path.name).read_bytes() == nodes_path.read_bytes()
        assert (tool_dir / consts_path.name).read_bytes() == consts_path.read_bytes()
    result = subprocess.run([*opt, "-t", "mrvl-json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "// ----- tvmgen_mrvl_main_1-consts.json\n" in result.stdout
    first = result.stdout.split("// ----- ")[1].split("\n", 1)[1]
    assert first == Path(pairs[0][0]).read_text()


def test_fc_after_an_nchw_flatten_needs_weight_transform():
    """Conv -> Flatten (NCHW order) -> MatMul: the FC takes the NHWC tensor and says
    weights_need_transform; values and the read-back function are kept."""
    from onnx import TensorProto, helper, numpy_helper

    from mrvl.lowering.mrvl_partition import layers_of
    from mrvl.dialects.mrvl import subgraph_functions
    from mrvl.sim.reference import run_function

    rng = np.random.default_rng(4)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    k = rng.standard_normal((100, 6)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("Flatten", ["c"], ["f"], name="flatten"),
            helper.make_node("MatMul", ["f", "k"], ["y"], name="dense"),
        ],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(k, "k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    module = compile_to_partitioned(model)
    fn = subgraph_functions(module, "accelerator")[0]
    fc = layers_of(fn)[-1]
    assert fc.LAYER_NAME == "FC" and fc.weights_need_transform is not None
    nodes, consts = subgraph_to_json(fn)
    attrs = nodes["nodes"][-1]["attrs"]
    assert attrs["weights_need_transform"] == ["yes"]
    assert attrs["data_layout"] == ["NHWC"] and attrs["data_layout_shape"] == ["1", "5", "5", "4"]
    assert consts[attrs["kernel_const_name"][0]]["shape"] == [6, 100]
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(run_function(module, [x])[0], expected, rtol=1e-4, atol=1e-5)
    assert _text(json_to_function(nodes, consts)) == _text(fn)
