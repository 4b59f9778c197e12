"""The simulator's fast paths (issue 14) give exactly the results of the plain ones: host
fp32 -> fp16 conversion, channel-sliced DMA rows (values and dependency errors), ReLU6 on
special values; and the PP-LCNet-style benchmark model is a valid, runnable model."""

from __future__ import annotations

import platform
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mrvl.errors import MrvlError, SimulationError
from mrvl.mlip_binary import IODesc, Instruction
from mrvl.mlip_isa import Act, DType, EltFunc, Flag, Opcode, PoolFunc, Queue, Section
from mrvl.models import example_inputs, pp_lcnet
from mrvl.sim.program_builder import ProgramBuilder, tile_copy_2d
from mrvl.sim.simulator import Simulator, TimingParams, to_device

F16 = np.float16
RNG = np.random.default_rng(14)
SPECIAL = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, 65520.0, 1e6, -1e6, np.inf,
                    -np.inf, 5.96e-8, 2.98e-8, 8.94e-8, -6.1e-5, 6.1035e-5, 3.0517578e-5,
                    1.00048828125, 1.0009765625, 1.00146484375], dtype=np.float32)


def _f32(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint32).view(np.float32)


@pytest.mark.parametrize("with_nan", [False, True])
def test_host_fp16_conversion_is_numpys_bit_for_bit(with_nan):
    x = np.concatenate([SPECIAL, RNG.standard_normal(1000).astype(np.float32) * 1e3,
                        _f32(list(range(0x33000000, 0x33000000 + 4096, 7)))])
    if with_nan:  # a quiet NaN, a signalling one, a negative one with a payload
        x = np.concatenate([x, _f32([0x7FC00000, 0x7F800001, 0xFFC01234])])
    desc = IODesc("x", x.shape, dtype=DType.FP16)
    got = to_device(x, desc)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(F16)
    assert got.dtype == F16 and got.shape == x.shape
    assert got.view(np.uint16).tolist() == want.view(np.uint16).tolist()


@pytest.mark.parametrize("nan_at", [None, 0, 5, 8, 2047, 2050])
def test_host_fp16_conversion_with_a_nan_anywhere_is_numpys(nan_at):
    """2051 values (more than one 2048-value block, a tail of 3 after the 8-value groups),
    one NaN (a signalling one with a payload) at the start, inside or at the end of a group,
    or none: numpy's bits (the C core gives up at the NaN, numpy converts everything)."""
    x = RNG.standard_normal(2051).astype(np.float32) * 300
    if nan_at is not None:
        x[nan_at] = _f32([0xFF800123])[0]
    got = to_device(x, IODesc("x", x.shape, dtype=DType.FP16))
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(F16)
    assert got.view(np.uint16).tolist() == want.view(np.uint16).tolist()


def _sliced_store_binary(channels: int, token: bool):
    """Compute writes [6, 6, 8] fp16 with ReLU6 (an ELTWISE ADD of x and y); DMA_OUT stores
    channels [0, channels) of every pixel into a [6, 6, channels] output: rows of
    `channels` elements, 8 elements apart in OCM (channel-sliced)."""
    x = (RNG.standard_normal((6, 6, 8)) * 4).astype(F16)
    x[0, 0, :4] = [np.nan, -0.0, np.inf, -np.inf]
    y = (RNG.standard_normal((6, 6, 8)) * 4).astype(F16)
    pb = ProgramBuilder()
    xa, ya = pb.const(0, x), pb.const(0, y)
    oa = pb.alloc(0, x.nbytes)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, a_addr=xa, b_addr=ya, out_addr=oa, rows=36, cols=8, a_row_stride=8,
        b_row_stride=8, b_col_stride=1, out_row_stride=8, func=EltFunc.ADD, act=Act.RELU6,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (6, 6, channels), DType.FP16)  # the flat store is replaced below
    binary = pb.build()
    binary.streams[(Section.MAIN, 0, Queue.DMA_OUT)] = [Instruction.make(
        Opcode.DMA_STORE, dram_addr=binary.outputs[0].dram_offset, ocm_addr=oa, dim0=1,
        dim1=6, dim2=6, dim3=channels, src_dim0=1, src_dim1=6, src_dim2=6, src_dim3=channels,
        dram_stride1=6 * channels, dram_stride2=channels, dram_stride3=1, ocm_stride1=48,
        ocm_stride2=8, ocm_stride3=1, src_dtype=DType.FP16, dst_dtype=DType.FP16,
        pop_prev=token)]
    comp = binary.streams[(Section.MAIN, 0, Queue.COMPUTE)]
    flags = comp[-1].flags | Flag.PUSH_NEXT if token else comp[-1].flags & ~Flag.PUSH_NEXT
    comp[-1] = replace(comp[-1], flags=flags)
    return binary, x, y


@pytest.mark.parametrize("channels", [4, 1, 3])
def test_channel_sliced_store_values(channels):
    binary, x, y = _sliced_store_binary(channels, token=True)
    (out,), _ = Simulator.load(binary.to_bytes()).run([])
    s = x.astype(np.float32) + y.astype(np.float32)
    want = np.where(s > 0, np.minimum(s, 6.0), 0.0).astype(F16)[:, :, :channels]
    assert out.astype(F16).view(np.uint16).tolist() == want.view(np.uint16).tolist()


@pytest.mark.parametrize("channels", [4, 3])
def test_channel_sliced_store_without_token_is_a_dependency_error(channels):
    binary, _, _ = _sliced_store_binary(channels, token=False)
    with pytest.raises(SimulationError, match=r"main/tile 0/dma_out/#0 DMA_STORE reads tile 0 "
                                              r"OCM 0x[0-9a-f]+"):
        Simulator.load(binary.to_bytes()).run([])


def test_pp_lcnet_is_valid_and_runs():
    model = pp_lcnet(batch=1)
    onnx.checker.check_model(model, full_check=True)
    assert pp_lcnet(batch=1).SerializeToString() == model.SerializeToString()
    ops = {n.op_type for n in model.graph.node}
    assert {"HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Gemm"} <= ops
    depthwise = [n for n in model.graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    assert len(depthwise) == 13
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, example_inputs(model))
    assert logits.shape == (1, 1000) and np.isfinite(logits).all()


