"""The package layers import one way, and no two files import each other (docs/architecture.md).

Ranks, lowest first: core `mrvl` < `mrvl.dialects` < `mrvl.frontend` < `mrvl.lowering` <
`mrvl.sim` < `mrvl.driver` < `mrvl.tvm` (the TVM integration, folder tvm_target/, on top
with the driver: nothing below imports it); `mrvl.models` (ONNX test models) may import only core, and only
the driver (`mrvl example`) imports it. A module may import from its own rank or lower.
Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {  # folder -> package (pyproject.toml's package-dir)
    "mrvl": "mrvl",
    "dialects": "mrvl.dialects",
    "frontend": "mrvl.frontend",
    "lowering": "mrvl.lowering",
    "sim": "mrvl.sim",
    "driver": "mrvl.driver",
    "models": "mrvl.models",
    "tvm_target": "mrvl.tvm",
}
RANKS = ["mrvl", "mrvl.dialects", "mrvl.frontend", "mrvl.lowering", "mrvl.sim", "mrvl.driver",
         "mrvl.tvm"]
OUTSIDE = {"mrvl.models": ({"mrvl", "mrvl.models"}, {"mrvl.models", "mrvl.driver"})}
"""Packages outside the ranks: (the packages they may import, the packages importing them)."""


def module_files() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The mrvl modules `name` imports anywhere in its file (a `from P import M` of a module
    M counts as importing P.M)."""
    known = set(known)
    is_package = path.stem == "__init__"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
            found.update(t for t in targets if t.split(".")[0] == "mrvl")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.split(".")[0] != "mrvl":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    found.discard(name)
    return {m for m in found if m in known}


def package_of(module: str, modules: Iterable[str]) -> str:
    """The package a module belongs to (a package's `__init__` belongs to itself)."""
    packages = set(FOLDERS.values())
    if module in packages:
        return module
    return module.rpartition(".")[0]


def rank_violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports from a higher layer (or outside a package's allowed set)."""
    problems = []
    for source, targets in sorted(edges.items()):
        source_package = package_of(source, edges)
        for target in sorted(targets):
            target_package = package_of(target, edges)
            if source_package in OUTSIDE:
                ok = target_package in OUTSIDE[source_package][0]
            elif target_package in OUTSIDE:
                ok = source_package in OUTSIDE[target_package][1]
            else:
                ok = RANKS.index(target_package) <= RANKS.index(source_package)
            if not ok:
                problems.append(f"{source} imports {target}")
    return problems


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle between files, or None (graphlib's topological sort)."""
    try:
        tuple(TopologicalSorter(edges).static_order())
    except CycleError as error:
        return list(error.args[1])
    return None


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, files) for name, path in files.items()}


def test_every_folder_is_a_package_of_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    for folder, package in FOLDERS.items():
        assert f'"{package}" = "{folder}"' in text


def test_the_layers_import_one_way():
    edges = import_graph()
    assert sum(len(t) for t in edges.values()) > 100  # the parser sees the imports
    assert rank_violations(edges) == []


def test_no_import_cycles_between_files():
    assert cycle(import_graph()) is None


def test_lazy_imports_count(tmp_path):
    """An import inside a function is seen, with its package resolved."""
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from mrvl.sim import reference\n"
                    "    from . import graph\n    import mrvl.driver.cli\n")
    known = {"mrvl.sim.reference", "mrvl.dialects.graph", "mrvl.driver.cli"}
    assert imports_of("mrvl.dialects.m", path, known) == known


@pytest.mark.parametrize("edge,expected", [
    (("mrvl.lowering.backend", "mrvl.sim.runtime"),
     ["mrvl.lowering.backend imports mrvl.sim.runtime"]),
    (("mrvl.mlip_binary", "mrvl.dialects.mlip"), ["mrvl.mlip_binary imports mrvl.dialects.mlip"]),
    (("mrvl.models.resnet50", "mrvl.frontend.onnx_import"),
     ["mrvl.models.resnet50 imports mrvl.frontend.onnx_import"]),
    (("mrvl.sim.runtime", "mrvl.models"), ["mrvl.sim.runtime imports mrvl.models"]),
    (("mrvl.driver.cli", "mrvl.sim.runtime"), []),
    (("mrvl.driver.verb_example", "mrvl.models"), []),
    (("mrvl.models.resnet50", "mrvl.errors"), []),
    (("mrvl.dialects", "mrvl.dialects.graph"), []),
    (("mrvl.driver.cli", "mrvl.tvm.codegen"), ["mrvl.driver.cli imports mrvl.tvm.codegen"]),
    (("mrvl.tvm.codegen", "mrvl.driver.compiler"), []),
])
def test_rank_check_flags_upward_edges(edge, expected):
    source, target = edge
    assert rank_violations({source: {target}, target: set()}) == expected


def test_cycle_check_finds_a_cycle():
    edges = {"mrvl.lowering.a": {"mrvl.lowering.b"}, "mrvl.lowering.b": {"mrvl.lowering.c"},
             "mrvl.lowering.c": {"mrvl.lowering.a"}, "mrvl.lowering.d": {"mrvl.lowering.a"}}
    found = cycle(edges)
    assert found is not None and set(found) == {"mrvl.lowering.a", "mrvl.lowering.b",
                                                "mrvl.lowering.c"}
    edges["mrvl.lowering.c"] = set()
    assert cycle(edges) is None
