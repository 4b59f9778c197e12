"""Single mrvl layers compiled by the backend and run on the simulator (dependency checker
on) against the reference executor: fp16 within Marvell's rule (every element within 100x
of max |ref| within 3 % relative), int8 within +-3 LSB (LSB = max |out| / 127)."""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import add, assert_accepted, compile_and_run, layer_module, rng_inputs

from mrvl.dialects import mrvl
from mrvl.errors import CompileError
from mrvl.lowering.backend_report import program_report
from mrvl.lowering.convert_mrvl_to_mlip import convert_function
from mrvl.lowering.mlip_dma_schedule import schedule
from mrvl.lowering.mlip_emit import to_model_binary
from mrvl.lowering.mlip_ocm_alloc import allocate_ocm
from mrvl.lowering.mrvl_quantize import quantize_function
from mrvl.lowering.mrvl_tile_split import conv_candidates, split_function
from mrvl.sim.reference import run_function
from mrvl.sim.simulator import Simulator
from mrvl.machine import DEFAULT_MACHINE, Machine


def _w(*shape):
    """Seeded weights (the seed depends only on the shape: tests do not depend on order)."""
    rng = np.random.default_rng([7, *shape])
    w = rng.standard_normal(shape).astype(np.float32) * 0.3
    return w.astype(np.float16).astype(np.float32)  # fp16 values: weights convert exactly


