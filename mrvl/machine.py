"""The machine description: one record of every hardware and timing constant.

The compiler's cost model reads it, the backend records it in the model binary's header,
and the simulator's timing model reads it back from the binary; nothing else holds a
machine constant. Sources (`docs/isa.md` section 4 gives each with its reason):

- published (Marvell OCTEON 10 / CN10K ML inference processor, ../shared/docs/mlip-hardware.md):
  8 tiles, 1 MiB OCM per tile in pages of 1 to 16 KiB (default 16 KiB), about 1 GHz, 4 TFLOPS
  fp16 with 8 tiles (= 256 fp16 MACs per cycle per tile: a 16 x 16 matrix engine);
- assumed (not published; each default is ours, marked so, and every figure that depends on
  it is shown across a range): the DRAM bandwidth the ML block can draw, the per-tile DMA rate
  and latency, the int8 speed-up, the vector lanes, fill/latency/issue/barrier costs, and the
  tile-to-tile link (TILE_COPY) rate and latency.

Invariant: a `Machine` changes cycle counts only, never results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from mrvl import mlip_isa as isa
from mrvl.errors import CompileError

VALID_TILES = (1, 2, 4, 8)
PUBLISHED_FIELDS = ("tiles", "ocm_bytes", "page_bytes", "clock_mhz", "matrix_rows",
                    "matrix_cols")
"""Fields whose defaults are published figures (docs/isa.md section 4 gives each source)."""
ASSUMED_FIELDS = ("dram_bytes_per_cycle", "dma_bytes_per_cycle", "dma_latency", "int8_speedup",
                  "vector_lanes", "matrix_fill", "vector_latency", "issue_latency",
                  "barrier_latency", "link_bytes_per_cycle", "link_latency")
"""Fields whose defaults are our assumptions (not published; docs/isa.md gives the reason)."""


def overrides_help() -> str:
    """The --machine help text: the keys, which defaults are published and which assumed."""
    return ("machine description override KEY=VALUE (repeatable), e.g. dram_gbps=32; "
            "published defaults: " + ", ".join(PUBLISHED_FIELDS) + "; assumptions (not "
            "published, docs/isa.md section 4): dram_gbps (= dram_bytes_per_cycle x clock; "
            "default 64 GB/s), " + ", ".join(ASSUMED_FIELDS[1:]))
VALID_PAGES = (1024, 2048, 4096, 8192, 16384)


@dataclass(frozen=True)
class Machine:
    """The accelerator a model is compiled for and simulated on (module docstring)."""

    tiles: int = 1
    """Tiles the model uses (contiguous; the chip has 8, published; the compiler splits
    across 1, 2, 4 or 8, `VALID_TILES`)."""
    ocm_bytes: int = isa.DEFAULT_OCM_SIZE
    """On-chip memory per tile. Published: 1 MiB."""
    page_bytes: int = isa.DEFAULT_PAGE_SIZE
    """OCM allocation page. Published: 1, 2, 4, 8 or 16 KiB, default 16 KiB."""
    clock_mhz: int = isa.DEFAULT_CLOCK_MHZ
    """Clock. Published: about 1 GHz."""
    matrix_rows: int = isa.DEFAULT_MATRIX_ROWS
    """Matrix engine input channels per cycle. Published via 4 TFLOPS fp16 / 8 tiles / 1 GHz."""
    matrix_cols: int = isa.DEFAULT_MATRIX_COLS
    """Matrix engine output channels per cycle (rows x cols = 256 fp16 MACs/cycle/tile)."""
    int8_speedup: int = isa.DEFAULT_INT8_SPEEDUP
    """int8 MACs per cycle over fp16. Assumption: the usual 2x of int8 over fp16 datapaths."""
    vector_lanes: int = isa.DEFAULT_VECTOR_LANES
    """Vector engine elements per cycle. Assumption."""
    dram_bytes_per_cycle: float = float(isa.DEFAULT_DRAM_BYTES_PER_CYCLE)
    """DRAM bandwidth shared by all tiles, bytes per cycle. Assumption: not published."""
    dma_bytes_per_cycle: int = isa.DEFAULT_DMA_BYTES_PER_CYCLE
    """The most one tile's DMA engine moves per cycle. Assumption."""
    dma_latency: int = isa.DEFAULT_DMA_LATENCY
    """Cycles from a DMA's issue to its first byte. Assumption (DRAM access latency)."""
    matrix_fill: int = isa.DEFAULT_MATRIX_FILL
    """Fill and drain cycles of each matrix-engine instruction. Assumption."""
    vector_latency: int = isa.DEFAULT_VECTOR_LATENCY
    """Pipeline latency of each vector-engine instruction. Assumption."""
    issue_latency: int = isa.DEFAULT_ISSUE_LATENCY
    """Cycles to issue any instruction. Assumption."""
    barrier_latency: int = isa.DEFAULT_BARRIER_LATENCY
    """Cycles from the last tile arriving at a barrier to its release. Assumption."""
    link_bytes_per_cycle: int = isa.DEFAULT_LINK_BYTES_PER_CYCLE
    """Tile-to-tile link (TILE_COPY): bytes per cycle one tile's OCM ingress port accepts.
    Assumption: the on-chip interconnect is not published; 64 B/cycle is one 512-bit on-chip
    network path per tile, twice the per-tile DMA rate (no DRAM behind it)."""
    link_latency: int = isa.DEFAULT_LINK_LATENCY
    """Cycles from a TILE_COPY's issue to its first byte. Assumption: a few network hops at a
    few cycles each, a tenth of the DRAM latency."""

    def __post_init__(self) -> None:
        if isinstance(self.dram_bytes_per_cycle, int) and not isinstance(
                self.dram_bytes_per_cycle, bool):
            object.__setattr__(self, "dram_bytes_per_cycle", float(self.dram_bytes_per_cycle))
        problem = machine_problem({f.name: getattr(self, f.name) for f in fields(self)})
        if problem is not None:
            raise CompileError(f"machine: {problem}")

    # ---- derived figures ------------------------------------------------------------------
    @property
    def dram_gbps(self) -> float:
        """DRAM bandwidth in GB/s (10^9 bytes per second)."""
        return self.dram_bytes_per_cycle * (self.clock_mhz / 1000.0)

    def macs_per_cycle(self, int8: bool = False) -> int:
        """Peak matrix-engine MACs per cycle of one tile."""
        return self.matrix_rows * self.matrix_cols * (self.int8_speedup if int8 else 1)

    def cycles_to_ms(self, cycles: float) -> float:
        return cycles / (self.clock_mhz * 1000.0)

    # ---- building one ---------------------------------------------------------------------
    def with_overrides(self, items: Iterable[str] | dict[str, object]) -> Machine:
        """A copy with `KEY=VALUE` overrides (`--machine dram_gbps=32`). Keys are the field
        names, plus `dram_gbps` (sets dram_bytes_per_cycle at this clock)."""
        pairs = list(items.items()) if isinstance(items, dict) else [
            _split_item(item) for item in items]
        known = {f.name: f for f in fields(self)}
        changes: dict[str, object] = {}
        gbps = None
        for key, raw in pairs:
            if key == "dram_gbps":
                gbps = _number(key, raw)
                continue
            if key not in known:
                raise CompileError(
                    f"--machine: unknown key '{key}'; expected one of "
                    f"{sorted([*known, 'dram_gbps'])}")
            value = _number(key, raw)
            if key != "dram_bytes_per_cycle":
                if value != int(value):
                    raise CompileError(f"--machine: {key} must be an integer, got {raw}")
                value = int(value)
            changes[key] = value
        machine = replace(self, **changes)  # type: ignore[arg-type]
        if gbps is not None:
            if gbps <= 0:
                raise CompileError(f"--machine: dram_gbps must be > 0, got {gbps}")
            machine = replace(machine, dram_bytes_per_cycle=gbps / (machine.clock_mhz / 1000.0))
        return machine

    def to_dict(self) -> dict[str, object]:
        """The description as plain values (with the derived `dram_gbps`), for reports."""
        return {**asdict(self), "dram_gbps": self.dram_gbps}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Machine:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


