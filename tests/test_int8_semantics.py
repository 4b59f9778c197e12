"""The int8 path against its documentation: every mrvl layer kind compiled in int8 and
simulated gives, bit for bit, what `sim/reference_int8.py` (a numpy emulation of the
documented int8 semantics, machine independent) gives on the same quantised inputs; and the
check notices a compiler that quantises differently from the documentation.
(Whole networks: tests/test_backend_models.py; random shapes: tests/test_backend_fuzz.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from backend_helpers import add, assert_int8_emulated, layer_module, rng_inputs
from xdsl.dialects.builtin import TensorType, f32

from mrvl.dialects import mrvl
from mrvl.lowering import convert_mrvl_to_mlip
from mrvl.lowering.backend import compile_function
from mrvl.machine import Machine
from mrvl.driver.calibration import activation_ranges


def _w(*shape, seed=3):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.4


def _names():
    count = iter(range(1, 100))
    return lambda: f"tvmgen_mrvl_main_{next(count)}"


def _vector_network(block, args, const):
    """Pools, element-wise layers, activations and data movement, in int8."""
    name = _names()
    x = args[0]  # [2, 6, 5, 8]
    a = add(block, mrvl.Avgpool2DOp(x, layer_name=name(), kernel_shape=(3, 3), strides=(2, 1),
                                    pads=(1, 1, 1, 0), count_include_pad=0))
    b = add(block, mrvl.Avgpool2DOp(x, layer_name=name(), kernel_shape=(2, 3), strides=(2, 1),
                                    pads=(0, 1, 1, 0), count_include_pad=1))
    m = add(block, mrvl.Mul2DOp(a, b, layer_name=name(), activation="none"))
    c = add(block, mrvl.Mul2DOp(m, const(_w(1, 1, 1, 8) + 1.0), layer_name=name(),
                                activation="relu"))
    leaky = add(block, mrvl.ActivationOp(c, layer_name=name(), activation="leaky_relu",
                                         alpha=0.1))
    clipped = add(block, mrvl.ActivationOp(m, layer_name=name(), activation="clip",
                                           clip=(-0.3, 0.5)))
    s = add(block, mrvl.Sum2DOp(leaky, const(_w(1, 3, 4, 8)), layer_name=name(),
                                activation="clip", clip=(0.0, 6.0)))
    cat = add(block, mrvl.ConcatOp([s, clipped, a], layer_name=name(), axis=3))
    mx = add(block, mrvl.Maxpool2DOp(cat, layer_name=name(), kernel_shape=(2, 2),
                                     strides=(1, 2), pads=(1, 0, 0, 1)))
    g = add(block, mrvl.GlobalAvgpool2DOp(mx, layer_name=name()))
    gm = add(block, mrvl.GlobalMaxpool2DOp(cat, layer_name=name()))
    sq = add(block, mrvl.SqueezeOp(gm, (1, 2), layer_name=name()))
    flat = add(block, mrvl.BatchFlattenOp(g, layer_name=name()))
    t = add(block, mrvl.TransposeOp(mx, (0, 3, 1, 2), layer_name=name()))
    r = add(block, mrvl.ReshapeOp(t, TensorType(f32, [2, 24, 6]), layer_name=name()))
    lt = add(block, mrvl.LayoutTransformOp(cat, "NHWC", "NCHW", layer_name=name()))
    sl = add(block, mrvl.SliceOp(cat, axis=3, start=5, size=9, layer_name=name()))
    quotient = add(block, mrvl.Div2DOp(s, b, layer_name=name(), activation="relu"))
    return [sq, flat, r, lt, sl, quotient]


def _conv_network(block, args, const):
    """Convolutions (grouped, dilated, strided, padded) and FCs with fused activations."""
    name = _names()
    x = args[0]  # [1, 7, 6, 6]
    c1 = add(block, mrvl.Conv2DOp(x, const(_w(12, 3, 3, 6)), const(_w(12)), layer_name=name(),
                                  strides=(2, 1), pads=(1, 2, 1, 0), dilations=(1, 2),
                                  activation="relu"))
    c2 = add(block, mrvl.Conv2DOp(c1, const(_w(12, 3, 3, 1)), const(_w(12)), layer_name=name(),
                                  pads=(1, 1, 1, 1), groups=12, activation="clip",
                                  clip=(-1.0, 2.0)))
    c3 = add(block, mrvl.Conv2DOp(c2, const(_w(6, 1, 1, 4)), None, layer_name=name(),
                                  groups=3, activation="none"))
    f1 = add(block, mrvl.FCOp(c3, const(_w(10, 6 * 4 * 4)), const(_w(10)), layer_name=name(),
                              activation="relu", weights_need_transform=True))
    f2 = add(block, mrvl.FCOp(f1, const(_w(4, 10)), None, layer_name=name()))
    return [c3, f2]


def _attention_network(block, args, const):
    """LayerNorm, FCs over [S, D] rows, batched MatMuls with folded transposes (int8 I/O,
    fp16 compute inside MatMul and LayerNorm)."""
    name = _names()
    x = args[0]  # [1, 6, 16]
    ln = add(block, mrvl.LayerNormOp(x, const(_w(16) + 1.0), const(_w(16, seed=4)),
                                     layer_name=name(), epsilon=1e-5))
    rows = add(block, mrvl.ReshapeOp(ln, TensorType(f32, [6, 16]), layer_name=name()))
    heads = []
    for seed in (5, 6, 7):
        fc = add(block, mrvl.FCOp(rows, const(_w(24, 16, seed=seed)), const(_w(24, seed=seed)),
                                  layer_name=name()))
        heads.append(add(block, mrvl.ReshapeOp(fc, TensorType(f32, [1, 6, 2, 12]),
                                               layer_name=name())))
    q, k, v = heads
    scores = add(block, mrvl.MatMulOp(q, k, layer_name=name(), a_perm=(0, 2, 1, 3),
                                      b_perm=(0, 2, 3, 1)))
    norm = add(block, mrvl.LayerNormOp(scores, const(_w(6) + 1.0), const(_w(6, seed=8)),
                                       layer_name=name(), epsilon=1e-3))
    ctx = add(block, mrvl.MatMulOp(norm, v, layer_name=name(), b_perm=(0, 2, 1, 3)))
    return [ctx]


NETWORKS = {"vector": ([(2, 6, 5, 8)], _vector_network),
            "conv": ([(1, 7, 6, 6)], _conv_network),
            "attention": ([(1, 6, 16)], _attention_network)}
UNMODELLED = {mrvl.SoftmaxOp}
"""Layer kinds whose int8 result depends on a transcendental the oracle does not model
(sim/reference_int8.py scope); the Softmax instruction is checked in
tests/test_transformer_layers.py."""


@pytest.mark.parametrize("tiles", [1, 2, 8])
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_int8_layers_are_the_documented_semantics(network, tiles):
    shapes, build = NETWORKS[network]
    _, fn = layer_module(shapes, build)
    inputs = rng_inputs(fn)
    sub = compile_function(fn, machine=Machine(tiles=tiles), quantize="int8",
                           ranges=activation_ranges(
                               fn, [rng_inputs(fn, 1), rng_inputs(fn, 2)]))
    assert_int8_emulated(fn, sub.data, inputs)


def test_the_networks_hold_every_layer_kind():
    kinds = set()
    for shapes, build in NETWORKS.values():
        _, fn = layer_module(shapes, build)
        kinds |= {type(op) for op in fn.body.block.ops if isinstance(op, mrvl.MrvlLayerOp)}
    assert kinds == set(mrvl.LAYER_OPS) - UNMODELLED


def test_int8_emulation_notices_a_compiler_that_quantises_differently(monkeypatch):
    """Weight steps 1/1000 larger than documented (max |w| / 127): the simulated codes
    differ from the documented semantics, so the check fails."""
    shapes, build = NETWORKS["conv"]
    _, fn = layer_module(shapes, build)
    documented = convert_mrvl_to_mlip.weight_scales
    monkeypatch.setattr(convert_mrvl_to_mlip, "weight_scales",
                        lambda w: (documented(w) * np.float32(1.001)).astype(np.float32))
    inputs = rng_inputs(fn)
    sub = compile_function(fn, machine=Machine(tiles=2), quantize="int8",
                           ranges=activation_ranges(fn, [inputs]))
    with pytest.raises(AssertionError, match="int8 codes differ from the documented"):
        assert_int8_emulated(fn, sub.data, inputs)
