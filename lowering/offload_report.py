"""The offload report of a partitioned module: what runs where, and why not on the accelerator.

`offload_report(module) -> dict` lists every accelerator sub-graph with its layers, every CPU
sub-graph, every node left on the CPU with its reason (`mrvl.cpu_reason`, set by
convert-graph-to-mrvl and mrvl-partition), and the share of the model's multiply-accumulates
(conv2d, dense, gemm, matmul, and generic Conv / ConvTranspose) that runs on the accelerator.
`format_report` renders it as text; `write_report(module, path)` writes JSON (path ending in
.json) or text.

It also counts the **crossings** between the accelerator and the CPU (`crossings`: every
tensor that one sub-graph hands to a sub-graph of the other target, with its bytes at 4 bytes
an element; `switches`: consecutive steps of `@main` on different targets) and **estimates**
the share of the run time spent on the CPU (`time_estimate`, `cpu_time_share`). The estimate
is a model, not a measurement (`mrvl report` on a build with a recorded run gives the
measured share): the accelerator's layers at the roofline of the machine (MACs at
`matrix_rows x matrix_cols` per cycle and tile, other layers' output elements at
`vector_lanes` per cycle, at `clock_mhz`); the CPU's ops at `CPU_MACS_PER_SECOND` and
`CPU_ELEMENTS_PER_SECOND` (assumptions below); every crossing `CROSSING_SECONDS` plus its
bytes at `CROSSING_BYTES_PER_SECOND`, counted as CPU time (the host does the hand-over).

`fp16_in_int8` lists the layers an int8 build computes in fp16; `fp32_in_fp16` the layers
whose outputs an fp16 build stores in fp32 (the precision policy of transformer sub-graphs,
lowering/mrvl_precision.py); `extended_fp16` the FCs (and MatMuls) an fp16 build runs as
several fp16 GEMM passes: three with precision "extended", two stacked along K (the
weights' low half) with "targeted" and "auto" (lowering/mrvl_extended_precision.py; the
report is written after the backend, so their new layers and their MACs are in the lists).

Invariant: the report only reads the IR; every non-constant op of a CPU sub-graph appears in
`cpu_nodes` exactly once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue

from mrvl.dialects import graph, mrvl
from mrvl.dialects.mrvl import TARGET_ATTR, tensor_shape
from mrvl.lowering.convert_graph_to_mrvl import CPU_REASON_ATTR, ONNX_NODES_ATTR
from mrvl.lowering.mrvl_extended_precision import EXTENDED_ATTR
from mrvl.lowering.mrvl_precision import fp32_outputs
from mrvl.machine import Machine

CPU_MACS_PER_SECOND = 20e9
"""Assumption: one Arm Neoverse-class host core (2 x 128-bit FMA pipes = 8 fp32 MACs a cycle
at 2.5 GHz = 20 GMAC/s peak; onnxruntime's convolutions reach a good part of that)."""
CPU_ELEMENTS_PER_SECOND = 1e9
"""Assumption: element-wise, data-movement and reduction ops write about one output element
per nanosecond (memory-bound, a few GB/s)."""
CROSSING_SECONDS = 20e-6
"""Assumption: the fixed cost of handing one tensor between the host and the accelerator
(descriptor set-up, synchronisation, cache maintenance): some tens of microseconds."""
CROSSING_BYTES_PER_SECOND = 10e9
"""Assumption: a crossing tensor is copied (and converted) at about 10 GB/s."""


def graph_macs(op: Operation) -> int:
    """Multiply-accumulates of a compute-heavy graph op (0 for the others)."""
    if isinstance(op, graph.Conv2DOp):
        out = tensor_shape(op.result)
        w = tensor_shape(op.weight)
        kh, kw, ci = (w[2], w[3], w[1]) if op.kernel_layout.data == "OIHW" else w[1:]
        return math.prod(out) * kh * kw * ci
    if isinstance(op, graph.DenseOp):
        return math.prod(tensor_shape(op.result)) * tensor_shape(op.weight)[1]
    if isinstance(op, graph.GemmOp):
        a = tensor_shape(op.a)
        k = a[0] if op.trans_a.value.data else a[1]
        return math.prod(tensor_shape(op.result)) * k
    if isinstance(op, graph.MatMulOp):
        return math.prod(tensor_shape(op.result)) * tensor_shape(op.lhs)[-1]
    if isinstance(op, graph.OnnxOp) and op.op_type.data in ("ConvTranspose", "Conv"):
        # generic (CPU) convolutions: weights [Cin, Cout/g, k...] (transposed) scatter every
        # input element; [Cout, Cin/g, k...] (direct) gather into every output element
        shapes = [tensor_shape(v) for v in (*op.operands[:2], op.results[0])]
        if any(d < 0 for shape in shapes for d in shape) or len(shapes[1]) < 3:
            return 0
        x, w, y = shapes
        if op.op_type.data == "ConvTranspose":
            return math.prod(x) * math.prod(w[1:])
        return math.prod(y) * math.prod(w[1:])
    return 0


def _elements(op: Operation) -> int:
    """Output elements of `op` (0 when a size is data-dependent)."""
    total = 0
    for result in op.results:
        if isinstance(result.type, TensorType):
            shape = tensor_shape(result)
            if all(d >= 0 for d in shape):
                total += math.prod(shape)
    return total


def _bytes(value: SSAValue) -> int:
    if not isinstance(value.type, TensorType):
        return 0
    shape = tensor_shape(value)
    return 4 * math.prod(shape) if all(d >= 0 for d in shape) else 0


def crossings(module: ModuleOp) -> dict[str, Any]:
    """The tensors handed between accelerator and CPU sub-graphs by `@main`'s calls."""
    targets: dict[str, str] = {}
    for fn in module.ops:
        if isinstance(fn, func.FuncOp) and _target(fn) is not None:
            targets[fn.sym_name.data] = _target(fn)  # type: ignore[assignment]
    main = next((fn for fn in module.ops
                 if isinstance(fn, func.FuncOp) and fn.sym_name.data == "main"), None)
    count = size = switches = 0
    edges = []
    previous = None
    if main is not None:
        for op in main.body.walk():
            if not isinstance(op, func.CallOp):
                continue
            target = targets.get(op.callee.root_reference.data)
            if previous is not None and target != previous:
                switches += 1
            previous = target
            seen = set()
            for value in op.arguments:
                producer = value.owner
                if not isinstance(producer, func.CallOp) or value in seen:
                    continue
                seen.add(value)
                source = targets.get(producer.callee.root_reference.data)
                if source is None or target is None or source == target:
                    continue
                count += 1
                size += _bytes(value)
                edges.append({"from": producer.callee.root_reference.data,
                              "to": op.callee.root_reference.data, "bytes": _bytes(value)})
    return {"count": count, "bytes": size, "switches": switches, "edges": edges}


def _target(fn: func.FuncOp) -> str | None:
    attr = fn.attributes.get(TARGET_ATTR)
    return attr.data if isinstance(attr, StringAttr) else None


def _str_attr(op: Operation, name: str) -> str | None:
    attr = op.attributes.get(name)
    return attr.data if isinstance(attr, StringAttr) else None


def offload_report(module: ModuleOp, machine: Machine | None = None) -> dict[str, Any]:
    """The report as a JSON-ready dict (see the module docstring); `machine` (default: the
    default machine, 1 tile) times the accelerator's share of the estimate."""
    machine = Machine() if machine is None else machine
    clock = machine.clock_mhz * 1e6
    matrix_per_second = machine.tiles * machine.matrix_rows * machine.matrix_cols * clock
    vector_per_second = machine.tiles * machine.vector_lanes * clock
    accel: list[dict[str, Any]] = []
    cpu: list[dict[str, Any]] = []
    cpu_nodes: list[dict[str, Any]] = []
    fp32_layers: list[str] = []
    extended: list[str] = []
    accel_macs = cpu_macs = 0
    accel_seconds = cpu_seconds = 0.0
    for fn in module.ops:
        if not isinstance(fn, func.FuncOp):
            continue
        target = _target(fn)
        if target is None:
            continue
        sym = fn.sym_name.data
        if target == "accelerator":
            layers = []
            for op in fn.body.block.ops:
                if not isinstance(op, mrvl.MrvlLayerOp):
                    continue
                macs = op.macs()
                accel_macs += macs
                of = op.attributes.get(EXTENDED_ATTR)
                if isinstance(of, StringAttr) and of.data not in extended:
                    extended.append(of.data)
                accel_seconds += (macs / matrix_per_second if macs
                                  else _elements(op) / vector_per_second)
                nodes = op.attributes.get(ONNX_NODES_ATTR)
                names = (
                    [s.data for s in nodes.data if isinstance(s, StringAttr)]
                    if isinstance(nodes, ArrayAttr)
                    else []
                )
                layers.append(
                    {"layer": op.name_str, "kind": op.LAYER_NAME, "onnx_nodes": names,
                     "macs": macs}
                )
            accel.append({"name": sym, "layers": layers})
            fp32_layers += [op.name_str for op in fp32_outputs(fn)]
            continue
        count = 0
        for op in fn.body.block.ops:
            if isinstance(op, graph.ConstantOp | func.ReturnOp):
                continue
            count += 1
            macs = graph_macs(op)
            cpu_macs += macs
            cpu_seconds += macs / CPU_MACS_PER_SECOND + _elements(op) / CPU_ELEMENTS_PER_SECOND
            cpu_nodes.append(
                {
                    "node": _str_attr(op, "onnx_node") or op.name,
                    "op": op.name,
                    "subgraph": sym,
                    "layer": _str_attr(op, "mrvl.layer"),
                    "reason": _str_attr(op, CPU_REASON_ATTR) or "not converted",
                    "macs": macs,
                }
            )
        cpu.append({"name": sym, "ops": count})
    total = accel_macs + cpu_macs
    crossed = crossings(module)
    crossing_seconds = (crossed["count"] * CROSSING_SECONDS
                        + crossed["bytes"] / CROSSING_BYTES_PER_SECOND)
    run_seconds = accel_seconds + cpu_seconds + crossing_seconds
    return {
        "accelerator_subgraphs": accel,
        "cpu_subgraphs": cpu,
        "cpu_nodes": cpu_nodes,
        "macs_total": total,
        "macs_accelerator": accel_macs,
        "accelerator_mac_share": (accel_macs / total) if total else 0.0,
        "fp16_in_int8": [layer["layer"] for sub in accel for layer in sub["layers"]
                         if layer["kind"] in FP16_IN_INT8],
        "fp32_in_fp16": fp32_layers,
        "extended_fp16": extended,
        "crossings": crossed,
        "time_estimate": {
            "source": "estimated",
            "accelerator_s": accel_seconds,
            "cpu_s": cpu_seconds,
            "crossings_s": crossing_seconds,
            "tiles": machine.tiles,
        },
        "cpu_time_share": ((cpu_seconds + crossing_seconds) / run_seconds
                           if run_seconds else 0.0),
    }


def format_crossings(report: dict[str, Any]) -> str:
    """One line: the crossings and the CPU's share of the run time (estimated)."""
    crossed = report["crossings"]
    estimate = report["time_estimate"]
    return (
        f"crossings: {crossed['count']} tensor(s), {crossed['bytes']:,} bytes between "
        f"accelerator and CPU, {crossed['switches']} switch(es); CPU share of run time "
        f"{100.0 * report['cpu_time_share']:.2f}% ({estimate['source']}: accelerator "
        f"{1e3 * estimate['accelerator_s']:.3f} ms on {estimate['tiles']} tile(s), CPU "
        f"{1e3 * estimate['cpu_s']:.3f} ms, crossings {1e3 * estimate['crossings_s']:.3f} ms)"
    )


FP16_IN_INT8 = ("MatMul", "Softmax", "LayerNorm")
"""Layer kinds that compute in fp16 in an int8 build (the DMA dequantises their inputs and
quantises their outputs): exp, rsqrt and products of two asymmetric int8 activations."""


def format_report(report: dict[str, Any]) -> str:
    """Human-readable text of `offload_report`'s dict."""
    lines = []
    share = 100.0 * report["accelerator_mac_share"]
    lines.append(
        f"accelerator: {len(report['accelerator_subgraphs'])} sub-graph(s), "
        f"{sum(len(s['layers']) for s in report['accelerator_subgraphs'])} layer(s), "
        f"{share:.2f}% of {report['macs_total']} MACs"
    )
    for sub in report["accelerator_subgraphs"]:
        kinds = ", ".join(f"{l['layer']} {l['kind']}" for l in sub["layers"])
        lines.append(f"  @{sub['name']}: {kinds}")
    if report.get("fp16_in_int8"):
        lines.append(
            f"  fp16 in int8 builds ({', '.join(FP16_IN_INT8)}): "
            f"{len(report['fp16_in_int8'])} layer(s)"
        )
    if report.get("fp32_in_fp16"):
        lines.append(
            f"  fp32 outputs in fp16 builds (residual stream, lowering/mrvl_precision.py): "
            f"{len(report['fp32_in_fp16'])} layer(s)"
        )
    if report.get("extended_fp16"):
        lines.append(
            f"  extended-precision FCs (2 or 3 fp16 GEMM passes, "
            f"lowering/mrvl_extended_precision.py): {len(report['extended_fp16'])} layer(s)"
        )
    lines.append(
        f"cpu: {len(report['cpu_subgraphs'])} sub-graph(s), {len(report['cpu_nodes'])} node(s)"
    )
    for node in report["cpu_nodes"]:
        layer = f" [{node['layer']}]" if node["layer"] else ""
        lines.append(
            f"  @{node['subgraph']}: {node['node']} ({node['op']}){layer}: {node['reason']}"
        )
    lines.append(format_crossings(report))
    return "\n".join(lines) + "\n"


def write_report(module: ModuleOp, path: str | Path, machine: Machine | None = None) -> None:
    """Write the report as JSON (`.json`) or text."""
    report = offload_report(module, machine)
    text = (
        json.dumps(report, indent=2, sort_keys=True) + "\n"
        if str(path).endswith(".json")
        else format_report(report)
    )
    from mrvl.files import write_text

    write_text(path, text, "offload report")
