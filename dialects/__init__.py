"""mrvl's dialects: `graph` (tensor level), `mrvl` (accelerator layers), `mlip` (the ISA).

`get_all_dialects()` maps dialect names to loader functions, so tools load a dialect only
when it is used.  Add one line here per dialect.
"""

from collections.abc import Callable

from xdsl.ir import Dialect


def _graph() -> Dialect:
    from mrvl.dialects.graph import Graph

    return Graph


def get_all_dialects() -> dict[str, Callable[[], Dialect]]:
    """Dialect name -> loader, for mrvl-opt and the Python API."""
    return {
        "graph": _graph,
        "mrvl": lambda: __import__("mrvl.dialects.mrvl", fromlist=["Mrvl"]).Mrvl,
        "mlip": lambda: __import__("mrvl.dialects.mlip", fromlist=["Mlip"]).Mlip,
    }
