"""The `mrvl` command: one entry point whose verbs live in their own modules.

Each verb module exposes `HELP` (one line, repeated in `VERBS`), `configure(parser)` and
`run(args) -> int`; only the invoked verb's module is imported (`mrvl --help` imports none).
A verb whose module is not part of this installation is not offered.  Errors derived from
`MrvlError` are printed as one line (`mrvl: error: ...`) with exit status 2; a broken pipe
or Ctrl-C exits quietly.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import NoReturn

from mrvl import __version__
from mrvl.errors import MrvlError

# verb -> (module implementing it, its one-line help), in the order `mrvl --help` lists
# them. The help is kept here so that `mrvl --help` imports no verb module (and so neither
# onnx nor xDSL); `tests/test_front_door.py` checks it matches each module's `HELP`.
VERBS: dict[str, tuple[str, str]] = {
    "import": ("mrvl.driver.verb_import",
               "import an ONNX model into the graph dialect and print a summary (or the IR)"),
    "partition": ("mrvl.driver.verb_partition",
                  "partition an ONNX model for the accelerator and write the Nodes/Constants "
                  "JSON pairs"),
    "compile": ("mrvl.driver.verb_compile",
                "compile a JSON pair (or a whole ONNX model) to mlip model binaries"),
    "sim": ("mrvl.driver.verb_sim",
            "simulate a model binary on inputs and report cycles (like mrvl-mlsim)"),
    "run": ("mrvl.driver.verb_run",
            "run a compiled build directory end to end (accelerator simulated, CPU on "
            "onnxruntime)"),
    "report": ("mrvl.driver.verb_report",
               "report a build: partition, offload share, per-layer cycles, OCM and DMA"),
    "show": ("mrvl.driver.verb_show",
             "draw the accelerator / CPU partition of a build directory or ONNX model (DOT or "
             "SVG)"),
    "example": ("mrvl.driver.verb_example",
                "compile and run an in-repo example model end to end (mnist, resnet50, ssd)"),
}


def _available_verbs() -> dict[str, tuple[str, str]]:
    found = {}
    for verb, entry in VERBS.items():
        try:
            spec = importlib.util.find_spec(entry[0])
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            found[verb] = entry
    return found


class _Parser(argparse.ArgumentParser):
    """argparse with two-line usage errors: a short usage line and the error (the full usage
    of a verb with many options ran to 11 lines)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"usage: {self.prog} ... (see `{self.prog} --help`)\n"
                     f"{self.prog}: error: {message}\n")


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `verb`'s module is imported and configures its sub-parser (every
    verb when `verb` is None), so `mrvl --help` and `mrvl VERB` stay quick to start."""
    parser = _Parser(
        prog="mrvl",
        description=(
            "Compile an ONNX model for a Marvell-MLIP-style accelerator, simulate it with "
            "cycle counts, and run it end to end with the CPU parts on onnxruntime."
        ),
        epilog=(
            "typical flow: mrvl compile model.onnx -o build/ && "
            "mrvl run build/ --inputs x.npz --check && mrvl report build/.  "
            "`mrvl VERB --help` explains each verb.  Exit status: 0 success, 1 a --check "
            "failed, 2 bad input or usage (one-line message on stderr)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mrvl {__version__}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module_name, help_text) in _available_verbs().items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if verb is None or name == verb:
            module = importlib.import_module(module_name)
            module.configure(sub)
            sub.set_defaults(_verb_module=module)
    return parser


def _verb_of(argv: list[str]) -> str | None:
    """The verb `argv` names (its first word that is not an option), if any."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in VERBS else None
    return None


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(_verb_of(argv) or "")
    args = parser.parse_args(argv)
    if getattr(args, "_verb_module", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._verb_module.run(args) or 0)
    except MrvlError as error:
        print(f"mrvl {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
