"""How much of a model's fp16 error is inherent to fp16 storage, and how much the compiler and
the simulator add on top of it.

    .venv/bin/python bench/fp16_error_budget.py [--models mobilenet_v2,resnet50,ssd_detector]
                                                [--num-tiles 8] [--seeds 0,1,2]

`--models ssd_detector@pre_nms` judges a detector cut at its NonMaxSuppression inputs (the
decoded boxes and the class scores), where the selection after it would flip on near-equal
scores for any engine.

Per model (random weights, batch 1, seeded standard-normal inputs), each compared with
onnxruntime fp32 on the original model under Marvell's fp16 rule (sim/acceptance.py:
|err| <= 3 % |ref| wherever |ref| >= max|ref| / 100; max relative error over the judged
elements and the failing count):
- emulated: the partitioned module run by the reference executor with the documented fp16
  semantics (docs/backend.md "Numerics", docs/isa.md) on every accelerator layer: input
  rounded to fp16, weights rounded to fp16 after batch-norm folding (as the compiler does),
  bias fp32, products summed without rounding (float64) or in fp32 (numpy's order: another
  valid fp32 accumulation), bias and fused activation in fp32, output rounded once to fp16
  (RNE); pools, adds and standalone activations compute in fp32 and round their output once;
  in transformer sub-graphs the layers of the precision policy (lowering/mrvl_precision.py)
  keep fp32 outputs, which their readers take unrounded (matrix engine inputs are rounded
  once; reshape-like aliases of an fp32 tensor are the same fp32 bytes). CPU sub-graphs run
  in fp32. With `--fp16-precision extended` the module is first rewritten by
  mrvl-extended-precision, so the emulation runs the split FCs layer by layer. This is the error any implementation of the documented
  semantics has.
- simulated: `compile_model` + `CompiledModel.run` (the C simulator);
- ort-fp16 (the anchor): onnxruntime running the model converted by onnxconverter-common
  (`float16.convert_float_to_float16(model, keep_io_types=True)`; the optional `bench`
  extra), judged by the same rule.
Each row also gives the RMS error over all elements relative to max|ref|.
The last line compares simulated with emulated, next to how much the two emulations (same
semantics, different fp32 summation order) differ from each other: a deep random network
amplifies any 1-ulp rounding difference, so two valid implementations end up as far apart
as each is from fp32. With `--per-layer`, every layer is also checked on its own: layer k
simulated (max_layers=k) against the emulation of layer k on the simulator's own outputs of
max_layers=k-1, in fp16 ulps, next to the gap between exact and fp32-order summation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from xdsl.context import Context

from mrvl.dialects import mrvl
from mrvl.dialects.graph import ConstantOp
from mrvl.lowering.backend import PRECISIONS, compile_function
from mrvl.lowering.mrvl_extended_precision import MrvlExtendedPrecisionPass
from mrvl.lowering.mrvl_precision import fp32_outputs
from mrvl.driver.compiler import compile_model, compile_to_partitioned
from mrvl.dialects.mrvl import subgraph_functions
from mrvl.machine import Machine
from mrvl.models import MODELS
from mrvl.sim import reference_mrvl
from mrvl.sim.acceptance import check_output
from mrvl.sim.reference import run_function
from mrvl.sim.runtime import CompiledModel, run_reference
from mrvl.sim.simulator import Simulator

_F32_RUN_LAYER = reference_mrvl.run_layer
_ACC = [np.float64]  # the dtype `emulate` sums products in (set per call)
_WIDE: set = set()  # values stored fp32 by the precision policy (set per call)
_ALIASES = (mrvl.ReshapeOp, mrvl.BatchFlattenOp, mrvl.SqueezeOp)


def _h(x: np.ndarray) -> np.ndarray:
    """Round to fp16 (RNE) and back to fp32."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def _accumulate(op: mrvl.Conv2DOp | mrvl.FCOp, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum of products (no bias, no activation) in the dtype of x and w, as fp32."""
    if isinstance(op, mrvl.FCOp):
        if op.weights_need_transform is not None:
            x = np.transpose(x, (0, 3, 1, 2))
        return (x.reshape(x.shape[0], -1) @ w.T).astype(np.float32)
    ints = reference_mrvl._ints
    o, kh, kw, cg = w.shape
    win = reference_mrvl._windows(x, (kh, kw), ints(op.strides), ints(op.pads),
                                  ints(op.dilations), 0.0)
    groups = op.groups.value.data
    n, oh, ow = win.shape[:3]
    if groups == 1:
        y = np.tensordot(win, w, axes=([3, 4, 5], [3, 1, 2]))
    else:
        wg = win.reshape(n, oh, ow, groups, cg, kh, kw)
        kg = w.reshape(groups, o // groups, kh, kw, cg)
        y = np.einsum("nhwgcij,goijc->nhwgo", wg, kg, optimize=True).reshape(n, oh, ow, o)
    return y.astype(np.float32)


def _wide(value) -> bool:
    """Is `value` (through reshape-like aliases) stored fp32 by the precision policy?"""
    while isinstance(value.owner, _ALIASES):
        value = value.owner.operands[0]
    return value in _WIDE


def fp16_run_layer(op: mrvl.MrvlLayerOp, args: tuple) -> np.ndarray:
    """One accelerator layer with the documented fp16 semantics."""
    def store(y):
        return np.asarray(y, np.float32) if op.results[0] in _WIDE else _h(y)

    if isinstance(op, _ALIASES) and _wide(op.operands[0]):
        return _F32_RUN_LAYER(op, args)  # the same fp32 bytes, reinterpreted
    if isinstance(op, mrvl.Conv2DOp | mrvl.FCOp):
        acc = _ACC[0]
        y = _accumulate(op, _h(args[0]).astype(acc), _h(args[1]).astype(acc))
        if len(args) > 2:
            y = y + np.asarray(args[2], np.float32)
        return store(reference_mrvl.activate(y, op.activation.data, reference_mrvl._clip(op)))
    if isinstance(op, mrvl.MatMulOp):  # the matrix engine reads fp16
        return store(_F32_RUN_LAYER(op, tuple(_h(a) for a in args)))
    # a vector layer computes in fp32 when its output or a data input is fp32; its
    # constants are then fp32 too (LayerNorm's gamma and beta always are)
    data = [v for v in op.operands if not isinstance(v.owner, ConstantOp)]
    fp32 = op.results[0] in _WIDE or any(_wide(v) for v in data)
    return store(_F32_RUN_LAYER(op, tuple(
        np.asarray(a, np.float32)
        if _wide(v) or (isinstance(v.owner, ConstantOp)
                        and (fp32 or isinstance(op, mrvl.LayerNormOp))) else _h(a)
        for v, a in zip(op.operands, args, strict=True))))


def emulate(module, feeds, acc=np.float64, func_name: str = "main") -> list[np.ndarray]:
    """`func_name` of a partitioned module with fp16 accelerator layers (CPU parts in fp32)."""
    _ACC[0] = acc
    _WIDE.clear()
    for fn in subgraph_functions(module, "accelerator"):
        _WIDE.update(op.results[0] for op in fp32_outputs(fn))
    reference_mrvl.run_layer = fp16_run_layer
    try:
        return run_function(module, feeds, func_name=func_name)
    finally:
        reference_mrvl.run_layer = _F32_RUN_LAYER


def _rule(name: str, got, ref) -> str:
    c = check_output(name, np.asarray(got, np.float32), ref, "fp16")
    peak = max(c.max_ref, 1e-30)
    rms = float(np.sqrt(np.mean((np.asarray(got, np.float64) - ref) ** 2)))
    return (f"max rel err {100 * c.max_rel_err:6.3f}% over {c.checked} judged, "
            f"{c.failing} failing, max abs err {c.max_abs_err / peak:.2e}, RMS "
            f"{rms / peak:.2e} of max|ref|")


def ort_fp16_session(model: onnx.ModelProto):
    """onnxruntime on `model` converted to fp16 with fp32 I/O (onnxconverter-common), or None
    when onnxconverter-common is not installed (`pip install -e .[bench]`)."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        return None
    import onnxruntime as ort

    import warnings

    # Cast nodes stay fp32: the converter retypes a Cast's output to fp16 but keeps its `to`
    # attribute (BERT's attention-mask Cast then fails onnxruntime's type check)
    casts = [node.name for node in model.graph.node if node.op_type == "Cast"]
    with warnings.catch_warnings():  # it warns for every weight below fp16's normal range
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True,
                                                      node_block_list=casts)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(converted.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types
        print(f"ort-fp16 anchor not available for this model: {str(error).splitlines()[0]}")
        return None


def _print(name: str, seed: int, ref, sim, emu, emu32, anchor) -> None:
    for out, want in ref.items():
        if not np.issubdtype(want.dtype, np.floating) or want.shape != np.shape(emu[out]):
            print(f"{name}/{out}: not a fixed-shape float output, skipped")
            continue
        scale = float(np.max(np.abs(want))) or 1.0
        diff = float(np.max(np.abs(np.asarray(sim[out], np.float64) - emu[out])))
        diff32 = float(np.max(np.abs(np.asarray(emu32[out], np.float64) - emu[out])))
        print(f"{name}/{out} {list(want.shape)} seed {seed}")
        print(f"  emulated (exact sum) vs onnxruntime: {_rule(out, emu[out], want)}")
        print(f"  emulated (fp32 sum)  vs onnxruntime: {_rule(out, emu32[out], want)}")
        print(f"  simulated            vs onnxruntime: {_rule(out, sim[out], want)}")
        if anchor is None:
            print("  ort-fp16: onnxconverter-common is not installed (pip install -e .[bench])")
        elif np.shape(anchor[out]) != want.shape:  # e.g. NMS kept another number of boxes
            print(f"  ort-fp16: shape {list(np.shape(anchor[out]))}, not compared")
        else:
            print(f"  ort-fp16             vs onnxruntime: {_rule(out, anchor[out], want)}")
        print(f"  simulated vs emulated (exact sum): {diff / scale:.2e} of max|ref|; "
              f"the two emulations differ by {diff32 / scale:.2e}")
        sys.stdout.flush()


PRE_NMS = "@pre_nms"
"""Model-name suffix: the model cut at its NonMaxSuppression nodes' inputs (their boxes and
scores become the outputs), so a detector is judged on continuous values rather than on a
box selection that flips on near-equal scores, for us and for the anchor alike."""


def _model(name: str) -> onnx.ModelProto:
    """A `MODELS` entry, or a transformer (vit_tiny, bert_tiny, bert_tiny_mask); with the
    `PRE_NMS` suffix, cut before its NonMaxSuppression nodes."""
    from mrvl.models.bert_tiny import bert_tiny
    from mrvl.models.vit_tiny import vit_tiny

    base = name.removesuffix(PRE_NMS)
    transformers = {"vit_tiny": vit_tiny, "bert_tiny": bert_tiny,
                    "bert_tiny_mask": lambda: bert_tiny(attention_mask=True)}
    model = transformers[base]() if base in transformers else MODELS[base](batch=1)
    if name.endswith(PRE_NMS):
        model = _cut_before_nms(model, name)
    return model


def _cut_before_nms(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """`model` with the boxes and scores inputs of its NonMaxSuppression nodes as outputs,
    and only the nodes they need (onnx.utils.Extractor)."""
    nms_inputs = list(dict.fromkeys(
        value for node in model.graph.node if node.op_type == "NonMaxSuppression"
        for value in node.input[:2]))
    if not nms_inputs:
        raise SystemExit(f"{name}: the model has no NonMaxSuppression node")
    inferred = onnx.shape_inference.infer_shapes(model)
    inputs = [i.name for i in model.graph.input
              if i.name not in {t.name for t in model.graph.initializer}]
    return onnx.utils.Extractor(inferred).extract_model(inputs, nms_inputs)


def _feeds(inputs, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs: standard-normal floats, token ids in [0, 100), an attention mask
    with its last quarter padding."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in inputs:
        if s.name == "attention_mask":
            feeds[s.name] = (np.arange(s.shape[-1]) < s.shape[-1] * 3 // 4).astype(
                s.dtype)[None].repeat(s.shape[0], 0)
        elif np.issubdtype(np.dtype(s.dtype), np.integer):
            feeds[s.name] = rng.integers(0, 100, s.shape).astype(s.dtype)
        else:
            feeds[s.name] = rng.standard_normal(s.shape).astype(np.float32)
    return feeds


def budget(name: str, num_tiles: int, seeds: list[int], precision: str = "auto") -> None:
    model = _model(name)
    module = compile_to_partitioned(model)
    MrvlExtendedPrecisionPass(mode=precision).apply(Context(), module)
    session = ort_fp16_session(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        onnx.save(model, path)
        manifest = compile_model(path, Path(tmp) / "build", num_tiles=num_tiles,
                                 quantize="fp16", fp16_precision=precision)
        with CompiledModel(manifest) as compiled:
            for seed in seeds:
                feeds = _feeds(manifest.inputs, seed)
                ref = run_reference(manifest, feeds)
                sim = compiled.run({s.name: feeds[s.name].astype(s.dtype)
                                    for s in manifest.inputs}).outputs
                emu = dict(zip(ref, emulate(module, feeds, np.float64), strict=True))
                emu32 = dict(zip(ref, emulate(module, feeds, np.float32), strict=True))
                anchor = None
                if session is not None:
                    names = [o.name for o in session.get_outputs()]
                    anchor = dict(zip(names, session.run(None, feeds), strict=True))
                _print(name, seed, ref, sim, emu, emu32, anchor)
    if subgraph_functions(module, "cpu"):
        _subgraphs(name, module, num_tiles, seeds)


def _subgraphs(name: str, module, num_tiles: int, seeds: list[int]) -> None:
    """Models with CPU parts (e.g. NMS, whose selection flips on near-equal scores): the
    accelerator sub-graphs' own outputs against the fp32 reference executor (equal to
    onnxruntime to 1e-4, sim/reference_mrvl.py), summed over the outputs of each sub-graph
    (worst max rel err, total failing / judged)."""
    for fn in subgraph_functions(module, "accelerator"):
        sym = fn.sym_name.data
        shapes = [mrvl.tensor_shape(a) for a in fn.body.block.args]
        sub = compile_function(fn, machine=Machine(tiles=num_tiles), quantize="fp16")
        for seed in seeds:
            rng = np.random.default_rng(seed)
            inputs = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
            ref = run_function(module, inputs, func_name=sym)
            with Simulator.load(sub.data) as sim:
                out, _ = sim.run(inputs)
            rows = {"emulated (exact sum)": emulate(module, inputs, np.float64, sym),
                    "emulated (fp32 sum) ": emulate(module, inputs, np.float32, sym),
                    "simulated           ": out}
            print(f"{name}/{sym} ({len(ref)} outputs) seed {seed}, vs the fp32 reference")
            for label, got in rows.items():
                checks = [check_output(str(i), np.asarray(g, np.float32), r, "fp16")
                          for i, (g, r) in enumerate(zip(got, ref, strict=True))]
                print(f"  {label}: max rel err {100 * max(c.max_rel_err for c in checks):6.3f}%"
                      f", {sum(c.failing for c in checks)} failing of "
                      f"{sum(c.checked for c in checks)} judged, max abs err "
                      f"{max(c.max_abs_err / c.max_ref for c in checks):.2e} of max|ref|")
            sys.stdout.flush()


def _simulated_prefix(model, k: int, num_tiles: int):
    """The first k layers on the accelerator (partition option max_layers), simulated on one
    seeded input: (module, function, inputs, layers, {layer name: simulated output})."""
    module = compile_to_partitioned(model, max_layers=k)
    fns = subgraph_functions(module, "accelerator")
    if not fns:
        return None
    fn = fns[0]
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(mrvl.tensor_shape(a)).astype(np.float32)
              for a in fn.body.block.args]
    layers = [op for op in fn.walk() if isinstance(op, mrvl.MrvlLayerOp)]
    names = [v.owner.layer_name.data if isinstance(v.owner, mrvl.MrvlLayerOp) else None
             for v in fn.body.block.last_op.operands]
    sub = compile_function(fn, machine=Machine(tiles=num_tiles), quantize="fp16")
    with Simulator.load(sub.data) as sim:
        out, _ = sim.run(inputs)
    return module, fn, inputs, layers, dict(zip(names, out, strict=True))


def per_layer(name: str, num_tiles: int) -> None:
    """Layer k simulated (after the simulator's own layers 1..k-1) against the documented
    semantics of layer k applied to the same fp16 inputs (the simulated outputs of
    max_layers=k-1), next to how far an fp32-order summation is from the exact one."""
    model = MODELS[name](batch=1)
    prev = _simulated_prefix(model, 1, num_tiles)
    worst_ulp, worst_frac, worst_frac32, checked = 0.0, 0.0, 0.0, 0
    for k in range(2, 10_000):
        cur = _simulated_prefix(model, k, num_tiles)
        if cur is not None and prev is not None and len(cur[3]) == len(prev[3]):
            break  # every layer is on the accelerator already
        if cur is None or prev is None:
            prev = cur
            continue
        module, fn, inputs, layers, outs = cur
        last, fed = layers[-1], prev[4]
        got = {}

        def patched(op, args, last=last, fed=fed, got=got):
            if op is not last:
                return fp16_run_layer(op, args)
            args = tuple(fed.get(a.owner.layer_name.data, x)
                         if isinstance(a.owner, mrvl.MrvlLayerOp) else x
                         for a, x in zip(op.operands, args, strict=True))
            _ACC[0] = np.float32
            got["fp32 sum"] = fp16_run_layer(op, args)
            _ACC[0] = np.float64
            got["exact"] = fp16_run_layer(op, args)
            return got["exact"]

        _ACC[0] = np.float64
        reference_mrvl.run_layer = patched
        try:
            run_function(module, inputs, func_name=fn.sym_name.data)
        finally:
            reference_mrvl.run_layer = _F32_RUN_LAYER
        want = got["exact"].astype(np.float64)
        ulp = np.spacing(np.abs(want).astype(np.float16)).astype(np.float64)
        diff = np.abs(np.asarray(outs[last.layer_name.data], np.float64) - want)
        diff32 = np.abs(got["fp32 sum"].astype(np.float64) - want)
        judged = np.abs(want) >= np.abs(want).max() / 100
        if judged.any():
            worst_ulp = max(worst_ulp, float((diff / ulp)[judged].max()))
        worst_frac = max(worst_frac, float(np.mean(diff > 0)))
        worst_frac32 = max(worst_frac32, float(np.mean(diff32 > 0)))
        checked += 1
        prev = cur
    print(f"{name}: {checked} layers, simulated vs documented fp16 semantics on the same "
          f"inputs: max {worst_ulp:.0f} fp16 ulp where |value| >= max/100, at most "
          f"{100 * worst_frac:.2f} % of a layer's elements differ (fp32-order vs exact "
          f"summation: {100 * worst_frac32:.2f} %)")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,resnet50,ssd_detector",
                        help="comma-separated; a name ending in @pre_nms (ssd_detector@pre_nms)"
                        " is that model cut at its NonMaxSuppression inputs")
    parser.add_argument("--num-tiles", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2", help="input seeds, comma-separated")
    parser.add_argument("--fp16-precision", choices=PRECISIONS, default="auto",
                        help="compile (and emulate) with this fp16 precision option "
                        "(extended: FCs of transformer sub-graphs as three fp16 GEMM passes)")
    parser.add_argument("--per-layer", action="store_true",
                        help="also check every layer against the emulation on the same inputs "
                        "(compiles max_layers=1, 2, ...: about a minute per model)")
    args = parser.parse_args(argv)
    seeds = [int(v) for v in args.seeds.split(",")]
    for name in args.models.split(","):
        budget(name, args.num_tiles, seeds, args.fp16_precision)
        if args.per_layer:
            per_layer(name, args.num_tiles)
    return 0


if __name__ == "__main__":
    sys.exit(main())
