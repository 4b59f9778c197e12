"""`mrvl import MODEL`: import an ONNX model into the graph dialect and summarise it.

Prints the inputs and outputs with their types, the number of ops of each kind, the number
of parameters (elements of all constants) and their size; `--print-ir` prints the whole IR
instead (`--elide-constants[=N]` elides constants of more than N elements).
"""

from __future__ import annotations

import argparse
import collections
import io
import math
import sys

from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.dialects.func import FuncOp
from xdsl.ir import Attribute
from xdsl.printer import Printer

from mrvl.dialects import graph
from mrvl.driver.verb_partition import input_shape
from mrvl.errors import ModelImportError

HELP = "import an ONNX model into the graph dialect and print a summary (or the IR)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model: .onnx file or ONNX text format")
    parser.add_argument("--print-ir", action="store_true", help="print the graph-dialect IR")
    parser.add_argument(
        "--elide-constants",
        nargs="?",
        type=int,
        const=16,
        default=None,
        metavar="N",
        help="with --print-ir: print constants of more than N elements (default 16) elided",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="value of a symbolic first input dimension"
    )
    parser.add_argument(
        "--input-shape",
        action="append",
        type=input_shape,
        metavar="NAME=D0,D1,...",
        help="static shape of a model input (repeatable)",
    )


def _text(attr: Attribute) -> str:
    stream = io.StringIO()
    Printer(stream=stream).print_attribute(attr)
    return stream.getvalue()


def summarize(module: ModuleOp) -> str:
    """A short text summary of an imported module."""
    main = next((op for op in module.ops if isinstance(op, FuncOp)), None)
    if main is None:
        raise ModelImportError("the module holds no function")
    lines = ["inputs:"]
    for i, arg in enumerate(main.args):
        name = f"#{i}"
        if main.arg_attrs is not None:
            attr = main.arg_attrs.data[i].data.get("graph.name")
            if isinstance(attr, StringAttr):
                name = attr.data
        lines.append(f"  {name}: {_text(arg.type)}")
    lines.append("outputs:")
    names_attr = main.attributes.get("graph.output_names")
    out_names = [a.data for a in names_attr.data] if names_attr is not None else []
    for i, t in enumerate(main.function_type.outputs.data):
        name = out_names[i] if i < len(out_names) else f"#{i}"
        lines.append(f"  {name}: {_text(t)}")
    counts: collections.Counter[str] = collections.Counter()
    generic: collections.Counter[str] = collections.Counter()
    params = 0
    nbytes = 0
    for op in main.walk():
        if op is main:
            continue
        counts[op.name] += 1
        if isinstance(op, graph.OnnxOp):
            generic[op.op_type.data] += 1
        if isinstance(op, graph.ConstantOp):
            n = math.prod(op.value.get_shape())
            params += n
            nbytes += len(op.value.data.data)
    lines.append("ops:")
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {name}: {n}")
    if generic:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(generic.items()))
        lines.append(f"generic (graph.onnx, CPU) op types: {listed}")
    lines.append(f"parameters: {params} ({nbytes / 1e6:.2f} MB)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mrvl.frontend.onnx_import import import_onnx

    module = import_onnx(
        args.model, input_shapes=dict(args.input_shape or []), batch_size=args.batch_size
    )
    if not args.print_ir:
        print(summarize(module))
        return 0
    printer = Printer(stream=sys.stdout)
    if args.elide_constants is None:
        printer.print_op(module)
    else:
        with graph.elided_constants(args.elide_constants):
            printer.print_op(module)
    print()
    return 0