def _strided_tile_copy_binary(token: bool):
    """Tile 0 computes x + x into rows of 16 fp16 and copies columns [0, 8) of its 6 rows
    to tile 1 (rows 24 elements apart there): 6 equal rows at a constant stride on both
    sides (one batched dependency mark each); a barrier, then tile 1 stores the box."""
    x = (RNG.standard_normal((6, 16)) * 3).astype(F16)
    pb = ProgramBuilder(tiles=2)
    xa = pb.const(0, x)
    ya = pb.alloc(0, x.nbytes)
    pb.alloc(1, 64)
    dst = pb.alloc(1, 6 * 24 * 2)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, a_addr=xa, b_addr=xa, out_addr=ya, rows=6, cols=16, a_row_stride=16,
        b_row_stride=16, b_col_stride=1, out_row_stride=16, func=EltFunc.ADD,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.tile_copy(0, tile_copy_2d(ya, dst, 0b10, 6, 8, DType.FP16, src_row_stride=16,
                                 dst_row_stride=24))
    pb.barrier()
    pb.store(1, dst, "y", (6, 8), DType.FP16)  # made strided below
    binary = pb.build()
    stores = binary.streams[(Section.MAIN, 1, Queue.DMA_OUT)]
    stores[-1] = Instruction.make(
        Opcode.DMA_STORE, dram_addr=binary.outputs[0].dram_offset, ocm_addr=dst, dim0=1,
        dim1=1, dim2=6, dim3=8, src_dim0=1, src_dim1=1, src_dim2=6, src_dim3=8,
        dram_stride2=8, dram_stride3=1, ocm_stride2=24, ocm_stride3=1, src_dtype=DType.FP16,
        dst_dtype=DType.FP16, flags=stores[-1].flags, layer=0)
    if not token:  # the copy no longer waits for the compute that wrote its source
        out = binary.streams[(Section.MAIN, 0, Queue.DMA_OUT)]
        out[0] = replace(out[0], flags=out[0].flags & ~Flag.POP_PREV)
        comp = binary.streams[(Section.MAIN, 0, Queue.COMPUTE)]
        for k, insn in enumerate(comp):
            if insn.opcode == Opcode.NOP and insn.flags & Flag.PUSH_NEXT:
                comp[k] = replace(insn, flags=insn.flags & ~Flag.PUSH_NEXT)
    return binary, x


def test_strided_tile_copy_values():
    binary, x = _strided_tile_copy_binary(token=True)
    (out,), report = Simulator.load(binary.to_bytes()).run([])
    got = out.astype(F16)
    want = (x.astype(np.float32) * 2).astype(F16)[:, :8]
    assert got.view(np.uint16).tolist() == want.view(np.uint16).tolist()
    assert report["tile_copy_bytes"] == 6 * 8 * 2


def test_strided_tile_copy_without_token_is_a_dependency_error():
    binary, _ = _strided_tile_copy_binary(token=False)
    with pytest.raises(SimulationError, match=r"main/tile 0/dma_out/#0 TILE_COPY reads tile 0 "
                                              r"OCM 0x[0-9a-f]+"):
        Simulator.load(binary.to_bytes()).run([])


def test_converted_weights_cache_follows_new_weight_bytes():
    """The fp32 weights converted by one inference are kept for the next; when the weight
    bytes in OCM differ (here: weights that are a model input), the next inference converts
    the new ones.  Both CONVs of an inference read the same weights (the second one hits)."""
    H, W, C, O = 3, 4, 16, 40  # 40 output channels: two 16-channel blocks and a partial one
    x = RNG.standard_normal((H, W, C)).astype(F16)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    wa = pb.input(0, "w", (O, 1, 1, C), DType.FP16)
    outs = [pb.alloc(0, H * W * O * 2) for _ in range(2)]
    for oa in outs:
        pb.compute(0, Instruction.make(
            Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, out_addr=oa, oh=H,
            ow=W, oc=O, out_pix_stride=O, w_addr=wa, kh=1, kw=1, src_dtype=DType.FP16,
            dst_dtype=DType.FP16))
    for k, oa in enumerate(outs):
        pb.store(0, oa, f"y{k}", (H, W, O), DType.FP16)
    sim = Simulator.load(pb.build().to_bytes())
    for _ in range(3):
        w = (RNG.standard_normal((O, 1, 1, C)) * 0.3).astype(F16)
        outputs, _ = sim.run([w.astype(np.float32)])
        want = np.zeros((H, W, O), np.float32)
        for c in range(C):  # the documented order: c ascending, fp32 products and sums
            want += x[:, :, c:c + 1].astype(np.float32) * w[:, 0, 0, c].astype(np.float32)
        for y in outputs:
            assert y.astype(F16).view(np.uint16).tolist() == \
                want.astype(F16).view(np.uint16).tolist()


def _relu_conv_f16(x: np.ndarray, w: np.ndarray, bias: np.ndarray, **padding) -> bytes:
    """A one-CONV program on tile 0: fp16 input x [H, W, C] and weights w [O, kh, kw, C]
    (constants), fp32 bias, ReLU, stride 1, output "y" [H, W, O] fp16 (`padding`: pad_t,
    pad_l keeping H x W)."""
    (H, W, C), (O, kh, kw, _) = x.shape, w.shape
    pb = ProgramBuilder()
    xa, wa, ba = pb.const(0, x), pb.const(0, w), pb.const(0, bias)
    oa = pb.alloc(0, H * W * O * 2)
    pb.compute(0, Instruction.make(
        Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, out_addr=oa, oh=H, ow=W,
        oc=O, out_pix_stride=O, w_addr=wa, bias_addr=ba, kh=kh, kw=kw, act=Act.RELU,
        src_dtype=DType.FP16, dst_dtype=DType.FP16, **padding))
    pb.store(0, oa, "y", (H, W, O), DType.FP16)
    return pb.build().to_bytes()


def test_large_conv_on_threads_gives_the_same_bits():
    """A CONV large enough to be cut into parts on worker threads (5 output blocks: two
    AVX-512 pairs and a single one), on 1, 2 and 3 threads and every kernel path."""
    H, W, C, O = 20, 20, 48, 72
    x = RNG.standard_normal((H, W, C)).astype(F16)
    w = (RNG.standard_normal((O, 3, 3, C)) * 0.2).astype(F16)
    bias = RNG.standard_normal(O).astype(np.float32)
    data = _relu_conv_f16(x, w, bias, pad_t=1, pad_l=1)
    runs = []
    for timing in (TimingParams(), TimingParams(threads=2), TimingParams(threads=3),
                   TimingParams(threads=2, no_avx512=True), TimingParams(portable=True)):
        sim = Simulator.load(data, timing=timing)
        for _ in range(2):
            (y,), report = sim.run([])
            runs.append((y.astype(F16).view(np.uint16).tobytes(), report["cycles"]))
    assert len(set(runs)) == 1
    assert np.count_nonzero(np.frombuffer(runs[0][0], np.uint16)) > H * W * O // 4


