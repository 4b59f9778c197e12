"""The `mrvl` command: one entry point whose verbs live in their own modules.

Each verb module exposes `HELP` (one line), `configure(parser)` and `run(args) -> int`.
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

# verb -> module implementing it, in the order `mrvl --help` lists them.
VERBS: dict[str, str] = {
    "import": "mrvl.driver.verb_import",
    "partition": "mrvl.driver.verb_partition",
    "compile": "mrvl.driver.verb_compile",
    "sim": "mrvl.driver.verb_sim",
    "run": "mrvl.driver.verb_run",
    "report": "mrvl.driver.verb_report",
    "show": "mrvl.driver.verb_show",
    "example": "mrvl.driver.verb_example",
}


def _available_verbs() -> dict[str, str]:
    found = {}
    for verb, module in VERBS.items():
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            found[verb] = module
    return found


class _Parser(argparse.ArgumentParser):
    """argparse with two-line usage errors: a short usage line and the error (the full usage
    of a verb with many options ran to 11 lines)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"usage: {self.prog} ... (see `{self.prog} --help`)\n"
                     f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
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
    for verb, module_name in _available_verbs().items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(verb, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(_verb_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
