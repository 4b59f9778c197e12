"""Graphviz pictures of a partitioned module (the RFC's Figures 2a, 2b and 3).

`partition_to_dot(module) -> str` draws one cluster per sub-graph function: accelerator
layers as boxes (`tvmgen_mrvl_main_<k>` and the layer kind), CPU ops as ellipses (ONNX node
name and op), each sub-graph in its own colour, model inputs and outputs as plain nodes, and
the data flow between them (across sub-graphs too). `write_picture(module, path)` writes DOT,
or SVG when the path ends in .svg and Graphviz's `dot` is installed.

Invariant: only reads the IR; the output is deterministic (same module, same text).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue

from mrvl.dialects import graph, mrvl
from mrvl.dialects.mrvl import TARGET_ATTR
from mrvl.errors import MrvlError
from mrvl.files import check_output_path, write_bytes, write_text

ACCEL_COLOURS = ("#9ecae1", "#a1d99b", "#fdd0a2", "#dadaeb", "#c7e9c0", "#fcbba1")
CPU_COLOURS = ("#d9d9d9", "#bdbdbd", "#f0f0f0")


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def _label(op: Operation) -> str:
    if isinstance(op, mrvl.MrvlLayerOp):
        act = op.activation_str()
        extra = f" + {act}" if act != "none" else ""
        return f"{op.name_str}\n{op.LAYER_NAME}{extra}"
    node = op.attributes.get("onnx_node")
    name = node.data if isinstance(node, StringAttr) else ""
    return f"{name}\n{op.name}" if name else op.name


def partition_to_dot(module: ModuleOp, title: str = "partition") -> str:
    """DOT text of a partitioned module (see the module docstring)."""
    functions = {
        op.sym_name.data: op for op in module.ops if isinstance(op, func.FuncOp)
    }
    main = graph.find_function(module)
    if main is None:
        raise MrvlError("partition picture: the module has no func.func @main")
    ids: dict[Operation, str] = {}
    lines = [f"digraph {_quote(title)} {{", "  rankdir=TB;", '  node [fontsize=10];']
    # Model inputs.
    source: dict[SSAValue, str] = {}
    for arg, name in zip(main.args, graph.input_names(main)):
        node_id = f"in_{len(source)}"
        source[arg] = node_id
        lines.append(f"  {node_id} [label={_quote(name)}, shape=plain];")
    counters = {"accelerator": 0, "cpu": 0}
    edges: list[str] = []
    for call in main.body.block.ops:
        if not isinstance(call, func.CallOp):
            continue
        callee = functions.get(call.callee.root_reference.data)
        if callee is None:
            continue
        target_attr = callee.attributes.get(TARGET_ATTR)
        target = target_attr.data if isinstance(target_attr, StringAttr) else "cpu"
        palette = ACCEL_COLOURS if target == "accelerator" else CPU_COLOURS
        colour = palette[counters[target] % len(palette)]
        counters[target] += 1
        sym = callee.sym_name.data
        lines.append(f"  subgraph {_quote('cluster_' + sym)} {{")
        lines.append(f"    label={_quote('@' + sym + ' (' + target + ')')};")
        lines.append(f"    style=filled; color={_quote(colour)};")
        local: dict[SSAValue, str] = {}
        for arg, outer in zip(callee.args, call.operands):
            if outer in source:
                local[arg] = source[outer]
        for op in callee.body.block.ops:
            if isinstance(op, graph.ConstantOp | func.ReturnOp):
                continue
            node_id = f"n{len(ids)}"
            ids[op] = node_id
            shape = "box" if isinstance(op, mrvl.MrvlLayerOp) else "ellipse"
            lines.append(
                f"    {node_id} [label={_quote(_label(op))}, shape={shape}, style=filled, "
                f"fillcolor=white];"
            )
            for value in op.operands:
                if value in local:
                    edges.append(f"  {local[value]} -> {node_id};")
            for result in op.results:
                local[result] = node_id
        lines.append("  }")
        ret = callee.body.block.last_op
        if isinstance(ret, func.ReturnOp):
            for outer, inner in zip(call.results, ret.operands):
                if inner in local:
                    source[outer] = local[inner]
    ret = main.body.block.last_op
    names = main.attributes.get("graph.output_names")
    out_names = (
        [a.data for a in names.data if isinstance(a, StringAttr)]
        if isinstance(names, ArrayAttr)
        else []
    )
    if isinstance(ret, func.ReturnOp):
        for i, value in enumerate(ret.operands):
            node_id = f"out_{i}"
            name = out_names[i] if i < len(out_names) else f"output{i}"
            lines.append(f"  {node_id} [label={_quote(name)}, shape=plain];")
            if value in source:
                edges.append(f"  {source[value]} -> {node_id};")
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


PICTURE_SUFFIXES = (".dot", ".gv", ".svg")


def check_picture_path(path: str | Path) -> Path:
    """`path` if a picture can be written there: a .dot / .gv (DOT text) or .svg file in an
    existing directory; raises MrvlError (callers check before any work)."""
    out = check_output_path(path, "partition picture")
    if out.suffix.lower() not in PICTURE_SUFFIXES:
        raise MrvlError(f"cannot write '{out}': the picture is DOT text (.dot, .gv) or SVG "
                        f"(.svg), not '{out.suffix or 'no suffix'}'")
    return out


def write_picture(module: ModuleOp, path: str | Path, title: str = "partition") -> Path:
    """Write DOT (or SVG for a .svg path, with Graphviz's `dot`) atomically; return the
    written path."""
    out = check_picture_path(path)
    text = partition_to_dot(module, title)
    if out.suffix.lower() != ".svg":
        return write_text(out, text, "partition picture")
    dot = shutil.which("dot")
    if dot is None:
        raise MrvlError(
            f"cannot write '{out}': Graphviz `dot` is not installed (write a .dot file)"
        )
    try:
        result = subprocess.run([dot, "-Tsvg"], input=text.encode(), capture_output=True)
    except OSError as exc:
        raise MrvlError(f"cannot run Graphviz dot for '{out}': {exc.strerror}") from None
    if result.returncode != 0:
        raise MrvlError(f"Graphviz dot failed for '{out}': "
                        f"{result.stderr.decode(errors='replace').strip()}")
    return write_bytes(out, result.stdout, "partition picture")