@pytest.mark.parametrize("threads", [0, 65, True, 1.5])
def test_simulator_threads_out_of_range_is_an_error(threads):
    with pytest.raises(MrvlError, match="threads"):
        TimingParams(threads=threads)


def test_repeated_runs_give_fresh_equal_layer_reports():
    """The per-layer rows of a run whose stats equal the last run's are copies: equal to a
    freshly computed report, and changing one run's rows leaves the next run's alone."""
    binary, _, _ = _sliced_store_binary(4, token=True)
    data = binary.to_bytes()
    sim = Simulator.load(data)
    _, first = sim.run([])
    first["layers"][0]["cycles"] = -1
    first["layers"][0]["extra"] = True
    _, second = sim.run([])
    _, fresh = Simulator.load(data).run([])
    assert second["layers"] == fresh["layers"] and second["layers"][0]["cycles"] >= 0
    assert second["layers"][0] is not first["layers"][0]


def test_dependency_check_after_two_clean_runs_changes_nothing():
    """Inferences after the first two skip the dependency check: outputs and the whole report
    stay those of a checked run (and of a run with the check off)."""
    binary, x, y = _sliced_store_binary(4, token=True)
    data = binary.to_bytes()
    checked = Simulator.load(data)
    unchecked = Simulator.load(data, timing=TimingParams(check_deps=False))
    runs = [checked.run([]) for _ in range(5)]
    (reference,), ref_report = unchecked.run([])
    for (out,), report in runs:
        assert out.view(np.uint32).tolist() == reference.view(np.uint32).tolist()
        assert report == ref_report


def test_stale_read_passes_the_first_run_and_fails_every_later_one():
    """An in-place ELTWISE over a constant written by `init`: the first inference reads the
    init data (fine) and overwrites it, the second reads the first's result (stale data).
    Two clean runs are needed before the check is skipped; a failed run keeps it on."""
    x = (RNG.standard_normal((6, 6, 8)) * 4).astype(F16)
    y = (RNG.standard_normal((6, 6, 8)) * 4).astype(F16)
    pb = ProgramBuilder()
    xa, ya = pb.const(0, x), pb.const(0, y)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, a_addr=xa, b_addr=ya, out_addr=xa, rows=36, cols=8, a_row_stride=8,
        b_row_stride=8, b_col_stride=1, out_row_stride=8, func=EltFunc.ADD,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, xa, "y", (6, 6, 8), DType.FP16)
    binary = pb.build()
    loads = binary.streams[(Section.MAIN, 0, Queue.DMA_IN)]
    assert len(loads) == 2 and loads[0].flags == 0  # x's load moves to init
    binary.streams[(Section.INIT, 0, Queue.DMA_IN)] = [loads.pop(0)]
    sim = Simulator.load(binary.to_bytes())
    (out,), _ = sim.run([])
    want = (x.astype(np.float32) + y.astype(np.float32)).astype(F16)
    assert out.astype(F16).view(np.uint16).tolist() == want.view(np.uint16).tolist()
    for _ in range(3):
        with pytest.raises(SimulationError, match="stale data written by a previous inference"):
            sim.run([])


def _fp16_specials(shape) -> np.ndarray:
    """Random fp16 values with NaNs (with payloads and signs), infinities, signed zeros,
    subnormals and values whose sums and products overflow."""
    x = (RNG.standard_normal(shape) * 8).astype(F16)
    flat = x.reshape(-1)
    bits = np.array([0x7E00, 0xFE00, 0x7C01, 0x7D55, 0x7C00, 0xFC00, 0x8000, 0x0000, 0x0001,
                     0x83FF, 0x7BFF, 0xFBFF, 0x3C00, 0x4600], dtype=np.uint16).view(F16)
    where = RNG.choice(flat.size, size=min(flat.size, 3 * bits.size), replace=False)
    flat[where] = np.resize(bits, where.size)
    return x


@pytest.mark.parametrize("func", [EltFunc.ADD, EltFunc.SUB, EltFunc.MUL])
@pytest.mark.parametrize("act", [Act.NONE, Act.RELU, Act.RELU6, Act.CLIP])
@pytest.mark.parametrize("layout", ["joined", "strided", "broadcast", "in_place"])
def test_fused_fp16_eltwise_matches_portable_bit_for_bit(func, act, layout):
    """The fused F16C ELTWISE row (16 lanes on AVX-512F hosts, 8 with `no_avx512`) equals
    the portable path (h2f, the operation, the activation, f2h) bit for bit, NaN payloads
    and signs included."""
    rows, cols, stride = 9, 37, 40 if layout == "strided" else 37
    a = _fp16_specials((rows, stride))
    b = _fp16_specials((rows, stride))
    pb = ProgramBuilder()
    aa, ba = pb.const(0, a), pb.const(0, b)
    oa = aa if layout == "in_place" else pb.alloc(0, a.nbytes)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=func, a_addr=aa, b_addr=ba, out_addr=oa, rows=rows, cols=cols,
        a_row_stride=stride, b_row_stride=stride, out_row_stride=stride,
        b_col_stride=0 if layout == "broadcast" else 1, act=act, alpha=-0.75, beta=1.25,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (rows, stride), DType.FP16)
    data = pb.build().to_bytes()
    results = [Simulator.load(data, timing=timing).run_device([])[0][0]
               for timing in (TimingParams(), TimingParams(no_avx512=True),
                              TimingParams(portable=True))]
    wide, fused, portable = (r.view(np.uint16)[:, :cols] for r in results)
    assert fused.tolist() == portable.tolist()
    assert wide.tolist() == portable.tolist()
    if act in (Act.NONE, Act.CLIP):  # NaN passes these (RELU and RELU6 give +0)
        assert np.isnan(portable.view(F16)).any()


