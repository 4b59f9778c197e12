"""Hypothesis fuzzing of the step-1 pipeline on random CNN-shaped ONNX models.

Each drawn model (conv / depthwise conv / conv + batch-norm, max / average pools, residual
adds, channel concats, activations relu / clip / sigmoid, and a dense, pooled or raw head)
goes through import, every graph pass, convert-graph-to-mrvl and mrvl-partition (random
options). After every step the IR verifies and the reference executor's result equals
onnxruntime's (rtol 1e-4, atol 1e-5); the JSON pair of every accelerator sub-graph passes
the integrity checker and reads back to the same function.
"""

import io

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from xdsl.context import Context
from xdsl.printer import Printer

from mrvl.frontend.onnx_import import import_onnx
from mrvl.lowering.convert_graph_to_mrvl import ConvertGraphToMrvlPass
from mrvl.lowering.graph_pipeline import graph_cleanup_passes
from mrvl.lowering.mrvl_json import check_json_pair, json_to_function, subgraph_to_json
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.lowering.mrvl_partition import MrvlPartitionPass
from mrvl.sim.reference import run_function


class _Builder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def name(self, prefix: str) -> str:
        return f"{prefix}{len(self.nodes)}_{len(self.inits)}"

    def weight(self, shape, scale: float = 0.5) -> str:
        name = self.name("w")
        arr = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _act(b: _Builder, x: str, act: str) -> str:
    if act == "relu":
        return b.node("Relu", [x])
    if act == "sigmoid":
        return b.node("Sigmoid", [x])
    if act == "clip":
        lo = b.weight(())
        b.inits[-1] = numpy_helper.from_array(np.array(0.0, np.float32), lo)
        hi = b.weight(())
        b.inits[-1] = numpy_helper.from_array(np.array(6.0, np.float32), hi)
        return b.node("Clip", [x, lo, hi])
    return x


@st.composite
def cnn_models(draw) -> onnx.ModelProto:
    seed = draw(st.integers(0, 2**16))
    b = _Builder(np.random.default_rng(seed))
    n = draw(st.sampled_from([1, 2]))
    c = draw(st.integers(1, 4))
    h = draw(st.integers(5, 9))
    w = draw(st.integers(5, 9))
    x_shape = [n, c, h, w]
    x = "x"
    acts = st.sampled_from(["none", "relu", "clip", "sigmoid"])
    for _ in range(draw(st.integers(1, 4))):
        kinds = ["conv", "dwconv", "bnconv", "maxpool", "avgpool", "residual", "concat"]
        kind = draw(st.sampled_from(kinds))
        if kind in ("conv", "bnconv"):
            o = draw(st.integers(1, 6))
            k = draw(st.integers(1, 3))
            s = draw(st.integers(1, 2))
            d = draw(st.integers(1, 2)) if k > 1 else 1
            pads = [draw(st.integers(0, k - 1)) for _ in range(4)]
            oh = (h + pads[0] + pads[2] - d * (k - 1) - 1) // s + 1
            ow = (w + pads[1] + pads[3] - d * (k - 1) - 1) // s + 1
            if oh < 1 or ow < 1:
                continue
            inputs = [x, b.weight((o, c, k, k))]
            if draw(st.booleans()):
                inputs.append(b.weight((o,)))
            x = b.node("Conv", inputs, strides=[s, s], pads=pads, dilations=[d, d])
            if kind == "bnconv":
                scale = b.weight((o,))
                bias = b.weight((o,))
                mean = b.weight((o,))
                var = b.name("var")
                b.inits.append(
                    numpy_helper.from_array(b.rng.uniform(0.5, 2.0, o).astype(np.float32), var)
                )
                x = b.node("BatchNormalization", [x, scale, bias, mean, var])
            x = _act(b, x, draw(acts))
            c, h, w = o, oh, ow
        elif kind == "dwconv":
            inputs = [x, b.weight((c, 1, 3, 3)), b.weight((c,))]
            x = b.node("Conv", inputs, group=c, pads=[1, 1, 1, 1])
            x = _act(b, x, draw(acts))
        elif kind in ("maxpool", "avgpool"):
            k = draw(st.integers(1, 3))
            s = draw(st.integers(1, 2))
            pads = [draw(st.integers(0, k - 1)) for _ in range(4)]
            oh = (h + pads[0] + pads[2] - k) // s + 1
            ow = (w + pads[1] + pads[3] - k) // s + 1
            if oh < 1 or ow < 1:
                continue
            attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": pads}
            if kind == "avgpool":
                attrs["count_include_pad"] = int(draw(st.booleans()))
            x = b.node("MaxPool" if kind == "maxpool" else "AveragePool", [x], **attrs)
            h, w = oh, ow
        elif kind == "residual":
            y = b.node("Conv", [x, b.weight((c, c, 3, 3)), b.weight((c,))], pads=[1, 1, 1, 1])
            x = b.node("Add", [x, y])
            x = _act(b, x, draw(acts))
        else:
            o1, o2 = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            y1 = b.node("Conv", [x, b.weight((o1, c, 1, 1))])
            y2 = b.node("Conv", [x, b.weight((o2, c, 1, 1))])
            x = b.node("Concat", [y1, y2], axis=1)
            c = o1 + o2
    head = draw(st.sampled_from(["gemm", "matmul", "maxpool_reshape", "raw"]))
    if head == "gemm":
        g = b.node("GlobalAveragePool", [x])
        f = b.node("Flatten", [g])
        units = draw(st.integers(1, 5))
        x = b.node("Gemm", [f, b.weight((units, c)), b.weight((units,))], transB=1)
        x = _act(b, x, draw(acts))
        out_shape: tuple[int, ...] = (n, units)
    elif head == "matmul":
        f = b.node("Flatten", [x])
        units = draw(st.integers(1, 5))
        m = b.node("MatMul", [f, b.weight((c * h * w, units), 0.2)])
        x = b.node("Add", [m, b.weight((units,))])
        out_shape = (n, units)
    elif head == "maxpool_reshape":
        g = b.node("GlobalMaxPool", [x])
        shape = b.name("shape")
        b.inits.append(numpy_helper.from_array(np.array([n, c], np.int64), shape))
        x = b.node("Reshape", [g, shape])
        out_shape = (n, c)
    else:
        out_shape = (n, c, h, w)
    b.nodes[-1].output[0] = "y"
    if x == "x":
        b.nodes.append(helper.make_node("Identity", ["x"], ["y"], name="identity"))
    graph = helper.make_graph(
        b.nodes,
        "fuzz",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        b.inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


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


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_cnns_keep_their_values_through_every_pass(data):
    model = data.draw(cnn_models())
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]

    def check(module, step: str) -> None:
        module.verify()
        got = run_function(module, [x])[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=step)

    module = import_onnx(model)
    check(module, "import")
    ctx = Context()
    for p in graph_cleanup_passes("NHWC"):
        p.apply(ctx, module)
        check(module, p.name)
    ConvertGraphToMrvlPass().apply(ctx, module)
    check(module, "convert-graph-to-mrvl")
    options = MrvlPartitionPass(
        mode=data.draw(st.sampled_from(["default", "rfc-first-revision"])),
        require_compute=data.draw(st.booleans()),
    )
    options.apply(ctx, module)
    check(module, "mrvl-partition")
    for fn in subgraph_functions(module, "accelerator"):
        nodes, consts = subgraph_to_json(fn)
        assert check_json_pair(nodes, consts) == []
        assert _text(json_to_function(nodes, consts)) == _text(fn)
