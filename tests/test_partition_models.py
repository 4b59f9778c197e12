"""Big models through the whole step-1 pipeline: ResNet-50 (every conv on the accelerator,
partitioned module == original through the reference executor, rtol 1e-4) and the SSD-style
detector (every conv on the accelerator, box decoding and NMS on the CPU, the accelerator
outputs equal onnxruntime's tensors at the cut)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from xdsl.dialects import func

from mrvl.dialects import graph, mrvl
from mrvl.frontend.onnx_import import import_onnx
from mrvl.lowering.mrvl_json import check_json_pair, subgraph_to_json
from mrvl.driver.compiler import compile_to_partitioned
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.lowering.offload_report import offload_report
from mrvl.models import example_inputs
from mrvl.models.resnet50 import resnet50
from mrvl.models.ssd_detector import ssd_detector
from mrvl.sim.reference import run_function


def _ops(functions, op_type) -> list:
    return [op for fn in functions for op in fn.body.block.ops if isinstance(op, op_type)]


def test_resnet50_every_conv_on_the_accelerator_and_values_kept():
    model = resnet50(batch=1)
    n_convs = sum(node.op_type == "Conv" for node in model.graph.node)
    feeds = example_inputs(model, seed=3)
    module = compile_to_partitioned(model)
    accel = subgraph_functions(module, "accelerator")
    assert [f.sym_name.data for f in accel] == ["tvmgen_mrvl_main_0"]
    assert subgraph_functions(module, "cpu") == []
    assert len(_ops(accel, mrvl.Conv2DOp)) == n_convs == 53
    assert len(_ops(accel, mrvl.Sum2DOp)) == 16
    assert offload_report(module)["accelerator_mac_share"] == 1.0
    nodes, consts = subgraph_to_json(accel[0])
    assert check_json_pair(nodes, consts) == []
    got = run_function(module, feeds)
    original = run_function(import_onnx(model), feeds)
    np.testing.assert_allclose(got[0], original[0], rtol=1e-4, atol=1e-5)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-4)


def _cut_tensors(module, model: onnx.ModelProto) -> dict[int, str]:
    """Result index of the accelerator call -> the ONNX tensor the CPU sub-graph reads there."""
    main = next(f for f in module.ops if isinstance(f, func.FuncOp) and f.sym_name.data == "main")
    calls = [op for op in main.body.block.ops if isinstance(op, func.CallOp)]
    accel_call, cpu_call = calls
    cpu = next(f for f in subgraph_functions(module, "cpu"))
    nodes = {node.name: node for node in model.graph.node}
    found: dict[int, str] = {}
    for k, (outer, arg) in enumerate(zip(cpu_call.operands, cpu.args)):
        if outer.owner is not accel_call:
            continue
        for use in arg.uses:
            name = use.operation.attributes.get("onnx_node")
            if name is None or name.data not in nodes:
                continue
            found[outer.index] = nodes[name.data].input[use.index]
    return found


def test_ssd_detector_convs_on_accelerator_decoding_and_nms_on_cpu():
    model = ssd_detector(batch=1)
    n_convs = sum(node.op_type == "Conv" for node in model.graph.node)
    module = compile_to_partitioned(model, verify=True)
    accel = subgraph_functions(module, "accelerator")
    cpu = subgraph_functions(module, "cpu")
    assert len(_ops(accel, mrvl.Conv2DOp)) == n_convs
    assert _ops(cpu, graph.Conv2DOp) == []
    onnx_ops = {op.op_type.data for op in _ops(cpu, graph.OnnxOp)}
    assert "NonMaxSuppression" in onnx_ops
    report = offload_report(module)
    reasons = {n["node"]: n["reason"] for n in report["cpu_nodes"]}
    assert reasons["nms"] == "graph.onnx NonMaxSuppression: not an accelerator op"
    assert any(name.startswith("decode.") for name in reasons)
    assert report["accelerator_mac_share"] == 1.0
    # The accelerator part computes exactly the tensors the CPU part reads.
    feeds = example_inputs(model, seed=5)
    cut = _cut_tensors(module, model)
    assert cut, "the CPU sub-graph reads no accelerator output"
    assert len(accel[0].args) == 1
    got = run_function(module, list(feeds.values()), func_name=accel[0].sym_name.data)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in cut.values())
    expected = ort.InferenceSession(probe.SerializeToString()).run(list(cut.values()), feeds)
    for (index, name), want in zip(cut.items(), expected):
        np.testing.assert_allclose(got[index], want, rtol=1e-4, atol=1e-5, err_msg=name)
    # And the whole partitioned model (accelerator part, then decoding and NMS on the CPU)
    # gives the original detections: same boxes and scores, exactly the same selection.
    whole = run_function(module, feeds)
    original = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    assert len(whole) == len(original)
    for out, got_value, want in zip(model.graph.output, whole, original):
        assert got_value.shape == want.shape, out.name
        if np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(got_value, want, err_msg=out.name)
        else:
            np.testing.assert_allclose(got_value, want, rtol=1e-4, atol=1e-5, err_msg=out.name)
    assert original[0].shape[0] > 0, "the detector should select some boxes on this input"


@pytest.mark.parametrize("mode", ["default", "rfc-first-revision"])
def test_ssd_detector_modes_give_one_accelerator_subgraph(mode):
    module = compile_to_partitioned(ssd_detector(batch=1), mode=mode)
    assert len(subgraph_functions(module, "accelerator")) == 1
    assert len(subgraph_functions(module, "cpu")) == 1
