"""The regular (not depthwise) fp16 CONV and GEMM with infinities, signed zeros and NaNs of
both signs (with payloads, quiet and signalling) in inputs, weights and bias give on every
kernel path (AVX-512, AVX2 with `no_avx512`, portable) the bits of the documented rule
(docs/isa.md, CONV fp16): `acc = acc + x * w` over the taps in (i, j, c) order, then
`acc + bias`, where two NaNs meet the first operand's NaN (x's in x * w, acc's in the sums)
and an invalid operation gives x86's default NaN.  The reference below applies that rule
element by element; each case also checks that the operand orders a compiler or a fused
multiply-add may choose give other bits, so agreement cannot be by chance."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from mrvl.mlip_binary import Instruction
from mrvl.mlip_isa import Act, DType, Opcode
from mrvl.sim.program_builder import ProgramBuilder
from mrvl.sim.simulator import Simulator, TimingParams

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="x86's NaN rules (the default NaN's sign)")

F16 = np.float16
DEFAULT_NAN = 0xFFC00000
PATHS = (TimingParams(), TimingParams(no_avx512=True), TimingParams(portable=True))

# fp16 inputs: infinities, quiet NaNs of both signs with payloads, signalling NaNs, zeros
X_SPECIALS = [0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7E2A, 0xFF15, 0x7C01, 0xFD55, 0x0000, 0x8000]
X_PLAIN = [0x3C00, 0xC100, 0x4500, 0x3800, 0xBA00, 0x2E66, 0x0001, 0xB3FF]
W_SPECIALS = [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7D01, 0xFF33]
W_PLAIN = [0x3C00, 0xBE00, 0x3400, 0xB800, 0x3A00, 0xB266, 0x3555, 0x8001]


def _bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.uint32)


def _f32(bits) -> np.ndarray:
    return _bits(bits).view(np.float32)


def _quiet(a: np.ndarray) -> np.ndarray:
    """a with its NaNs quieted (x86 arithmetic returns a signalling NaN operand quieted)"""
    bits = a.view(np.uint32)
    return np.where(np.isnan(a), bits | 0x00400000, bits).astype(np.uint32).view(np.float32)


def _first_nan(a: np.ndarray, b: np.ndarray, result: np.ndarray) -> np.ndarray:
    """result of a op b as x86 gives it: a's NaN where a is NaN, else b's where b is, else
    the default NaN where the operation is invalid (result NaN), else result"""
    out = np.where(np.isnan(result), _f32(DEFAULT_NAN), result)
    out = np.where(np.isnan(b), _quiet(b), out)
    return np.where(np.isnan(a), _quiet(a), out).astype(np.float32)


def _step(acc, xv, wv, order: str):
    """acc + x * w in the documented order ("rule"), or an order a kernel may have used:
    "commuted" (w * x, then p + acc: what C lets a compiler emit) or "fma" (one fused
    multiply-add a * b + c, whose NaN priority is x, w, then acc)"""
    prod, total = xv * wv, acc + xv * wv
    if order == "rule":
        p = _first_nan(xv, wv, prod)
        return _first_nan(acc, p, acc + p)
    if order == "commuted":
        p = _first_nan(wv, xv, prod)
        return _first_nan(p, acc, acc + p)
    # fma: x's or w's NaN first, then acc's, then the default NaN
    out = np.where(np.isnan(wv), _quiet(wv), _first_nan(acc, _f32(0), total))
    return np.where(np.isnan(xv), _quiet(xv), out).astype(np.float32)


def conv_reference(x, w, bias, groups=1, pad_t=0, pad_l=0, order="rule", fp16=True,
                   act=Act.NONE, alpha=0.0, beta=0.0):
    """The fp16 CONV (stride 1, dilation 1, output H x W; activation NONE, CLIP or
    LEAKY_RELU) element by element in the documented order, as output bits (fp16 with the
    NaNs canonical, sign kept, like f2h; or fp32)"""
    with np.errstate(all="ignore"):
        acc = _conv_reference(x, w, bias, groups, pad_t, pad_l, order)
        if act == Act.CLIP:  # ordered compares: a NaN stays
            acc = np.where(acc < np.float32(alpha), np.float32(alpha),
                           np.where(acc > np.float32(beta), np.float32(beta), acc))
        elif act == Act.LEAKY_RELU:
            acc = np.where(acc < 0, np.float32(alpha) * acc, acc)
        else:
            assert act == Act.NONE
        acc = acc.astype(np.float32)
        if not fp16:
            return acc.view(np.uint32)
        sign = (acc.view(np.uint32) >> 16).astype(np.uint16) & 0x8000
        half = acc.astype(F16).view(np.uint16)
        return np.where(np.isnan(acc), 0x7E00 | sign, half).astype(np.uint16)


def _conv_reference(x, w, bias, groups, pad_t, pad_l, order):
    H, W, C = x.shape
    O, kh, kw, icg = w.shape
    ocg = O // groups
    xf = x.astype(np.float32)
    wf = w.astype(np.float32)
    acc = np.zeros((H, W, O), np.float32)
    rows, cols = np.arange(H), np.arange(W)
    in_channel = (np.arange(O) // ocg) * icg  # each output's group's first input channel
    for i in range(kh):
        for j in range(kw):
            y, z = rows + i - pad_t, cols + j - pad_l
            valid = ((y >= 0) & (y < H))[:, None, None] & ((z >= 0) & (z < W))[None, :, None]
            yc, zc = np.clip(y, 0, H - 1), np.clip(z, 0, W - 1)
            for c in range(icg):
                xv = xf[yc][:, zc][:, :, in_channel + c]
                acc = np.where(valid, _step(acc, xv, wf[:, i, j, c], order), acc)
    return _first_nan(acc, bias[None, None, :], acc + bias[None, None, :])


def _conv_program(x, w, bias, groups=1, pad_t=0, pad_l=0, fp16=True, act=Act.NONE,
                  alpha=0.0, beta=0.0) -> bytes:
    """One fp16 CONV on tile 0 (stride 1, output H x W), output "y" fp16 or fp32"""
    (H, W, C), (O, kh, kw, _) = x.shape, w.shape
    odt = DType.FP16 if fp16 else DType.FP32
    pb = ProgramBuilder()
    xa, wa, ba = pb.const(0, x), pb.const(0, w), pb.const(0, bias)
    oa = pb.alloc(0, H * W * O * (2 if fp16 else 4))
    pb.compute(0, Instruction.make(
        Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, out_addr=oa, oh=H, ow=W,
        oc=O, out_pix_stride=O, w_addr=wa, bias_addr=ba, kh=kh, kw=kw, pad_t=pad_t,
        pad_l=pad_l, groups=groups, act=act, alpha=alpha, beta=beta, src_dtype=DType.FP16,
        dst_dtype=odt))
    pb.store(0, oa, "y", (H, W, O), odt)
    return pb.build().to_bytes()


def _specials(rng, shape, specials, plain, rate) -> np.ndarray:
    p = [rate / len(specials)] * len(specials) + [(1 - rate) / len(plain)] * len(plain)
    return rng.choice(np.array(specials + plain, np.uint16), size=shape, p=p).view(F16)


def _bias(rng, n) -> np.ndarray:
    bias = rng.standard_normal(n).astype(np.float32)
    bias[1::7] = _f32([0x7FC00000, 0xFFC00005, 0x7F800000, 0xFF800000, 0x7F800001])[
        np.arange(len(bias[1::7])) % 5]
    return bias


def _outputs(data: bytes, paths=PATHS) -> list[np.ndarray]:
    outs = []
    for timing in paths:
        (y,), _ = Simulator.load(data, timing=timing).run_device([])
        outs.append(y.view(np.uint16 if y.dtype == F16 else np.uint32))
    return outs


# (H, W, C, O, kh, groups, pad, finite weights, fp16 output, seed): 1x1 (the direct path
# where the AVX-512 kernel runs, and not), 3x3 padded (the padded kernels; 12 pixels: one
# AVX-512 call per block group, converting its weights in registers), 3x3 with
# non-finite weights padded and unpadded (the kernels on the unpadded input), grouped, fp32
# output (payloads); the seeds give inputs where the operand orders show (asserted)
CASES = {
    "1x1_direct": (5, 7, 24, 24, 1, 1, 0, True, True, 0),
    "1x1_three_blocks": (5, 7, 24, 40, 1, 1, 0, True, True, 0),
    "1x1_nonfinite_weights": (5, 7, 24, 40, 1, 1, 0, False, True, 1),
    "3x3_padded": (6, 7, 20, 40, 3, 1, 1, True, True, 1),
    "3x3_padded_twelve_pixels": (3, 4, 20, 40, 3, 1, 1, True, True, 12),
    "3x3_padded_nonfinite_weights": (6, 7, 20, 40, 3, 1, 1, False, True, 1),
    "3x3_unpadded_nonfinite_weights": (6, 7, 20, 40, 3, 1, 0, False, True, 1),
    "3x3_grouped": (5, 6, 16, 40, 3, 2, 1, True, True, 0),
    "3x3_grouped_nonfinite_weights": (5, 6, 16, 40, 3, 2, 1, False, True, 0),
    "3x3_padded_fp32": (6, 7, 20, 40, 3, 1, 1, True, False, 1),
    "3x3_nonfinite_weights_fp32": (6, 7, 20, 40, 3, 1, 1, False, False, 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_conv_nan_bits_are_the_documented_ones_on_every_path(case):
    x, w, bias, args = _case_inputs(case)
    want = conv_reference(x, w, bias, **args)
    nan = ((want & 0x7C00) == 0x7C00 if args["fp16"]
           else (want & 0x7F800000) == 0x7F800000)
    assert 0 < np.count_nonzero(nan) < want.size * 3 // 4  # non-finite and finite outputs
    for order in ("commuted", "fma"):  # these inputs tell the orders apart
        assert not np.array_equal(conv_reference(x, w, bias, order=order, **args), want)
    for timing, y in zip(PATHS, _outputs(_conv_program(x, w, bias, **args))):
        bad = np.count_nonzero(y != want)
        assert bad == 0, f"{timing}: {bad} of {want.size} outputs differ"


def _case_inputs(case):
    H, W, C, O, k, groups, pad, finite, fp16, seed = CASES[case]
    rng = np.random.default_rng(seed)
    taps = k * k * C // groups  # each output's: about one special input and weight in it
    x = _specials(rng, (H, W, C), X_SPECIALS, X_PLAIN, 1.0 / taps)
    w = _specials(rng, (O, k, k, C // groups), W_SPECIALS[:2] if finite else W_SPECIALS,
                  W_PLAIN, 0.1 if finite else 0.5 / taps)
    return x, w, _bias(rng, O), dict(groups=groups, pad_t=pad, pad_l=pad, fp16=fp16)


@pytest.mark.parametrize("case", ["3x3_padded", "3x3_padded_nonfinite_weights"])
@pytest.mark.parametrize("act, alpha, beta", [(Act.CLIP, -0.75, 2.0),
                                              (Act.LEAKY_RELU, -0.5, 0.0)])
def test_conv_nan_bits_with_a_fused_activation(case, act, alpha, beta):
    """CLIP and LEAKY_RELU keep NaNs (the AVX-512 store's fused activation and the generic
    one): the documented bits after the activation on every path"""
    x, w, bias, args = _case_inputs(case)
    want = conv_reference(x, w, bias, act=act, alpha=alpha, beta=beta, **args)
    assert not np.array_equal(
        conv_reference(x, w, bias, act=act, alpha=alpha, beta=beta, order="fma", **args), want)
    data = _conv_program(x, w, bias, act=act, alpha=alpha, beta=beta, **args)
    for timing, y in zip(PATHS, _outputs(data)):
        assert np.count_nonzero(y != want) == 0, timing


@pytest.mark.parametrize("case", ["3x3_padded", "3x3_padded_nonfinite_weights"])
def test_conv_nan_bits_with_an_activation_of_the_generic_store(case):
    """TANH (not one of the AVX-512 store's activations: the generic store on every path)
    keeps a NaN: the documented NaNs where the sum is NaN, and every path the same bits"""
    x, w, bias, args = _case_inputs(case)
    want = conv_reference(x, w, bias, **args)
    nan = (want & 0x7C00) == 0x7C00
    nan &= (want & 0x3FF) != 0  # NaN, not infinite
    assert {0x7E00, 0xFE00} <= set(want[nan].tolist())
    outs = _outputs(_conv_program(x, w, bias, act=Act.TANH, **args))
    for timing, y in zip(PATHS, outs):
        assert np.array_equal(y[nan], want[nan]), timing
        assert np.array_equal(y, outs[0]), timing


def test_conv_nan_bits_on_threads():
    """A CONV large enough for worker threads (every AVX-512 call converts its fp16 weights in
    registers) gives the documented bits on 1 and 2 threads and every path."""
    H, W, C, O = 20, 20, 48, 72
    rng = np.random.default_rng(72)
    x = _specials(rng, (H, W, C), X_SPECIALS, X_PLAIN, 0.002)
    w = _specials(rng, (O, 3, 3, C), W_SPECIALS[:2], W_PLAIN, 0.02)
    bias = _bias(rng, O)
    want = conv_reference(x, w, bias, pad_t=1, pad_l=1)
    for order in ("commuted", "fma"):
        assert not np.array_equal(
            conv_reference(x, w, bias, pad_t=1, pad_l=1, order=order), want)
    data = _conv_program(x, w, bias, pad_t=1, pad_l=1)
    paths = PATHS + (TimingParams(threads=2), TimingParams(threads=2, no_avx512=True))
    for timing, y in zip(paths, _outputs(data, paths)):
        assert np.count_nonzero(y != want) == 0, timing


@pytest.mark.parametrize("n", [24, 40])
def test_gemm_nan_bits_are_the_documented_ones_on_every_path(n):
    """GEMM (CONV's kernels on an m x 1 image) with the same special values"""
    m, k = 13, 40
    rng = np.random.default_rng(n)
    x = _specials(rng, (m, k), X_SPECIALS, X_PLAIN, 0.05)
    w = _specials(rng, (n, k), W_SPECIALS, W_PLAIN, 0.01)
    w[3] = np.resize(np.array(W_PLAIN, np.uint16), k).view(F16)  # finite weights too
    bias = _bias(rng, n)
    want = conv_reference(x[:, None, :], w[:, None, None, :], bias)[:, 0, :]
    for order in ("commuted", "fma"):
        assert not np.array_equal(conv_reference(
            x[:, None, :], w[:, None, None, :], bias, order=order)[:, 0, :], want)
    pb = ProgramBuilder()
    xa, wa, ba = pb.const(0, x), pb.const(0, w), pb.const(0, bias)
    oa = pb.alloc(0, m * n * 2)
    pb.compute(0, Instruction.make(
        Opcode.GEMM, in_addr=xa, m=m, k=k, in_row_stride=k, out_addr=oa, n=n,
        out_row_stride=n, w_addr=wa, bias_addr=ba, act=Act.NONE, src_dtype=DType.FP16,
        dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (m, n), DType.FP16)
    for timing, y in zip(PATHS, _outputs(pb.build().to_bytes())):
        assert np.count_nonzero(y != want) == 0, timing
