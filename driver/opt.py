"""`mrvl-opt`: xDSL's opt driver with mrvl's dialects, passes, targets and an ONNX frontend.

Everything xDSL's `xdsl-opt` offers stays available (its dialects, passes such as
`canonicalize` / `cse`, targets such as `mlir`, `--split-input-file`,
`--verify-diagnostics`); mrvl adds, from the lazy tables:

- dialects from `mrvl.dialects.get_all_dialects()`,
- passes from `mrvl.lowering.get_all_passes()`,
- targets from `mrvl.lowering.get_all_targets()`,
- the `onnx` frontend: `mrvl-opt model.onnx` (or `-f onnx` on stdin; `.onnxtxt` files and
  `-f onnxtxt` for the ONNX text format) imports the model
  into the graph dialect (`--batch-size`, `--input-shape name=1,3,224,224` fix symbolic
  dimensions),
- `--elide-constants[=N]`: print constants of more than N (default 16) elements as
  `dense_resource<__elided__>`.

A user error (bad model, bad option, a missing or unreadable input file, an output path in
a missing directory, bytes that are not text) prints one `mrvl-opt: error: ...` line, exit
status 2; invalid IR prints the diagnostic (location and message, no traceback), exit status
1. `-o FILE` is written atomically, only when everything succeeded.

xDSL 0.74's lexer matches a string literal with `"(?:[^"\\...]+|\\...)*"`, a nested
quantifier that backtracks exponentially when the closing quote is missing (a file cut off
inside a string or a hex constant took minutes; xDSL 0.75.0, the newest release, has the
same regex).
`_linear_string_literals` swaps in the same language with possessive quantifiers, which
fails in linear time.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
from collections.abc import Sequence
from typing import IO

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.arg_spec import ArgSpecParseError
from xdsl.utils.exceptions import DiagnosticException, ParseError, PassFailedException
from xdsl.xdsl_opt_main import xDSLOptMain

from mrvl.errors import MrvlError
from mrvl.files import check_output_path, os_error_text, write_text


def _linear_string_literals() -> None:
    """Make xDSL's string-literal regex fail in linear time (module docstring)."""
    import re

    from xdsl.utils.mlir_lexer import MLIRLexer

    MLIRLexer._unescaped_characters_regex = re.compile(  # pyright: ignore[reportPrivateUsage]
        r'"(?:[^"\\\n\v\f]++|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*+"')


_linear_string_literals()


class _CollectedOutput(io.StringIO):
    """The output of a run, kept when xDSL closes the stream (written atomically after)."""

    text = ""

    def close(self) -> None:
        if not self.closed:
            self.text = self.getvalue()
        super().close()


