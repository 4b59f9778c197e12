"""`mrvl partition MODEL -o DIR`: the step-1 flow from an ONNX model to the JSON pairs.

Imports the model, runs the graph passes, fuses layers, partitions, and writes
`DIR/<sym>-nodes.json` and `DIR/<sym>-consts.json` for each accelerator sub-graph (printing
the written paths). `--report` prints the offload report and writes
`DIR/offload-report.json`; `--dot` writes `DIR/partition.dot` (and `partition.svg` when
Graphviz is installed); `--print-ir` writes the partitioned IR to `DIR/partitioned.mlir`.
"""

from __future__ import annotations

import argparse
import io
import shutil
from pathlib import Path

from xdsl.printer import Printer

from mrvl.errors import MrvlError

HELP = "partition an ONNX model for the accelerator and write the Nodes/Constants JSON pairs"


def add_partition_options(parser: argparse.ArgumentParser) -> None:
    """The partitioning options shared by `partition` and `show`."""
    parser.add_argument(
        "--mode",
        choices=("default", "rfc-first-revision"),
        default="default",
        help="default: any number of sub-graphs; rfc-first-revision: at most one of each",
    )
    parser.add_argument(
        "--cpu-layers",
        default="",
        metavar="NAMES",
        help="comma-separated layer names (tvmgen_mrvl_main_4) or ONNX node names for the CPU",
    )
    parser.add_argument(
        "--max-layers", type=int, default=-1, metavar="N", help="keep at most N accelerator layers"
    )
    parser.add_argument(
        "--no-require-compute",
        action="store_true",
        help="keep accelerator regions without conv2d or dense on the accelerator",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="value of a symbolic first input dimension"
    )
    parser.add_argument(
        "--input-shape", action="append", type=input_shape, default=[],
        metavar="NAME=D0,D1,...", help="static shape of a model input with symbolic "
        "dimensions (repeatable)")
    parser.add_argument(
        "--inputs", metavar="X.npz", default=None, dest="sample_inputs",
        help="sample inputs: symbolic dimensions not given by --input-shape are taken from "
             "their shapes")


def input_shape(text: str) -> tuple[str, list[int]]:
    """`NAME=D0,D1,...` of `--input-shape`."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=D0,D1,..., got '{text}'")
    try:
        return name, [int(d) for d in dims.split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integer dimensions in '{text}'") from None


def partition_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "mode": args.mode,
        "cpu_layers": tuple(n.strip() for n in args.cpu_layers.split(",") if n.strip()),
        "max_layers": args.max_layers,
        "require_compute": not args.no_require_compute,
        "batch_size": args.batch_size,
        "input_shapes": dict(args.input_shape),
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX model (.onnx file or ONNX text format)")
    parser.add_argument("-o", "--output", required=True, help="output directory")
    add_partition_options(parser)
    parser.add_argument("--report", action="store_true", help="print the offload report")
    parser.add_argument("--dot", action="store_true", help="write partition.dot (and .svg)")
    parser.add_argument(
        "--print-ir", action="store_true", help="write the partitioned IR to partitioned.mlir"
    )


def run(args: argparse.Namespace) -> int:
    from mrvl.driver.compiler import compile_to_partitioned
    from mrvl.lowering.mrvl_json import write_module_json
    from mrvl.lowering.offload_report import format_report, offload_report, write_report
    from mrvl.lowering.partition_dot import write_picture

    if not Path(args.model).exists():
        raise MrvlError(f"model file '{args.model}' does not exist")
    module = compile_to_partitioned(args.model, samples=args.sample_inputs,
                                    **partition_options(args))
    out_dir = Path(args.output)
    try:  # a model with no accelerator sub-graph writes no JSON pair, but still a report
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MrvlError(f"cannot create the output directory '{out_dir}': {exc}") from exc
    pairs = write_module_json(module, out_dir)
    for nodes_path, consts_path in pairs:
        print(nodes_path)
        print(consts_path)
    if args.report:
        print(format_report(offload_report(module)), end="")
        write_report(module, out_dir / "offload-report.json")
    if args.dot:
        print(write_picture(module, out_dir / "partition.dot", Path(args.model).stem))
        if shutil.which("dot") is not None:
            print(write_picture(module, out_dir / "partition.svg", Path(args.model).stem))
    if args.print_ir:
        stream = io.StringIO()
        Printer(stream=stream).print_op(module)
        path = out_dir / "partitioned.mlir"
        from mrvl.files import write_text

        write_text(path, stream.getvalue() + "\n", "partitioned IR")
        print(path)
    return 0
