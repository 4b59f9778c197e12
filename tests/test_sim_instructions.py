"""Single instructions and small hand-built programs vs a numpy model of docs/isa.md.

Bit-exact (np.array_equal, NaN == NaN) for everything except SIGMOID / TANH / SILU, which use the C
library and are allowed 1 fp16 ulp.  Also: dependency errors name the instruction, timing
parameters change cycles but never outputs, cycles >= roofline, utilisation <= 100 %.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from mrvl.errors import BinaryFormatError, SimulationError
from mrvl.mlip_binary import IODesc, Instruction
from mrvl.mlip_isa import Act, DType, EltFunc, Flag, Opcode, PoolFunc, Queue, Section
from mrvl.sim.program_builder import NUMPY_DTYPE, ProgramBuilder, flat_dma
from mrvl.sim.simulator import Simulator, TimingParams

RNG = np.random.default_rng(1234)
# every kernel path of the C core: the widest the CPU has (AVX-512 where present), AVX2 (where
# present), the portable C loops; all must give the same bits
KERNEL_PATHS = [TimingParams(), TimingParams(no_avx512=True), TimingParams(portable=True)]
F16 = np.float16
F32 = np.float32


# ---- numpy model of the documented semantics -------------------------------------------
def act_ref(v: np.ndarray, act: int, alpha=0.0, beta=0.0) -> np.ndarray:
    v = v.astype(F32)
    if act == Act.RELU:
        return np.where(v > 0, v, F32(0))
    if act == Act.RELU6:
        return np.where(v > 0, np.where(v < 6, v, F32(6)), F32(0))
    if act == Act.CLIP:
        return np.where(v < F32(alpha), F32(alpha), np.where(v > F32(beta), F32(beta), v))
    if act == Act.LEAKY_RELU:
        return np.where(v < 0, F32(alpha) * v, v)
    if act == Act.SIGMOID:
        return (1.0 / (1.0 + np.exp(-v.astype(np.float64)))).astype(F32)
    if act == Act.TANH:
        return np.tanh(v.astype(np.float64)).astype(F32)
    if act == Act.GELU_ERF:  # fp32 formula of docs/isa.md, erf rounded to fp32
        e = np.vectorize(math.erf)((v * F32(0.70710678118654752)).astype(np.float64))
        return (F32(0.5) * v * (F32(1.0) + e.astype(F32))).astype(F32)
    if act == Act.GELU_TANH:
        inner = F32(0.79788456080286536) * (v + F32(0.044715) * (v * v * v))
        t = np.tanh(inner.astype(np.float64)).astype(F32)
        return (F32(0.5) * v * (F32(1.0) + t)).astype(F32)
    if act == Act.SILU:
        wide = v.astype(np.float64)
        return (wide / (1.0 + np.exp(-wide))).astype(F32)
    return v


def store_ref(v: np.ndarray, dtype: int, zp: int = 0) -> np.ndarray:
    """Store fp32 values to `dtype` (RNE for fp16, rint-half-even + zp + saturate for ints)."""
    v = np.asarray(v, F32)
    if dtype == DType.FP32:
        return v
    if dtype == DType.FP16:
        return v.astype(F16)
    info = np.iinfo({DType.INT8: np.int8, DType.UINT8: np.uint8, DType.INT16: np.int16,
                     DType.UINT16: np.uint16, DType.INT32: np.int32,
                     DType.UINT32: np.uint32}[DType(dtype)])
    q = np.where(np.isnan(v), float(zp), np.rint(v).astype(np.float64) + zp)
    return np.clip(q, info.min, info.max).astype(info.dtype)


def taps(n_out, stride, dil, pad, n_in, k):
    """(index array, valid mask) of input coordinates for kernel offset k."""
    idx = np.arange(n_out) * stride + k * dil - pad
    return np.clip(idx, 0, n_in - 1), (idx >= 0) & (idx < n_in)


def conv_ref(x, w, bias, *, stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1, out_hw,
             act=Act.NONE, alpha=0.0, beta=0.0, out_dtype=DType.FP16, scale=None, in_zp=0,
             out_zp=0):
    """x [H, W, C], w [O, KH, KW, C/groups] (fp16 or int8); sum over (i, j, c) in order."""
    H, W, C = x.shape
    O, KH, KW, CG = w.shape
    OH, OW = out_hw
    og = O // groups
    in_ch = (np.arange(O) // og) * CG
    int8 = x.dtype == np.int8
    acc = np.zeros((OH, OW, O), np.int64 if int8 else F32)
    xv_all = x.astype(np.int64) - in_zp if int8 else x.astype(F32)
    wv_all = w.astype(np.int64) if int8 else w.astype(F32)
    for i in range(KH):
        ys, vy = taps(OH, stride[0], dil[0], pad[0], H, i)
        for j in range(KW):
            xs, vx = taps(OW, stride[1], dil[1], pad[1], W, j)
            valid = (vy[:, None] & vx[None, :])[..., None]
            for c in range(CG):
                xv = xv_all[ys][:, xs][..., in_ch + c]
                prod = xv * wv_all[:, i, j, c]
                acc = np.where(valid, acc + prod, acc)
    if int8:
        if bias is not None:
            acc = acc + bias.astype(np.int64)
        v = acc.astype(F32) * scale.astype(F32)
        return store_ref(act_ref(v, act, alpha, beta), out_dtype, out_zp)
    if bias is not None:
        acc = acc + bias.astype(F32)
    return store_ref(act_ref(acc, act, alpha, beta), out_dtype)


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=a.dtype.kind == "f")


def run_prog(pb: ProgramBuilder, inputs=(), timing=None):
    sim = Simulator.load(pb.build().to_bytes(), timing=timing)
    return sim.run(list(inputs))


def raw_outputs(pb: ProgramBuilder, outs, inputs=(), timing=None):
    """Run and return outputs reinterpreted in their DRAM dtype (exact)."""
    results, report = run_prog(pb, inputs, timing)
    typed = []
    for arr, desc in zip(results, pb.outputs, strict=True):
        np_type = {v: k for k, v in NUMPY_DTYPE.items()}[DType(desc.dtype)]
        typed.append(arr.astype(np_type))
    return typed, report


def conv_program(x, w, bias, *, geo, out_dtype, act=Act.NONE, alpha=0.0, beta=0.0,
                 scale=None, in_zp=0, out_zp=0, tiles=1):
    """One CONV over x on every tile (tile t computes output rows t::tiles)."""
    H, W, C = x.shape
    O = w.shape[0]
    OH, OW = geo["out_hw"]
    pb = ProgramBuilder(tiles=tiles)
    out_np = {DType.FP16: F16, DType.FP32: F32, DType.INT8: np.int8}[out_dtype]
    bounds = [OH * t // tiles for t in range(tiles + 1)]
    rows = [list(range(bounds[t], bounds[t + 1])) for t in range(tiles)]
    item = np.dtype(out_np).itemsize
    for t in range(tiles):
        xa = pb.const(t, x)
        wa = pb.const(t, w)
        ba = pb.const(t, bias) if bias is not None else 0xFFFFFFFF
        sa = pb.const(t, scale.astype(F32)) if scale is not None else 0xFFFFFFFF
        oa = pb.alloc(t, len(rows[t]) * OW * O * item)
        for k, r in enumerate(rows[t]):
            pb.compute(t, Instruction.make(
                Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C,
                out_addr=oa + k * OW * O * item, oh=1, ow=OW, oc=O,
                out_pix_stride=O, w_addr=wa, bias_addr=ba, scale_addr=sa,
                kh=w.shape[1], kw=w.shape[2], sh=geo["stride"][0], sw=geo["stride"][1],
                pad_t=geo["pad"][0] - r * geo["stride"][0], pad_l=geo["pad"][1],
                dh=geo["dil"][0], dw=geo["dil"][1], groups=geo["groups"], act=act,
                alpha=alpha, beta=beta, src_dtype=NUMPY_DTYPE[x.dtype], dst_dtype=out_dtype,
                in_zp=in_zp, out_zp=out_zp))
        pb.store(t, oa, f"y{t}", (len(rows[t]), OW, O), out_dtype)
    return pb, rows


CONV_CASES = [
    # H, W, C, O, K, stride, pad, dil, groups
    (9, 11, 8, 16, 3, (1, 1), (1, 1), (1, 1), 1),
    (10, 10, 5, 7, 3, (2, 2), (1, 0), (1, 1), 1),
    (8, 13, 16, 33, 1, (1, 1), (0, 0), (1, 1), 1),
    (9, 9, 6, 6, 3, (1, 2), (2, 2), (2, 1), 1),
    (7, 12, 12, 12, 3, (1, 1), (1, 1), (1, 1), 12),
    (8, 8, 8, 16, 5, (2, 1), (2, 2), (1, 1), 4),
    (12, 12, 3, 20, 7, (2, 2), (3, 3), (1, 1), 1),
    (9, 14, 8, 8, 5, (1, 2), (2, 2), (1, 1), 8),  # depthwise rows: one 8-lane block
    (7, 11, 20, 20, 3, (2, 1), (1, 3), (1, 2), 20),  # depthwise: a block, a tail, dilation
    (6, 9, 43, 43, 3, (1, 1), (1, 1), (1, 1), 43),  # depthwise: 16-, 16- and 8-lane blocks, a tail
    (8, 7, 24, 24, 3, (2, 2), (1, 1), (1, 1), 24),  # depthwise: a 16- and an 8-lane block
    (5, 30, 19, 19, 3, (2, 2), (1, 2), (1, 2), 19),  # depthwise: four-pixel blocks, strided
    (4, 40, 8, 8, 5, (1, 1), (2, 2), (1, 1), 8),  # depthwise: four-pixel blocks, one 8-lane
]


def out_hw(H, W, K, stride, pad, dil):
    return ((H + 2 * pad[0] - dil[0] * (K - 1) - 1) // stride[0] + 1,
            (W + 2 * pad[1] - dil[1] * (K - 1) - 1) // stride[1] + 1)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("out_dtype,act", [(DType.FP16, Act.RELU), (DType.FP32, Act.NONE)])
def test_conv_fp16_bit_exact(case, out_dtype, act):
    H, W, C, O, K, stride, pad, dil, groups = case
    x = RNG.standard_normal((H, W, C)).astype(F16)
    w = (RNG.standard_normal((O, K, K, C // groups)) * 0.3).astype(F16)
    bias = RNG.standard_normal(O).astype(F32)
    geo = dict(stride=stride, pad=pad, dil=dil, groups=groups,
               out_hw=out_hw(H, W, K, stride, pad, dil))
    pb, _ = conv_program(x, w, bias, geo=geo, out_dtype=out_dtype, act=act)
    ref = conv_ref(x, w, bias, out_dtype=out_dtype, act=act, **geo)
    for timing in KERNEL_PATHS:
        (y,), _ = raw_outputs(pb, 1, timing=timing)
        assert same(y, ref)


@pytest.mark.parametrize("width", [1, 5, 7, 12, 13, 23])
@pytest.mark.parametrize("out_dtype,act,alpha,beta", [(DType.FP16, Act.RELU, 0.0, 0.0),
                                                      (DType.FP32, Act.NONE, 0.0, 0.0),
                                                      (DType.FP16, Act.LEAKY_RELU, 0.1, 0.0),
                                                      (DType.FP16, Act.RELU6, 0.0, 0.0),
                                                      (DType.FP32, Act.CLIP, -0.5, 0.7),
                                                      (DType.FP16, Act.SIGMOID, 0.0, 0.0)])
def test_conv_fp16_pixel_blocks_bit_exact(width, out_dtype, act, alpha, beta):
    """Every pixel count of the AVX-512 kernels (1 to 12 per call, and a remainder), on
    32-channel pairs, single 16-channel blocks and partial ones, with the kernel-row taps
    merged (dilation 1, one group) and not (dilation 2; two groups), with the vector store
    (NONE, RELU, RELU6, CLIP, LEAKY_RELU) and the generic one (SIGMOID), an infinite input
    (NaN outputs); same bits on every kernel path."""
    rng = np.random.default_rng(width)
    for C, O, dil, groups in ((24, 64, 1, 1), (24, 40, 2, 1), (32, 96, 1, 2), (8, 8, 1, 1)):
        x = rng.standard_normal((5, width, C)).astype(F16)
        x[2, width // 2, 3], x[2, width // 2, 4] = np.inf, -np.inf  # NaN where both meet
        w = (rng.standard_normal((O, 3, 3, C // groups)) * 0.3).astype(F16)
        bias = rng.standard_normal(O).astype(F32)
        geo = dict(stride=(1, 1), pad=(dil, dil), dil=(dil, dil), groups=groups,
                   out_hw=(5, width))
        pb, _ = conv_program(x, w, bias, geo=geo, out_dtype=out_dtype, act=act, alpha=alpha,
                             beta=beta)
        with np.errstate(invalid="ignore", over="ignore"):
            ref = conv_ref(x, w, bias, out_dtype=out_dtype, act=act, alpha=alpha, beta=beta,
                           **geo)
        assert np.isnan(ref.astype(F32)).any() or act in (Act.RELU, Act.RELU6)
        ys = [raw_outputs(pb, 1, timing=timing)[0][0] for timing in KERNEL_PATHS]
        for y in ys:  # sigmoid: the C library's expf, not numpy's exp: the paths agree
            assert same(y, ys[0] if act == Act.SIGMOID else ref)


def test_conv_fp16_nonfinite_weights_skip_padding_taps():
    """With an inf / nan weight the simulator may not treat padding as 0 * w (= nan): padding
    taps are skipped, exactly as documented (the non-padded kernel path)."""
    x = RNG.standard_normal((6, 7, 4)).astype(F16)
    w = RNG.standard_normal((16, 3, 3, 4)).astype(F16)
    w[1, 0, 0, 2] = np.inf
    w[5, 2, 1, 0] = np.nan
    geo = dict(stride=(1, 1), pad=(1, 1), dil=(1, 1), groups=1, out_hw=(6, 7))
    pb, _ = conv_program(x, w, None, geo=geo, out_dtype=DType.FP32)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = conv_ref(x, w, None, out_dtype=DType.FP32, **geo)
    assert np.isinf(ref).any() and np.isfinite(ref).any()
    for timing in KERNEL_PATHS:
        (y,), _ = raw_outputs(pb, 1, timing=timing)
        assert same(y, ref)


def test_conv_int8_bit_exact():
    H, W, C, O, K = 9, 10, 12, 20, 3
    x = RNG.integers(-128, 128, (H, W, C)).astype(np.int8)
    w = RNG.integers(-128, 128, (O, K, K, C)).astype(np.int8)
    bias = RNG.integers(-5000, 5000, O).astype(np.int32)
    scale = (RNG.random(O) * 1e-3).astype(F32)
    geo = dict(stride=(1, 2), pad=(1, 1), dil=(1, 1), groups=1,
               out_hw=out_hw(H, W, K, (1, 2), (1, 1), (1, 1)))
    for out_dtype, act in ((DType.INT8, Act.RELU), (DType.FP32, Act.NONE)):
        pb, _ = conv_program(x, w, bias, geo=geo, out_dtype=out_dtype, act=act, scale=scale,
                             in_zp=3, out_zp=-5)
        (y,), _ = raw_outputs(pb, 1)
        ref = conv_ref(x, w, bias, out_dtype=out_dtype, act=act, scale=scale, in_zp=3,
                       out_zp=-5, **geo)
        assert same(y, ref)


@pytest.mark.parametrize("C,O,groups,stride", [(12, 20, 1, (1, 2)), (16, 80, 1, (1, 1)),
                                               (24, 144, 2, (2, 1))])
def test_conv_int8_channel_blocks_bit_exact(C, O, groups, stride):
    """int8 CONV with partial 16-channel vectors and more than 64 channels per group (the
    AVX-512 kernel's register blocks), on every kernel path."""
    H, W, K = 7, 9, 3
    x = RNG.integers(-128, 128, (H, W, C)).astype(np.int8)
    w = RNG.integers(-128, 128, (O, K, K, C // groups)).astype(np.int8)
    bias = RNG.integers(-5000, 5000, O).astype(np.int32)
    scale = (RNG.random(O) * 1e-3).astype(F32)
    geo = dict(stride=stride, pad=(1, 1), dil=(1, 1), groups=groups,
               out_hw=out_hw(H, W, K, stride, (1, 1), (1, 1)))
    pb, _ = conv_program(x, w, bias, geo=geo, out_dtype=DType.INT8, act=Act.RELU,
                         scale=scale, in_zp=-7, out_zp=4)
    ref = conv_ref(x, w, bias, out_dtype=DType.INT8, act=Act.RELU, scale=scale, in_zp=-7,
                   out_zp=4, **geo)
    assert len(np.unique(ref)) > 20
    for timing in KERNEL_PATHS:
        (y,), _ = raw_outputs(pb, 1, timing=timing)
        assert same(y, ref)


def test_conv_int8_requantisation_rounds_half_to_even():
    """Requantised values exactly halfway between two codes go to the even one (docs/isa.md
    CONV int8: `saturate(rint_half_even(v) + out_zp)`), not away from zero."""
    x = np.arange(-7, 8, dtype=np.int8).reshape(1, 15, 1)
    w = np.ones((1, 1, 1, 1), np.int8)
    geo = dict(stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1, out_hw=(1, 15))
    pb, _ = conv_program(x, w, None, geo=geo, out_dtype=DType.INT8, act=Act.NONE,
                         scale=np.array([0.5], F32), in_zp=0, out_zp=1)
    (y,), _ = raw_outputs(pb, 1)
    halves = [-3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]
    even = [-4, -3, -2, -2, -2, -1, 0, 0, 0, 1, 2, 2, 2, 3, 4]
    assert np.asarray(halves).tolist() == (x.ravel() / 2).tolist()
    assert np.asarray(y).ravel().tolist() == [e + 1 for e in even]


@pytest.mark.parametrize("act,alpha,beta", [(Act.RELU6, 0, 0), (Act.CLIP, -0.5, 0.7),
                                             (Act.LEAKY_RELU, 0.1, 0)])
def test_conv_fused_activations(act, alpha, beta):
    x = RNG.standard_normal((6, 6, 4)).astype(F16)
    w = RNG.standard_normal((8, 3, 3, 4)).astype(F16)
    geo = dict(stride=(1, 1), pad=(1, 1), dil=(1, 1), groups=1, out_hw=(6, 6))
    pb, _ = conv_program(x, w, None, geo=geo, out_dtype=DType.FP16, act=act, alpha=alpha,
                         beta=beta)
    (y,), _ = raw_outputs(pb, 1)
    assert same(y, conv_ref(x, w, None, act=act, alpha=alpha, beta=beta, **geo))


def test_gemm_fp16_and_int8():
    M, K, N = 5, 40, 19
    for kind in ("fp16", "int8"):
        pb = ProgramBuilder()
        if kind == "fp16":
            x = RNG.standard_normal((M, K)).astype(F16)
            w = RNG.standard_normal((N, K)).astype(F16)
            bias = RNG.standard_normal(N).astype(F32)
            scale, out_dtype = None, DType.FP16
        else:
            x = RNG.integers(-128, 128, (M, K)).astype(np.int8)
            w = RNG.integers(-128, 128, (N, K)).astype(np.int8)
            bias = RNG.integers(-100, 100, N).astype(np.int32)
            scale, out_dtype = (RNG.random(N) * 1e-2).astype(F32), DType.INT8
        xa, wa, ba = pb.const(0, x), pb.const(0, w), pb.const(0, bias)
        sa = pb.const(0, scale) if scale is not None else 0xFFFFFFFF
        item = 2 if out_dtype == DType.FP16 else 1
        oa = pb.alloc(0, M * N * item)
        pb.compute(0, Instruction.make(
            Opcode.GEMM, in_addr=xa, m=M, k=K, in_row_stride=K, out_addr=oa, n=N,
            out_row_stride=N, w_addr=wa, bias_addr=ba, scale_addr=sa, act=Act.RELU,
            src_dtype=NUMPY_DTYPE[x.dtype], dst_dtype=out_dtype))
        pb.store(0, oa, "y", (M, N), out_dtype)
        (y,), rep = raw_outputs(pb, 1)
        ref = conv_ref(x.reshape(1, M, K), w.reshape(N, 1, 1, K), bias, out_hw=(1, M),
                       act=Act.RELU, out_dtype=out_dtype, scale=scale)
        assert same(y, ref.reshape(M, N))
        assert rep["macs"] == M * N * K


def pool_ref(x, func, k, stride, pad, out_hw, count_pad=False):
    H, W, C = x.shape
    OH, OW = out_hw
    xf = x.astype(F32)
    acc = np.full((OH, OW, C), -np.inf if func == PoolFunc.MAX else 0, F32)
    count = np.zeros((OH, OW, 1), np.int64)
    for i in range(k[0]):
        ys, vy = taps(OH, stride[0], 1, pad[0], H, i)
        for j in range(k[1]):
            xs, vx = taps(OW, stride[1], 1, pad[1], W, j)
            valid = (vy[:, None] & vx[None, :])[..., None]
            xv = xf[ys][:, xs]
            new = np.fmax(acc, xv) if func == PoolFunc.MAX else acc + xv
            acc = np.where(valid, new, acc)
            count += valid
    if func == PoolFunc.MAX:
        return np.where(count > 0, acc, F32(0))
    div = np.full_like(count, k[0] * k[1]) if count_pad else count
    return np.where(count > 0, acc / div.astype(F32), F32(0))


@pytest.mark.parametrize("func,count_pad", [(PoolFunc.MAX, False), (PoolFunc.AVG, False),
                                            (PoolFunc.AVG, True)])
def test_pool_fp16(func, count_pad):
    H, W, C, k, s, p = 9, 8, 5, (3, 3), (2, 2), (1, 1)
    OH, OW = (H + 2 - 3) // 2 + 1, (W + 2 - 3) // 2 + 1
    x = RNG.standard_normal((H, W, C)).astype(F16)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    oa = pb.alloc(0, OH * OW * C * 2)
    pb.compute(0, Instruction.make(
        Opcode.POOL, func=func, count_pad=count_pad, in_addr=xa, ih=H, iw=W, c=C,
        in_pix_stride=C, out_addr=oa, oh=OH, ow=OW, out_pix_stride=C, kh=3, kw=3, sh=2,
        sw=2, pad_t=1, pad_l=1, src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (OH, OW, C), DType.FP16)
    (y,), _ = raw_outputs(pb, 1)
    assert same(y, store_ref(pool_ref(x, func, k, s, p, (OH, OW), count_pad), DType.FP16))


@pytest.mark.parametrize("func", [PoolFunc.MAX, PoolFunc.AVG])
def test_pool_fp16_specials_activation_scale(func):
    """fp16 POOL with NaN / infinities / -0 inputs, a fused CLIP and the scale flag, on every
    kernel path (the fp16 rows are converted and stored a row at a time)."""
    H, W, C = 6, 7, 19
    x = RNG.standard_normal((H, W, C)).astype(F16)
    x[0, 0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    x[3, 3, 5] = np.inf
    OH, OW = (H + 2 - 3) // 2 + 1, (W + 2 - 3) // 2 + 1
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    oa = pb.alloc(0, OH * OW * C * 2)
    pb.compute(0, Instruction.make(
        Opcode.POOL, func=func, in_addr=xa, ih=H, iw=W, c=C, in_pix_stride=C, out_addr=oa,
        oh=OH, ow=OW, out_pix_stride=C, kh=3, kw=3, sh=2, sw=2, pad_t=1, pad_l=1,
        act=Act.CLIP, alpha=-0.5, beta=0.75, scale=1.5, scale_flag=True,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (OH, OW, C), DType.FP16)
    with np.errstate(invalid="ignore"):
        v = act_ref(pool_ref(x, func, (3, 3), (2, 2), (1, 1), (OH, OW)), Act.CLIP, -0.5, 0.75)
        ref = store_ref(v * F32(1.5), DType.FP16)
    for timing in KERNEL_PATHS:
        (y,), _ = raw_outputs(pb, 1, timing=timing)
        assert same(y, ref)


def test_max_pool_fp16_nan_in_every_lane_block_is_the_same_on_every_path():
    """fp16 MAX POOL over 37 channels (two 16-lane blocks, an 8-lane block and a tail): NaN,
    infinities and windows whose every tap is NaN in each block; every kernel path gives the
    reference's bits (NaN taps are skipped, as np.fmax does)."""
    H, W, C = 4, 6, 37
    x = RNG.standard_normal((H, W, C)).astype(F16)
    for ch in (0, 9, 17, 30, 33, 36):
        x[0, 0, ch] = np.nan
        x[1, 2, ch] = np.inf if ch % 2 else -np.inf
    x[2:4, 4:6, 20] = np.nan  # a whole window of NaN (channel 20, output pixel (1, 2))
    x[2:4, 4:6, 35] = np.nan
    OH, OW = H // 2, W // 2
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    oa = pb.alloc(0, OH * OW * C * 2)
    pb.compute(0, Instruction.make(
        Opcode.POOL, func=PoolFunc.MAX, in_addr=xa, ih=H, iw=W, c=C, in_pix_stride=C,
        out_addr=oa, oh=OH, ow=OW, out_pix_stride=C, kh=2, kw=2, sh=2, sw=2,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (OH, OW, C), DType.FP16)
    with np.errstate(invalid="ignore"):
        ref = store_ref(pool_ref(x, PoolFunc.MAX, (2, 2), (2, 2), (0, 0), (OH, OW)),
                        DType.FP16)
    for timing in KERNEL_PATHS:
        (y,), _ = raw_outputs(pb, 1, timing=timing)
        assert same(y, ref)


@pytest.mark.parametrize("func", [PoolFunc.MAX, PoolFunc.AVG])
@pytest.mark.parametrize("out_dtype", [DType.FP16, DType.FP32])
@pytest.mark.parametrize("over_input", [False, True])
def test_pool_fp16_windows_apart(func, out_dtype, over_input):
    """fp16 POOL whose windows do not overlap (2x2 stride 2, 2x1 stride 3x2 with padding),
    with NaN / infinity / -0 inputs, to fp16 or fp32, its output apart from its input or
    written over input pixels later windows read: the reference's values on every kernel
    path (the input is read as it was before the instruction)."""
    H, W, C = 8, 9, 21
    x = RNG.standard_normal((H, W, C)).astype(F16)
    x[0, 0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    x[5, 4, 7] = -np.inf
    for (kh, kw), (sh, sw), (pt, pl) in [((2, 2), (2, 2), (0, 0)), ((2, 1), (3, 2), (1, 1))]:
        OH, OW = (H + 2 * pt - kh) // sh + 1, (W + 2 * pl - kw) // sw + 1
        oes = 2 if out_dtype == DType.FP16 else 4
        pb = ProgramBuilder()
        xa = pb.const(0, x)
        # over the input: the outputs end where the input ends, written over pixels that
        # windows after them read
        oa = xa + x.nbytes - OH * OW * C * oes if over_input else pb.alloc(0, OH * OW * C * oes)
        pb.compute(0, Instruction.make(
            Opcode.POOL, func=func, in_addr=xa, ih=H, iw=W, c=C, in_pix_stride=C,
            out_addr=oa, oh=OH, ow=OW, out_pix_stride=C, kh=kh, kw=kw, sh=sh, sw=sw,
            pad_t=pt, pad_l=pl, src_dtype=DType.FP16, dst_dtype=out_dtype))
        pb.store(0, oa, "y", (OH, OW, C), out_dtype)
        with np.errstate(invalid="ignore"):
            ref = store_ref(pool_ref(x, func, (kh, kw), (sh, sw), (pt, pl), (OH, OW)),
                            out_dtype)
        for timing in KERNEL_PATHS:
            (y,), _ = raw_outputs(pb, 1, timing=timing)
            assert same(y, ref)


def test_global_avg_pool_int8_scaled():
    H, W, C = 7, 7, 6
    x = RNG.integers(-128, 128, (H, W, C)).astype(np.int8)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    oa = pb.alloc(0, C)
    pb.compute(0, Instruction.make(
        Opcode.POOL, func=PoolFunc.AVG, in_addr=xa, ih=H, iw=W, c=C, in_pix_stride=C,
        out_addr=oa, oh=1, ow=1, out_pix_stride=C, kh=H, kw=W, sh=1, sw=1, scale=0.5,
        scale_flag=True, in_zp=2, out_zp=1, src_dtype=DType.INT8, dst_dtype=DType.INT8))
    pb.store(0, oa, "y", (1, 1, C), DType.INT8)
    (y,), _ = raw_outputs(pb, 1)
    v = pool_ref((x.astype(np.int32) - 2).astype(F32), PoolFunc.AVG, (H, W), (1, 1), (0, 0),
                 (1, 1))
    assert same(y, store_ref(v * F32(0.5), DType.INT8, 1))


@pytest.mark.parametrize("func", list(EltFunc))
def test_eltwise_fp16_contiguous_rows_clip(func):
    """Rows that follow each other in A, B and the output (run as one long row, in chunks),
    with a fused CLIP over specials (NaN stays NaN, -0, infinities), on every kernel path."""
    R, Cn = 70, 64  # more than one 4096-element chunk
    a = RNG.standard_normal((R, Cn)).astype(F16)
    b = RNG.standard_normal((R, Cn)).astype(F16)
    a[0, :6] = [np.nan, -0.0, np.inf, -np.inf, 0.0, 65504]
    b[1, :3] = [np.nan, np.inf, -0.0]
    pb = ProgramBuilder()
    aa, ba = pb.const(0, a), pb.const(0, b)
    oa = pb.alloc(0, R * Cn * 2)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=func, a_addr=aa, b_addr=ba, out_addr=oa, rows=R, cols=Cn,
        a_row_stride=Cn, b_row_stride=Cn, out_row_stride=Cn, act=Act.CLIP, alpha=-0.75,
        beta=1.25, src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (R, Cn), DType.FP16)
    op = {EltFunc.ADD: np.add, EltFunc.SUB: np.subtract, EltFunc.MUL: np.multiply,
          EltFunc.MAX: np.fmax, EltFunc.MIN: np.fmin, EltFunc.DIV: np.divide}[func]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ref = store_ref(act_ref(op(a.astype(F32), b.astype(F32)), Act.CLIP, -0.75, 1.25),
                        DType.FP16)
    for timing in KERNEL_PATHS:
        (y,), report = raw_outputs(pb, 1, timing=timing)
        assert same(y, ref)
        assert report["nonfinite_outputs"] == np.count_nonzero(~np.isfinite(ref))


@pytest.mark.parametrize("func", list(EltFunc))
def test_eltwise_fp16_broadcast(func):
    R, Cn = 6, 10
    a = RNG.standard_normal((R, Cn)).astype(F16)
    b = RNG.standard_normal((1, Cn)).astype(F16)  # broadcast along rows
    pb = ProgramBuilder()
    aa, ba = pb.const(0, a), pb.const(0, b)
    oa = pb.alloc(0, R * Cn * 2)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=func, a_addr=aa, b_addr=ba, out_addr=oa, rows=R, cols=Cn,
        a_row_stride=Cn, b_row_stride=0, out_row_stride=Cn, act=Act.RELU,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (R, Cn), DType.FP16)
    (y,), _ = raw_outputs(pb, 1)
    af, bf = a.astype(F32), np.broadcast_to(b.astype(F32), (R, Cn))
    op = {EltFunc.ADD: np.add, EltFunc.SUB: np.subtract, EltFunc.MUL: np.multiply,
          EltFunc.MAX: np.fmax, EltFunc.MIN: np.fmin, EltFunc.DIV: np.divide}[func]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        assert same(y, store_ref(act_ref(op(af, bf), Act.RELU), DType.FP16))


def test_eltwise_int8_requantised_scalar_broadcast():
    a = RNG.integers(-128, 128, (4, 9)).astype(np.int8)
    b = np.array([37], np.int8)
    pb = ProgramBuilder()
    aa, ba = pb.const(0, a), pb.const(0, b)
    oa = pb.alloc(0, a.size)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=EltFunc.ADD, a_addr=aa, b_addr=ba, out_addr=oa, rows=4, cols=9,
        a_row_stride=9, b_row_stride=0, b_col_stride=0, out_row_stride=9, a_scale=0.05,
        b_scale=0.1, out_scale=8.0, b_zp=-3, in_zp=4, out_zp=2, scale_flag=True,
        src_dtype=DType.INT8, dst_dtype=DType.INT8))
    pb.store(0, oa, "y", (4, 9), DType.INT8)
    (y,), _ = raw_outputs(pb, 1)
    va = (a.astype(F32) - F32(4)) * F32(0.05)
    vb = (F32(37) - F32(-3)) * F32(0.1)
    assert same(y, store_ref((va + vb) * F32(8.0), DType.INT8, 2))


def test_eltwise_div_int8_and_fp16_specials():
    """DIV (format 1.4): fp32 IEEE quotient of the dequantised operands, requantised; a zero
    divisor gives +-inf (saturates to +-127 / 127 + zp) or NaN for 0 / 0 (stores out_zp)."""
    a = RNG.integers(-128, 128, (5, 8)).astype(np.int8)
    b = RNG.integers(-128, 128, (5, 8)).astype(np.int8)
    b[0, :3] = [3, 3, 3]  # b - b_zp = 0
    a[0, 2] = -1  # a - in_zp = 0: 0 / 0
    pb = ProgramBuilder()
    aa, ba = pb.const(0, a), pb.const(0, b)
    oa = pb.alloc(0, a.size)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=EltFunc.DIV, a_addr=aa, b_addr=ba, out_addr=oa, rows=5, cols=8,
        a_row_stride=8, b_row_stride=8, b_col_stride=1, out_row_stride=8, a_scale=0.05,
        b_scale=0.02, out_scale=4.0, b_zp=3, in_zp=-1, out_zp=-2, scale_flag=True,
        src_dtype=DType.INT8, dst_dtype=DType.INT8))
    pb.store(0, oa, "y", (5, 8), DType.INT8)
    (y,), _ = raw_outputs(pb, 1)
    va = (a.astype(F32) - F32(-1)) * F32(0.05)
    vb = (b.astype(F32) - F32(3)) * F32(0.02)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ref = store_ref((va / vb) * F32(4.0), DType.INT8, -2)
    assert same(y, ref)
    assert y.reshape(5, 8)[0, 2] == -2  # NaN -> out_zp


@pytest.mark.parametrize("act", list(Act))
def test_act_fp16(act):
    x = (RNG.standard_normal((8, 16)) * 4).astype(F16)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    oa = pb.alloc(0, x.nbytes)
    pb.compute(0, Instruction.make(
        Opcode.ACT, act=act, alpha=0.2, beta=1.5, in_addr=xa, out_addr=oa, rows=8, cols=16,
        in_row_stride=16, out_row_stride=16, src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", x.shape, DType.FP16)
    (y,), _ = raw_outputs(pb, 1)
    ref = store_ref(act_ref(x.astype(F32), act, 0.2, 1.5), DType.FP16)
    if act in (Act.SIGMOID, Act.TANH, Act.SILU, Act.GELU_ERF, Act.GELU_TANH):
        # C library expf / tanhf / erff: 1 fp16 ulp allowed
        ulps = np.abs(y.view(np.int16).astype(np.int32) - ref.view(np.int16).astype(np.int32))
        assert ulps.max() <= 1
    else:
        assert same(y, ref)


def test_fp32_to_fp16_conversion_is_rne_bit_exact():
    """DMA_LOAD fp32 -> fp16 over ties, subnormals, overflow, inf, nan and random bits."""
    bits = RNG.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    special = np.array([0x33000000, 0x33000001, 0x387FC000, 0x387FE000, 0x477FE000,
                        0x477FEFFF, 0x477FF000, 0x47800000, 0x7F800000, 0xFF800000,
                        0x80000000, 0x00000001, 0x3F801000, 0x3F803000, 0x7FC00000],
                       np.uint32)
    x = np.concatenate([bits, special]).view(F32)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    oa = pb.alloc(0, x.size * 2)
    pb.compute(0, Instruction.make(
        Opcode.CONVERT, in_addr=xa, out_addr=oa, rows=1, cols=x.size, in_row_stride=x.size,
        out_row_stride=x.size, src_dtype=DType.FP32, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", x.shape, DType.FP16)
    (y,), _ = raw_outputs(pb, 1)
    with np.errstate(over="ignore"):
        ref = x.astype(F16)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(y), nan)
    assert np.array_equal(y[~nan].view(np.uint16), ref[~nan].view(np.uint16))


def test_convert_quantise_dequantise():
    x = (RNG.standard_normal(64) * 50).astype(F32)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    qa = pb.alloc(0, 64)
    da = pb.alloc(0, 256)
    pb.compute(0, Instruction.make(
        Opcode.CONVERT, in_addr=xa, out_addr=qa, rows=1, cols=64, in_row_stride=64,
        out_row_stride=64, scale=0.5, scale_flag=True, out_zp=3, src_dtype=DType.FP32,
        dst_dtype=DType.INT8))
    pb.compute(0, Instruction.make(
        Opcode.CONVERT, in_addr=qa, out_addr=da, rows=1, cols=64, in_row_stride=64,
        out_row_stride=64, scale=2.0, scale_flag=True, in_zp=3, src_dtype=DType.INT8,
        dst_dtype=DType.FP32))
    pb.store(0, qa, "q", (64,), DType.INT8)
    pb.store(0, da, "d", (64,), DType.FP32)
    (q, d), _ = raw_outputs(pb, 2)
    q_ref = store_ref(x * F32(0.5), DType.INT8, 3)
    assert same(q, q_ref)
    assert same(d, (q_ref.astype(F32) - F32(3)) * F32(2.0))


def test_dma_4d_strided_padded_converting_load_and_strided_store():
    """Load an NHWC fp32 input with zero padding into fp16 OCM, store it transposed (CNHW)."""
    N, H, W, C = 2, 3, 4, 5
    dims = (N, H + 2, W + 1, C)
    P = N * dims[1] * dims[2]
    x = RNG.standard_normal((N, H, W, C)).astype(F32)
    pb = ProgramBuilder()
    pb.inputs.append(IODesc("x", x.shape, dtype=DType.FP32))
    oa = pb.alloc(0, int(np.prod(dims)) * 2)
    pb.compute(0, Instruction.make(Opcode.NOP, pop_prev=True))  # relays dma_in -> dma_out
    pb.store(0, oa, "y", (C, N, H + 2, W + 1), DType.FP16)
    binary = pb.build()
    binary.streams[(Section.MAIN, 0, Queue.DMA_IN)] = [Instruction.make(
        Opcode.DMA_LOAD, dram_addr=binary.inputs[0].dram_offset, ocm_addr=oa,
        dim0=dims[0], dim1=dims[1], dim2=dims[2], dim3=dims[3], pad1=1, pad2=1,
        src_dim0=N, src_dim1=H, src_dim2=W, src_dim3=C,
        dram_stride0=H * W * C, dram_stride1=W * C, dram_stride2=C, dram_stride3=1,
        ocm_stride0=dims[1] * dims[2] * C, ocm_stride1=dims[2] * C, ocm_stride2=C,
        ocm_stride3=1, src_dtype=DType.FP32, dst_dtype=DType.FP16, push_next=True)]
    binary.streams[(Section.MAIN, 0, Queue.DMA_OUT)] = [Instruction.make(
        Opcode.DMA_STORE, dram_addr=binary.outputs[0].dram_offset, ocm_addr=oa, dim0=1,
        dim1=1, dim2=C, dim3=P, src_dim0=1, src_dim1=1, src_dim2=C, src_dim3=P,
        dram_stride2=P, dram_stride3=1, ocm_stride2=1, ocm_stride3=C,
        src_dtype=DType.FP16, dst_dtype=DType.FP16, pop_prev=True)]
    (y,), rep = Simulator.load(binary.to_bytes()).run([x])
    padded = np.zeros(dims, F16)
    padded[:, 1:H + 1, 1:W + 1, :] = x.astype(F16)
    assert same(y.astype(F16), np.transpose(padded, (3, 0, 1, 2)))
    assert rep["dma_in_bytes"] == x.nbytes and rep["dma_out_bytes"] == padded.nbytes


# ---- dependencies ---------------------------------------------------------------------------
def _simple_conv_binary():
    x = RNG.standard_normal((6, 6, 8)).astype(F16)
    w = RNG.standard_normal((8, 3, 3, 8)).astype(F16)
    geo = dict(stride=(1, 1), pad=(1, 1), dil=(1, 1), groups=1, out_hw=(6, 6))
    pb = ProgramBuilder()
    xa, wa = pb.const(0, x), pb.const(0, w)
    oa = pb.alloc(0, 6 * 6 * 8 * 2)
    pb.compute(0, Instruction.make(
        Opcode.CONV, in_addr=xa, ih=6, iw=6, ic=8, in_pix_stride=8, out_addr=oa, oh=6, ow=6,
        oc=8, out_pix_stride=8, w_addr=wa, kh=3, kw=3, pad_t=1, pad_l=1))
    pb.store(0, oa, "y", (6, 6, 8), DType.FP16)
    return pb.build(), (x, w, geo)


def _strip_flags(insn: Instruction, flags: int) -> Instruction:
    return replace(insn, flags=insn.flags & ~flags)


def test_reference_program_runs():
    binary, (x, w, geo) = _simple_conv_binary()
    (y,), _ = Simulator.load(binary.to_bytes()).run([])
    assert same(y.astype(F16), conv_ref(x, w, None, **geo))


def test_missing_token_is_a_dependency_error_naming_the_instruction():
    binary, _ = _simple_conv_binary()
    key_in, key_c = (Section.MAIN, 0, Queue.DMA_IN), (Section.MAIN, 0, Queue.COMPUTE)
    binary.streams[key_in][-1] = _strip_flags(binary.streams[key_in][-1], Flag.PUSH_NEXT)
    binary.streams[key_c][0] = _strip_flags(binary.streams[key_c][0], Flag.POP_PREV)
    sim = Simulator.load(binary.to_bytes())
    with pytest.raises(SimulationError, match=r"main/tile 0/compute/#0 CONV reads tile 0 OCM"
                                              r".*main/tile 0/dma_in/#\d DMA_LOAD"):
        sim.run([])


def test_store_without_token_reads_unproduced_data():
    binary, _ = _simple_conv_binary()
    key_c, key_o = (Section.MAIN, 0, Queue.COMPUTE), (Section.MAIN, 0, Queue.DMA_OUT)
    binary.streams[key_c][-1] = _strip_flags(binary.streams[key_c][-1], Flag.PUSH_NEXT)
    binary.streams[key_o][0] = _strip_flags(binary.streams[key_o][0], Flag.POP_PREV)
    sim = Simulator.load(binary.to_bytes())
    with pytest.raises(SimulationError, match=r"dma_out/#0 DMA_STORE reads .*"):
        sim.run([])


def test_overwrite_before_read_is_a_war_error():
    """conv #1 rewrites the output while DMA_OUT may still be storing conv #0's result."""
    binary, _ = _simple_conv_binary()
    main = Section.MAIN
    dma_in = binary.streams[(main, 0, Queue.DMA_IN)]
    comp = binary.streams[(main, 0, Queue.COMPUTE)]
    big = np.zeros(1 << 15, F16)  # a slow load that delays conv #1 past the store
    offset = len(binary.weights)
    binary.weights += big.tobytes()
    dma_in.append(flat_dma(Opcode.DMA_LOAD, binary.weights_offset + offset, 0x40000,
                           big.size, DType.FP16, push_next=True))
    binary.scratch_offset += big.nbytes
    binary.dram_size += big.nbytes
    comp.append(replace(comp[0], flags=Flag.POP_PREV))
    sim = Simulator.load(binary.to_bytes())
    with pytest.raises(SimulationError, match=r"compute/#1 CONV overwrites data still to be "
                                              r"read at tile 0 OCM .*dma_out/#0 DMA_STORE"):
        sim.run([])


def test_deadlock_is_reported():
    binary, _ = _simple_conv_binary()
    key_in = (Section.MAIN, 0, Queue.DMA_IN)
    key_c = (Section.MAIN, 0, Queue.COMPUTE)
    # dma_in waits for a token from compute, compute waits for dma_in: a cycle
    binary.streams[key_in][0] = replace(binary.streams[key_in][0],
                                        flags=binary.streams[key_in][0].flags | Flag.POP_NEXT)
    binary.streams[key_c][-1] = replace(binary.streams[key_c][-1],
                                        flags=binary.streams[key_c][-1].flags | Flag.PUSH_PREV)
    sim = Simulator.load(binary.to_bytes())
    with pytest.raises(SimulationError, match="deadlock"):
        sim.run([])


def test_unbalanced_tokens_rejected_at_load():
    binary, _ = _simple_conv_binary()
    key_c = (Section.MAIN, 0, Queue.COMPUTE)
    binary.streams[key_c][0] = _strip_flags(binary.streams[key_c][0], Flag.POP_PREV)
    with pytest.raises(BinaryFormatError, match="pushed but 0 popped"):
        Simulator.load(binary.to_bytes())


def test_stale_data_from_previous_inference_is_an_error():
    """Run twice; the second run skips the conv, so the store would read last run's data."""
    binary, _ = _simple_conv_binary()
    sim = Simulator.load(binary.to_bytes())
    sim.run([])
    (y,), _ = sim.run([])  # re-running the whole program is fine
    key_c = (Section.MAIN, 0, Queue.COMPUTE)
    conv = binary.streams[key_c][0]
    binary.streams[key_c] = [Instruction.make(Opcode.NOP, flags=conv.flags)]
    sim2 = Simulator.load(binary.to_bytes())
    with pytest.raises(SimulationError, match="no instruction has written"):
        sim2.run([])


# ---- timing -------------------------------------------------------------------------------
def _big_conv(tiles: int, H: int = 16, O: int = 64):
    W, C, K = H, 32, 3
    rng = np.random.default_rng(7)
    x = rng.standard_normal((H, W, C)).astype(F16)
    w = (rng.standard_normal((O, K, K, C)) * 0.2).astype(F16)
    bias = rng.standard_normal(O).astype(F32)
    geo = dict(stride=(1, 1), pad=(1, 1), dil=(1, 1), groups=1, out_hw=(H, W))
    pb, rows = conv_program(x, w, bias, geo=geo, out_dtype=DType.FP16, act=Act.RELU,
                            tiles=tiles)
    return pb, rows, conv_ref(x, w, bias, act=Act.RELU, **geo)


def _assemble(outs, rows, shape):
    return np.concatenate([o.astype(F16) for o in outs], axis=0).reshape(shape)


def test_timing_changes_cycles_not_outputs_and_respects_roofline():
    pb, rows, ref = _big_conv(2)
    data = pb.build().to_bytes()
    slow = dict(dram_bytes_per_cycle=4, dma_bytes_per_cycle=4, matrix_fill=500,
                vector_lanes=4, dma_latency=1000)
    fast = ["dram_bytes_per_cycle=512", "dma_bytes_per_cycle=512", "matrix_rows=32",
            "matrix_cols=32"]
    results = {}
    for name, machine in (("default", None), ("slow", slow), ("fast", fast)):
        sim = Simulator.load(data, machine=machine)
        outs, rep = sim.run([])
        assert rep["machine"] == sim.machine.to_dict()
        results[name] = (outs, rep)
        assert same(_assemble(outs, rows, ref.shape), ref)
        assert rep["cycles"] >= rep["traffic_roofline_cycles"] > 0
        assert 0 < rep["matrix_utilization"] <= 1.0
        assert 0 <= rep["vector_utilization"] <= 1.0
        assert rep["efficiency"] <= 1.0
        for layer in rep["layers"]:
            assert layer["cycles"] >= layer["traffic_roofline_cycles"]
            assert layer["matrix_utilization"] <= 1.0
    for name in ("slow", "fast"):
        for a, b in zip(results["default"][0], results[name][0], strict=True):
            assert same(a, b)
    cycles = {k: v[1]["cycles"] for k, v in results.items()}
    assert cycles["slow"] > cycles["default"] > cycles["fast"]
    assert results["slow"][1]["machine"]["dram_bytes_per_cycle"] == 4.0
    assert results["fast"][1]["machine"]["matrix_rows"] == 32


def test_more_tiles_same_outputs_fewer_cycles():
    cycles = []
    for tiles in (1, 2, 4, 8):  # a layer large enough that 8 tiles are not DRAM-bound
        pb, rows, ref = _big_conv(tiles, H=32, O=128)
        outs, rep = Simulator.load(pb.build().to_bytes()).run([])
        assert same(_assemble(outs, rows, ref.shape), ref)
        assert rep["tiles"] == tiles
        cycles.append(rep["cycles"])
    assert cycles[0] > cycles[1] > cycles[2] > cycles[3]


def test_barrier_orders_dram_traffic_between_tiles():
    """Tile 0 computes and stores to scratch; after a barrier tile 1 loads it and stores it
    to the output.  Without the barrier the simulator reports the missing dependency."""
    main = Section.MAIN

    def build(with_barrier: bool):
        x = RNG.standard_normal(32).astype(F16)
        pb = ProgramBuilder(tiles=2, scratch_size=64)
        xa = pb.const(0, x)
        ya = pb.alloc(0, 64)
        pb.compute(0, Instruction.make(
            Opcode.ACT, act=Act.RELU, in_addr=xa, out_addr=ya, rows=1, cols=32,
            in_row_stride=32, out_row_stride=32))
        za = pb.alloc(1, 64)
        pb.store(1, za, "y", (32,), DType.FP16)
        b = pb.build()
        scratch = b.scratch_offset
        comp0, comp1 = b.stream(main, 0, Queue.COMPUTE), b.stream(main, 1, Queue.COMPUTE)
        comp0[-1] = replace(comp0[-1], flags=Flag.POP_PREV | Flag.PUSH_NEXT)
        b.streams[(main, 0, Queue.DMA_OUT)] = [flat_dma(
            Opcode.DMA_STORE, scratch, ya, 32, DType.FP16, pop_prev=True, push_prev=True)]
        comp0.append(Instruction.make(Opcode.NOP, pop_next=True))
        if with_barrier:
            comp0.append(Instruction.make(Opcode.BARRIER))
            comp1.append(Instruction.make(Opcode.BARRIER, push_prev=True))
        else:
            comp1.append(Instruction.make(Opcode.NOP, push_prev=True))
        b.stream(main, 1, Queue.DMA_IN).append(flat_dma(
            Opcode.DMA_LOAD, scratch, za, 32, DType.FP16, pop_next=True, push_next=True))
        comp1.append(Instruction.make(Opcode.NOP, pop_prev=True, push_next=True))
        store = b.stream(main, 1, Queue.DMA_OUT)
        store[0] = replace(store[0], flags=Flag.POP_PREV)
        return b, x

    b, x = build(True)
    (y,), rep = Simulator.load(b.to_bytes()).run([])
    assert same(y.astype(F16), store_ref(act_ref(x.astype(F32), Act.RELU), DType.FP16))
    assert rep["cycles"] >= rep["traffic_roofline_cycles"]
    b, _ = build(False)
    # tile 1 may run before or after tile 0's store: either way it is reported
    with pytest.raises(SimulationError, match=r"tile 1/dma_in/#0 DMA_LOAD reads DRAM"):
        Simulator.load(b.to_bytes()).run([])


def test_conv_in_place_then_conv_reads_the_new_data():
    """A CONV whose output overwrites its own input block: the next CONV reading that block
    sees the new values (the simulator's converted-input cache must not serve stale data)."""
    H, W, C = 4, 5, 16
    x = RNG.standard_normal((H, W, C)).astype(F16)
    w1 = (RNG.standard_normal((C, 1, 1, C)) * 0.3).astype(F16)
    w2 = (RNG.standard_normal((C, 1, 1, C)) * 0.3).astype(F16)
    geo = dict(stride=(1, 1), pad=(0, 0), dil=(1, 1), groups=1, out_hw=(H, W))
    ref = conv_ref(conv_ref(x, w1, None, out_dtype=DType.FP16, **geo), w2, None,
                   out_dtype=DType.FP16, **geo)
    pb = ProgramBuilder()
    xa, wa1, wa2 = pb.const(0, x), pb.const(0, w1), pb.const(0, w2)
    oa = pb.alloc(0, x.nbytes)
    for w_addr, out_addr in ((wa1, xa), (wa2, oa)):
        pb.compute(0, Instruction.make(
            Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, out_addr=out_addr,
            oh=H, ow=W, oc=C, out_pix_stride=C, w_addr=w_addr, kh=1, kw=1,
            src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (H, W, C), DType.FP16)
    for portable in (False, True):
        (y,), _ = raw_outputs(pb, 1, timing=TimingParams(portable=portable))
        assert same(y, ref)


@pytest.mark.parametrize("opcode", [Opcode.COPY, Opcode.CONVERT, Opcode.ACT])
def test_vector_op_overlapping_output_goes_in_element_order(opcode):
    """Output starting 2 elements after the input inside the same row: row-major element
    order (docs/isa.md) re-reads what the instruction already wrote, for the bit-copy path
    (COPY, CONVERT fp16 -> fp16) exactly as for the converting one (ACT)."""
    x = RNG.standard_normal(10).astype(F16)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    pb.compute(0, Instruction.make(opcode, in_addr=xa, out_addr=xa + 4, rows=1, cols=8,
                                   in_row_stride=8, out_row_stride=8))
    pb.store(0, xa + 4, "y", (8,), DType.FP16)
    mem = x.copy()
    for k in range(8):
        mem[2 + k] = mem[k]
    for portable in (False, True):
        (y,), _ = raw_outputs(pb, 1, timing=TimingParams(portable=portable))
        assert same(y, mem[2:])
