"""The C++ runtime library of mrvl's TVM modules (kind "mrvl"): built once, loaded into TVM.

`load() -> Path` compiles `mrvl_runtime.cc` with g++ against the tvm-ffi headers and links
it to mrvl's own build of the simulator core (the cffi extension `mrvl.sim._mlip_sim`, whose
C functions are exported), caches the shared library under `$MRVL_TVM_CACHE` (default
`~/.cache/mrvl/tvm`, keyed by a hash of the source, the simulator build and tvm-ffi's
version), and loads it with RTLD_GLOBAL. Loading registers the global functions
`mrvl.runtime.create` (codegen) and `ffi.Module.load_from_bytes.mrvl` (the loader
`tvm.runtime.load_module` calls for exported libraries). `import mrvl.tvm` calls `load()`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mrvl.errors import MrvlError

SOURCE = Path(__file__).resolve().parent / "mrvl_runtime.cc"
_loaded: Path | None = None


class RuntimeBuildError(MrvlError):
    """The C++ runtime library of the TVM integration could not be built."""


def _simulator_extension() -> Path:
    from mrvl.sim import simulator

    simulator._backend()
    module = sys.modules.get("mrvl.sim._mlip_sim")
    if module is None or not getattr(module, "__file__", None):
        raise RuntimeBuildError("mrvl.sim._mlip_sim (the simulator core) is not built; "
                                "reinstall mrvl with pip install -e .")
    return Path(module.__file__).resolve()


def _csrc() -> Path:
    """The simulator's C sources (the header's declarations are the ABI the library links)."""
    from mrvl.sim import build_sim

    if not (build_sim.CSRC / "mlip_sim.h").is_file():
        raise RuntimeBuildError(f"csrc/mlip_sim.h not found at {build_sim.CSRC}: the TVM runtime "
                                "is built from the mrvl source tree (pip install -e .)")
    return build_sim.CSRC


def _cache_dir() -> Path:
    root = os.environ.get("MRVL_TVM_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "mrvl" / "tvm"


def library_path() -> Path:
    """Where the library for this source, simulator build and tvm-ffi lives (built or not)."""
    import tvm_ffi

    sim = _simulator_extension()
    digest = hashlib.sha256()
    digest.update(SOURCE.read_bytes())
    digest.update((_csrc() / "mlip_sim.h").read_bytes())
    digest.update(sim.read_bytes())
    digest.update(str(getattr(tvm_ffi, "__version__", "")).encode())
    return _cache_dir() / digest.hexdigest()[:16] / "libmrvl_tvm_runtime.so"


def build(target: Path) -> Path:
    """Compile the library into `target` (atomically: a temporary file renamed into place)."""
    from tvm_ffi import libinfo

    sim = _simulator_extension()
    target.parent.mkdir(parents=True, exist_ok=True)
    ffi_lib = Path(libinfo.find_libtvm_ffi()).resolve()
    fd, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    command = [
        os.environ.get("CXX", "g++"), "-std=c++17", "-O2", "-shared", "-fPIC",
        "-I", libinfo.find_include_path(), "-I", libinfo.find_dlpack_include_path(),
        "-I", str(_csrc()), str(SOURCE), "-o", temporary,
        str(ffi_lib), str(sim),
        f"-Wl,-rpath,{ffi_lib.parent}", f"-Wl,-rpath,{sim.parent}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
        os.unlink(temporary)
        raise RuntimeBuildError(f"cannot run the C++ compiler: {error} (install g++)") from None
    if result.returncode != 0:
        os.unlink(temporary)
        lines = result.stderr.strip().splitlines()
        raise RuntimeBuildError("g++ failed to build the mrvl TVM runtime: "
                                + (lines[0] if lines else f"exit status {result.returncode}"))
    os.replace(temporary, target)
    return target


def load() -> Path:
    """Build (once per cache) and load the runtime library; return its path."""
    global _loaded
    if _loaded is not None:
        return _loaded
    import tvm_ffi  # noqa: F401  (libtvm_ffi must be loaded first)

    path = library_path()
    if not path.is_file():
        build(path)
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    _loaded = path
    return path
