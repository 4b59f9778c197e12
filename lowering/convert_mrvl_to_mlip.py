"""`convert-mrvl-to-mlip`: lower an accelerator sub-graph's mrvl layers to mlip blocks.

Input: an accelerator `func.func` (mrvl layers + `graph.constant` weights), annotated by
`mrvl-quantize` and `mrvl-tile-split` (defaults: fp16, 1 tile, when the annotations are
missing). Output: an `mlip.model` op (dialects/mlip.py) holding the DRAM tensors, every
layer's `mlip.buffer`s (unallocated) and its `mlip.layer` with one `mlip.block` of typed
instruction ops per block of work; the function becomes an external declaration. The
lowerings fill the internal builder of mrvl/mlip_plan.py (`Insn`s with symbolic `Ref`s),
which `build_model` turns into ops.

Table-driven: `LOWERINGS` maps each mrvl layer class to one small function. Every layer reads
its inputs from DRAM and writes its output to DRAM (activations live in the DRAM scratch
region between layers); inside a layer each tile streams its share through OCM in blocks
sized so that the layer's buffers (weights once when they fit, else per output-channel
chunk, and two slots of every streamed buffer for double buffering) fit the OCM: a valid
layer never fails for lack of OCM (the only limit: one output channel's weights, or one
pixel row of one channel, must fit in a quarter of the OCM).

Numerics: fp16 (weights fp16, bias fp32, activations fp16) or int8 (per-output-channel
weight steps, int32 bias, per-tensor activation steps and zero points from mrvl-quantize;
a fused sigmoid runs as CONV/GEMM to fp32 then ACT sigmoid with quantisation; a CONV / FC
annotated `mrvl.real_output` writes fp32 real values to its f32 (f16 I/O: f16) output
tensor). Sum2D /
Mul2D / Div2D are ELTWISE ADD / MUL / DIV and Activation is ACT; in int8 their SCALE fields
dequantise the inputs, compute on real values and requantise to the output step in one
instruction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    SymbolRefAttr,
    f64,
    i64,
)
from xdsl.ir import Attribute, Region, SSAValue
from xdsl.ir import Block as IRBlock
from xdsl.passes import ModulePass

from mrvl.dialects import mlip, mrvl
from mrvl.errors import CompileError
from mrvl.machine import DEFAULT_MACHINE, Machine
from mrvl.mlip_plan import Block, DramTensor, Insn, LayerPlan, OcmBuffer, Program, Ref, align
from mrvl.lowering.mrvl_precision import MATRIX_READERS, OUT_DTYPE_ATTR
from mrvl.lowering.mrvl_quantize import (
    INPUT_SCALES_ATTR,
    INPUT_ZPS_ATTR,
    IO_ATTR,
    MODE_ATTR,
    SCALE_ATTR,
    ZP_ATTR,
    constant_value,
    is_real_output,
    weight_scales,
)
from mrvl.lowering.mlip_conv_blocking import (
    ConvGeom,
    _bands,
    _chunk_candidates,
    _fit_rows,
    _fits,
    _ints,
    _segments,
    conv_blocks,
    conv_config,
)
from mrvl.lowering.mrvl_tile_split import (
    balanced_ranges,
    channel_unit,
    choose_split,
    generic_split,
    read_split,
    row_unit,
)
from mrvl import mlip_isa as isa
from mrvl.mlip_isa import Act, DType, EltFunc, Flag, Layout, Opcode, PoolFunc, Queue

IO_DTYPES = {"f16": DType.FP16, "f32": DType.FP32, "i8": DType.INT8}


def _shape4(shape) -> tuple[int, int, int, int]:
    shape = tuple(int(d) for d in shape)
    if len(shape) > 4:
        raise CompileError(f"tensors of rank {len(shape)} > 4 are not supported")
    return (1,) * (4 - len(shape)) + shape  # type: ignore[return-value]


def _strides(shape4) -> tuple[int, int, int, int]:
    d0, d1, d2, d3 = shape4
    return (d1 * d2 * d3, d2 * d3, d3, 1)


def act_fields(op: mrvl.MrvlLayerOp, unit: float | None = None) -> dict:
    """Header fields (act, alpha, beta) of a layer's fused activation.

    `unit`: for int8 CONV / GEMM the activation sees values in output steps, so clip bounds
    are divided by the output step (relu6 becomes a clip at 6 / step)."""
    name = op.activation_str()
    if name == "relu":
        return {"act": Act.RELU}
    if name == "tanh":
        return {"act": Act.TANH}
    if name in ("gelu", "gelu_tanh"):
        if unit is not None:
            raise CompileError(
                f"layer {op.name_str}: a fused {name} in int8 needs the fp32 path")
        return {"act": Act.GELU_ERF if name == "gelu" else Act.GELU_TANH}
    if name == "leaky_relu":
        return {"act": Act.LEAKY_RELU,
                "alpha": op.properties["alpha"].value.data}  # type: ignore[union-attr]
    if name == "silu":
        if unit is not None:
            raise CompileError(
                f"layer {op.name_str}: a fused silu is not supported in int8 here")
        return {"act": Act.SILU}
    if name == "sigmoid":
        if unit is not None:
            raise CompileError(
                f"layer {op.name_str}: a fused sigmoid is not supported in int8; "
                "compile with --quantize fp16")
        return {"act": Act.SIGMOID}
    if name == "clip":
        lo = op.properties["clip_min"].value.data  # type: ignore[union-attr]
        hi = op.properties["clip_max"].value.data  # type: ignore[union-attr]
        # ONNX Clip is min(max(x, lo), hi): hi everywhere when lo > hi. The ACT tests the
        # lower bound first, so give it a lower bound of at most hi.
        lo = min(lo, hi)
        if unit is not None:
            return {"act": Act.CLIP, "alpha": lo / unit, "beta": hi / unit}
        if lo == 0.0 and hi == 6.0:
            return {"act": Act.RELU6}
        return {"act": Act.CLIP, "alpha": lo, "beta": hi}
    return {"act": Act.NONE}


class LayerBuilder:
    """Helpers shared by the lowerings: DRAM tensors, OCM buffers, DMA instructions."""

    def __init__(self, conv: Converter, layer: LayerPlan, op: mrvl.MrvlLayerOp):
        self.conv = conv
        self.prog = conv.prog
        self.layer = layer
        self.op = op
        self.cd = conv.cd
        self.es = isa.DTYPE_SIZE[conv.cd]
        self.page = conv.prog.page_size
        self.budget = conv.prog.ocm_size

    # -- sizes --
    def pages(self, nbytes: int) -> int:
        return align(max(nbytes, 1), self.page)

    def fits(self, buffers: list[tuple[int, int]]) -> bool:
        """Do buffers [(bytes, slots)] fit the OCM?"""
        return _fits(buffers, self.budget, self.page)

    # -- values --
    def tensor(self, value: SSAValue) -> DramTensor:
        return self.prog.tensors[self.conv.tensor_of[value]]

    def scale(self, value: SSAValue) -> float:
        return self.tensor(value).scale

    def const_tensor(self, arr: np.ndarray, dtype: int, suffix: str) -> DramTensor:
        name = f"{self.layer.name}_{suffix}"
        return self.prog.add_tensor(DramTensor(
            name, tuple(arr.shape), dtype, "weights", data=np.ascontiguousarray(arr).tobytes()
        ))

    def buffer(self, name: str, size: int, slots: int = 1, kind: str = "scratch") -> OcmBuffer:
        buf = OcmBuffer(name, size, slots, kind)
        self.layer.buffers[name] = buf
        return buf

    def split(self) -> tuple[str, list[tuple[int, int]]]:
        found = read_split(self.op)
        if found is not None and len(found[1]) == self.prog.num_tiles:
            return found
        out_es = isa.DTYPE_SIZE[DType(self.tensor(self.op.results[0]).dtype)]
        operands = getattr(self.op, "operands", ())
        in_es = (self.tensor(operands[0]).esize
                 if operands and operands[0] in self.conv.tensor_of else self.es)
        return choose_split(self.op, self.prog.num_tiles, self.es, out_es, in_es,
                            self.prog.machine)

    # -- instructions --
    def insn(self, opcode: Opcode, **kw) -> Insn:
        header = {k: kw.pop(k) for k in ("func", "act", "src_dtype", "dst_dtype", "in_zp",
                                         "out_zp", "scale", "alpha", "beta", "flags")
                  if k in kw}
        header.setdefault("src_dtype", self.cd)
        header.setdefault("dst_dtype", self.cd)
        return Insn(Opcode(opcode), kw, layer=self.layer.index, **header)

    def dma(self, opcode: Opcode, tensor: DramTensor, elem: int, dims, dram_strides,
            ocm: Ref, ocm_strides=None, ocm_dtype: int | None = None) -> Insn:
        """A DMA between `tensor` (element offset `elem`, strides in its elements) and an
        OCM ref (dense box unless `ocm_strides`), converting between the tensor's dtype and
        the compute dtype (with the int8 step where one side is integer and the other not).
        """
        root = self.prog.root(tensor.name)
        dims = tuple(int(d) for d in dims)
        if ocm_strides is None:
            ocm_strides = _strides(dims)
        ocm_dtype = self.cd if ocm_dtype is None else ocm_dtype
        dram_dtype = DType(root.dtype)
        load = opcode == Opcode.DMA_LOAD
        src, dst = (dram_dtype, ocm_dtype) if load else (ocm_dtype, dram_dtype)
        kw: dict = {"src_dtype": src, "dst_dtype": dst}
        int_types = (DType.INT8, DType.UINT8, DType.INT16, DType.UINT16, DType.INT32,
                     DType.UINT32)
        if (src in int_types) != (dst in int_types):
            kw["flags"] = int(Flag.SCALE)
            step = tensor.scale
            kw["scale"] = step if src in int_types else 1.0 / step
            kw["in_zp" if src in int_types else "out_zp"] = tensor.zp
        fields = {
            "dram_addr": Ref("dram", root.name, 0, elem * root.esize),
            "ocm_addr": ocm,
        }
        for k in range(4):
            fields[f"dim{k}"] = dims[k]
            fields[f"src_dim{k}"] = dims[k]
            fields[f"dram_stride{k}"] = int(dram_strides[k])
            fields[f"ocm_stride{k}"] = int(ocm_strides[k])
        return self.insn(opcode, **fields, **kw)

    def load_const(self, tensor: DramTensor, ref: Ref, start: int, count: int) -> Insn:
        """1-D load of elements [start, start + count) of a weights tensor (no conversion)."""
        return self.dma(Opcode.DMA_LOAD, tensor, start, (1, 1, 1, count), (0, 0, 0, 1), ref,
                        ocm_dtype=tensor.dtype)


def _quant_weights(b: LayerBuilder, w: np.ndarray, bias: np.ndarray | None, x: SSAValue,
                   y: SSAValue, k: int, real_out: bool = False):
    """(weights, bias, requant scale) arrays in the compute precision; with `real_out` the
    int8 scales give real (fp32) outputs instead of output steps."""
    o = w.shape[0]
    if b.cd != DType.INT8:
        return w.astype("<f2"), (None if bias is None else bias.astype("<f4")), None
    if k > isa.MAX_INT8_K:
        raise CompileError(f"layer {b.layer.name}: int8 reduction of {k} > {isa.MAX_INT8_K}")
    ws = weight_scales(w)
    shape = (o,) + (1,) * (w.ndim - 1)
    wq = np.clip(np.rint(w / ws.reshape(shape)), -127, 127).astype(np.int8)
    s_in, s_out = np.float32(b.scale(x)), np.float32(b.scale(y))
    acc_step = (s_in * ws).astype(np.float32)
    bq = None
    if bias is not None:
        bq = np.clip(np.rint(bias / acc_step), -(2**31), 2**31 - 1).astype("<i4")
    rq = (acc_step if real_out else acc_step / s_out).astype("<f4")
    return wq, bq, rq


def _real_int8(b: LayerBuilder, op: mrvl.MrvlLayerOp) -> bool:
    """int8 CONV / FC annotated `mrvl.real_output`: the matrix engine writes fp32 real
    values (`dst_dtype` FP32, activation on real values) and the store writes them to the
    float output tensor."""
    return b.cd == DType.INT8 and is_real_output(op)


def _sigmoid_int8(b: LayerBuilder, op: mrvl.MrvlLayerOp) -> bool:
    """int8 with a fused sigmoid: the matrix engine writes fp32 real values to an `acc`
    buffer and an ACT instruction applies the sigmoid and quantises (docs/isa.md ACT)."""
    return b.cd == DType.INT8 and op.activation_str() in NONLINEAR_INT8


NONLINEAR_INT8 = {"sigmoid": Act.SIGMOID, "silu": Act.SILU, "gelu": Act.GELU_ERF,
                  "gelu_tanh": Act.GELU_TANH}
"""Fused activations that int8 CONV / GEMM apply to real values (fp32 acc, then ACT)."""


def _act_sigmoid_int8(b: LayerBuilder, yt: DramTensor, slot: int, rows: int, cols: int,
                      act: int = Act.SIGMOID) -> Insn:
    return b.insn(Opcode.ACT, in_addr=Ref("ocm", "acc", slot), out_addr=Ref("ocm", "out", slot),
                  rows=rows, cols=cols, in_row_stride=cols, out_row_stride=cols,
                  out_scale=1.0 / yt.scale, act=act, flags=int(Flag.SCALE),
                  src_dtype=DType.FP32, dst_dtype=DType.INT8, out_zp=yt.zp)


def lower_conv2d(b: LayerBuilder, op: mrvl.Conv2DOp) -> None:
    n_, _, _, c = mrvl.tensor_shape(op.input)
    o, kh, kw, cg = mrvl.tensor_shape(op.weight)
    _, oh, ow, _ = mrvl.tensor_shape(op.output)
    groups = op.groups.value.data
    weights = constant_value(op.weight)
    bias = constant_value(op.bias) if op.bias is not None else None
    if weights is None or (op.bias is not None and bias is None):
        raise CompileError(f"layer {b.layer.name}: weights must be constants")
    sig8, real = _sigmoid_int8(b, op), _real_int8(b, op)
    wq, bq, rq = _quant_weights(b, weights, bias, op.input, op.output, kh * kw * cg,
                                sig8 or real)
    wt = b.const_tensor(wq, DType.INT8 if b.cd == DType.INT8 else DType.FP16, "w")
    bt = None if bq is None else b.const_tensor(
        bq, DType.INT32 if b.cd == DType.INT8 else DType.FP32, "b")
    st = None if rq is None else b.const_tensor(rq, DType.FP32, "s")
    xt, yt = b.tensor(op.input), b.tensor(op.output)
    g = ConvGeom.of(op, b.es, xt.esize, yt.esize, (bt is not None) + (st is not None), sig8)
    # fp16 precision policy: an output the policy keeps fp32 is written fp32 by the CONV
    # itself (a sub-graph output stored f32 is not: it is rounded to fp16 like any other);
    # so is an int8 real output (fp32 real values, mrvl.real_output)
    out_dtype = DType.FP32 if real else _policy_dtype(b.cd, op)
    if out_dtype != b.cd:
        g = replace(g, wide_out=True)
    kind, ranges = b.split()
    work = _segments(kind, ranges, n_, oh, o)
    if not any(work):
        return
    config = conv_config(g, work, b.fits)
    if config is None:
        raise CompileError(
            f"layer {b.layer.name}: one output pixel of one channel group does not fit "
            f"the OCM of {b.budget} bytes in pages of {b.page} bytes (a smaller --page-size "
            f"or a larger --ocm-size helps)"
        )
    oc_chunk, rb, cb = config
    max_oc = max(o1 - o0 for segs in work for _, _, _, o0, o1 in segs)
    wslots = 1 if oc_chunk >= max_oc else 2
    wsize = kh * kw * cg * wt.esize
    b.buffer("w", oc_chunk * wsize, wslots, "weights")
    bbuf = None if bt is None else b.buffer("bias", oc_chunk * 4, wslots, "weights")
    sbuf = None if st is None else b.buffer("scale", oc_chunk * 4, wslots, "weights")
    b.buffer("in", g.in_rows(rb) * g.in_cols(cb) * g.in_ch(oc_chunk) * b.es, 2)
    b.buffer("out", rb * cb * oc_chunk * isa.DTYPE_SIZE[out_dtype], 2)
    if sig8:
        b.buffer("acc", rb * cb * oc_chunk * 4, 2)
        act = {"act": Act.NONE}
    else:
        act = act_fields(op, yt.scale if b.cd == DType.INT8 and not real else None)
    x_strides = (g.src_h * g.src_w * c, g.ys * g.src_w * c, g.xs * c, 1)
    y_strides = (oh * ow * o, ow * o, o, 1)
    index = {}
    for cb_ in conv_blocks(g, work, config):
        blk = Block(cb_.tile)
        slot = index.get(cb_.tile, 0) % 2
        index[cb_.tile] = index.get(cb_.tile, 0) + 1
        wslot = cb_.wslot
        count = cb_.oc1 - cb_.oc0
        if cb_.load_w:
            blk.loads.append(b.load_const(wt, Ref("ocm", "w", wslot), cb_.oc0 * kh * kw * cg,
                                          count * kh * kw * cg))
            if bbuf is not None:
                blk.loads.append(b.load_const(bt, Ref("ocm", "bias", wslot), cb_.oc0, count))
            if sbuf is not None:
                blk.loads.append(b.load_const(st, Ref("ocm", "scale", wslot), cb_.oc0, count))
        y0, y1, x0, x1, icc = cb_.y0, cb_.y1, cb_.x0, cb_.x1, cb_.icc
        blk.loads.append(b.dma(
            Opcode.DMA_LOAD, xt, ((cb_.n * g.src_h + y0 * g.ys) * g.src_w + x0 * g.xs) * c
            + cb_.ic0,
            (1, y1 - y0, x1 - x0, icc), x_strides, Ref("ocm", "in", slot)))
        conv = b.insn(
            Opcode.CONV, in_addr=Ref("ocm", "in", slot), ih=y1 - y0,
            iw=x1 - x0, ic=icc, in_pix_stride=icc,
            out_addr=Ref("ocm", "acc" if sig8 else "out", slot),
            oh=cb_.r1 - cb_.r0, ow=cb_.c1 - cb_.c0,
            oc=count, out_pix_stride=count,
            w_addr=Ref("ocm", "w", wslot),
            bias_addr=(Ref("ocm", "bias", wslot) if bbuf is not None else isa.ADDR_NONE),
            scale_addr=(Ref("ocm", "scale", wslot) if sbuf is not None else isa.ADDR_NONE),
            kh=g.kh, kw=g.kw, sh=g.sh, sw=g.sw, pad_t=g.pt + y0 - cb_.r0 * g.sh,
            pad_l=g.pl + x0 - cb_.c0 * g.sw, dh=g.dh, dw=g.dw,
            groups=1 if groups == 1 else count // g.ocg, **act)
        if b.cd == DType.INT8:
            conv.in_zp, conv.out_zp = xt.zp, 0 if real else yt.zp
        if out_dtype != b.cd:
            conv.dst_dtype = out_dtype
        blk.computes.append(conv)
        if sig8:
            conv.dst_dtype, conv.out_zp = DType.FP32, 0
            blk.computes.append(_act_sigmoid_int8(
                b, yt, slot, (cb_.r1 - cb_.r0) * (cb_.c1 - cb_.c0), count,
                NONLINEAR_INT8[op.activation_str()]))
        blk.stores.append(b.dma(
            Opcode.DMA_STORE, yt, ((cb_.n * oh + cb_.r0) * ow + cb_.c0) * o + cb_.oc0,
            (1, cb_.r1 - cb_.r0, cb_.c1 - cb_.c0, count), y_strides, Ref("ocm", "out", slot),
            ocm_dtype=out_dtype))
        b.layer.blocks.append(blk)
    b.layer.split = kind


# ---- FC -----------------------------------------------------------------------------------
def lower_fc(b: LayerBuilder, op: mrvl.FCOp) -> None:
    xs = mrvl.tensor_shape(op.input)
    n, o = mrvl.tensor_shape(op.output)
    k = math.prod(xs[1:])
    weights = constant_value(op.weight)
    bias = constant_value(op.bias) if op.bias is not None else None
    if weights is None or (op.bias is not None and bias is None):
        raise CompileError(f"layer {b.layer.name}: weights must be constants")
    if op.weights_need_transform is not None:
        _, hh, ww, cc = xs
        weights = weights.reshape(o, cc, hh, ww).transpose(0, 2, 3, 1).reshape(o, k)
    sig8, real = _sigmoid_int8(b, op), _real_int8(b, op)
    wq, bq, rq = _quant_weights(b, weights, bias, op.input, op.output, k, sig8 or real)
    wt = b.const_tensor(wq, DType.INT8 if b.cd == DType.INT8 else DType.FP16, "w")
    bt = None if bq is None else b.const_tensor(
        bq, DType.INT32 if b.cd == DType.INT8 else DType.FP32, "b")
    st = None if rq is None else b.const_tensor(rq, DType.FP32, "s")
    xt, yt = b.tensor(op.input), b.tensor(op.output)
    es = b.es
    # fp16 precision policy: as in lower_conv, by the layer's attribute, not the tensor's
    # dtype; an int8 real output is fp32 real values
    out_dtype = DType.FP32 if real else _policy_dtype(b.cd, op)
    out_es = isa.DTYPE_SIZE[out_dtype]
    kind, ranges = b.split()
    if kind != "channels":
        ranges = balanced_ranges(o, b.prog.num_tiles, channel_unit(yt.esize))
    row_bands = _fc_row_bands(b, n, k, o, xt.esize, wt.esize, yt.esize)
    if row_bands is not None:
        groups = b.prog.num_tiles // len(set(row_bands))
        channels = balanced_ranges(o, groups, channel_unit(yt.esize))
        ranges = [channels[t % groups] for t in range(b.prog.num_tiles)]
    else:
        row_bands = [(0, n)] * len(ranges)
    max_oc = max(e - s for s, e in ranges)
    if max_oc == 0:
        return
    n = max(r1 - r0 for r0, r1 in row_bands)  # rows of x one tile holds
    fixed_x = [(n * k * es, 1)]
    config = None
    for oc_chunk in _chunk_candidates(max_oc, min(max_oc, 16)):
        slots = 1 if oc_chunk >= max_oc else 2
        extra = [(oc_chunk * 4, slots)] * ((bt is not None) + (st is not None))
        if b.fits(fixed_x + [(oc_chunk * k * wt.esize, slots), (n * oc_chunk * out_es, 2),
                             (n * oc_chunk * 4 * sig8, 2)] + extra):
            config = oc_chunk
            break
    if config is None:
        raise CompileError(
            f"layer {b.layer.name}: the FC input ({n}x{k}) and one output's weights do not "
            f"fit the OCM of {b.budget} bytes in pages of {b.page} bytes (a smaller "
            f"--page-size or a larger --ocm-size helps)"
        )
    oc_chunk = config
    wslots = 1 if oc_chunk >= max_oc else 2
    b.buffer("x", n * k * es, 1)
    b.buffer("w", oc_chunk * k * wt.esize, wslots, "weights")
    if bt is not None:
        b.buffer("bias", oc_chunk * 4, wslots, "weights")
    if st is not None:
        b.buffer("scale", oc_chunk * 4, wslots, "weights")
    b.buffer("out", n * oc_chunk * out_es, 2)
    if sig8:
        b.buffer("acc", n * oc_chunk * 4, 2)
        act = {"act": Act.NONE}
    else:
        act = act_fields(op, yt.scale if b.cd == DType.INT8 and not real else None)
    for tile, (o_lo, o_hi) in enumerate(ranges):
        r0, r1 = row_bands[tile]
        n = r1 - r0
        if o_hi <= o_lo or n <= 0:
            continue
        for index, (oc0, oc1) in enumerate(_bands(o_lo, o_hi, oc_chunk)):
            blk = Block(tile)
            slot = index % 2
            wslot = index % wslots
            count = oc1 - oc0
            if index == 0:
                blk.loads.append(b.dma(Opcode.DMA_LOAD, xt, r0 * k, (1, 1, n, k), (0, 0, k, 1),
                                       Ref("ocm", "x", 0)))
            if index == 0 or wslots == 2:
                blk.loads.append(b.load_const(wt, Ref("ocm", "w", wslot), oc0 * k, count * k))
                if bt is not None:
                    blk.loads.append(b.load_const(bt, Ref("ocm", "bias", wslot), oc0, count))
                if st is not None:
                    blk.loads.append(b.load_const(st, Ref("ocm", "scale", wslot), oc0, count))
            gemm = b.insn(
                Opcode.GEMM, in_addr=Ref("ocm", "x", 0), m=n, k=k, in_row_stride=k,
                out_addr=Ref("ocm", "acc" if sig8 else "out", slot), n=count,
                out_row_stride=count,
                w_addr=Ref("ocm", "w", wslot),
                bias_addr=Ref("ocm", "bias", wslot) if bt is not None else isa.ADDR_NONE,
                scale_addr=Ref("ocm", "scale", wslot) if st is not None else isa.ADDR_NONE,
                in_zp=xt.zp if b.cd == DType.INT8 else 0,
                out_zp=yt.zp if b.cd == DType.INT8 and not (sig8 or real) else 0, **act)
            if out_dtype != b.cd:
                gemm.dst_dtype = out_dtype
            blk.computes.append(gemm)
            if sig8:
                gemm.dst_dtype = DType.FP32
                blk.computes.append(_act_sigmoid_int8(
                    b, yt, slot, n, count, NONLINEAR_INT8[op.activation_str()]))
            blk.stores.append(b.dma(Opcode.DMA_STORE, yt, r0 * o + oc0, (1, 1, n, count),
                                    (0, 0, o, 1), Ref("ocm", "out", slot),
                                    ocm_dtype=out_dtype))
            b.layer.blocks.append(blk)
    b.layer.split = "channels" if len(set(row_bands)) == 1 else "grid"


FC_GRID_MIN_ROWS = 32
"""FCs with at least this many input rows (a transformer's Linear over [B*S, D]; never a
CNN's classifier, whose rows are the batch) may split rows as well as output channels."""


def _fc_row_bands(b: LayerBuilder, n: int, k: int, o: int, x_es: int, w_es: int,
                  y_es: int) -> list[tuple[int, int]] | None:
    """Per tile, the rows of x it computes, for a grid of R row bands x T/R channel groups
    (tile t: band t // (T/R)), R chosen to minimise the DRAM bytes read (x once per channel
    group, the weights once per row band); None for the plain channel split (R = 1).
    Row boundaries are granule-aligned when a row of y is whole granules."""
    tiles = b.prog.num_tiles
    if n < FC_GRID_MIN_ROWS or tiles == 1 or (o * y_es) % 16:
        return None
    best_bands, best_bytes = 1, n * k * x_es * tiles + o * k * w_es
    for bands in range(2, tiles + 1):
        if tiles % bands or n < 16 * bands:
            continue
        traffic = n * k * x_es * (tiles // bands) + o * k * w_es * bands
        if traffic < best_bytes:
            best_bands, best_bytes = bands, traffic
    if best_bands == 1:
        return None
    rows = balanced_ranges(n, best_bands, 1)
    groups = tiles // best_bands
    return [rows[t // groups] for t in range(tiles)]


# ---- pools --------------------------------------------------------------------------------
def _lower_pool(b: LayerBuilder, op, kernel, strides, pads, func: int, count_pad: bool) -> None:
    n_, h, w, c = mrvl.tensor_shape(op.operands[0])
    _, oh, ow, _ = mrvl.tensor_shape(op.results[0])
    kh, kw = kernel
    sh, sw = strides
    pt, pl = pads[0], pads[1]
    xt, yt = b.tensor(op.operands[0]), b.tensor(op.results[0])
    es = b.es
    kind, ranges = b.split()
    work = _segments(kind, ranges, n_, oh, c)
    max_rows = max((r1 - r0 for segs in work for _, r0, r1, _, _ in segs), default=0)
    max_c = max((c1 - c0 for segs in work for _, _, _, c0, c1 in segs), default=0)
    if max_rows == 0 or max_c == 0:
        return

    def in_rows(rows: int) -> int:
        return min(h, (rows - 1) * sh + kh)

    config = None
    for cc in _chunk_candidates(max_c, min(max_c, 16)):
        def per_rows(rows, cc=cc):
            return [(in_rows(rows) * w * cc * es, 2), (rows * ow * cc * es, 2)]

        rows = _fit_rows(b.fits, [], per_rows, max_rows)
        if rows:
            config = (cc, rows)
            break
    if config is None:
        raise CompileError(
            f"layer {b.layer.name}: one pooling window row does not fit the OCM")
    cc, rb = config
    b.buffer("in", in_rows(rb) * w * cc * es, 2)
    b.buffer("out", rb * ow * cc * es, 2)
    flags = int(Flag.COUNT_PAD) if count_pad else 0
    zp_in, zp_out = (xt.zp, yt.zp) if b.cd == DType.INT8 else (0, 0)
    requant = {}
    if b.cd == DType.INT8 and yt.scale != xt.scale:  # an average pool with its own step
        flags |= int(Flag.SCALE)
        requant = {"scale": float(np.float32(xt.scale / yt.scale))}
    x_strides = (h * w * c, w * c, c, 1)
    y_strides = (oh * ow * c, ow * c, c, 1)
    for tile, segs in enumerate(work):
        index = 0
        for n, r_lo, r_hi, c_lo, c_hi in segs:
            for ch0, ch1 in _bands(c_lo, c_hi, cc):
                for r0, r1 in _bands(r_lo, r_hi, rb):
                    blk = Block(tile)
                    slot = index % 2
                    y0 = min(h - 1, max(0, r0 * sh - pt))
                    y1 = max(y0 + 1, min(h, (r1 - 1) * sh - pt + kh))
                    count = ch1 - ch0
                    blk.loads.append(b.dma(
                        Opcode.DMA_LOAD, xt, ((n * h + y0) * w) * c + ch0,
                        (1, y1 - y0, w, count), x_strides, Ref("ocm", "in", slot)))
                    blk.computes.append(b.insn(
                        Opcode.POOL, func=func, flags=flags, in_addr=Ref("ocm", "in", slot),
                        ih=y1 - y0, iw=w, c=count, in_pix_stride=count,
                        out_addr=Ref("ocm", "out", slot), oh=r1 - r0, ow=ow,
                        out_pix_stride=count, kh=kh, kw=kw, sh=sh, sw=sw,
                        pad_t=pt + y0 - r0 * sh, pad_l=pl, in_zp=zp_in, out_zp=zp_out,
                        **requant))
                    blk.stores.append(b.dma(
                        Opcode.DMA_STORE, yt, ((n * oh + r0) * ow) * c + ch0,
                        (1, r1 - r0, ow, count), y_strides, Ref("ocm", "out", slot)))
                    b.layer.blocks.append(blk)
                    index += 1
    b.layer.split = kind


def lower_maxpool2d(b: LayerBuilder, op: mrvl.Maxpool2DOp) -> None:
    _lower_pool(b, op, _ints(op.kernel_shape), _ints(op.strides), _ints(op.pads),
                PoolFunc.MAX, False)


def lower_avgpool2d(b: LayerBuilder, op: mrvl.Avgpool2DOp) -> None:
    _lower_pool(b, op, _ints(op.kernel_shape), _ints(op.strides), _ints(op.pads),
                PoolFunc.AVG, bool(op.count_include_pad.value.data))


def _lower_global_pool(b: LayerBuilder, op, func: int) -> None:
    _, h, w, _ = mrvl.tensor_shape(op.operands[0])
    _lower_pool(b, op, (h, w), (1, 1), (0, 0, 0, 0), func, False)


def lower_global_avgpool2d(b: LayerBuilder, op: mrvl.GlobalAvgpool2DOp) -> None:
    _lower_global_pool(b, op, PoolFunc.AVG)


def lower_global_maxpool2d(b: LayerBuilder, op: mrvl.GlobalMaxpool2DOp) -> None:
    _lower_global_pool(b, op, PoolFunc.MAX)


# ---- element-wise style layers (4-D boxes) ------------------------------------------------
def _boxes(b: LayerBuilder, shape4, kind: str, ranges, per_elems) -> list[tuple[int, list]]:
    """Per tile, the boxes [(i0, (a1, b1), (a2, b2), (a3, b3))] covering its share of a
    4-D iteration space, each small enough that `per_elems(count)` buffers fit the OCM."""
    d0, d1, d2, d3 = shape4
    out = []
    for tile, (lo, hi) in enumerate(ranges):
        if hi <= lo:
            continue
        if kind == "rows":  # rows of all images, image-major
            segs = [(i0, (max(lo - i0 * d1, 0), min(hi - i0 * d1, d1))) for i0 in range(d0)]
            segs = [(i0, r1) for i0, r1 in segs if r1[1] > r1[0]]
            r3 = (0, d3)
        else:
            segs = [(i0, (0, d1)) for i0 in range(d0)]
            r3 = (lo, hi)
        n3 = r3[1] - r3[0]
        n1 = max(r1[1] - r1[0] for _, r1 in segs)
        boxes = []
        rows = _fit_rows(b.fits, [], lambda k: per_elems(k * d2 * n3), n1)
        if rows:
            for i0, r1 in segs:
                for band in _bands(r1[0], r1[1], rows):
                    boxes.append((i0, band, (0, d2), r3))
        else:
            cols = _fit_rows(b.fits, [], lambda k: per_elems(k * n3), d2)
            chans = n3 if cols else _fit_rows(b.fits, [], per_elems, n3)
            if not chans:
                raise CompileError(f"layer {b.layer.name}: one element does not fit the OCM")
            cols = max(cols, 1)
            for i0, r1 in segs:
                for a1 in range(r1[0], r1[1]):
                    for band2 in _bands(0, d2, cols):
                        for band3 in _bands(r3[0], r3[1], chans):
                            boxes.append((i0, (a1, a1 + 1), band2, band3))
        out.append((tile, boxes))
    return out


def _box_dims(box) -> tuple[int, int, int, int]:
    _, (a1, b1), (a2, b2), (a3, b3) = box
    return (1, b1 - a1, b2 - a2, b3 - a3)


def _box_offset(box, strides) -> int:
    i0, (a1, _), (a2, _), (a3, _) = box
    return i0 * strides[0] + a1 * strides[1] + a2 * strides[2] + a3 * strides[3]


def _broadcast_strides(shape, out4) -> tuple[int, int, int, int]:
    s4 = _shape4(shape)
    st = _strides(s4)
    return tuple(0 if s4[k] == 1 and out4[k] != 1 else st[k] for k in range(4))  # type: ignore[return-value]


def lower_sum(b: LayerBuilder, op: mrvl.Sum2DOp) -> None:
    _lower_eltwise(b, op, EltFunc.ADD)


def lower_mul(b: LayerBuilder, op: mrvl.Mul2DOp) -> None:
    """ELTWISE MUL; in int8 the SCALE fields requantise exactly as docs/isa.md says:
    `((qa - zp_a) * s_a) * ((qb - zp_b) * s_b) / s_out + zp_out`."""
    _lower_eltwise(b, op, EltFunc.MUL)


def lower_div(b: LayerBuilder, op: mrvl.Div2DOp) -> None:
    """ELTWISE DIV (fp32 IEEE division); in int8 the SCALE fields dequantise both operands
    and requantise the quotient, as for MUL."""
    _lower_eltwise(b, op, EltFunc.DIV)


def _lower_eltwise(b: LayerBuilder, op: mrvl.Sum2DOp | mrvl.Mul2DOp | mrvl.Div2DOp,
                   elt_func: int) -> None:
    """Two operands (data or constant), broadcast by stride-0 DMA loads, one ELTWISE per
    block of the output's 4-D box space."""
    out_shape = mrvl.tensor_shape(op.output)
    out4 = _shape4(out_shape)
    es = b.es
    kind, ranges = b.split()
    if kind not in ("rows", "channels"):
        kind, ranges = generic_split(out_shape, b.prog.num_tiles, b.tensor(op.output).esize)
    operands = []
    for k, value in enumerate((op.lhs, op.rhs)):
        if value in b.conv.tensor_of:
            operands.append(b.tensor(value))
            continue
        arr = constant_value(value)
        if arr is None:
            raise CompileError(f"layer {b.layer.name}: operand {k} is neither data nor constant")
        if b.cd == DType.INT8:
            step = float(np.max(np.abs(arr))) / 127.0 or 1.0
            t = b.const_tensor(np.clip(np.rint(arr / step), -127, 127).astype(np.int8),
                               DType.INT8, f"c{k}")
            t.scale = step
        elif b.cd == DType.FP32:
            t = b.const_tensor(arr.astype("<f4"), DType.FP32, f"c{k}")
        else:
            t = b.const_tensor(arr.astype("<f2"), DType.FP16, f"c{k}")
        operands.append(t)
    b.buffer("a", 1, 2)
    b.buffer("b", 1, 2)
    b.buffer("out", 1, 2)
    plans = _boxes(b, out4, kind, ranges, lambda count: [(count * es, 6)])
    size = max((math.prod(_box_dims(box)) for _, boxes in plans for box in boxes), default=1)
    for name in ("a", "b", "out"):
        b.layer.buffers[name].size = size * es
    act = act_fields(op)
    yt = b.tensor(op.output)
    y_strides = _strides(out4)
    a_strides = _broadcast_strides(operands[0].shape, out4)
    b_strides = _broadcast_strides(operands[1].shape, out4)
    extra: dict = {}
    if b.cd == DType.INT8:
        extra = {"flags": int(Flag.SCALE), "a_scale": operands[0].scale,
                 "b_scale": operands[1].scale, "out_scale": 1.0 / yt.scale,
                 "in_zp": operands[0].zp, "b_zp": operands[1].zp, "out_zp": yt.zp}
    for tile, boxes in plans:
        for index, box in enumerate(boxes):
            blk = Block(tile)
            slot = index % 2
            dims = _box_dims(box)
            rows, cols = dims[1] * dims[2], dims[3]
            blk.loads.append(b.dma(Opcode.DMA_LOAD, operands[0], _box_offset(box, a_strides),
                                   dims, a_strides, Ref("ocm", "a", slot)))
            blk.loads.append(b.dma(Opcode.DMA_LOAD, operands[1], _box_offset(box, b_strides),
                                   dims, b_strides, Ref("ocm", "b", slot)))
            blk.computes.append(b.insn(
                Opcode.ELTWISE, func=elt_func, a_addr=Ref("ocm", "a", slot),
                b_addr=Ref("ocm", "b", slot), out_addr=Ref("ocm", "out", slot), rows=rows,
                cols=cols, a_row_stride=cols, b_row_stride=cols, out_row_stride=cols,
                b_col_stride=1, **act, **extra))
            blk.stores.append(b.dma(Opcode.DMA_STORE, yt, _box_offset(box, y_strides), dims,
                                    y_strides, Ref("ocm", "out", slot)))
            b.layer.blocks.append(blk)
    b.layer.split = kind


def lower_activation(b: LayerBuilder, op: mrvl.ActivationOp) -> None:
    """One ACT per block (load -> ACT -> store); int8 dequantises, applies the activation
    to real values and requantises to the output step in the same instruction."""
    out_shape = mrvl.tensor_shape(op.output)
    out4 = _shape4(out_shape)
    es = b.es
    kind, ranges = b.split()
    if kind not in ("rows", "channels"):
        kind, ranges = generic_split(out_shape, b.prog.num_tiles, b.tensor(op.output).esize)
    xt, yt = b.tensor(op.input), b.tensor(op.output)
    b.buffer("in", 1, 2)
    b.buffer("out", 1, 2)
    plans = _boxes(b, out4, kind, ranges, lambda count: [(count * es, 4)])
    size = max((math.prod(_box_dims(box)) for _, boxes in plans for box in boxes), default=1)
    for name in ("in", "out"):
        b.layer.buffers[name].size = size * es
    act = act_fields(op)
    extra: dict = {}
    if b.cd == DType.INT8:
        extra = {"flags": int(Flag.SCALE), "scale": xt.scale, "in_zp": xt.zp,
                 "out_scale": 1.0 / yt.scale, "out_zp": yt.zp}
    strides = _strides(out4)
    for tile, boxes in plans:
        for index, box in enumerate(boxes):
            blk = Block(tile)
            slot = index % 2
            dims = _box_dims(box)
            rows, cols = dims[1] * dims[2], dims[3]
            blk.loads.append(b.dma(Opcode.DMA_LOAD, xt, _box_offset(box, strides), dims,
                                   strides, Ref("ocm", "in", slot)))
            blk.computes.append(b.insn(
                Opcode.ACT, in_addr=Ref("ocm", "in", slot), out_addr=Ref("ocm", "out", slot),
                rows=rows, cols=cols, in_row_stride=cols, out_row_stride=cols, **act, **extra))
            blk.stores.append(b.dma(Opcode.DMA_STORE, yt, _box_offset(box, strides), dims,
                                    strides, Ref("ocm", "out", slot)))
            b.layer.blocks.append(blk)
    b.layer.split = kind


def _copy_layer(b: LayerBuilder, src: DramTensor, src_strides, src_base: int, dst: DramTensor,
                dst_strides, dst_base: int, shape4, kind: str, ranges, first_index: int = 0,
                rescale: float | None = None) -> int:
    """Copy a 4-D box space from `src` (element strides) to `dst` through OCM:
    load -> COPY (CONVERT with a new int8 step) -> store. Returns the blocks emitted."""
    es = b.es
    plans = _boxes(b, shape4, kind, ranges, lambda count: [(count * es, 4)])
    size = max((math.prod(_box_dims(box)) for _, boxes in plans for box in boxes), default=1)
    for name in ("in", "out"):
        buf = b.layer.buffers.get(name) or b.buffer(name, 1, 2)
        buf.size = max(buf.size, size * es)
    emitted = 0
    for tile, boxes in plans:
        index = first_index + sum(1 for blk in b.layer.blocks if blk.tile == tile)
        for box in boxes:
            blk = Block(tile)
            slot = index % 2
            dims = _box_dims(box)
            rows, cols = dims[1] * dims[2], dims[3]
            blk.loads.append(b.dma(Opcode.DMA_LOAD, src, src_base + _box_offset(box, src_strides),
                                   dims, src_strides, Ref("ocm", "in", slot)))
            fields = dict(in_addr=Ref("ocm", "in", slot), out_addr=Ref("ocm", "out", slot),
                          rows=rows, cols=cols, in_row_stride=cols, out_row_stride=cols)
            if rescale is not None and (rescale != 1.0 or src.zp != dst.zp):
                blk.computes.append(b.insn(Opcode.CONVERT, flags=int(Flag.SCALE),
                                           scale=rescale, in_zp=src.zp, out_zp=dst.zp,
                                           **fields))
            else:
                blk.computes.append(b.insn(Opcode.COPY, **fields))
            blk.stores.append(b.dma(Opcode.DMA_STORE, dst, dst_base + _box_offset(box, dst_strides),
                                    dims, dst_strides, Ref("ocm", "out", slot)))
            b.layer.blocks.append(blk)
            index += 1
            emitted += 1
    return emitted


def lower_concat(b: LayerBuilder, op: mrvl.ConcatOp) -> None:
    out_shape = mrvl.tensor_shape(op.output)
    rank = len(out_shape)
    axis = op.axis.value.data % rank + (4 - rank)
    out4 = _shape4(out_shape)
    yt = b.tensor(op.output)
    y_strides = _strides(out4)
    offset = 0
    row_bytes = out4[2] * out4[3] * yt.esize
    for k, value in enumerate(op.inputs):
        xt = b.tensor(value) if value in b.conv.tensor_of else _concat_const(b, value, yt, k)
        in4 = _shape4(mrvl.tensor_shape(value))
        kind, ranges = "rows", balanced_ranges(in4[0] * in4[1], b.prog.num_tiles,
                                               row_unit(row_bytes))
        if axis <= 1 and in4[0] * in4[1] > 1:
            # concatenating images or rows: the output offsets move the granule boundaries
            rows = in4[0] * in4[1]
            ranges = [(0, rows)] + [(rows, rows)] * (b.prog.num_tiles - 1)
        rescale = None
        if b.cd == DType.INT8:
            rescale = xt.scale / yt.scale
        _copy_layer(b, xt, _strides(in4), 0, yt, y_strides, offset * y_strides[axis], in4,
                    kind, ranges, rescale=rescale)
        offset += in4[axis]
    b.layer.split = "rows"


def _concat_const(b: LayerBuilder, value: SSAValue, yt: DramTensor, k: int) -> DramTensor:
    """A constant Concat operand (ViT's class token) as a weights tensor: in the layer's
    compute dtype (fp16, or fp32 under the precision policy), int8 in the output's step and
    zero point (so it is copied, not requantised)."""
    arr = constant_value(value)
    if arr is None:
        raise CompileError(f"layer {b.layer.name}: operand {k} is neither data nor constant")
    if b.cd == DType.INT8:
        q = np.clip(np.rint(arr / np.float32(yt.scale)) + yt.zp, -128, 127).astype(np.int8)
        t = b.const_tensor(q, DType.INT8, f"c{k}")
        t.scale, t.zp = yt.scale, yt.zp
        return t
    if b.cd == DType.FP32:
        return b.const_tensor(arr.astype("<f4"), DType.FP32, f"c{k}")
    return b.const_tensor(arr.astype("<f2"), DType.FP16, f"c{k}")


def _lower_permute(b: LayerBuilder, op, perm) -> None:
    in_shape = mrvl.tensor_shape(op.operands[0])
    out_shape = mrvl.tensor_shape(op.results[0])
    pad = 4 - len(in_shape)
    perm4 = list(range(pad)) + [p + pad for p in perm]
    in_strides = _strides(_shape4(in_shape))
    src_strides = tuple(in_strides[perm4[k]] for k in range(4))
    out4 = _shape4(out_shape)
    yt = b.tensor(op.results[0])
    kind, ranges = b.split()
    if kind not in ("rows", "channels"):
        kind, ranges = generic_split(out_shape, b.prog.num_tiles, yt.esize)
    _copy_layer(b, b.tensor(op.operands[0]), src_strides, 0, yt, _strides(out4), 0, out4,
                kind, ranges)
    b.layer.split = kind


def lower_layout_transform(b: LayerBuilder, op: mrvl.LayoutTransformOp) -> None:
    _lower_permute(b, op, op.permutation())


def lower_transpose(b: LayerBuilder, op: mrvl.TransposeOp) -> None:
    _lower_permute(b, op, _ints(op.perm))


# ---- transformer layers: row operations and matrix products of activations ---------------
def _rows_view(shape) -> tuple[int, int]:
    """(rows, cols) of a tensor seen as 2-D over its last axis."""
    return math.prod(shape[:-1]), shape[-1]


def _tile_rows(b: LayerBuilder, rows: int, row_bytes: int) -> list[tuple[int, int]]:
    """The layer's rows split (mrvl-tile-split's "rows" annotation over the 2-D view)."""
    kind, ranges = b.split()
    if kind != "rows" or not ranges or max(e for _, e in ranges) > rows:
        ranges = balanced_ranges(rows, b.prog.num_tiles, row_unit(row_bytes))
    return ranges


def _lower_row_op(b: LayerBuilder, op: mrvl.SoftmaxOp | mrvl.LayerNormOp) -> None:
    """SOFTMAX / LAYERNORM per band of rows of the 2-D view (last axis = one row). The
    compute is fp16 in both modes (fp32 where the fp16 precision policy widens the layer):
    in int8 the loads dequantise and the stores quantise (DMA conversion), since exp /
    rsqrt of int8 steps are not sound."""
    rows, cols = _rows_view(mrvl.tensor_shape(op.output))
    xt, yt = b.tensor(op.input), b.tensor(op.output)
    fp = DType.FP32 if b.cd == DType.FP32 else DType.FP16  # fp32 by the precision policy
    es = isa.DTYPE_SIZE[fp]
    ranges = _tile_rows(b, rows, cols * yt.esize)
    norm = isinstance(op, mrvl.LayerNormOp)
    fixed = [(cols * 4, 1), (cols * 4, 1)] if norm else []
    band = _fit_rows(b.fits, fixed, lambda k: [(k * cols * es, 2), (k * cols * es, 2)],
                     max(max(e - s for s, e in ranges), 1))
    if not band:
        raise CompileError(f"layer {b.layer.name}: one row of {cols} elements does not fit "
                           f"the OCM of {b.budget} bytes")
    b.buffer("in", band * cols * es, 2)
    b.buffer("out", band * cols * es, 2)
    gt = bt = None
    if norm:
        assert isinstance(op, mrvl.LayerNormOp)
        gamma, beta = constant_value(op.gamma), constant_value(op.beta)
        if gamma is None or beta is None:
            raise CompileError(f"layer {b.layer.name}: gamma and beta must be constants")
        gt = b.const_tensor(gamma.astype("<f4").reshape(cols), DType.FP32, "gamma")
        bt = b.const_tensor(beta.astype("<f4").reshape(cols), DType.FP32, "beta")
        b.buffer("gamma", cols * 4, 1, "weights")
        b.buffer("beta", cols * 4, 1, "weights")
    for tile, (lo, hi) in enumerate(ranges):
        for index, (r0, r1) in enumerate(_bands(lo, hi, band)):
            blk = Block(tile)
            slot = index % 2
            count = r1 - r0
            if index == 0 and gt is not None and bt is not None:
                blk.loads.append(b.load_const(gt, Ref("ocm", "gamma", 0), 0, cols))
                blk.loads.append(b.load_const(bt, Ref("ocm", "beta", 0), 0, cols))
            blk.loads.append(b.dma(Opcode.DMA_LOAD, xt, r0 * cols, (1, 1, count, cols),
                                   (0, 0, cols, 1), Ref("ocm", "in", slot), ocm_dtype=fp))
            fields = dict(in_addr=Ref("ocm", "in", slot), out_addr=Ref("ocm", "out", slot),
                          rows=count, cols=cols, in_row_stride=cols, out_row_stride=cols,
                          src_dtype=fp, dst_dtype=fp)
            if norm:
                assert isinstance(op, mrvl.LayerNormOp)
                blk.computes.append(b.insn(
                    Opcode.LAYERNORM, gamma_addr=Ref("ocm", "gamma", 0),
                    beta_addr=Ref("ocm", "beta", 0), alpha=op.epsilon.value.data, **fields))
            else:
                blk.computes.append(b.insn(Opcode.SOFTMAX, out_scale=0, **fields))
            blk.stores.append(b.dma(Opcode.DMA_STORE, yt, r0 * cols, (1, 1, count, cols),
                                    (0, 0, cols, 1), Ref("ocm", "out", slot), ocm_dtype=fp))
            b.layer.blocks.append(blk)
    b.layer.split = "rows"


def lower_softmax(b: LayerBuilder, op: mrvl.SoftmaxOp) -> None:
    _lower_row_op(b, op)


def lower_layernorm(b: LayerBuilder, op: mrvl.LayerNormOp) -> None:
    _lower_row_op(b, op)


def _logical_strides(shape, perm) -> list[int]:
    """Element strides of the logical (permuted) axes of a dense tensor of `shape`."""
    dense = [math.prod(shape[k + 1:]) for k in range(len(shape))]
    if perm is None:
        return dense
    return [dense[p] for p in perm]


def lower_matmul(b: LayerBuilder, op: mrvl.MatMulOp) -> None:
    """A @ B per batch index as GEMMs (fp16 matrix engine), with the attention epilogue
    SOFTMAX (SCALE = softmax_scale) on each block of whole score rows in OCM when the layer
    has one (the GEMM writes fp32 scores, the SOFTMAX writes fp16 probabilities over them;
    with a mask, ELTWISE ADD with SCALE computes scale * scores + mask first and the
    SOFTMAX has no SCALE): the rows of A stream in bands,
    B^T (the GEMM's [N][K] weight operand) is gathered from B by a strided DMA once per
    (batch, N chunk); folded transposes are only DMA strides. int8 tensors are dequantised
    by the loads and quantised by the stores (activation x activation products stay fp16)."""
    sa, sb = op.logical_shapes()
    m, k, n = sa[-2], sa[-1], sb[-1]
    batches = math.prod(sa[:-2])
    a_perm = None if op.a_perm is None else _ints(op.a_perm)
    b_perm = None if op.b_perm is None else _ints(op.b_perm)
    a_st = _logical_strides(mrvl.tensor_shape(op.a), a_perm)
    b_st = _logical_strides(mrvl.tensor_shape(op.b), b_perm)
    batch_shape = sa[:-2]
    at, btn, yt = b.tensor(op.a), b.tensor(op.b), b.tensor(op.output)
    fp = DType.FP16
    es = isa.DTYPE_SIZE[fp]
    ranges = _tile_rows(b, batches * m, n * yt.esize)
    epilogue = op.softmax_scale is not None
    mt = None if op.mask is None else b.tensor(op.mask)
    m_st: list[int] = []
    if op.mask is not None:
        # the additive mask broadcast to the scores [..., M, N]: stride 0 on its size-1 axes
        mask_shape = mrvl.tensor_shape(op.mask)
        dense = _logical_strides(mask_shape, None)
        m_st = [0 if d == 1 else st for d, st in zip(mask_shape, dense)]
    mask_rows = 1 if mt is None or m_st[-2] == 0 else 0  # 1: one row serves every row
    # the epilogue keeps the scores fp32 in OCM (GEMM dst FP32; the mask add and the
    # SOFTMAX read fp32, which writes fp16 probabilities in place)
    sd = DType.FP32 if epilogue else fp
    # without the epilogue, an fp32 output (the precision policy) is written fp32 by the GEMM
    wide = not epilogue and fp == DType.FP16 and yt.dtype == DType.FP32
    if wide:
        sd = DType.FP32
    oes = isa.DTYPE_SIZE[sd]
    n_chunk = 0
    for chunk in _chunk_candidates(n, min(n, 16)):
        if epilogue and chunk < n:
            break  # the softmax needs whole rows of the scores
        if b.fits([(chunk * k * es, 2), (k * es, 2), (chunk * oes, 2)]):
            n_chunk = chunk
            break
    if not n_chunk:
        raise CompileError(f"layer {b.layer.name}: one row of A ({k}) and one column of B do "
                           f"not fit the OCM of {b.budget} bytes")
    longest = max(max(e - s for s, e in ranges), 1)
    band = _fit_rows(b.fits, [(n_chunk * k * es, 2)],
                     lambda r: [(r * k * es, 2), (r * n_chunk * oes, 2)] + (
                         [] if mt is None else [((mask_rows or r) * n_chunk * oes, 2)]),
                     min(longest, m))
    b.buffer("x", band * k * es, 2)
    b.buffer("w", n_chunk * k * es, 2)
    b.buffer("out", band * n_chunk * oes, 2)
    if mt is not None:
        b.buffer("mask", (mask_rows or band) * n_chunk * oes, 2)

    def batch_offset(index: int, strides: list[int]) -> int:
        offset = 0
        for axis in range(len(batch_shape) - 1, -1, -1):
            offset += (index % batch_shape[axis]) * strides[axis]
            index //= batch_shape[axis]
        return offset

    for tile, (lo, hi) in enumerate(ranges):
        index = 0
        group = 0
        for bi in range(lo // m, -(-hi // m)):
            r_lo, r_hi = max(lo, bi * m) - bi * m, min(hi, (bi + 1) * m) - bi * m
            if r_hi <= r_lo:
                continue
            a_base, b_base = batch_offset(bi, a_st), batch_offset(bi, b_st)
            for n0, n1 in _bands(0, n, n_chunk):
                wslot = group % 2
                group += 1
                for first, (m0, m1) in enumerate(_bands(r_lo, r_hi, band)):
                    blk = Block(tile)
                    slot = index % 2
                    index += 1
                    rows, cols = m1 - m0, n1 - n0
                    if first == 0:
                        blk.loads.append(b.dma(
                            Opcode.DMA_LOAD, btn, b_base + n0 * b_st[-1], (1, 1, cols, k),
                            (0, 0, b_st[-1], b_st[-2]), Ref("ocm", "w", wslot), ocm_dtype=fp))
                    blk.loads.append(b.dma(
                        Opcode.DMA_LOAD, at, a_base + m0 * a_st[-2], (1, 1, rows, k),
                        (0, 0, a_st[-2], a_st[-1]), Ref("ocm", "x", slot), ocm_dtype=fp))
                    blk.computes.append(b.insn(
                        Opcode.GEMM, in_addr=Ref("ocm", "x", slot), m=rows, k=k,
                        in_row_stride=k, out_addr=Ref("ocm", "out", slot), n=cols,
                        out_row_stride=cols, w_addr=Ref("ocm", "w", wslot),
                        bias_addr=isa.ADDR_NONE, scale_addr=isa.ADDR_NONE,
                        src_dtype=fp, dst_dtype=sd))
                    if epilogue and mt is not None:
                        # scale * scores + mask (ELTWISE ADD with SCALE, in place), then
                        # softmax, before the scores leave the OCM
                        assert op.softmax_scale is not None
                        mrows = mask_rows or rows
                        blk.loads.append(b.dma(
                            Opcode.DMA_LOAD, mt, batch_offset(bi, m_st[:-2]) + m0 * m_st[-2]
                            + n0 * m_st[-1], (1, 1, mrows, cols), (0, 0, m_st[-2], m_st[-1]),
                            Ref("ocm", "mask", slot), ocm_dtype=sd))
                        blk.computes.append(b.insn(
                            Opcode.ELTWISE, func=EltFunc.ADD, a_addr=Ref("ocm", "out", slot),
                            b_addr=Ref("ocm", "mask", slot), out_addr=Ref("ocm", "out", slot),
                            rows=rows, cols=cols, a_row_stride=cols,
                            b_row_stride=0 if mask_rows else cols, out_row_stride=cols,
                            b_col_stride=1, a_scale=op.softmax_scale.value.data, b_scale=1.0,
                            out_scale=1.0, b_zp=0, flags=int(Flag.SCALE), src_dtype=sd,
                            dst_dtype=sd))
                        blk.computes.append(b.insn(
                            Opcode.SOFTMAX, in_addr=Ref("ocm", "out", slot),
                            out_addr=Ref("ocm", "out", slot), rows=rows, cols=cols,
                            in_row_stride=cols, out_row_stride=cols, out_scale=0,
                            src_dtype=sd, dst_dtype=fp))
                    elif epilogue:
                        # softmax(scale * scores) in place, before the scores leave the OCM
                        assert op.softmax_scale is not None
                        blk.computes.append(b.insn(
                            Opcode.SOFTMAX, in_addr=Ref("ocm", "out", slot),
                            out_addr=Ref("ocm", "out", slot), rows=rows, cols=cols,
                            in_row_stride=cols, out_row_stride=cols, out_scale=0,
                            flags=int(Flag.SCALE), scale=op.softmax_scale.value.data,
                            src_dtype=sd, dst_dtype=fp))
                    blk.stores.append(b.dma(
                        Opcode.DMA_STORE, yt, (bi * m + m0) * n + n0, (1, 1, rows, cols),
                        (0, 0, n, 1), Ref("ocm", "out", slot), ocm_dtype=sd if wide else fp))
                    b.layer.blocks.append(blk)
    b.layer.split = "rows"


def lower_slice(b: LayerBuilder, op: mrvl.SliceOp) -> None:
    """A copy of the output's box from the input at `start` on `axis` (concat's mirror)."""
    in_shape = mrvl.tensor_shape(op.input)
    out_shape = mrvl.tensor_shape(op.output)
    axis = op.axis.value.data % len(in_shape) + (4 - len(in_shape))
    in_strides = _strides(_shape4(in_shape))
    out4 = _shape4(out_shape)
    yt = b.tensor(op.output)
    kind, ranges = generic_split(out_shape, b.prog.num_tiles, yt.esize)
    _copy_layer(b, b.tensor(op.input), in_strides, op.start.value.data * in_strides[axis], yt,
                _strides(out4), 0, out4, kind, ranges)


LOWERINGS: dict[type, Callable] = {
    mrvl.Conv2DOp: lower_conv2d,
    mrvl.FCOp: lower_fc,
    mrvl.Maxpool2DOp: lower_maxpool2d,
    mrvl.Avgpool2DOp: lower_avgpool2d,
    mrvl.GlobalAvgpool2DOp: lower_global_avgpool2d,
    mrvl.GlobalMaxpool2DOp: lower_global_maxpool2d,
    mrvl.Sum2DOp: lower_sum,
    mrvl.Mul2DOp: lower_mul,
    mrvl.Div2DOp: lower_div,
    mrvl.ActivationOp: lower_activation,
    mrvl.ConcatOp: lower_concat,
    mrvl.SliceOp: lower_slice,
    mrvl.LayoutTransformOp: lower_layout_transform,
    mrvl.TransposeOp: lower_transpose,
    mrvl.MatMulOp: lower_matmul,
    mrvl.SoftmaxOp: lower_softmax,
    mrvl.LayerNormOp: lower_layernorm,
}
"""mrvl layer class -> its lowering (one small function per layer kind)."""

ALIAS_LAYERS = (mrvl.ReshapeOp, mrvl.BatchFlattenOp, mrvl.SqueezeOp)
"""Layers that only reinterpret the bytes of their input (no instructions)."""


# ---- the converter ------------------------------------------------------------------------
@dataclass
class Converter:
    prog: Program
    cd: int
    io_dtype: int
    tensor_of: dict

    @classmethod
    def create(cls, fn: func.FuncOp, machine: Machine) -> Converter:
        mode = fn.attributes.get(MODE_ATTR)
        mode_s = mode.data if isinstance(mode, StringAttr) else "fp16"
        io = fn.attributes.get(IO_ATTR)
        io_s = io.data if isinstance(io, StringAttr) else ("i8" if mode_s == "int8" else "f16")
        tiles_attr = fn.attributes.get("mrvl.num_tiles")
        num_tiles = tiles_attr.value.data if tiles_attr is not None else 1  # type: ignore[union-attr]
        prog = Program(fn.sym_name.data, num_tiles=num_tiles, ocm_size=machine.ocm_bytes,
                       page_size=machine.page_bytes, quantize=mode_s,
                       machine=replace(machine, tiles=num_tiles))
        cd = DType.INT8 if mode_s == "int8" else DType.FP16
        return cls(prog, cd, IO_DTYPES[io_s], {})


def _input_layout(arg: SSAValue) -> int:
    if len(mrvl.tensor_shape(arg)) != 4:
        return Layout.NONE
    for use in arg.uses:
        if isinstance(use.operation, mrvl.LayoutTransformOp):
            return Layout.NCHW if use.operation.src_layout.data == "NCHW" else Layout.NHWC
    return Layout.NHWC


def _arg_name(fn: func.FuncOp, k: int) -> str:
    if fn.arg_attrs is not None and k < len(fn.arg_attrs.data):
        attr = fn.arg_attrs.data[k].data.get("graph.name")
        if isinstance(attr, StringAttr):
            return attr.data
    return f"{fn.sym_name.data}_i{k}"


def output_names(fn: func.FuncOp) -> list[str]:
    attr = fn.attributes.get("graph.output_names")
    ret = fn.body.block.last_op
    count = len(ret.operands) if ret is not None else 0
    if isinstance(attr, ArrayAttr) and len(attr.data) == count:
        return [a.data for a in attr.data]  # type: ignore[union-attr]
    return [f"{fn.sym_name.data}_o{k}" for k in range(count)]


def _check_body(fn: func.FuncOp) -> None:
    """Only mrvl layers, `graph.constant` weights and the return (CompileError otherwise)."""
    from mrvl.dialects.graph import ConstantOp

    for op in fn.body.block.ops:
        if isinstance(op, mrvl.MrvlLayerOp | ConstantOp | func.ReturnOp):
            continue
        raise CompileError(
            f"@{fn.sym_name.data}: {op.name} cannot be in an accelerator sub-graph (only mrvl "
            "layers and graph.constant weights; mrvl-partition builds such functions)"
        )


def convert_function(fn: func.FuncOp, machine: Machine = DEFAULT_MACHINE,
                     input_names: Sequence[str] | None = None,
                     output_names_: Sequence[str] | None = None) -> mlip.ModelOp:
    """Lower one accelerator sub-graph to its `mlip.model` (module docstring), through the
    internal builder of mrvl/mlip_plan.py, for `machine` (its OCM and page
    size size the blocks; the tiles come from mrvl-tile-split's annotation). `input_names` /
    `output_names_` name the I/O tensors (default: the arguments' `graph.name`, the
    function's `graph.output_names`, else `<sym>_i<k>` / `<sym>_o<k>`)."""
    ocm_size, page_size = machine.ocm_bytes, machine.page_bytes
    if page_size not in (1024, 2048, 4096, 8192, 16384):
        raise CompileError(f"--page-size: expected 1, 2, 4, 8 or 16 KiB, got {page_size}")
    if not 4 * page_size <= ocm_size <= isa.DEFAULT_OCM_SIZE:
        raise CompileError(
            f"--ocm-size: expected {4 * page_size} to {isa.DEFAULT_OCM_SIZE} bytes, got {ocm_size}")
    _check_body(fn)
    conv = Converter.create(fn, machine)
    prog = conv.prog
    scales_attr = fn.attributes.get(INPUT_SCALES_ATTR)
    in_scales = ([a.value.data for a in scales_attr.data]  # type: ignore[union-attr]
                 if isinstance(scales_attr, ArrayAttr) else None)
    zps_attr = fn.attributes.get(INPUT_ZPS_ATTR)
    in_zps = ([a.value.data for a in zps_attr.data]  # type: ignore[union-attr]
              if isinstance(zps_attr, ArrayAttr) else None)
    for k, arg in enumerate(fn.body.block.args):
        name = input_names[k] if input_names is not None else _arg_name(fn, k)
        t = prog.add_tensor(DramTensor(name, mrvl.tensor_shape(arg), conv.io_dtype, "input",
                                       layout=_input_layout(arg)))
        if in_scales is not None:
            t.scale = in_scales[k]
        if in_zps is not None:
            t.zp = in_zps[k]
        conv.tensor_of[arg] = name
        prog.inputs.append(name)
    ret = fn.body.block.last_op
    heads = list(ret.operands) if ret is not None else []
    names = list(output_names_) if output_names_ is not None else output_names(fn)
    head_name: dict[SSAValue, str] = {}
    for value, name in zip(heads, names, strict=True):
        head_name.setdefault(value, name)
    for op in fn.body.block.ops:
        if not isinstance(op, mrvl.MrvlLayerOp):
            continue
        result = op.results[0]
        shape = mrvl.tensor_shape(result)
        scale_attr = op.attributes.get(SCALE_ATTR)
        scale = scale_attr.value.data if isinstance(scale_attr, FloatAttr) else 1.0
        zp_attr = op.attributes.get(ZP_ATTR)
        zp = zp_attr.value.data if isinstance(zp_attr, IntegerAttr) else 0
        if isinstance(op, ALIAS_LAYERS) and result not in head_name:
            src = prog.tensors[conv.tensor_of[op.operands[0]]]
            t = prog.add_tensor(DramTensor(f"{op.name_str}_y", shape, src.dtype, src.region,
                                           scale=src.scale, zp=src.zp, alias_of=src.name))
            conv.tensor_of[result] = t.name
            continue
        if result in head_name:
            dtype = conv.io_dtype
            if conv.cd == DType.INT8 and is_real_output(op):
                dtype = DType.FP16 if conv.io_dtype == DType.FP16 else DType.FP32
            elif _policy_dtype(conv.cd, op) == DType.FP32:
                dtype = DType.FP32  # an fp32 output of the fp16 precision policy
            t = DramTensor(head_name[result], shape, dtype, "output", scale=scale, zp=zp)
        else:
            t = DramTensor(f"{op.name_str}_y", shape, _scratch_dtype(conv, op), "scratch",
                           scale=scale, zp=zp)
        if len(shape) == 4:
            t.layout = Layout.NHWC
            if isinstance(op, mrvl.LayoutTransformOp) and op.dst_layout.data == "NCHW":
                t.layout = Layout.NCHW  # else the runtime transposes a C == H == W output
        prog.add_tensor(t)
        conv.tensor_of[result] = t.name
        layer = LayerPlan(op.name_str, op.LAYER_NAME, len(prog.layers), macs=op.macs())
        b = LayerBuilder(conv, layer, op)
        _widen_compute(b, op)
        if isinstance(op, ALIAS_LAYERS):
            src = b.tensor(op.operands[0])
            shape4 = _shape4(shape)
            _copy_layer(b, src, _strides(shape4), 0, t, _strides(shape4), 0, shape4,
                        *generic_split(shape, prog.num_tiles, t.esize))
        else:
            lowering = LOWERINGS.get(type(op))
            if lowering is None:
                raise CompileError(f"layer {op.name_str}: no lowering for {op.name}")
            lowering(b, op)
        prog.layers.append(layer)
    for value, name in zip(heads, names, strict=True):
        if value in conv.tensor_of and conv.tensor_of[value] == name:
            prog.outputs.append(name)
            continue
        _add_copy_out(conv, value, name)
    _liveness(prog)
    return build_model(prog)


def _policy_dtype(cd: int, op: mrvl.MrvlLayerOp) -> int:
    """The dtype a layer writes its result in: the compute dtype `cd`, or FP32 where the fp16
    precision policy keeps it (`mrvl.out_dtype = "f32"`, lowering/mrvl_precision.py)."""
    attr = op.attributes.get(OUT_DTYPE_ATTR)
    if cd == DType.FP16 and isinstance(attr, StringAttr) and attr.data == "f32":
        return DType.FP32
    return cd


def _scratch_dtype(conv: Converter, op: mrvl.MrvlLayerOp) -> int:
    """The DRAM dtype of a layer's (non-output) result (`_policy_dtype`)."""
    return _policy_dtype(conv.cd, op)


def _widen_compute(b: LayerBuilder, op: mrvl.MrvlLayerOp) -> None:
    """A vector-engine or copy layer of an fp16 build computes in fp32 (its OCM blocks
    are fp32; the DMA converts fp16 operands exactly and rounds an fp16 output once) when
    its output or one of its data inputs is an fp32 tensor. Matrix engine layers keep fp16
    inputs (lower_fc writes an fp32 output itself)."""
    if b.cd != DType.FP16 or isinstance(op, MATRIX_READERS):
        return
    values = [op.results[0], *(v for v in op.operands if v in b.conv.tensor_of)]
    if any(b.tensor(v).dtype == DType.FP32 for v in values):
        b.cd = DType.FP32
        b.es = isa.DTYPE_SIZE[DType.FP32]


def _add_copy_out(conv: Converter, value: SSAValue, name: str) -> None:
    """A model output that is an input, an alias or a repeated head: copy it."""
    prog = conv.prog
    src = prog.tensors[conv.tensor_of[value]]
    shape = mrvl.tensor_shape(value)
    t = prog.add_tensor(DramTensor(name if name not in prog.tensors else f"{name}_copy",
                                   shape, conv.io_dtype, "output", scale=src.scale, zp=src.zp))
    layer = LayerPlan(f"{t.name}_copy", "copy", len(prog.layers))
    fake = _FakeOp(value)
    b = LayerBuilder(conv, layer, fake)  # type: ignore[arg-type]
    shape4 = _shape4(shape)
    _copy_layer(b, src, _strides(shape4), 0, t, _strides(shape4), 0, shape4,
                *generic_split(shape, prog.num_tiles, t.esize))
    prog.layers.append(layer)
    prog.outputs.append(t.name)


class _FakeOp:
    """Stands for a layer op where a copy layer has none (only `results` is used)."""

    def __init__(self, value: SSAValue):
        self.results = [value]
        self.attributes: dict = {}


def _liveness(prog: Program) -> None:
    """Set `first` / `last` layer indices of every scratch tensor (through aliases)."""
    for layer in prog.layers:
        for blk in layer.blocks:
            for insn in blk.loads:
                ref = insn.fields["dram_addr"]
                assert isinstance(ref, Ref)
                t = prog.tensors[ref.name]
                t.last = max(t.last, layer.index)
            for insn in blk.stores:
                ref = insn.fields["dram_addr"]
                assert isinstance(ref, Ref)
                t = prog.tensors[ref.name]
                if t.first < 0:
                    t.first = layer.index
                t.last = max(t.last, layer.index)


_OPCODE = {int(k): k for k in Opcode}
_DTYPE_ATTR = {int(k): mlip.str_attr(v) for k, v in mlip.DTYPE_NAMES.items()}
_ACT_ATTR = {int(a): mlip.str_attr(a.name.lower()) for a in Act}
_FUNC_ATTR = {
    Opcode.POOL: {int(f): mlip.str_attr(f.name.lower()) for f in PoolFunc},
    Opcode.ELTWISE: {int(f): mlip.str_attr(f.name.lower()) for f in EltFunc},
}
_QUEUE_ATTR = {int(q): mlip.str_attr(q.name.lower()) for q in Queue}
_SCALE, _COUNT_PAD = int(Flag.SCALE), int(Flag.COUNT_PAD)
_TOKEN_FLAGS = int(Flag.POP_PREV | Flag.POP_NEXT | Flag.PUSH_PREV | Flag.PUSH_NEXT)
_OCM_PROPS = {name: (f"{mlip.base_of(name)}_slot", f"{mlip.base_of(name)}_offset")
              for name in mlip.OCM_ADDRESS_FIELDS}


def _instruction_op(insn: Insn, buffers: dict[str, SSAValue]) -> mlip.InstructionOp:
    """The typed mlip op of a builder instruction (OCM refs become buffer operands)."""
    opcode = _OPCODE[int(insn.opcode)]
    props: dict[str, Attribute] = {}
    ocm: dict[str, SSAValue] = {}
    i64_attr = mlip.i64_attr
    for key, value in insn.fields.items():
        if type(value) is Ref:
            if value.space == "ocm":
                slot_name, offset_name = _OCM_PROPS[key]
                ocm[key] = buffers[value.name]
                props[slot_name] = i64_attr(value.slot)
                props[offset_name] = i64_attr(value.offset)
            else:
                props["dram"] = _symbol(value.name)
                props["dram_offset"] = i64_attr(value.offset)
        elif key in _OCM_PROPS:
            if value != isa.ADDR_NONE:
                raise AssertionError(f"{opcode.name}: {key} must be a buffer reference")
        elif key in isa.FLOAT_FIELDS:
            props[key] = mlip.f64_attr(float(value))
        else:
            props[key] = i64_attr(int(value))
    funcs = _FUNC_ATTR.get(opcode)
    if funcs is not None:
        props["func"] = funcs[int(insn.func)]
    if insn.act:
        props["act"] = _ACT_ATTR[int(insn.act)]
    props["src"] = _DTYPE_ATTR[int(insn.src_dtype)]
    props["dst"] = _DTYPE_ATTR[int(insn.dst_dtype)]
    if insn.in_zp:
        props["in_zp"] = i64_attr(int(insn.in_zp))
    if insn.out_zp:
        props["out_zp"] = i64_attr(int(insn.out_zp))
    if insn.scale != 1.0:
        props["scale"] = mlip.f64_attr(float(insn.scale))
    if insn.alpha != 0.0:
        props["alpha"] = mlip.f64_attr(float(insn.alpha))
    if insn.beta != 0.0:
        props["beta"] = mlip.f64_attr(float(insn.beta))
    if insn.layer != isa.LAYER_NONE:
        props["layer"] = i64_attr(int(insn.layer))
    flags = int(insn.flags)
    if flags & _SCALE:
        props["scale_flag"] = mlip.UNIT
    if flags & _COUNT_PAD:
        props["count_pad"] = mlip.UNIT
    if flags & _TOKEN_FLAGS:
        raise AssertionError("token flags are set by mlip-dma-schedule, not the builder")
    if opcode == Opcode.NOP:
        props["queue"] = _QUEUE_ATTR[int(insn.queue)]  # type: ignore[arg-type]
    return mlip.INSN_OPS[opcode].build(props, ocm)


_SYMBOLS: dict[str, SymbolRefAttr] = {}


def _symbol(name: str) -> SymbolRefAttr:
    found = _SYMBOLS.get(name)
    if found is None:
        found = _SYMBOLS[name] = SymbolRefAttr(name)
        if len(_SYMBOLS) > 65536:
            _SYMBOLS.clear()
    return found


def _tensor_op(t: DramTensor) -> mlip.TensorOp:
    props: dict[str, Attribute] = {
        "sym_name": StringAttr(t.name), "region": mlip.str_attr(t.region),
        "shape": DenseArrayBase.from_list(i64, [int(d) for d in t.shape]),
        "dtype": mlip.str_attr(mlip.DTYPE_NAMES[DType(t.dtype)]),
    }
    if t.scale != 1.0:
        props["scale"] = FloatAttr(float(t.scale), f64)
    if t.zp:
        props["zero_point"] = mlip.i64_attr(int(t.zp))
    if t.layout:
        props["layout"] = mlip.i64_attr(int(t.layout))
    if t.first >= 0 or t.last >= 0:
        props["live"] = DenseArrayBase.from_list(i64, [t.first, t.last])
    if t.alias_of is not None:
        props["alias_of"] = StringAttr(t.alias_of)
    if t.data is not None:
        props["data"] = mlip.BytesAttr(t.data)
    return mlip.TensorOp.create(properties=props)


def build_model(prog: Program) -> mlip.ModelOp:
    """The `mlip.model` op of a converted program: its tensors, and per layer its buffers
    and its `mlip.layer` holding one `mlip.block` per block (module docstring)."""
    body = IRBlock()
    for t in prog.tensors.values():
        body.add_op(_tensor_op(t))
    for layer in prog.layers:
        buffers: dict[str, SSAValue] = {}
        for buf in layer.buffers.values():
            buf_op = mlip.BufferOp.build(buf.name, buf.size, buf.slots, buf.kind, layer.index)
            body.add_op(buf_op)
            buffers[buf.name] = buf_op.result
        layer_body = IRBlock()
        for blk in layer.blocks:
            ops = [_instruction_op(insn, buffers)
                   for insn in (*blk.loads, *blk.computes, *blk.stores)]
            layer_body.add_op(mlip.BlockOp.create(
                properties={"tile": mlip.i64_attr(blk.tile)}, regions=[Region(IRBlock(ops))]))
        body.add_op(mlip.LayerOp.create(
            properties={"sym_name": StringAttr(layer.name), "kind": StringAttr(layer.kind),
                        "index": mlip.i64_attr(layer.index), "macs": mlip.i64_attr(layer.macs),
                        "split": StringAttr(layer.split),
                        "blocks": mlip.i64_attr(len(layer.blocks))},
            regions=[Region(layer_body)]))
    props: dict[str, Attribute] = {
        "model": StringAttr(prog.name), "num_tiles": mlip.i64_attr(prog.num_tiles),
        "ocm_size": mlip.i64_attr(prog.ocm_size), "page_size": mlip.i64_attr(prog.page_size),
        "quantize": StringAttr(prog.quantize),
        "inputs": ArrayAttr([StringAttr(n) for n in prog.inputs]),
        "outputs": ArrayAttr([StringAttr(n) for n in prog.outputs]),
    }
    default = replace(DEFAULT_MACHINE, tiles=prog.num_tiles, ocm_bytes=prog.ocm_size,
                      page_bytes=prog.page_size)
    if prog.machine != default:
        props["machine"] = mlip.machine_attr(prog.machine)
    return mlip.ModelOp.create(properties=props, regions=[Region(body)])


@dataclass(frozen=True)
class ConvertMrvlToMlipPass(ModulePass):
    """Replace every accelerator sub-graph function by its `mlip.model` (module docstring)
    and an external declaration of the function (so that calls to it still verify).

    Options: `ocm-size` (bytes per tile, default 1 MiB), `page-size` (default 16 KiB);
    `input-names` / `output-names` name the I/O tensors (default: the arguments'
    `graph.name`, the function's `graph.output_names`, else `<sym>_i<k>` / `<sym>_o<k>`).
    """

    name = "convert-mrvl-to-mlip"

    ocm_size: int = isa.DEFAULT_OCM_SIZE
    page_size: int = isa.DEFAULT_PAGE_SIZE
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    machine: Machine | None = field(default=None, compare=False)
    """In-process callers: the whole machine (recorded in the model for the binary); the
    OCM and page size then come from it (not a pipeline-text option)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in mrvl.subgraph_functions(op):
            machine = self.machine or replace(DEFAULT_MACHINE, ocm_bytes=self.ocm_size,
                                              page_bytes=self.page_size)
            model = convert_function(fn, machine, self.input_names or None,
                                     self.output_names or None)
            declaration = func.FuncOp.external(
                fn.sym_name.data, list(fn.function_type.inputs.data),
                list(fn.function_type.outputs.data))
            op.body.block.insert_op_before(model, fn)
            op.body.block.insert_op_before(declaration, fn)
            op.body.block.erase_op(fn)