@pytest.mark.parametrize("bounds", [(-0.0, 0.0), (-0.0, -0.0), (0.0, 0.0)])
def test_fused_fp16_eltwise_clips_to_signed_zeros(bounds):
    """CLIP bounds of either zero's sign are stored with that sign on every path (the fused
    row's bounds in every lane exactly; 45 columns: 16-, 8-lane and padded blocks)."""
    rows, cols = 3, 45
    rng = np.random.default_rng(45)
    a = rng.choice(np.array([0.0, -0.0, 1.5, -2.0, 0.25, -0.125], F16), size=(rows, cols))
    b = rng.choice(np.array([0.0, -0.0, 3.0, -0.5], F16), size=(rows, cols))
    alpha, beta = (np.float32(v) for v in bounds)
    v = a.astype(np.float32) + b.astype(np.float32)
    want = np.where(v < alpha, alpha, np.where(v > beta, beta, v)).astype(F16).view(np.uint16)
    clipped_to = {0x8000 if np.signbit(bound) else 0x0000 for bound in bounds}
    assert clipped_to <= set(want[v != 0].tolist())
    pb = ProgramBuilder()
    aa, ba = pb.const(0, a), pb.const(0, b)
    oa = pb.alloc(0, a.nbytes)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=EltFunc.ADD, a_addr=aa, b_addr=ba, out_addr=oa, rows=rows,
        cols=cols, a_row_stride=cols, b_row_stride=cols, out_row_stride=cols, b_col_stride=1,
        act=Act.CLIP, alpha=bounds[0], beta=bounds[1], src_dtype=DType.FP16,
        dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (rows, cols), DType.FP16)
    data = pb.build().to_bytes()
    for timing in (TimingParams(), TimingParams(no_avx512=True), TimingParams(portable=True)):
        (out,), _ = Simulator.load(data, timing=timing).run_device([])
        assert out.view(np.uint16).tolist() == want.tolist(), timing


def _maxmin_fold(is_max: bool, values: list[np.ndarray]) -> np.ndarray:
    """The documented max / min folded left over fp32 arrays: a NaN operand gives the other
    one, equal operands (+0, -0) the first; as fp16 bits (a NaN as f2h gives it: 0x7E00 with
    its sign)."""
    acc = values[0].astype(np.float32).reshape(-1).copy()
    for v in values[1:]:
        b = v.astype(np.float32).reshape(-1)
        keep = (acc >= b) if is_max else (acc <= b)
        acc = np.where(np.isnan(b) | (~np.isnan(acc) & keep), acc, b)
    bits = acc.astype(F16).view(np.uint16)
    sign = (acc.view(np.uint32) >> 16).astype(np.uint16) & 0x8000
    return np.where(np.isnan(acc), 0x7E00 | sign, bits).reshape(values[0].shape)


def _zeros_and_nans(shape) -> np.ndarray:
    """fp16 values that are mostly +0 and -0 (the case where max and min pick by position), a
    few NaNs and ordinary values."""
    x = RNG.choice(np.array([0.0, -0.0, 0.0, -0.0, 1.5, -2.0, np.nan], dtype=F16), size=shape)
    x[0, 0, :2] = [0.0, -0.0]
    return x


@pytest.mark.parametrize("func", [EltFunc.MAX, EltFunc.MIN])
def test_eltwise_max_min_bit_for_bit(func):
    a, b = _zeros_and_nans((1, 9, 23)), _zeros_and_nans((1, 9, 23))
    pb = ProgramBuilder()
    aa, ba = pb.const(0, a), pb.const(0, b)
    oa = pb.alloc(0, a.nbytes)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=func, a_addr=aa, b_addr=ba, out_addr=oa, rows=9, cols=23,
        a_row_stride=23, b_row_stride=23, out_row_stride=23, b_col_stride=1,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (9, 23), DType.FP16)
    want = _maxmin_fold(func == EltFunc.MAX, [a[0], b[0]])
    for timing in (TimingParams(), TimingParams(portable=True)):
        (out,), _ = Simulator.load(pb.build().to_bytes(), timing=timing).run_device([])
        assert out.view(np.uint16).tolist() == want.tolist()


