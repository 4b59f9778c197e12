"""Up-sampling layers on the accelerator: ConvTranspose (2-D: kernels 2/3/4 at stride 2 with
pads and output_padding, as UNets use; groups up to depthwise, dilations, phases of unequal
size) becomes one mrvl.conv2d per output phase interleaved by concat + reshape + transpose
(and cropped by mrvl.slice when the phases differ in size); Resize (see
test_resize_*) likewise becomes copies or FC layers. Everything is judged against onnxruntime:
the partitioned module through the reference executor (rtol 1e-4 / atol 1e-5), compiled
builds with Marvell's rules (fp16 3 % relative, int8 3 LSB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mrvl.dialects import mrvl
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.driver.compiler import compile_model, compile_to_partitioned
from mrvl.lowering.mrvl_json import check_json_pair, json_to_function, subgraph_to_json
from mrvl.lowering.mrvl_partition import layers_of
from mrvl.lowering.offload_report import offload_report
from mrvl.sim.acceptance import check_output
from mrvl.sim.reference import run_function
from mrvl.sim.runtime import CompiledModel

HW = 5


def conv_transpose_model(kernel: int, stride: int, pad: int, output_padding: int = 0,
                         tail: tuple[str, ...] = (), cin: int = 6, cout: int = 5,
                         seed: int = 0, group: int = 1, dilation: int = 1,
                         pads: tuple[int, int, int, int] | None = None) -> onnx.ModelProto:
    """conv 3x3 -> ConvTranspose -> optional BatchNormalization / Relu, as torch exports it
    (`pads` overrides the symmetric `pad`; the output is square either way)."""
    rng = np.random.default_rng(seed)
    pads = pads or (pad,) * 4
    out = (HW - 1) * stride - pads[0] - pads[2] + dilation * (kernel - 1) + 1 + output_padding

    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr, np.float32), name)

    inits = [init("conv.w", rng.standard_normal((cin, 3, 3, 3)) * 0.3),
             init("up.w", rng.standard_normal((cin, cout // group, kernel, kernel)) * 0.3),
             init("up.b", rng.standard_normal(cout) * 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w"], ["c"], name="/conv/Conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("ConvTranspose", ["c", "up.w", "up.b"], ["u"], name="/up/ConvTranspose",
                         kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=list(pads[:2]) + list(pads[2:]),
                         output_padding=[output_padding] * 2,
                         dilations=[dilation, dilation], group=group),
    ]
    y = "u"
    if "bn" in tail:
        inits += [init("bn.s", rng.uniform(0.5, 1.5, cout)), init("bn.b", rng.uniform(-1, 1, cout)),
                  init("bn.m", rng.uniform(-1, 1, cout)), init("bn.v", rng.uniform(0.5, 2, cout))]
        nodes.append(helper.make_node("BatchNormalization", [y, "bn.s", "bn.b", "bn.m", "bn.v"],
                                      ["n"], name="/bn/BatchNormalization"))
        y = "n"
    if "relu" in tail:
        nodes.append(helper.make_node("Relu", [y], ["r"], name="/Relu"))
        y = "r"
    graph = helper.make_graph(
        nodes, "up", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, HW, HW])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, cout, out, out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _partitioned(model: onnx.ModelProto, tmp_path: Path, **options):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return compile_to_partitioned(str(path), **options)


def _feeds(model: onnx.ModelProto, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {vi.name: rng.standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim])
            .astype(np.float32) for vi in model.graph.input}


def _compile_and_check(model: onnx.ModelProto, tmp_path: Path, quantize: str, tiles: int,
                       seed: int = 0) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    feeds = _feeds(model, seed)
    options = {"calibration": feeds} if quantize == "int8" else {}
    manifest = compile_model(path, tmp_path / "build", num_tiles=tiles, quantize=quantize,
                             **options)
    assert [step.kind for step in manifest.steps] == ["accelerator"]
    name = model.graph.output[0].name
    with CompiledModel.load(tmp_path / "build") as compiled:
        got = compiled.run(feeds).outputs[name]
    check = check_output(name, got, _ort(model, feeds), quantize)
    assert check.passed, check.summary()


CONV_TRANSPOSE = {
    "k2s2": dict(kernel=2, stride=2, pad=0),
    "k4s2p1": dict(kernel=4, stride=2, pad=1),
    "k3s2p1op1": dict(kernel=3, stride=2, pad=1, output_padding=1),
    "k3s1p1": dict(kernel=3, stride=1, pad=1),
    "k2s2_bn_relu": dict(kernel=2, stride=2, pad=0, tail=("bn", "relu")),
    # phases of unequal size (output 2 x 5 + 1): computed 6 rows each, cropped to 11
    "k3s2p0": dict(kernel=3, stride=2, pad=0),
    "k3s2p1": dict(kernel=3, stride=2, pad=1),
    "k5s3p1op2": dict(kernel=5, stride=3, pad=1, output_padding=2),
    "k3s2_pads_0011": dict(kernel=3, stride=2, pad=0, pads=(0, 0, 1, 1)),
    # depthwise up-sampling as segmentation decoders export it, and grouped
    "dw_k4s2p1": dict(kernel=4, stride=2, pad=1, cin=6, cout=6, group=6),
    "dw_k3s2p1op1_bn_relu": dict(kernel=3, stride=2, pad=1, output_padding=1, cin=6, cout=6,
                                 group=6, tail=("bn", "relu")),
    "g2_k2s2": dict(kernel=2, stride=2, pad=0, cin=6, cout=4, group=2),
    "g3_k3s2p0_bn": dict(kernel=3, stride=2, pad=0, cin=6, cout=9, group=3, tail=("bn",)),
    # dilations
    "k3s2d3p2": dict(kernel=3, stride=2, pad=2, dilation=3),
    "k3s3d2p1": dict(kernel=3, stride=3, pad=1, dilation=2),
    "k3s2d3p1": dict(kernel=3, stride=2, pad=1, dilation=3),
    "k2s1d2": dict(kernel=2, stride=1, pad=0, dilation=2),
}


def _transpose_macs(params: dict) -> int:
    cin, cout = params.get("cin", 6), params.get("cout", 5)
    return HW * HW * cin * (cout // params.get("group", 1)) * params["kernel"] ** 2


@pytest.mark.parametrize("case", sorted(CONV_TRANSPOSE))
def test_conv_transpose_phases_match_reference(case, tmp_path):
    params = CONV_TRANSPOSE[case]
    model = conv_transpose_model(**params)
    module = _partitioned(model, tmp_path)
    assert subgraph_functions(module, "cpu") == []
    (fn,) = subgraph_functions(module, "accelerator")
    convs = [op for op in layers_of(fn) if isinstance(op, mrvl.Conv2DOp)]
    assert len(convs) == 1 + params["stride"] ** 2
    assert {op.groups.value.data for op in convs[1:]} == {params.get("group", 1)}
    if "relu" in params.get("tail", ()):
        assert {op.activation_str() for op in convs[1:]} == {"relu"}
    # the phases' MACs are the ConvTranspose's when every input pixel meets every kernel
    # tap (phases of equal size, no dilation); otherwise the count (output pixels x taps)
    # also has taps that read padding
    cropped = any(isinstance(op, mrvl.SliceOp) for op in layers_of(fn))
    phase_macs = sum(op.macs() for op in convs[1:])
    if cropped or params.get("dilation", 1) > 1:
        assert phase_macs >= _transpose_macs(params)
    else:
        assert phase_macs == _transpose_macs(params)
    feeds = _feeds(model, 1)
    got = run_function(module, [feeds["x"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    assert str(json_to_function(nodes, consts)) == str(fn)


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 4), ("int8", 2)])
@pytest.mark.parametrize("case", ["k2s2_bn_relu", "k4s2p1", "k3s2p1op1", "k3s2p0",
                                  "dw_k4s2p1", "g3_k3s2p0_bn", "k3s2d3p2"])
def test_conv_transpose_end_to_end(case, quantize, tiles, tmp_path):
    _compile_and_check(conv_transpose_model(**CONV_TRANSPOSE[case]), tmp_path, quantize, tiles)


@settings(max_examples=25, deadline=None)
@given(kernel=st.integers(1, 5), stride=st.integers(1, 3), dilation=st.integers(1, 3),
       pad=st.integers(0, 3), output_padding=st.integers(0, 2), depthwise=st.booleans())
def test_conv_transpose_any_attributes_match_onnxruntime(kernel, stride, dilation, pad,
                                                         output_padding, depthwise):
    """Every attribute combination onnx accepts either converts (and then matches
    onnxruntime through the reference executor) or stays on the CPU with a reason."""
    import tempfile

    assume(output_padding < stride)  # onnxruntime requires it
    out = (HW - 1) * stride - 2 * pad + dilation * (kernel - 1) + 1 + output_padding
    assume(out >= 1)
    cout = 6 if depthwise else 5
    model = conv_transpose_model(kernel, stride, pad, output_padding, cout=cout,
                                 group=6 if depthwise else 1, dilation=dilation)
    with tempfile.TemporaryDirectory() as tmp:
        module = _partitioned(model, Path(tmp))
    report = offload_report(module)
    reasons = [node["reason"] for node in report["cpu_nodes"]]
    assert all(reason.startswith("ConvTranspose") for reason in reasons), reasons
    feeds = _feeds(model, 3)
    got = run_function(module, [feeds["x"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)


def _with_attributes(model: onnx.ModelProto, out: int, **attrs) -> onnx.ModelProto:
    """The ConvTranspose of `model` with `attrs` replacing its pads (auto_pad / output_shape
    forms) and the square output size `out`."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    node = model.graph.node[1]
    keep = [a for a in node.attribute if a.name not in ("pads", *attrs)]
    del node.attribute[:]
    node.attribute.extend(keep)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = out
    onnx.checker.check_model(model, full_check=True)
    return model