_WIDTHS = ("matrix_rows", "matrix_cols", "int8_speedup", "vector_lanes",
           "dma_bytes_per_cycle", "link_bytes_per_cycle")


def machine_problem(values: dict[str, object]) -> str | None:
    """The first field of a machine description outside its range (one line), or None.

    The same ranges as the C core's check of a binary's machine record (csrc/mlip_isa.h):
    the compiler refuses what the simulator would refuse.
    """
    for name in (f.name for f in fields(Machine)):
        value = values.get(name)
        if name == "dram_bytes_per_cycle":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                    value) or not (isa.MIN_DRAM_MILLIBYTES_PER_CYCLE / 1000.0 <= value
                                   <= isa.MAX_MACHINE_WIDTH):
                return (f"dram_bytes_per_cycle must be a finite number from "
                        f"{isa.MIN_DRAM_MILLIBYTES_PER_CYCLE / 1000.0} to "
                        f"{isa.MAX_MACHINE_WIDTH}, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} must be an integer, got {value!r}"
        if name == "tiles":
            low, high = 1, isa.MAX_TILES
        elif name == "ocm_bytes":
            if value % isa.OCM_GRANULE:
                return f"ocm_bytes must be a multiple of {isa.OCM_GRANULE}, got {value}"
            low, high = isa.OCM_GRANULE, isa.MAX_OCM_BYTES
        elif name == "page_bytes":
            if value not in VALID_PAGES:
                return f"page_bytes must be one of {list(VALID_PAGES)}, got {value}"
            continue
        elif name == "clock_mhz":
            low, high = 1, isa.MAX_CLOCK_MHZ
        elif name in _WIDTHS:
            low, high = 1, isa.MAX_MACHINE_WIDTH
        else:
            low, high = 0, isa.MAX_MACHINE_LATENCY
        if not low <= value <= high:
            return f"{name} must be from {low} to {high}, got {value}"
    return None


def format_machine(machine: Machine | Mapping[str, object]) -> str:
    """One line naming the machine (a `Machine` or its `to_dict()`), for reports:
    "machine: 8 tile(s), 1000 MHz, DRAM 64 GB/s (64 B/cycle), ..."."""
    m: dict[str, Any] = dict(machine.to_dict() if isinstance(machine, Machine) else machine)
    return (f"machine: {m['tiles']} tile(s), {m['clock_mhz']} MHz, "
            f"DRAM {float(m['dram_gbps']):g} GB/s "
            f"({float(m['dram_bytes_per_cycle']):g} B/cycle), "
            f"DMA {m['dma_bytes_per_cycle']} B/cycle/tile + {m['dma_latency']} cycles, "
            f"OCM {int(m['ocm_bytes']) / 1024:g} KiB/tile in "
            f"{int(m['page_bytes']) // 1024} KiB pages, "
            f"matrix {m['matrix_rows']}x{m['matrix_cols']} (int8 x{m['int8_speedup']}, "
            f"fill {m['matrix_fill']}), vector {m['vector_lanes']} lanes "
            f"(latency {m['vector_latency']}), issue {m['issue_latency']}, "
            f"barrier {m['barrier_latency']}, "
            f"tile link {m['link_bytes_per_cycle']} B/cycle + {m['link_latency']} cycles")


def _split_item(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise CompileError(f"--machine: expected KEY=VALUE, got '{item}'")
    return key.strip(), value.strip()


def _number(key: str, raw: object) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CompileError(f"--machine: {key} must be a number, got '{raw}'") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise CompileError(f"--machine: {key} must be finite, got '{raw}'")
    return value


DEFAULT_MACHINE = Machine()


def machine_of(spec: object = None, num_tiles: int = 1, ocm_size: int = isa.DEFAULT_OCM_SIZE,
               page_size: int = isa.DEFAULT_PAGE_SIZE) -> Machine:
    """The machine of compile options: a `Machine` as it is, else the default machine with
    `num_tiles`, `ocm_size`, `page_size` and the `spec` overrides (a list of "KEY=VALUE"
    strings, one such string, or a dict; `Machine.with_overrides`; they win over the three)."""
    if isinstance(spec, Machine):
        return spec
    base = replace(DEFAULT_MACHINE, tiles=num_tiles, ocm_bytes=ocm_size, page_bytes=page_size)
    if spec is None:
        return base
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, dict | list | tuple):
        raise CompileError(f"machine: expected KEY=VALUE strings, a dict or a Machine, got "
                           f"{type(spec).__name__}")
    return base.with_overrides(spec)  # type: ignore[arg-type]