def _parse_input_shape(text: str) -> tuple[str, list[int]]:
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=D0,D1,..., got '{text}'")
    try:
        return name, [int(d) for d in dims.split(",") if d.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected integer dimensions in '{text}'") from error


def _calibrating_quantize_pass() -> type[ModulePass]:
    from mrvl.driver.calibration import CalibratingQuantizePass

    return CalibratingQuantizePass


class MrvlOptMain(xDSLOptMain):
    """xDSLOptMain with mrvl's dialects, passes, targets and the `.onnx` frontend."""

    def __init__(self, args: Sequence[str] | None = None):
        super().__init__(description="mrvl modular optimizer driver", args=args)

    def get_input_stream(self) -> tuple[IO[bytes], str]:
        path = self.args.input_file
        if path is not None:
            if os.path.isdir(path):
                raise MrvlError(f"input '{path}' is a directory, expected a .mlir or .onnx file")
            if not os.path.isfile(path):
                raise MrvlError(f"input file '{path}' does not exist")
        try:
            return super().get_input_stream()
        except OSError as error:
            raise MrvlError(f"cannot read '{path}': {os_error_text(error)}") from None

    def prepare_output(self) -> IO[str]:
        if self.args.output_file is None:
            return super().prepare_output()
        self.collected = _CollectedOutput()
        return self.collected

    def run(self) -> None:
        self.collected: _CollectedOutput | None = None
        if self.args.output_file is not None:  # before the input is opened
            check_output_path(self.args.output_file)
        super().run()
        if self.collected is not None:
            write_text(self.args.output_file, self.collected.text)

    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        from mrvl.dialects import get_all_dialects

        for name, factory in get_all_dialects().items():
            if name in self.ctx.registered_dialect_names:
                continue
            self.ctx.register_dialect(name, factory)

    def register_all_passes(self) -> None:
        super().register_all_passes()
        from mrvl.lowering import get_all_passes

        for name, factory in get_all_passes().items():
            self.register_pass(name, factory)
        # int8 `mrvl-quantize` takes its ranges from a calibration run of the reference
        # executor, which the driver provides (driver/calibration.py)
        self.register_pass("mrvl-quantize", _calibrating_quantize_pass)

    def register_all_targets(self) -> None:
        super().register_all_targets()
        from mrvl.lowering import get_all_targets

        for name, factory in get_all_targets().items():
            self.available_targets[name] = factory

    def register_all_frontends(self) -> None:
        super().register_all_frontends()

        def parse_onnx(stream: IO[bytes]) -> ModuleOp:
            from mrvl.driver.compiler import import_model

            base_dir = None
            if self.args.input_file is not None:
                base_dir = os.path.dirname(os.path.abspath(self.args.input_file))
            return import_model(
                stream.read(),
                name=self.get_input_name(),
                base_dir=base_dir,
                input_shapes=dict(self.args.input_shape or []),
                batch_size=self.args.batch_size,
            )

        self.available_frontends["onnx"] = parse_onnx
        self.available_frontends["onnxtxt"] = parse_onnx  # ONNX text format (onnx.parser)

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument(
            "--elide-constants",
            nargs="?",
            type=int,
            const=16,
            default=None,
            metavar="N",
            help="print constants of more than N elements (default 16) as "
            "dense_resource<__elided__>",
        )
        arg_parser.add_argument(
            "--batch-size",
            type=int,
            default=1,
            help="ONNX frontend: value for a symbolic first input dimension (default 1)",
        )
        arg_parser.add_argument(
            "--input-shape",
            action="append",
            type=_parse_input_shape,
            metavar="NAME=D0,D1,...",
            help="ONNX frontend: static shape of an input (repeatable)",
        )

    def output_resulting_program(self, prog: ModuleOp) -> str:
        if self.args.elide_constants is None:
            return super().output_resulting_program(prog)
        from mrvl.dialects.graph import elided_constants

        with elided_constants(self.args.elide_constants):
            return super().output_resulting_program(prog)


def _excerpt(annotated_ir: str, context: int = 2) -> str:
    """The lines of xDSL's annotated IR around its `^^^` markers (a whole model with its
    weights can be megabytes long; the failing op and its neighbours are what matter)."""
    lines = annotated_ir.splitlines()
    marks = [i for i, line in enumerate(lines) if line.lstrip().startswith("^^^")]
    if not marks:
        return annotated_ir
    keep: set[int] = set()
    for i in marks:
        keep.update(range(max(0, i - 1 - context), min(len(lines), i + 4 + context)))
    out, last = [], -1
    for i in sorted(keep):
        if i != last + 1:
            out.append("    ...")
        out.append(lines[i])
        last = i
    return "\n".join(out)


def _headline(message: str) -> str:
    """A parse error `file:line:col` / source line / caret / message as one line
    `file:line:col: message` followed by the source excerpt; other messages unchanged."""
    lines = message.strip().splitlines()
    if len(lines) >= 3 and re.fullmatch(r".+:\d+:\d+", lines[0].strip()):
        excerpt = "\n".join(lines[1:-1])
        return f"{lines[0].strip()}: {lines[-1].strip()}\n{excerpt}"
    return message.strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mrvl-opt` script."""
    try:
        try:
            opt_main = MrvlOptMain(args=argv)
        except (ValueError, ArgSpecParseError) as error:
            # A malformed pass pipeline or pass option: xDSL raises these while setting up the
            # pipeline (ArgSpecParseError derives from BaseException, not Exception).
            print(f"mrvl-opt: error: invalid pass pipeline: {error}", file=sys.stderr)
            return 2
        opt_main.run()
    except (ParseError, DiagnosticException, PassFailedException) as error:
        # Invalid IR or a syntax error, caused by the input: exit 2 like every input error.
        # The first line is whole (location: message); the source excerpt or the failing op
        # in context follows; a traceback adds nothing.
        print(f"mrvl-opt: error: {_headline(str(error))}", file=sys.stderr)
        for note in getattr(error, "__notes__", ()):
            print(_excerpt(note), file=sys.stderr)
        return 2
    except MrvlError as error:
        print(f"mrvl-opt: error: {error}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as error:
        print(f"mrvl-opt: error: the input is not UTF-8 text (byte {error.object[error.start]:#04x} "
              f"at offset {error.start}): not an MLIR file", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
