"""mrvl as a TVM Relax BYOC target (the optional extra `mrvl[tvm]`; docs/tvm.md).

- `partition_for_mrvl(mod, **options) -> IRModule`: offload mrvl's layers (partition.py);
- `build(mod, target="llvm", **options)`: RunCodegen (`relax.ext.mrvl`, codegen.py) and
  `tvm.compile`; the result runs in `tvm.relax.VirtualMachine`, the mrvl regions on the
  simulator through the C++ runtime module of mrvl_runtime.cc;
- importing this package builds (once, cached) and loads that runtime library and registers
  the codegen: import it before `tvm.runtime.load_module` of an exported library.

Only this package imports tvm: `import mrvl` and the `mrvl` command never do.
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax

from mrvl.tvm import codegen, runtime_library
from mrvl.tvm.partition import offloaded_layers, partition_for_mrvl

runtime_library.load()
codegen.register()

CODEGEN_OPTIONS = ("num_tiles", "ocm_size", "page_size", "machine", "quantize", "calibration",
                   "calibration_method")
"""The options `build` hands to the codegen (the rest go to tvm.compile)."""


def build(mod: tvm.IRModule, target: str | tvm.target.Target = "llvm", **options: Any
          ) -> Any:
    """RunCodegen on a partitioned module (the mrvl regions become runtime modules, compiled
    with `options`: num_tiles, ocm_size, page_size, machine, quantize, calibration,
    calibration_method), then `tvm.compile` of the rest for `target`; returns the
    executable (run it with `relax.VirtualMachine(exe, tvm.cpu())`)."""
    from mrvl.driver.compiler import CompileOptions
    from mrvl.errors import CompileError

    unknown = sorted(set(options) - set(CODEGEN_OPTIONS))
    if unknown:
        raise CompileError(f"mrvl.tvm.build: unknown option(s) {unknown}; expected "
                           f"{list(CODEGEN_OPTIONS)}")
    CompileOptions.from_keywords(**options)  # checked here: inside RunCodegen an error
    # would reach the caller as TVM's RuntimeError
    mod = relax.transform.RunCodegen({"mrvl": options})(mod)
    return tvm.compile(mod, target=target)


def mrvl_modules(lib: Any) -> dict[str, bytes]:
    """Region symbol -> model binary of every mrvl runtime module imported by `lib` (an
    executable's `.mod` or a loaded library), e.g. to inspect with `mrvl sim` or
    `mrvl.mlip_binary.ModelBinary.from_bytes`."""
    found: dict[str, bytes] = {}
    pending = [lib]
    while pending:
        module = pending.pop()
        if module.kind == "mrvl":
            found[str(module.get_function("get_symbol")())] = bytes(
                module.get_function("get_binary")())
        pending.extend(module.imports)
    return found


__all__ = ["build", "mrvl_modules", "offloaded_layers", "partition_for_mrvl"]
