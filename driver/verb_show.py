"""`mrvl show MODEL|BUILD_DIR`: a picture of how a model is partitioned (the RFC's Figures 2, 3).

Given a build directory (from `mrvl compile`), draws the partition that build used. Given an
ONNX model, runs the step-1 flow with the same partitioning options as `mrvl partition` and prints the
Graphviz DOT text, or writes it with `-o FILE.dot` (SVG with `-o FILE.svg` when Graphviz's
`dot` is installed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrvl.errors import MrvlError
from mrvl.driver.verb_partition import add_partition_options, partition_options

HELP = "draw the accelerator / CPU partition of a build directory or ONNX model (DOT or SVG)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="ONNX model (.onnx file or ONNX text format), or a build directory from `mrvl compile`",
    )
    parser.add_argument("-o", "--output", default=None, help="write to FILE.dot or FILE.svg")
    add_partition_options(parser)


def run(args: argparse.Namespace) -> int:
    from mrvl.driver.compiler import compile_to_partitioned
    from mrvl.lowering.partition_dot import check_picture_path, partition_to_dot, write_picture

    if not Path(args.model).exists():
        raise MrvlError(f"model file '{args.model}' does not exist")
    if args.output is not None:
        check_picture_path(args.output)  # before any work
    if Path(args.model).is_dir():
        from mrvl.driver.api import show

        output = args.output if args.output is not None else Path(args.model) / "partition.dot"
        print(show(args.model, output))
        return 0
    module = compile_to_partitioned(args.model, samples=args.sample_inputs,
                                    **partition_options(args))
    title = Path(args.model).stem
    if args.output is None:
        print(partition_to_dot(module, title), end="")
        return 0
    print(write_picture(module, args.output, title))
    return 0