def conv_module(shape=(1, 9, 7, 5), o=6, k=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1),
                dil=(1, 1), groups=1, act="relu", clip=None, bias=True):
    c = shape[3]

    def build(block, args, const):
        w = const(_w(o, k[0], k[1], c // groups))
        b = const(_w(o)) if bias else None
        return add(block, mrvl.Conv2DOp(args[0], w, b, layer_name="tvmgen_mrvl_main_1",
                                        strides=strides, pads=pads, dilations=dil,
                                        groups=groups, activation=act, clip=clip))

    return layer_module([shape], build)


@pytest.mark.parametrize("tiles", [1, 2, 4, 8])
def test_conv3x3_relu(tiles):
    module, fn = conv_module()
    out, ref, _ = compile_and_run(module, fn, rng_inputs(fn), num_tiles=tiles)
    assert_accepted(out, ref, "fp16")


@pytest.mark.parametrize(
    "kw",
    [
        dict(k=(3, 3), strides=(2, 2), pads=(0, 1, 2, 0), dil=(1, 1), bias=False, act="none"),
        dict(k=(2, 3), strides=(1, 2), pads=(1, 1, 1, 1), dil=(2, 1)),
        dict(shape=(1, 6, 6, 8), o=8, groups=8, act="clip", clip=(0.0, 6.0)),
        dict(shape=(1, 5, 6, 4), o=6, groups=2, act="sigmoid"),
        dict(shape=(2, 5, 5, 3), o=4, k=(1, 1), pads=(0, 0, 0, 0)),
        dict(act="clip", clip=(0.5, -0.25)),
    ],
    ids=["strided-asym-pads", "dilated", "depthwise-relu6", "grouped-sigmoid", "batch2-1x1",
         "clip-min-above-max"],
)
def test_conv_variants(kw):
    module, fn = conv_module(**kw)
    out, ref, _ = compile_and_run(module, fn, rng_inputs(fn), num_tiles=2)
    assert_accepted(out, ref, "fp16")


def test_conv_small_ocm_streams_weight_chunks_and_columns():
    # 32 KiB of OCM in 1 KiB pages: the weights (128 x 3 x 3 x 32 fp16 = 72 KiB) cannot stay
    # resident, so output channels go in chunks; rows are split into column bands.
    # (128 channels: even the half of a channel split, 36 KiB, does not fit)
    module, fn = conv_module(shape=(1, 6, 40, 32), o=128)
    out, ref, sub = compile_and_run(module, fn, rng_inputs(fn), num_tiles=2,
                                    ocm_size=32 * 1024, page_size=1024)
    assert_accepted(out, ref, "fp16")
    assert sub.model.buffers_of(0)["w"].slots.value.data == 2
    assert sub.model.ocm_end is not None and sub.model.ocm_end.value.data <= 32 * 1024


def _forced_split(fn, tiles: int, kind: str, ranges):
    """Compile a one-conv function with the conv's split forced to (kind, ranges)."""
    from xdsl.dialects.builtin import DenseArrayBase, StringAttr, i64

    quantize_function(fn, "fp16")
    split_function(fn, Machine(tiles=tiles))
    conv = next(op for op in fn.body.block.ops if isinstance(op, mrvl.Conv2DOp))
    conv.attributes["mrvl.split"] = StringAttr(kind)
    conv.attributes["mrvl.tiles"] = DenseArrayBase.from_list(i64, [v for r in ranges
                                                                   for v in r])
    model = convert_function(fn)
    allocate_ocm(model)
    schedule(model)
    return model, to_model_binary(model).to_bytes()


@pytest.mark.parametrize(
    "kw",
    [
        dict(shape=(1, 6, 5, 32), o=32),
        dict(shape=(2, 7, 9, 16), o=32, k=(1, 1), strides=(2, 2), pads=(0, 0, 0, 0)),
        dict(shape=(1, 6, 6, 16), o=16, groups=16, strides=(2, 1)),
    ],
    ids=["3x3", "1x1-stride2-batch2", "depthwise"],
)
def test_conv_every_split_gives_the_same_bits(kw):
    """Rows, channels and both grids at 8 tiles: no split changes the order of any
    output's reduction, so the outputs are the same bits (and within the fp16 rule)."""
    module, fn = conv_module(**kw)
    inputs = rng_inputs(fn)
    ref = run_function(module, inputs, func_name=fn.sym_name.data)
    conv = next(op for op in fn.body.block.ops if isinstance(op, mrvl.Conv2DOp))
    candidates = conv_candidates(conv, 8, 2)
    assert [k for k, _ in candidates] == ["rows", "channels", "grid", "grid"]
    outs = []
    for kind, ranges in candidates:
        model, data = _forced_split(fn, 8, kind, ranges)
        assert model.layers()[0].split.data == kind
        with Simulator.load(data) as sim:
            out, report = sim.run(inputs)
        assert report["cycles"] >= report["traffic_roofline_cycles"]
        outs.append(out[0])
    assert_accepted([outs[0]], ref, "fp16")
    for out in outs[1:]:
        assert out.tobytes() == outs[0].tobytes()


def test_conv_split_choice_follows_the_traffic():
    """At 8 tiles a weight-heavy conv on a small image splits its output channels (a row
    split would load all 1.2 MB of weights on every tile), and moves fewer DRAM bytes than
    a forced row split; an image-heavy 1x1 conv with few weights splits its rows."""
    module, fn = conv_module(shape=(1, 4, 4, 256), o=256, act="none")
    chosen = compile_function_report(fn)
    assert chosen["layers"][0]["split"] in ("channels", "grid")
    conv = next(op for op in fn.body.block.ops if isinstance(op, mrvl.Conv2DOp))
    rows = conv_candidates(conv, 8, 2)[0]
    forced = program_report(_forced_split(fn, 8, *rows)[0])
    assert chosen["dma_in_bytes"] * 3 < forced["dma_in_bytes"]
    module, fn = conv_module(shape=(1, 32, 32, 16), o=16, k=(1, 1), pads=(0, 0, 0, 0))
    assert compile_function_report(fn)["layers"][0]["split"] == "rows"


def compile_function_report(fn):
    from mrvl.lowering.backend import compile_function

    return program_report(compile_function(fn, machine=Machine(tiles=8)).model)


def test_strided_1x1_conv_loads_only_the_pixels_it_reads():
    # stride 2 x 3, no padding: the DMA gathers every second row and third column
    module, fn = conv_module(shape=(1, 9, 10, 8), o=16, k=(1, 1), strides=(2, 3),
                             pads=(0, 0, 0, 0))
    out, ref, sub = compile_and_run(module, fn, rng_inputs(fn), num_tiles=1)
    assert_accepted(out, ref, "fp16")
    report = program_report(sub.model)
    weights = 16 * 8 * 2 + 16 * 4
    assert report["layers"][0]["dma_in_bytes"] == 5 * 4 * 8 * 2 + weights


def test_fc_with_nchw_flatten_and_batch():
    def build(block, args, const):
        return add(block, mrvl.FCOp(args[0], const(_w(10, 36)), const(_w(10)),
                                    layer_name="tvmgen_mrvl_main_1", activation="relu",
                                    weights_need_transform=True))

    module, fn = layer_module([(2, 3, 3, 4)], build)
    out, ref, _ = compile_and_run(module, fn, rng_inputs(fn), num_tiles=4)
    assert_accepted(out, ref, "fp16")


@pytest.mark.parametrize("kind", ["max", "avg", "avg-count-pad", "global-avg", "global-max"])
def test_pools(kind):
    def build(block, args, const):
        x = args[0]
        name = "tvmgen_mrvl_main_1"
        if kind == "max":
            op = mrvl.Maxpool2DOp(x, layer_name=name, kernel_shape=(3, 3), strides=(2, 2),
                                  pads=(1, 1, 1, 1))
        elif kind.startswith("avg"):
            op = mrvl.Avgpool2DOp(x, layer_name=name, kernel_shape=(3, 2), strides=(1, 2),
                                  pads=(1, 0, 1, 1),
                                  count_include_pad=int(kind == "avg-count-pad"))
        elif kind == "global-avg":
            op = mrvl.GlobalAvgpool2DOp(x, layer_name=name)
        else:
            op = mrvl.GlobalMaxpool2DOp(x, layer_name=name)
        return add(block, op)

    module, fn = layer_module([(1, 9, 8, 24)], build)
    out, ref, _ = compile_and_run(module, fn, rng_inputs(fn), num_tiles=2)
    assert_accepted(out, ref, "fp16")


@pytest.mark.parametrize("rhs", ["same", "const-channels", "broadcast-data"])
def test_sum(rhs):
    shapes = {"same": [(1, 5, 4, 8), (1, 5, 4, 8)], "const-channels": [(1, 5, 4, 8)],
              "broadcast-data": [(1, 5, 4, 8), (1, 1, 1, 8)]}[rhs]

    def build(block, args, const):
        other = const(_w(8)) if rhs == "const-channels" else args[1]
        return add(block, mrvl.Sum2DOp(args[0], other, layer_name="tvmgen_mrvl_main_1",
                                       activation="relu"))

    module, fn = layer_module(shapes, build)
    out, ref, _ = compile_and_run(module, fn, rng_inputs(fn), num_tiles=4)
    assert_accepted(out, ref, "fp16")


@pytest.mark.parametrize("tiles", [1, 4, 8])
@pytest.mark.parametrize("form", ["same", "broadcast-data", "const-numerator", "rank3"])
def test_div(form, tiles):
    """Div2D (ELTWISE DIV) with the divisor kept away from 0 (|d| in [0.5, 3.5])."""
    shapes = {"same": [(1, 5, 4, 8), (1, 5, 4, 8)],
              "broadcast-data": [(2, 5, 4, 8), (2, 5, 4, 1)],
              "const-numerator": [(1, 5, 4, 8)],
              "rank3": [(2, 7, 24), (1, 7, 1)]}[form]

    def build(block, args, const):
        lhs, rhs = args[0], args[-1]
        if form == "const-numerator":
            lhs = const(_w(8))
        return add(block, mrvl.Div2DOp(lhs, rhs, layer_name="tvmgen_mrvl_main_1",
                                       activation="clip", clip=(-8.0, 8.0)))

    module, fn = layer_module(shapes, build)
    inputs = rng_inputs(fn)
    divisor = inputs[-1]
    inputs[-1] = (np.sign(divisor) * (np.abs(divisor) + 0.5)).astype(np.float32)
    out, ref, _ = compile_and_run(module, fn, inputs, num_tiles=tiles)
    assert_accepted(out, ref, "fp16")


def test_concat_layout_transform_transpose_and_reshape_output():
    def build(block, args, const):
        nhwc = add(block, mrvl.LayoutTransformOp(args[0], "NCHW", "NHWC",
                                                 layer_name="tvmgen_mrvl_main_1"))
        cat = add(block, mrvl.ConcatOp([nhwc, args[1], nhwc], layer_name="tvmgen_mrvl_main_2",
                                       axis=3))
        tr = add(block, mrvl.TransposeOp(cat, (0, 2, 1, 3), layer_name="tvmgen_mrvl_main_3"))
        flat = add(block, mrvl.BatchFlattenOp(tr, layer_name="tvmgen_mrvl_main_4"))
        return [tr, flat]

    module, fn = layer_module([(1, 3, 5, 6), (1, 5, 6, 2)], build)
    # data movement only: exact on inputs that are already fp16 values
    inputs = [x.astype(np.float16).astype(np.float32) for x in rng_inputs(fn)]
    out, ref, _ = compile_and_run(module, fn, inputs, num_tiles=2)
    assert_accepted(out, ref, "exact")


@pytest.mark.parametrize("tiles", [1, 4])
def test_int8_network(tiles):
    def build(block, args, const):
        c1 = add(block, mrvl.Conv2DOp(args[0], const(_w(8, 3, 3, 4)), const(_w(8)),
                                      layer_name="tvmgen_mrvl_main_1", pads=(1, 1, 1, 1),
                                      activation="clip", clip=(0.0, 6.0)))
        p = add(block, mrvl.Maxpool2DOp(c1, layer_name="tvmgen_mrvl_main_2",
                                        kernel_shape=(2, 2), strides=(2, 2)))
        c2 = add(block, mrvl.Conv2DOp(p, const(_w(8, 1, 1, 8)), const(_w(8)),
                                      layer_name="tvmgen_mrvl_main_3", activation="none"))
        s = add(block, mrvl.Sum2DOp(p, c2, layer_name="tvmgen_mrvl_main_4",
                                    activation="relu"))
        cat = add(block, mrvl.ConcatOp([s, p], layer_name="tvmgen_mrvl_main_5", axis=3))
        g = add(block, mrvl.GlobalAvgpool2DOp(cat, layer_name="tvmgen_mrvl_main_6"))
        return add(block, mrvl.FCOp(g, const(_w(5, 16)), const(_w(5)),
                                    layer_name="tvmgen_mrvl_main_7", activation="none"))

    module, fn = layer_module([(1, 8, 8, 4)], build)
    out, ref, _ = compile_and_run(module, fn, rng_inputs(fn), mode="int8", num_tiles=tiles)
    assert_accepted(out, ref, "int8")


def test_int8_with_fp32_io():
    module, fn = conv_module(act="relu")
    inputs = rng_inputs(fn)
    out, ref, sub = compile_and_run(module, fn, inputs, mode="int8", io_dtype="f32",
                                    num_tiles=2)
    assert_accepted(out, ref, "int8")
    assert sub.binary.inputs[0].dtype == 0 and sub.binary.outputs[0].dtype == 0


def test_bad_options_raise_compile_errors():
    module, fn = conv_module()
    from mrvl.lowering.backend import compile_function

    with pytest.raises(CompileError, match="num-tiles"):
        compile_function(fn, machine=Machine(tiles=3))
    with pytest.raises(CompileError, match="quantize"):
        compile_function(fn, quantize="bf16")
    with pytest.raises(CompileError, match="page_bytes must be one of"):
        compile_function(fn, machine=DEFAULT_MACHINE.with_overrides(["page_bytes=3000"]))
    with pytest.raises(CompileError, match="--ocm-size"):
        compile_function(fn, machine=Machine(ocm_bytes=2 << 20))


@pytest.mark.parametrize("layer", ["conv", "fc"])
def test_int8_fused_sigmoid(layer):
    def build(block, args, const):
        if layer == "conv":
            return add(block, mrvl.Conv2DOp(args[0], const(_w(6, 3, 3, 4)), const(_w(6)),
                                            layer_name="tvmgen_mrvl_main_1",
                                            pads=(1, 1, 1, 1), activation="sigmoid"))
        return add(block, mrvl.FCOp(args[0], const(_w(12, 64)), const(_w(12)),
                                    layer_name="tvmgen_mrvl_main_1", activation="sigmoid"))

    module, fn = layer_module([(1, 4, 4, 4)] if layer == "conv" else [(2, 64)], build)
    out, ref, sub = compile_and_run(module, fn, rng_inputs(fn), mode="int8", num_tiles=2)
    assert_accepted(out, ref, "int8")
    assert "acc" in sub.model.buffers_of(0)