AUTO_PAD = {
    # SAME_*: output = stride x input, the total pad split begin-light (UPPER) or heavy
    "same_upper_k3s2": (dict(kernel=3, stride=2, pad=0), 10, dict(auto_pad="SAME_UPPER")),
    "same_lower_k4s2": (dict(kernel=4, stride=2, pad=0), 10, dict(auto_pad="SAME_LOWER")),
    "same_upper_k4s3_dw": (dict(kernel=4, stride=3, pad=0, cout=6, group=6), 15,
                           dict(auto_pad="SAME_UPPER")),
    "valid_k3s2": (dict(kernel=3, stride=2, pad=0), 11, dict(auto_pad="VALID")),
    # output_shape beyond the full output: extra outputs at the end (bias only)
    "output_shape_12": (dict(kernel=3, stride=2, pad=0), 12, dict(output_shape=[12, 12])),
    "output_shape_pads": (dict(kernel=4, stride=2, pad=1), 11, dict(output_shape=[11, 11],
                                                                    pads=[1, 1, 1, 1])),
}


@pytest.mark.parametrize("case", sorted(AUTO_PAD))
def test_conv_transpose_auto_pad_and_output_shape_match_onnxruntime(case, tmp_path):
    params, out, attrs = AUTO_PAD[case]
    model = _with_attributes(conv_transpose_model(**params), out, **attrs)
    module = _partitioned(model, tmp_path)
    assert subgraph_functions(module, "cpu") == []
    feeds = _feeds(model, 6)
    got = run_function(module, [feeds["x"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["same_lower_k4s2", "output_shape_12"])
def test_conv_transpose_auto_pad_end_to_end(case, tmp_path):
    params, out, attrs = AUTO_PAD[case]
    model = _with_attributes(conv_transpose_model(**params), out, **attrs)
    _compile_and_check(model, tmp_path, "fp16", 2)


def test_conv_transpose_output_shape_below_full_output_stays_on_cpu(tmp_path):
    """output_shape 10 below the full output 11: onnxruntime shifts the output by a begin
    pad where ONNX's reference crops the end, so the accelerator does not guess."""
    model = _with_attributes(conv_transpose_model(kernel=3, stride=2, pad=0), 10,
                             output_shape=[10, 10])
    module = _partitioned(model, tmp_path)
    (node,) = offload_report(module)["cpu_nodes"]
    assert node["reason"] == "ConvTranspose output_shape 10 below its full output 11 is ambiguous"


def test_conv_transpose_not_lowered_stays_on_cpu(tmp_path):
    """Kernel 1 at stride 2: output phase 1 meets no kernel tap (it is the bias alone), so
    the ConvTranspose stays on the CPU, with its reason, and its MACs count there."""
    model = conv_transpose_model(kernel=1, stride=2, pad=0)
    module = _partitioned(model, tmp_path)
    report = offload_report(module)
    (node,) = report["cpu_nodes"]
    assert node["node"] == "/up/ConvTranspose"
    assert node["reason"] == ("ConvTranspose kernel 1, stride 2, dilation 1: output phase 1 "
                              "has no kernel tap")
    assert node["macs"] == HW * HW * 6 * 5
    feeds = _feeds(model, 2)
    got = run_function(module, [feeds["x"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)


def resize_model(mode: str, coordinate_mode: str, nearest_mode: str = "round_prefer_floor",
                 scales: list[float] | None = None, sizes: list[int] | None = None,
                 h: int = 6, w: int = 5, channels: int = 4) -> onnx.ModelProto:
    """conv 3x3 -> Resize (scales or sizes input, as torch exports it) -> Relu."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(
        (rng.standard_normal((channels, 3, 3, 3)) * 0.3).astype(np.float32), "conv.w")]
    inputs = ["c", ""]
    if sizes is not None:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        inputs += ["", "sizes"]
        out = sizes
    else:
        assert scales is not None
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        inputs.append("scales")
        out = [1, int(channels * scales[1]), int(h * scales[2]), int(w * scales[3])]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w"], ["c"], name="/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", inputs, ["r"], name="/Resize", mode=mode,
                         coordinate_transformation_mode=coordinate_mode,
                         nearest_mode=nearest_mode),
        helper.make_node("Relu", ["r"], ["y"], name="/Relu"),
    ]
    graph = helper.make_graph(
        nodes, "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


RESIZE = {
    # torch's nn.Upsample(scale_factor=2) (nearest): copies only
    "nearest_x2_asymmetric_floor": (dict(mode="nearest", coordinate_mode="asymmetric",
                                         nearest_mode="floor", scales=[1, 1, 2, 2]), True),
    "nearest_x3x2_half_pixel": (dict(mode="nearest", coordinate_mode="half_pixel",
                                     scales=[1, 1, 3, 2]), True),
    # asymmetric + round_prefer_floor at x3 is not y // 3 (1/3 -> 0, 2/3 -> 1): the
    # interpolation-matrix path
    "nearest_x3_asymmetric_round": (dict(mode="nearest", coordinate_mode="asymmetric",
                                         scales=[1, 1, 3, 3]), False),
    "nearest_sizes_fractional": (dict(mode="nearest", coordinate_mode="half_pixel",
                                      sizes=[1, 4, 9, 7]), False),
    "bilinear_x2_half_pixel": (dict(mode="linear", coordinate_mode="half_pixel",
                                    scales=[1, 1, 2, 2]), False),
    "bilinear_x2_pytorch_half_pixel": (dict(mode="linear", coordinate_mode="pytorch_half_pixel",
                                            scales=[1, 1, 2, 2]), False),
    "bilinear_x2_align_corners": (dict(mode="linear", coordinate_mode="align_corners",
                                       scales=[1, 1, 2, 2]), False),
    "bilinear_fractional_asymmetric": (dict(mode="linear", coordinate_mode="asymmetric",
                                            scales=[1, 1, 1.5, 3]), False),
}


@pytest.mark.parametrize("case", sorted(RESIZE))
def test_resize_matches_reference(case, tmp_path):
    params, copies_only = RESIZE[case]
    model = resize_model(**params)
    module = _partitioned(model, tmp_path)
    assert subgraph_functions(module, "cpu") == []
    (fn,) = subgraph_functions(module, "accelerator")
    kinds = [op.LAYER_NAME for op in layers_of(fn)]
    assert ("FC" not in kinds) == copies_only, kinds
    feeds = _feeds(model, 4)
    got = run_function(module, [feeds["x"]])[0]
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=1e-4, atol=1e-5)
    nodes, consts = subgraph_to_json(fn)
    assert check_json_pair(nodes, consts) == []
    assert str(json_to_function(nodes, consts)) == str(fn)


@pytest.mark.parametrize(("quantize", "tiles"), [("fp16", 1), ("fp16", 4), ("int8", 2)])
@pytest.mark.parametrize(
    "case", ["nearest_x2_asymmetric_floor", "bilinear_x2_half_pixel",
             "bilinear_x2_align_corners", "nearest_sizes_fractional"])
def test_resize_end_to_end(case, quantize, tiles, tmp_path):
    _compile_and_check(resize_model(**RESIZE[case][0]), tmp_path, quantize, tiles)


def test_resize_of_channels_stays_on_cpu(tmp_path):
    model = resize_model("nearest", "asymmetric", "floor", scales=[1, 2, 2, 2])
    report = offload_report(_partitioned(model, tmp_path))
    reasons = {node["node"]: node["reason"] for node in report["cpu_nodes"]}
    assert reasons["/Resize"] == "resize of the batch or channel axis is not supported"
