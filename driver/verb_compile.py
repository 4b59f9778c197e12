"""`mrvl compile`: the backend compiler's command line (Marvell's `mrvl-tvmircomp`).

Two forms:

- `mrvl compile --nodes <sym>-nodes.json --consts <sym>-consts.json --num-tiles 8
  --ocm-size 0x100000 --quantize fp16|int8 [--calibration inputs.npz] -o <sym>.bin`
  compiles one JSON pair to a model binary;
- `mrvl compile model.onnx -o build/ [--num-tiles N] [--quantize ...] [partition options]`
  runs step 1 first and writes the build directory of docs/build-dir.md (JSON pairs,
  binaries, CPU sub-graphs as ONNX, manifest.json, offload.json, static_report.json).

`--machine KEY=VALUE` (repeatable) overrides a field of the machine description
(mrvl/machine.py, docs/isa.md section 4; the manifest and the binary record it,
the simulator times with it, results never depend on it); `--emit STAGE` stops the ONNX form after a
stage of the driver (driver/compiler.py): `import` and `partition` print the IR, `json`
writes the JSON pairs and CPU models, `mlip` prints the assembly of every sub-graph.
`--report` prints the static report (OCM, DMA, MACs, roofline per layer); `--asm FILE`
writes the assembly listing (JSON-pair form).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mrvl import mlip_isa as isa
from mrvl.driver.compiler import CompileOptions, PartitionOptions, Stage, compile, compile_pair
from mrvl.errors import CompileError
from mrvl.files import check_output_path, write_bytes, write_text
from mrvl.lowering.backend import PRECISIONS
from mrvl.machine import Machine, overrides_help

HELP = "compile a JSON pair (or a whole ONNX model) to mlip model binaries"


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (e.g. 0x100000), got '{text}'")


def configure(parser: argparse.ArgumentParser) -> None:
    from mrvl.driver.verb_partition import add_partition_options

    parser.add_argument("model", nargs="?", help="ONNX model (builds a whole directory)")
    parser.add_argument("--nodes", help="Nodes-JSON of one accelerator sub-graph")
    parser.add_argument("--consts", help="Constants-JSON of the same sub-graph")
    parser.add_argument("-o", "--output", required=True,
                        help="the .bin (JSON pair) or the build directory (ONNX model)")
    parser.add_argument("--num-tiles", type=int, default=1, choices=(1, 2, 4, 8))
    parser.add_argument("--ocm-size", type=_int, default=isa.DEFAULT_OCM_SIZE,
                        help="OCM bytes per tile (default 0x100000)")
    parser.add_argument("--page-size", type=_int, default=isa.DEFAULT_PAGE_SIZE,
                        help="OCM page size: 1024, 2048, 4096, 8192 or 16384 (default)")
    parser.add_argument("--machine", action="append", default=[], metavar="KEY=VALUE",
                        help=overrides_help())
    parser.add_argument("--quantize", choices=("fp16", "int8"), default="fp16")
    parser.add_argument("--io-dtype", choices=("f16", "f32", "i8"), default=None,
                        help="dtype of the binary's inputs/outputs (default: f16, or i8 "
                             "with --quantize int8, where an output computed by a conv / "
                             "FC is written f32; i8 given: every output int8)")
    parser.add_argument("--calibration", metavar="X.npz|random",
                        help="int8 (required): .npz of calibration inputs (samples stacked "
                             "along the batch axis), or 'random' for standard-normal noise")
    parser.add_argument("--calibration-method", default=None,
                        metavar="minmax|percentile|mse|entropy",
                        help="int8: how each activation range is chosen from the calibration "
                             "values: min/max, the 0.01-99.99th percentiles (default), "
                             "the clipping with the least quantisation MSE, or with the least "
                             "KL divergence (TensorRT's entropy calibration)")
    parser.add_argument("--bias-correction", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="int8 (default on): fold each conv/gemm's mean output error on "
                             "the calibration data into its bias")
    parser.add_argument("--channel-scales", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="int8 (default on): per-channel activation scales on conv->conv "
                             "and conv->fc edges, folded into the weights")
    parser.add_argument("--fp16-precision", choices=PRECISIONS, default="auto",
                        help="fp16 transformer sub-graphs (residual streams stored fp32 in "
                             "each): 'auto' (default) also runs each FC of a sub-graph "
                             "that reads a class token with its weights' low half as a "
                             "second GEMM pass; 'targeted' does that in every one; "
                             "'storage' neither; 'extended' runs each FC as three fp16 GEMM "
                             "passes on split fp32 operands (near-fp32 products, 3x the FC "
                             "MACs)")
    parser.add_argument("--emit", choices=[s.value for s in Stage], default="binary",
                        help="ONNX form: stop after this stage (default binary)")
    parser.add_argument("--report", action="store_true", help="print the static report")
    parser.add_argument("--asm", help="write the assembly listing here (JSON-pair form)")
    add_partition_options(parser)


def compile_options(args: argparse.Namespace) -> CompileOptions:
    """The typed options of the command line."""
    from mrvl.driver.verb_partition import partition_options

    machine = Machine().with_overrides({"tiles": args.num_tiles, "ocm_bytes": args.ocm_size,
                                        "page_bytes": args.page_size})
    return CompileOptions(
        quantize=args.quantize, io_dtype=args.io_dtype, calibration=args.calibration,
        calibration_method=args.calibration_method, bias_correction=args.bias_correction,
        channel_scales=args.channel_scales, fp16_precision=args.fp16_precision,
        machine=machine.with_overrides(args.machine),
        partition=PartitionOptions(**partition_options(args)))


def run(args: argparse.Namespace) -> int:
    from mrvl.lowering.backend_report import format_report, program_report

    options = compile_options(args)
    if args.model is not None:
        if args.nodes or args.consts:
            raise CompileError("give either an ONNX model or --nodes/--consts, not both")
        if args.asm:
            raise CompileError("--asm writes the listing of a JSON pair; for an ONNX model "
                               "use --emit mlip")
        stage = Stage(args.emit)
        result = compile(args.model, options, stop_after=stage, out_dir=args.output,
                         samples=args.sample_inputs, progress=True)
        if stage in (Stage.IMPORT, Stage.PARTITION):
            print(_ir_text(result.module))
            return 0
        if stage is Stage.MLIP:
            from mrvl.dialects.mlip import model_asm

            for sub in result.subgraphs:
                print(model_asm(sub.model), end="")
            return 0
        for step in result.manifest.get("steps", []):
            print(Path(args.output) / step.get("binary", step.get("onnx", "")))
        if stage is Stage.JSON:
            for pair in result.pairs:
                print(*pair, sep="\n")
            return 0
        print(Path(args.output) / "manifest.json")
        if args.report:
            for report in result.reports:
                print(format_report(report), end="")
        return 0
    if not args.nodes or not args.consts:
        raise CompileError("mrvl compile needs an ONNX model or both --nodes and --consts")
    from mrvl.dialects.mlip import model_asm

    out = check_output_path(args.output, "model binary")  # before any work
    if args.asm:
        check_output_path(args.asm, "assembly listing")
    sub = compile_pair(args.nodes, args.consts, options)
    write_bytes(out, sub.data, "model binary")
    print(out)
    if args.asm:
        write_text(args.asm, model_asm(sub.model), "assembly listing")
    if args.report:
        print(format_report(program_report(sub.model)), end="")
    return 0


def _ir_text(module) -> str:
    import io

    from xdsl.printer import Printer

    stream = io.StringIO()
    Printer(stream=stream).print_op(module)
    return stream.getvalue()