def test_max_pool_bit_for_bit():
    """3x3 max pooling, stride 1, no padding: per output, the documented max folded over the
    taps in (i, j) order from -inf."""
    H, W, C = 5, 6, 11
    x = _zeros_and_nans((H, W, C))
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    oa = pb.alloc(0, 3 * 4 * C * 2)
    pb.compute(0, Instruction.make(
        Opcode.POOL, func=PoolFunc.MAX, in_addr=xa, ih=H, iw=W, c=C, in_pix_stride=C,
        out_addr=oa, oh=3, ow=4, out_pix_stride=C, kh=3, kw=3, sh=1, sw=1,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (3, 4, C), DType.FP16)
    want = np.zeros((3, 4, C), np.uint16)
    for r in range(3):
        for s in range(4):
            taps = [np.full(C, -np.inf, np.float32)] + [x[r + i, s + j] for i in range(3)
                                                        for j in range(3)]
            want[r, s] = _maxmin_fold(True, taps)
    (out,), _ = Simulator.load(pb.build().to_bytes()).run_device([])
    assert out.view(np.uint16).tolist() == want.tolist()


def test_pp_lcnet_repeated_inferences_equal_fresh_ones(tmp_path):
    """PP-LCNet compiled (fp16, 8 tiles): five inferences on one handle, each on a new input,
    give the outputs and report of a freshly loaded simulator (the third and later skip the
    dependency check; the converted-operand caches carry over)."""
    from mrvl.driver import api

    model = pp_lcnet(batch=1)
    api.compile(model, tmp_path / "b", num_tiles=8, quantize="fp16")
    (binary,) = sorted((tmp_path / "b").glob("*.bin"))
    data = binary.read_bytes()
    sim = Simulator.load(data)
    shape = sim.inputs[0].shape
    for k in range(5):
        x = np.random.default_rng(k).standard_normal(shape).astype(np.float32)
        (got,), report = sim.run([x])
        (want,), fresh = Simulator.load(data).run([x])
        assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist()
        assert report == fresh


def _two_convs_on_one_weight_block(H, W, C, O):
    """Weights loaded from the DRAM weights region (a const), a CONV, an ELTWISE that doubles
    the first half of the weight bytes in OCM, the same CONV again: (program, x, w, w
    address in DRAM)."""
    w = (RNG.standard_normal((O, 1, 1, C)) * 0.3).astype(F16)
    x = RNG.standard_normal((H, W, C)).astype(F16)
    pb = ProgramBuilder()
    wa, xa = pb.const(0, w), pb.const(0, x)  # w first: at the start of the weights region
    outs = [pb.alloc(0, H * W * O * 2) for _ in range(2)]
    conv = dict(in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, oh=H, ow=W, oc=O,
                out_pix_stride=O, w_addr=wa, kh=1, kw=1, src_dtype=DType.FP16,
                dst_dtype=DType.FP16)
    pb.compute(0, Instruction.make(Opcode.CONV, out_addr=outs[0], **conv))
    half = O * C // 2
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=EltFunc.ADD, a_addr=wa, b_addr=wa, out_addr=wa, rows=1,
        cols=half, a_row_stride=half, b_row_stride=half, out_row_stride=half, b_col_stride=1,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.compute(0, Instruction.make(Opcode.CONV, out_addr=outs[1], **conv))
    for k, oa in enumerate(outs):
        pb.store(0, oa, f"y{k}", (H, W, O), DType.FP16)
    return pb, x, w


def _conv1x1_bits(x, w):
    want = np.zeros(x.shape[:2] + (w.shape[0],), np.float32)
    for c in range(x.shape[2]):  # the documented order: c ascending, fp32 products and sums
        want += x[:, :, c:c + 1].astype(np.float32) * w[:, 0, 0, c].astype(np.float32)
    return want.astype(F16).view(np.uint16).tolist()


def test_converted_weights_cache_sees_ocm_writes_and_host_writes_to_the_weights_region():
    """The cache trusts OCM weights copied from the DRAM weights region in this inference
    without comparing them again, but an OCM write over them (here an ELTWISE) makes the
    next CONV compare and convert the new bytes, and bytes the host writes into the
    weights region between inferences are seen by the next inference (also after runs that
    trusted the cache without comparing: no host DRAM access since the last comparison)."""
    H, W, C, O = 3, 13, 16, 64
    pb, x, w = _two_convs_on_one_weight_block(H, W, C, O)
    data = pb.build().to_bytes()
    for timing in (TimingParams(), TimingParams(portable=True)):
        sim = Simulator.load(data, timing=timing)
        offset = sim.binary.weights_offset
        for scale in (1, 2, 1):
            w_now = (w.astype(np.float32) * scale).astype(F16)
            sim._dram()[offset:offset + w.nbytes] = w_now.tobytes()
            doubled = w_now.copy().reshape(-1)
            doubled[:O * C // 2] = (doubled[:O * C // 2].astype(np.float32) * 2).astype(F16)
            for _ in range(3):
                outputs, _ = sim.run([])
                assert outputs[0].astype(F16).view(np.uint16).tolist() == \
                    _conv1x1_bits(x, w_now)
                assert outputs[1].astype(F16).view(np.uint16).tolist() == \
                    _conv1x1_bits(x, doubled.reshape(w.shape))


def _copy_binary() -> bytes:
    """One input [6, 6, 8] plus -0.0 (every value unchanged) as the output."""
    pb = ProgramBuilder()
    xa = pb.input(0, "x", (6, 6, 8), DType.FP16)
    za = pb.const(0, np.full((6, 6, 8), -0.0, F16))
    oa = pb.alloc(0, 6 * 6 * 8 * 2)
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, a_addr=xa, b_addr=za, out_addr=oa, rows=36, cols=8, a_row_stride=8,
        b_row_stride=8, b_col_stride=1, out_row_stride=8, func=EltFunc.ADD,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (6, 6, 8), DType.FP16)
    return pb.build().to_bytes()


@pytest.mark.parametrize("with_nan", [False, True])
def test_to_device_into_a_buffer_gives_the_same_bits(with_nan):
    x = RNG.standard_normal((6, 6, 8)).astype(np.float32) * 100
    if with_nan:  # the NaN fallback writes the whole buffer too
        x[5, 5, 7] = np.nan
    for desc in (IODesc("x", x.shape, dtype=DType.FP16),
                 IODesc("x", x.shape, dtype=DType.INT8, quantize=True, scale=0.5,
                        zero_point=-3)):
        want = to_device(x, desc)
        buffer = np.full(x.shape, 7, dtype=want.dtype)
        got = to_device(x, desc, out=buffer)
        assert got is buffer
        assert got.tobytes() == want.tobytes()
    with pytest.raises(MrvlError, match="output buffer must be a writeable contiguous"):
        to_device(x, IODesc("x", x.shape, dtype=DType.FP16),
                  out=np.empty(x.shape, np.float32))


def test_input_buffers_are_the_dram_and_run_without_a_copy():
    data = _copy_binary()
    sim = Simulator.load(data)
    (buffer,) = sim.input_buffers()
    assert buffer.dtype == F16 and buffer.shape == (6, 6, 8)
    x = RNG.standard_normal((6, 6, 8)).astype(np.float32)
    to_device(x, sim.inputs[0], out=buffer)
    offset = sim.inputs[0].dram_offset
    assert bytes(sim._dram()[offset:offset + buffer.nbytes]) == buffer.tobytes()
    (got,), report = sim.run_device([buffer])
    (want,), fresh = Simulator.load(data).run_device([x.astype(F16)])
    assert got.tobytes() == want.tobytes() == x.astype(F16).tobytes()
    assert report == fresh
    (again,), _ = sim.run([x * 2])  # `run` converts into the same buffer
    assert again.tolist() == x.astype(F16).astype(np.float32).__mul__(2).tolist()
    sim.close()
    with pytest.raises(SimulationError, match="closed"):
        sim.input_buffers()


def test_nonfinite_outputs_count_with_opposite_infinities():
    sim = Simulator.load(_copy_binary())
    x = np.ones((6, 6, 8), np.float32)
    x[0, 0, :3] = [np.inf, -np.inf, 7e4]  # 7e4 overflows fp16 to inf
    assert sim.run([x])[1]["nonfinite_outputs"] == 3
    x[1, 1, 1] = np.nan
    assert sim.run([x])[1]["nonfinite_outputs"] == 4
    assert sim.run([np.ones_like(x)])[1]["nonfinite_outputs"] == 0


def test_deferred_report_is_its_own_runs_report_whenever_it_is_built():
    """`run_device_deferred` builds the same dict as `run_device`, from its own run's
    statistics and outputs even after later runs reused the C core's buffers."""
    eager = Simulator.load(_copy_binary())
    deferred = Simulator.load(_copy_binary())
    x = np.ones((6, 6, 8), np.float16)
    x[0, 0, :2] = [np.inf, -np.inf]
    first = [x]
    finite = [np.ones((6, 6, 8), np.float16)]
    outputs, expected = eager.run_device(first)
    deferred_outputs, build_first = deferred.run_device_deferred(first)
    _, build_second = deferred.run_device_deferred(finite)
    assert np.array_equal(outputs[0], deferred_outputs[0])
    second = build_second()
    assert build_first() == expected and expected["nonfinite_outputs"] == 2
    assert second["nonfinite_outputs"] == 0
    assert second == {**expected, "nonfinite_outputs": 0}
    assert build_first() is not build_first()  # a fresh dict per call


def test_weights_kept_in_ocm_across_inferences_are_copied_again_where_written():
    """A DMA_LOAD of weights whose bytes are still in OCM from the previous inference copies
    only what was written over since (the core keeps a record of the kept bytes): an ELTWISE
    over the middle of the weights (the record is split in two) and a TILE_COPY over their
    tail each inference; every inference's three CONVs see the right weights, on every kernel
    path, before and after the host writes new bytes into the DRAM weights region."""
    H, W, C, O = 3, 5, 16, 64
    w = (RNG.standard_normal((O, 1, 1, C)) * 0.3).astype(F16)
    x = RNG.standard_normal((H, W, C)).astype(F16)
    z = (RNG.standard_normal(128) * 0.3).astype(F16)
    pb = ProgramBuilder()
    wa, xa, za = pb.const(0, w), pb.const(0, x), pb.const(0, z)
    outs = [pb.alloc(0, H * W * O * 2) for _ in range(3)]
    conv = dict(in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, oh=H, ow=W, oc=O,
                out_pix_stride=O, w_addr=wa, kh=1, kw=1, src_dtype=DType.FP16,
                dst_dtype=DType.FP16)
    pb.compute(0, Instruction.make(Opcode.CONV, out_addr=outs[0], **conv))
    mid = wa + 256 * 2  # elements [256, 512) doubled
    pb.compute(0, Instruction.make(
        Opcode.ELTWISE, func=EltFunc.ADD, a_addr=mid, b_addr=mid, out_addr=mid, rows=1,
        cols=256, a_row_stride=256, b_row_stride=256, out_row_stride=256, b_col_stride=1,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.compute(0, Instruction.make(Opcode.CONV, out_addr=outs[1], **conv))
    pb.tile_copy(0, tile_copy_2d(za, wa + 896 * 2, 0b1, 1, 128, DType.FP16))  # the tail: z
    pb.compute(0, Instruction.make(Opcode.CONV, out_addr=outs[2], **conv))
    for k, oa in enumerate(outs):
        pb.store(0, oa, f"y{k}", (H, W, O), DType.FP16)
    data = pb.build().to_bytes()
    for timing in (TimingParams(), TimingParams(no_avx512=True), TimingParams(portable=True)):
        sim = Simulator.load(data, timing=timing)
        offset = sim.binary.weights_offset
        for scale in (1, 2):
            w_now = (w.astype(np.float32) * scale).astype(F16)
            sim._dram()[offset:offset + w.nbytes] = w_now.tobytes()
            doubled = w_now.copy().reshape(-1)
            doubled[256:512] = (doubled[256:512].astype(np.float32) * 2).astype(F16)
            tail = doubled.copy()
            tail[896:] = z
            wants = [_conv1x1_bits(x, v.reshape(w.shape)) for v in (w_now, doubled, tail)]
            first = None
            for _ in range(4):
                outputs, report = sim.run([])
                assert [y.astype(F16).view(np.uint16).tolist() for y in outputs] == wants
                first = report["cycles"] if first is None else first
                assert report["cycles"] == first


def test_depthwise_weights_cache_follows_new_weight_bytes():
    """The depthwise weights, transposed once into the weights cache, follow new weight bytes
    (weights that are a model input) from one inference to the next, on every kernel path;
    24 channels: one 16-lane and one 8-lane block.  Reference: taps (i, j) in order, fp32
    products and sums, padding taps skipped."""
    H, W, C = 5, 6, 24
    x = RNG.standard_normal((H, W, C)).astype(F16)
    pb = ProgramBuilder()
    xa = pb.const(0, x)
    wa = pb.input(0, "w", (C, 3, 3, 1), DType.FP16)
    oa = pb.alloc(0, H * W * C * 2)
    pb.compute(0, Instruction.make(
        Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, out_addr=oa, oh=H, ow=W,
        oc=C, out_pix_stride=C, w_addr=wa, kh=3, kw=3, pad_t=1, pad_l=1, groups=C,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (H, W, C), DType.FP16)
    data = pb.build().to_bytes()
    padded = np.zeros((H + 2, W + 2, C), np.float32)
    padded[1:-1, 1:-1] = x.astype(np.float32)
    weights = [(RNG.standard_normal((C, 3, 3, 1)) * 0.3).astype(F16) for _ in range(3)]
    for timing in (TimingParams(), TimingParams(no_avx512=True), TimingParams(portable=True)):
        sim = Simulator.load(data, timing=timing)
        for w in weights + weights[:1]:
            (y,), _ = sim.run([w.astype(np.float32)])
            want = np.zeros((H, W, C), np.float32)
            for i in range(3):
                for j in range(3):
                    want = want + padded[i:i + H, j:j + W] * w[:, i, j, 0].astype(np.float32)
            assert y.astype(F16).view(np.uint16).tolist() == \
                want.astype(F16).view(np.uint16).tolist()


@pytest.mark.parametrize("H, W, C, O", [(56, 56, 128, 24), (3, 5, 1040, 16), (4, 9, 20, 40)])
def test_1x1_conv_converting_its_own_pixels_gives_the_same_bits(H, W, C, O):
    """A 1x1 CONV on contiguous pixels with at most two 16-channel blocks converts each
    kernel call's pixels itself (the first shape also on worker threads); more input
    channels than its block holds, or more blocks, take the whole-input conversion: the
    same bits on every path as the documented order (c ascending, fp32 products and sums,
    then bias and ReLU)."""
    x = RNG.standard_normal((H, W, C)).astype(F16)
    w = (RNG.standard_normal((O, 1, 1, C)) * 0.2).astype(F16)
    bias = RNG.standard_normal(O).astype(np.float32)
    data = _relu_conv_f16(x, w, bias)
    want = np.zeros((H, W, O), np.float32)
    for c in range(C):
        want += x[:, :, c:c + 1].astype(np.float32) * w[:, 0, 0, c].astype(np.float32)
    want = np.maximum(want + bias, np.float32(0))
    want_bits = want.astype(F16).view(np.uint16).tobytes()
    for timing in (TimingParams(), TimingParams(threads=2), TimingParams(no_avx512=True),
                   TimingParams(portable=True)):
        sim = Simulator.load(data, timing=timing)
        for _ in range(2):
            (y,), _ = sim.run([])
            assert y.astype(F16).view(np.uint16).tobytes() == want_bits


@pytest.mark.parametrize("act", [Act.NONE, Act.RELU, Act.RELU6, Act.CLIP, Act.LEAKY_RELU,
                                 Act.SIGMOID])
def test_depthwise_activation_store_bit_for_bit(act):
    """The depthwise output row's activation and fp16 store (one fused pass on AVX-512)
    give the bits of the separate passes on every path, NaN signs included (inf - inf and
    inf * 0 meeting an input's NaN): special and non-finite inputs, 20 channels (rows of 140
    values: a tail of 12), strided output pixels too."""
    H, W, C = 4, 7, 20
    with np.errstate(over="ignore"):  # 65520 and 1e6 round to infinity
        values = np.concatenate([SPECIAL, -SPECIAL, [np.nan]]).astype(F16)
    x = RNG.choice(values, size=(H, W, C)).astype(F16)
    w = (RNG.standard_normal((C, 3, 3, 1)) * 0.5).astype(F16)
    bias = RNG.standard_normal(C).astype(np.float32)
    pb = ProgramBuilder()
    xa, wa, ba = pb.const(0, x), pb.const(0, w), pb.const(0, bias)
    outs = []
    for stride in (C, C + 4):  # contiguous output pixels (one row per pass) and strided
        oa = pb.alloc(0, H * W * stride * 2)
        pb.compute(0, Instruction.make(
            Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, out_addr=oa, oh=H,
            ow=W, oc=C, out_pix_stride=stride, w_addr=wa, bias_addr=ba, kh=3, kw=3, pad_t=1,
            pad_l=1, groups=C, act=act, alpha=-0.75, beta=1.25, src_dtype=DType.FP16,
            dst_dtype=DType.FP16))
        outs.append((oa, stride))
    for k, (oa, stride) in enumerate(outs):
        pb.store(0, oa, f"y{k}", (H, W, stride), DType.FP16)
    data = pb.build().to_bytes()
    runs = []
    for timing in (TimingParams(), TimingParams(no_avx512=True), TimingParams(portable=True)):
        outputs, _ = Simulator.load(data, timing=timing).run([])
        bits = [y.astype(F16).view(np.uint16)[:, :, :C] for y in outputs]
        assert bits[0].tobytes() == bits[1].tobytes()
        runs.append(bits[0])
    assert runs[0].tobytes() == runs[1].tobytes() == runs[2].tobytes()
    nan = ((runs[0] & 0x7c00) == 0x7c00) & ((runs[0] & 0x3ff) != 0)
    assert np.count_nonzero(~nan) > H * W * C // 4
    if act in (Act.NONE, Act.CLIP):  # NaNs pass these: both signs
        assert {0x7E00, 0xFE00} <= set(runs[0][nan].tolist())


def _nan_first(a: np.float32, b: np.float32, op) -> np.float32:
    """a op b in fp32 as x86 gives it: where a is NaN, a's NaN; else where b is, b's; an
    invalid operation (inf - inf, inf * 0) gives the default NaN, negative."""
    if np.isnan(a):
        return a
    if np.isnan(b):
        return b
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.float32(op(a, b))
    return _f32([0xFFC00000])[0] if np.isnan(r) else r


def _depthwise_nan_reference(x, w, bias, commute_add=False, commute_mul=False) -> np.ndarray:
    """The documented depthwise fp16 CONV (3x3, pads 1, no activation) element by element:
    acc = acc + x * w over the in-range taps in (i, j) order, then + bias; of two NaN
    operands the first one's NaN (x of x * w, acc of acc + ...); as fp16 bits.  The
    commute_ flags swap the operands (the order a compiler may choose for `a + b`)."""
    H, W, C = x.shape
    out = np.zeros((H, W, C), np.uint16)
    add, mul = (lambda a, b: a + b), (lambda a, b: a * b)
    for r in range(H):
        for s in range(W):
            for c in range(C):
                acc = np.float32(0)
                for i in range(3):
                    for j in range(3):
                        y, z = r + i - 1, s + j - 1
                        if not (0 <= y < H and 0 <= z < W):
                            continue
                        xv, wv = np.float32(x[y, z, c]), np.float32(w[c, i, j, 0])
                        p = _nan_first(wv, xv, mul) if commute_mul else _nan_first(xv, wv, mul)
                        acc = _nan_first(p, acc, add) if commute_add else _nan_first(acc, p, add)
                acc = _nan_first(acc, np.float32(bias[c]), add)
                sign = int(acc.view(np.uint32)) >> 16 & 0x8000
                out[r, s, c] = (0x7E00 | sign) if np.isnan(acc) else acc.astype(F16).view(
                    np.uint16)
    return out


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="x86's NaN rules (the default NaN's sign)")
def test_depthwise_nan_signs_are_the_documented_ones_on_every_path():
    """Depthwise fp16 CONV with infinities, zeros and NaNs of both signs in inputs, weights
    and bias: every path (AVX-512 16 + 8 lanes + 3 single channels, AVX2 8 + 3, portable 4 +
    3; pixels four at a time and one at a time) gives the reference's bits, where two NaNs
    meet the first operand's (x of x * w, the sum of sum + x * w); the inputs are such that
    the commuted orders give other bits."""
    H, W, C = 4, 7, 27
    xs = np.array([0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x0000, 0x8000, 0x3C00, 0xC100, 0x4500,
                   0x3800, 0xBA00, 0x2E66], dtype=np.uint16).view(F16)
    ws = np.array([0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x3C00, 0xBE00, 0x3400,
                   0xB800, 0x3A00, 0xB266, 0x3555], dtype=np.uint16).view(F16)
    rng = np.random.default_rng(27)  # its own: the inputs below are the ones checked
    x = rng.choice(xs, size=(H, W, C), p=[0.02] * 4 + [0.92 / 8] * 8).astype(F16)
    w = rng.choice(ws, size=(C, 3, 3, 1), p=[0.01] * 6 + [0.94 / 7] * 7).astype(F16)
    bias = rng.standard_normal(C).astype(np.float32)
    bias[[1, 9, 20]] = _f32([0x7FC00000, 0xFFC00000, 0xFFC00000])
    want = _depthwise_nan_reference(x, w, bias)
    for commute in ({"commute_add": True}, {"commute_mul": True}):  # the order shows
        assert not np.array_equal(_depthwise_nan_reference(x, w, bias, **commute), want)
    assert np.count_nonzero((want & 0x7C00) != 0x7C00) > H * W * C // 4  # finite values too
    pb = ProgramBuilder()
    xa, wa, ba = pb.const(0, x), pb.const(0, w), pb.const(0, bias)
    oa = pb.alloc(0, H * W * C * 2)
    pb.compute(0, Instruction.make(
        Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, out_addr=oa, oh=H, ow=W,
        oc=C, out_pix_stride=C, w_addr=wa, bias_addr=ba, kh=3, kw=3, pad_t=1, pad_l=1,
        groups=C, src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.store(0, oa, "y", (H, W, C), DType.FP16)
    data = pb.build().to_bytes()
    for timing in (TimingParams(), TimingParams(no_avx512=True), TimingParams(portable=True)):
        (y,), _ = Simulator.load(data, timing=timing).run_device([])
        assert y.view(np.uint16).tolist() == want.tolist(), timing


def test_weights_broadcast_from_kept_bytes_are_copied_again_where_written():
    """Tile 0 loads weights each inference (kept in its OCM across inferences) and copies
    them to tiles 1 and 2 with one TILE_COPY; each of these runs a CONV on them, then tile 1
    doubles part of its copy (an ELTWISE) and gets other kept bytes (z) over its tail, and
    tile 2 gets other kept weights (w2) over all of its copy.  The broadcast of bytes still in a destination from the previous inference may
    skip them, not bytes written over since: every inference's CONVs see the loaded
    weights, copies of the broadcast bytes (a COPY after the CONV) are the loaded weights
    and the bytes at the end are what was written last, on every kernel path, before and
    after the host writes new weights."""
    H, W, C, O = 3, 4, 16, 64
    w = (RNG.standard_normal((O, 1, 1, C)) * 0.3).astype(F16)
    z = (RNG.standard_normal(128) * 0.3).astype(F16)
    w2 = (RNG.standard_normal(w.shape) * 0.3).astype(F16)
    x = RNG.standard_normal((H, W, C)).astype(F16)
    pb = ProgramBuilder(tiles=3)
    wa, za, w2a = pb.const(0, w), pb.const(0, z), pb.const(0, w2)
    for tile in (1, 2):
        pb.alloc(tile, 64 * (tile == 1))  # the copies at the same address on both tiles
    wd = pb.alloc(1, w.nbytes)
    assert pb.alloc(2, w.nbytes) == wd
    pb.tile_copy(0, tile_copy_2d(wa, wd, 0b110, 1, w.size, DType.FP16))
    pb.barrier()
    outs, seen = {}, {}
    for tile in (1, 2):
        xa = pb.const(tile, x)
        outs[tile] = pb.alloc(tile, H * W * O * 2)
        pb.compute(tile, Instruction.make(
            Opcode.CONV, in_addr=xa, ih=H, iw=W, ic=C, in_pix_stride=C, oh=H, ow=W, oc=O,
            out_pix_stride=O, w_addr=wd, kh=1, kw=1, out_addr=outs[tile],
            src_dtype=DType.FP16, dst_dtype=DType.FP16))
        seen[tile] = pb.alloc(tile, w.nbytes)
        pb.compute(tile, Instruction.make(
            Opcode.COPY, in_addr=wd, out_addr=seen[tile], rows=1, cols=w.size,
            in_row_stride=w.size, out_row_stride=w.size, src_dtype=DType.FP16,
            dst_dtype=DType.FP16))
    mid = wd + 256 * 2  # tile 1: elements [256, 512) doubled
    pb.compute(1, Instruction.make(
        Opcode.ELTWISE, func=EltFunc.ADD, a_addr=mid, b_addr=mid, out_addr=mid, rows=1,
        cols=256, a_row_stride=256, b_row_stride=256, out_row_stride=256, b_col_stride=1,
        src_dtype=DType.FP16, dst_dtype=DType.FP16))
    pb.barrier()
    pb.tile_copy(0, tile_copy_2d(za, wd + 896 * 2, 0b010, 1, 128, DType.FP16))  # tile 1's tail
    pb.tile_copy(0, tile_copy_2d(w2a, wd, 0b100, 1, w.size, DType.FP16))  # all of tile 2's
    pb.barrier()
    for tile in (1, 2):
        pb.store(tile, outs[tile], f"y{tile}", (H, W, O), DType.FP16)
        pb.store(tile, seen[tile], f"w{tile}", (w.size,), DType.FP16)
        pb.store(tile, wd, f"end{tile}", (w.size,), DType.FP16)
    data = pb.build().to_bytes()
    for timing in (TimingParams(), TimingParams(no_avx512=True), TimingParams(portable=True)):
        sim = Simulator.load(data, timing=timing)
        offset = sim.binary.weights_offset
        first = None
        for scale in (1, 2):
            w_now = (w.astype(np.float32) * scale).astype(F16)
            sim._dram()[offset:offset + w.nbytes] = w_now.tobytes()
            want = _conv1x1_bits(x, w_now)
            for _ in range(4):
                outputs, report = sim.run([])
                got = [y.astype(F16).view(np.uint16).reshape(-1).tolist() for y in outputs]
                end1 = w_now.copy().reshape(-1)
                end1[256:512] = (end1[256:512].astype(np.float32) * 2).astype(F16)
                end1[896:] = z
                conv = np.array(want, np.uint16)
                bits = [conv, w_now, end1, conv, w_now, w2]
                assert got == [b.view(np.uint16).reshape(-1).tolist() for b in bits]
                first = report["cycles"] if first is None else first
                assert report["cycles"] == first
