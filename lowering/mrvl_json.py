"""The Nodes-JSON / Constants-JSON pair: writer (target `mrvl-json`), reader, integrity check.

Format: `../shared/docs/mrvl-json.md` (upstream TVM's Marvell codegen). One pair per
accelerator sub-graph (`func.func @tvmgen_mrvl_main_<N>` with `mrvl.target = "accelerator"`).

Invariants:
- Output is deterministic: keys sorted (Nodes-JSON with a two-space indent, Constants-JSON
  with one constant per line), floats as 17 significant digits, constants as base64 of raw
  little-endian float32 bytes; the same module gives byte-identical files.
- `read_json_pair(write_json_pair(f))` rebuilds `f` exactly (same ops, properties, constants in
  the same order), because every property of a layer is in its node attributes. Keys beyond
  upstream's set (`clip_min`, `clip_max`, `alpha`, `count_include_pad`, `axis`,
  `input_const_idx`, `onnx_node_names`) only add information; the `Mul2D` and `Activation`
  layers are our extensions (docs/mrvl-partition.md), and so are a Concat's constant operand
  (written like a Sum2D's: `input_const_*`) and a MatMul's third input (the attention mask).

Target usage: `mrvl-opt in.mlir -t 'mrvl-json{out-dir=DIR}'` writes `DIR/<sym>-nodes.json` and
`DIR/<sym>-consts.json` for each accelerator sub-graph and prints the written paths, one per
line. Without `out-dir` both JSON documents of each sub-graph are printed to the output stream,
each after a line `// ----- <sym>-nodes.json` (or `-consts.json`).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, ModuleOp, StringAttr, TensorType, f32
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.utils.arg_spec import ArgSpec
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.target import Target

from mrvl.dialects import mrvl
from mrvl.dialects.mrvl import TARGET_ATTR, tensor_shape
from mrvl.errors import MrvlError
from mrvl.files import atomic_output, write_text

CONST_KINDS = ("kernel", "bias", "gamma", "beta", "mean", "var")
LAYER_NAME_RE = re.compile(r"^tvmgen_mrvl_main_[0-9]+$")
ONNX_NODES_ATTR = "onnx_nodes"
"""Discardable attribute (array of strings) on a layer: the ONNX nodes it was fused from."""


class JsonPairError(MrvlError):
    """A Nodes-JSON / Constants-JSON pair is malformed (names the file and the node)."""


# ----------------------------------------------------------------------------- helpers


def fmt17(value: float) -> str:
    """A float as a decimal string with 17 significant digits (round-trips a double)."""
    return f"{float(value):.17g}"


def _strs(values: Sequence[Any]) -> list[str]:
    return [str(int(v)) if not isinstance(v, str) else v for v in values]


def _ints(attr) -> list[int]:
    return [int(v) for v in attr.get_values()]


def rank_layout(rank: int) -> str:
    return {1: "N", 2: "NC", 3: "NWC", 4: "NHWC", 5: "NDHWC"}.get(rank, "N" * rank)


def _json_const_shape(shape: Sequence[int], kind: str, rank: int) -> list[int]:
    """Shape under which a constant is written: a bias takes the layer's output rank
    ([1,1,1,C] after a conv, bias_layout "---O"; [1,O] after an FC, "-O"); other 1-D and 3-D
    constants get a leading 1."""
    if kind == "bias" and len(shape) == 1:
        return [1] * (rank - 1) + [int(shape[0])]
    if len(shape) in (1, 3):
        return [1, *[int(d) for d in shape]]
    return [int(d) for d in shape]


def constant_array(value: SSAValue) -> np.ndarray:
    """The numpy array of a value produced by `graph.constant` (JsonPairError otherwise)."""
    from mrvl.dialects.graph import ConstantOp

    owner = value.owner
    if not isinstance(owner, ConstantOp):
        what = owner.name if isinstance(owner, Operation) else "a function argument"
        raise JsonPairError(
            f"expected a graph.constant weight, got {what} (weights must be constants)"
        )
    return np.asarray(owner.to_numpy(), dtype=np.float32)


def _is_constant(value: SSAValue) -> bool:
    from mrvl.dialects.graph import ConstantOp

    return isinstance(value.owner, ConstantOp)


# ----------------------------------------------------------------------------- writer


def _const_entry(arr: np.ndarray, kind: str, rank: int) -> dict[str, Any]:
    data = np.ascontiguousarray(arr, dtype="<f4")
    return {
        "shape": _json_const_shape(arr.shape, kind, rank),
        "dtype": "float32",
        "min": fmt17(data.min()) if data.size else "0",
        "max": fmt17(data.max()) if data.size else "0",
        "data_base64": base64.b64encode(memoryview(data).cast("B")).decode("ascii"),
    }


def _layer_consts(op: mrvl.MrvlLayerOp) -> list[tuple[str, int, SSAValue]]:
    """(kind, operand index, value) of each constant operand of a layer, in JSON order."""
    if isinstance(op, mrvl.Conv2DOp | mrvl.FCOp):
        found = [("kernel", 1, op.weight)]
        if op.bias is not None:
            found.append(("bias", 2, op.bias))
        return found
    if isinstance(op, mrvl.Sum2DOp | mrvl.Mul2DOp | mrvl.Div2DOp | mrvl.ConcatOp):
        return [("kernel", i, v) for i, v in enumerate(op.operands) if _is_constant(v)][:1]
    if isinstance(op, mrvl.LayerNormOp):
        return [("gamma", 1, op.gamma), ("beta", 2, op.beta)]
    return []


def _layer_attrs(op: mrvl.MrvlLayerOp, k: int) -> dict[str, Any]:
    """Kind-specific node attributes (the common ones are added by the caller)."""
    attrs: dict[str, Any] = {}
    act = op.activation_str()
    if act != "none":
        attrs["activation_type"] = [act]
        if act == "clip":
            attrs["clip_min"] = [fmt17(op.clip_min.value.data)]  # type: ignore[attr-defined]
            attrs["clip_max"] = [fmt17(op.clip_max.value.data)]  # type: ignore[attr-defined]
    if isinstance(op, mrvl.Conv2DOp):
        o, kh, kw, _ = tensor_shape(op.weight)
        attrs.update(
            strides=_strs(_ints(op.strides)),
            padding=_strs(_ints(op.pads)),
            dilation=_strs(_ints(op.dilations)),
            groups=[str(op.groups.value.data)],
            channels=[str(o)],
            kernel_size=_strs([kh, kw]),
            kernel_layout=["OHWI"],
            out_dtype=["float32"],
            bias_layout=["---O"],
        )
    elif isinstance(op, mrvl.FCOp):
        attrs.update(
            units=[str(tensor_shape(op.weight)[0])], kernel_layout=["OI"], bias_layout=["-O"]
        )
        attrs["out_dtype"] = ["float32"]
        if op.weights_need_transform is not None:
            attrs["weights_need_transform"] = ["yes"]
    elif isinstance(op, mrvl.Maxpool2DOp | mrvl.Avgpool2DOp):
        attrs.update(
            kernel_layout=["HW"],
            kernel_layout_shape=_strs(_ints(op.kernel_shape)),
            pool_size=_strs(_ints(op.kernel_shape)),
            strides=_strs(_ints(op.strides)),
            padding=_strs(_ints(op.pads)),
        )
        if isinstance(op, mrvl.Avgpool2DOp):
            attrs["count_include_pad"] = [str(op.count_include_pad.value.data)]
    elif isinstance(op, mrvl.GlobalAvgpool2DOp | mrvl.GlobalMaxpool2DOp):
        _, h, w, _ = tensor_shape(op.input)
        attrs.update(kernel_layout=["HW"], kernel_layout_shape=_strs([h, w]))
    elif isinstance(op, mrvl.ActivationOp) and op.alpha is not None:
        attrs["alpha"] = [fmt17(op.alpha.value.data)]
    elif isinstance(op, mrvl.ConcatOp):
        attrs["axis"] = [str(op.axis.value.data)]
    elif isinstance(op, mrvl.ReshapeOp):
        attrs["newshape"] = _strs(tensor_shape(op.output))
    elif isinstance(op, mrvl.SqueezeOp):
        attrs["axis"] = _strs(_ints(op.axes))
    elif isinstance(op, mrvl.LayoutTransformOp):
        attrs.update(src_layout=[op.src_layout.data], dst_layout=[op.dst_layout.data])
    elif isinstance(op, mrvl.TransposeOp):
        attrs["axes"] = _strs(_ints(op.perm))
    elif isinstance(op, mrvl.MatMulOp):
        if op.a_perm is not None:
            attrs["a_axes"] = _strs(_ints(op.a_perm))
        if op.b_perm is not None:
            attrs["b_axes"] = _strs(_ints(op.b_perm))
        if op.softmax_scale is not None:
            attrs["softmax_scale"] = [fmt17(op.softmax_scale.value.data)]
    elif isinstance(op, mrvl.SoftmaxOp):
        attrs["axis"] = [str(len(tensor_shape(op.input)) - 1)]
    elif isinstance(op, mrvl.LayerNormOp):
        attrs["axis"] = [str(len(tensor_shape(op.input)) - 1)]
        attrs["epsilon"] = [fmt17(op.epsilon.value.data)]
    elif isinstance(op, mrvl.SliceOp):
        attrs.update(axis=[str(op.axis.value.data)], begin=[str(op.start.value.data)])
    return attrs


def _layer_number(op: mrvl.MrvlLayerOp) -> int:
    name = op.name_str
    if LAYER_NAME_RE.match(name) is None:
        raise JsonPairError(
            f"layer name \"{name}\" does not match tvmgen_mrvl_main_<k>; run mrvl-partition first"
        )
    return int(name.rsplit("_", 1)[1])


def _data_layout(op: mrvl.MrvlLayerOp, shape: Sequence[int]) -> str:
    if isinstance(op, mrvl.LayoutTransformOp):
        return op.src_layout.data
    if isinstance(op, mrvl.FCOp) and len(shape) == 4:
        return "NHWC"
    return rank_layout(len(shape))


def _input_layout(arg: SSAValue) -> str:
    """An input's layout: what its layout_transform consumers say, else by rank."""
    layouts = {
        use.operation.src_layout.data
        for use in arg.uses
        if isinstance(use.operation, mrvl.LayoutTransformOp)
    }
    if len(layouts) == 1:
        return layouts.pop()
    return rank_layout(len(tensor_shape(arg)))


def subgraph_to_json(fn: func.FuncOp) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Nodes-JSON, Constants-JSON) documents of one accelerator sub-graph function."""
    symbol = fn.sym_name.data
    if not symbol.startswith(mrvl.ACCEL_PREFIX):
        raise JsonPairError(f"function @{symbol} is not an accelerator sub-graph")
    sub_number = symbol[len(mrvl.ACCEL_PREFIX) :]
    block = fn.body.block
    nodes: list[dict[str, Any]] = []
    shapes: list[list[int]] = []
    index_of: dict[SSAValue, int] = {}
    consts: dict[str, Any] = {}
    for i, arg in enumerate(block.args):
        shape = list(tensor_shape(arg))
        index_of[arg] = len(nodes)
        nodes.append(
            {
                "op": "input",
                "name": f"mrvl_{sub_number}_i{i}",
                "inputs": [],
                "input_id": [str(i)],
                "attrs": {
                    "shape": [shape],
                    "dtype": ["float32"],
                    "layer_name": ["input"],
                    "data_layout": [_input_layout(arg)],
                },
            }
        )
        shapes.append(shape)
    for op in block.ops:
        if isinstance(op, func.ReturnOp):
            continue
        if not isinstance(op, mrvl.MrvlLayerOp):
            if _is_constant(op.results[0]) if op.results else False:
                continue
            raise JsonPairError(f"@{symbol}: {op.name} cannot be in an accelerator sub-graph")
        k = _layer_number(op)
        out_shape = list(tensor_shape(op.results[0]))
        inputs = []
        data_shapes = []
        for value in op.operands:
            if _is_constant(value):
                continue
            if value not in index_of:
                raise JsonPairError(f"@{symbol}: {op.name_str} uses a value defined outside")
            inputs.append([index_of[value], 0, 0])
            data_shapes.append(list(tensor_shape(value)))
        in_layout = _data_layout(op, data_shapes[0])
        out_layout = (
            op.dst_layout.data
            if isinstance(op, mrvl.LayoutTransformOp)
            else rank_layout(len(out_shape))
        )
        attrs: dict[str, Any] = {
            "layer_name": [op.LAYER_NAME],
            "func_node_name": [op.name_str],
            "composite_name": [op.COMPOSITE or op.LAYER_NAME],
            "func_name": [f"n{k}_{op.LAYER_NAME}_{out_layout}"],
            "data_layout": [in_layout],
            "data_layout_shape": _strs(data_shapes[0]),
            "out_layout": [out_layout],
            "out_layout_shape": _strs(out_shape),
            "from_tuple_idx": ["0"],
            "num_inputs": str(len(op.operands)),
            "num_outputs": "1",
            "mrvl_nodes_idx": [k + 1],
            "shape": [out_shape],
            "dtype": ["float32"],
        }
        for extra, shape in enumerate(data_shapes[1:], start=1):
            attrs[f"data_layout_shape_{extra}"] = _strs(shape)
        attrs.update(_layer_attrs(op, k))
        for kind in CONST_KINDS:
            attrs[f"{kind}_const"] = {}
        for kind, operand_index, value in _layer_consts(op):
            arr = constant_array(value)
            const_name = f"{op.name_str}_const_{CONST_KINDS.index(kind)}"
            entry = _const_entry(arr, kind, len(out_shape))
            consts[const_name] = entry
            attrs[f"{kind}_const"] = {
                "shape": entry["shape"],
                "dtype": "float32",
                "min": entry["min"],
                "max": entry["max"],
                "name": const_name,
            }
            if isinstance(op, mrvl.Sum2DOp | mrvl.Mul2DOp | mrvl.Div2DOp | mrvl.ConcatOp):
                attrs["input_const_name"] = [const_name]
                attrs["input_const_shape"] = _strs(arr.shape)
                attrs["input_const_idx"] = [str(operand_index)]
            else:
                attrs[f"{kind}_const_name"] = [const_name]
        onnx_nodes = op.attributes.get(ONNX_NODES_ATTR)
        if isinstance(onnx_nodes, ArrayAttr):
            attrs["onnx_node_names"] = [s.data for s in onnx_nodes.data]  # type: ignore[union-attr]
        index_of[op.results[0]] = len(nodes)
        nodes.append({"op": "tvm_op", "name": op.name_str, "inputs": inputs, "attrs": attrs})
        shapes.append(out_shape)
    ret = block.last_op
    assert isinstance(ret, func.ReturnOp)
    heads = [[index_of[v], 0, 0] for v in ret.operands]
    batch = shapes[0][0] if shapes and shapes[0] else 1
    nodes_doc = {
        "symbol": symbol,
        "nodes": nodes,
        "arg_nodes": list(range(len(block.args))),
        "heads": heads,
        "batch_size": str(batch),
        "num_subgraph_inputs": str(len(block.args)),
        "num_subgraph_outputs": str(len(heads)),
        "attrs": {
            "shape": ["list_shape", shapes],
            "dltype": ["list_str", ["float32"] * len(shapes)],
        },
    }
    return nodes_doc, consts


def dumps(doc: dict[str, Any]) -> str:
    """Deterministic JSON text (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


def consts_chunks(consts: dict[str, Any]) -> Iterator[str]:
    """Deterministic Constants-JSON text in pieces: one constant per line, keys sorted.

    Equivalent to `json.dumps(consts, sort_keys=True)` up to whitespace, without copying
    the (large) base64 strings through the JSON encoder.
    """
    yield "{"
    for i, name in enumerate(sorted(consts)):
        entry = consts[name]
        rest = {k: v for k, v in entry.items() if k != "data_base64"}
        yield ",\n " if i else "\n "
        yield f'{json.dumps(name)}: {{"data_base64": "'
        yield entry["data_base64"]
        yield '", ' + json.dumps(rest, sort_keys=True)[1:]
    yield "\n}\n"


def write_json_pair(fn: func.FuncOp, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `<sym>-nodes.json` and `<sym>-consts.json` of one sub-graph into `out_dir`."""
    nodes, consts = subgraph_to_json(fn)
    directory = Path(out_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        nodes_path = directory / f"{nodes['symbol']}-nodes.json"
        consts_path = directory / f"{nodes['symbol']}-consts.json"
        write_text(nodes_path, dumps(nodes), "Nodes-JSON")
        with atomic_output(consts_path, "Constants-JSON") as temporary:
            with open(temporary, "w") as handle:
                handle.writelines(consts_chunks(consts))
    except OSError as exc:
        raise JsonPairError(f"cannot write the JSON pair into '{directory}': {exc}") from exc
    return nodes_path, consts_path


def _check_partitioned(module: ModuleOp) -> None:
    for op in module.ops:
        if isinstance(op, func.FuncOp) and TARGET_ATTR in op.attributes:
            return
    raise JsonPairError(
        "mrvl-json: the module holds no sub-graph function (mrvl.target); run mrvl-partition "
        "first"
    )


def write_module_json(module: ModuleOp, out_dir: str | Path) -> list[tuple[Path, Path]]:
    """Write the pair of every accelerator sub-graph of a partitioned module."""
    _check_partitioned(module)
    return [write_json_pair(fn, out_dir) for fn in mrvl.subgraph_functions(module)]


@dataclass(frozen=True)
class MrvlJsonTarget(Target):
    """`-t mrvl-json{out-dir=DIR}`: the JSON pair of each accelerator sub-graph."""

    name = "mrvl-json"

    out_dir: str = ""

    @classmethod
    def from_spec(cls, spec: ArgSpec) -> MrvlJsonTarget:
        """Options from `-t` text; a bad option is a JsonPairError, not a traceback."""
        try:
            return super().from_spec(spec)
        except ValueError as exc:
            raise JsonPairError(f"mrvl-json: invalid option: {exc}") from exc

    def emit(self, ctx: Context, module: ModuleOp, output: IO[str]) -> None:
        if self.out_dir:
            for nodes_path, consts_path in write_module_json(module, self.out_dir):
                output.write(f"{nodes_path}\n{consts_path}\n")
            return
        _check_partitioned(module)
        for fn in mrvl.subgraph_functions(module):
            nodes, consts = subgraph_to_json(fn)
            output.write(f"// ----- {nodes['symbol']}-nodes.json\n")
            output.write(dumps(nodes))
            output.write(f"// ----- {nodes['symbol']}-consts.json\n")
            output.writelines(consts_chunks(consts))


# ----------------------------------------------------------------------------- checker


_MALFORMED = (TypeError, AttributeError, KeyError, IndexError, ValueError)
"""What indexing a document of the wrong structure raises (a list where a dict belongs, ...)."""


def check_json_pair(nodes: dict[str, Any], consts: dict[str, Any]) -> list[str]:
    """Integrity problems of a pair (empty list = fine); the checks of docs/mrvl-json.md.

    Never raises on a document of the wrong structure: that is reported as a problem.
    """
    try:
        return _check_pair(nodes, consts)
    except _MALFORMED as exc:
        return [f"unexpected document structure ({type(exc).__name__}: {exc})"]


def _check_pair(nodes: dict[str, Any], consts: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for key in ("symbol", "nodes", "arg_nodes", "heads", "attrs"):
        if key not in nodes:
            problems.append(f"missing top-level key \"{key}\"")
    if not isinstance(nodes.get("symbol"), str):
        problems.append("\"symbol\" is not a string")
    node_list = nodes.get("nodes")
    if not isinstance(node_list, list):
        return problems + ["\"nodes\" is not a list"]
    for i, node in enumerate(node_list):
        if not isinstance(node, dict) or not isinstance(node.get("attrs", {}), dict):
            problems.append(f"node {i} is not an object with an \"attrs\" object")
            continue
        try:
            problems.extend(_check_node(i, node, consts))
        except _MALFORMED as exc:
            problems.append(f"node {i} ({node.get('name')}): unexpected structure ({exc})")
    for head in nodes.get("heads", []):
        if not _is_ref(head, len(node_list)):
            problems.append(f"head {head} does not point at a node")
    for arg in nodes.get("arg_nodes", []):
        if not _is_index(arg, len(node_list)) or node_list[arg].get("op") != "input":
            problems.append(f"arg_node {arg} is not an input node")
    for i, node in enumerate(node_list):
        if isinstance(node, dict) and node.get("op") == "input" and i not in nodes.get(
            "arg_nodes", []
        ):
            problems.append(f"input node {i} is not listed in arg_nodes")
    shapes = nodes.get("attrs", {}).get("shape", [None, []])
    if len(shapes) != 2 or len(shapes[1]) != len(node_list):
        problems.append("attrs.shape does not list one shape per node")
    if nodes.get("num_subgraph_inputs") != str(len(nodes.get("arg_nodes", []))):
        problems.append("num_subgraph_inputs does not match arg_nodes")
    if nodes.get("num_subgraph_outputs") != str(len(nodes.get("heads", []))):
        problems.append("num_subgraph_outputs does not match heads")
    return problems


def _is_index(value: Any, bound: int) -> bool:
    """`value` is an int (not a bool) in [0, bound)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < bound


def _is_ref(ref: Any, bound: int) -> bool:
    """`ref` is a node reference `[index, ...]` with index in [0, bound)."""
    return isinstance(ref, list) and len(ref) > 0 and _is_index(ref[0], bound)


def _check_node(i: int, node: dict[str, Any], consts: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    attrs = node.get("attrs", {})
    where = f"node {i} ({node.get('name')})"
    layer_names = attrs.get("layer_name")
    layer_name = layer_names[0] if isinstance(layer_names, list) and layer_names else None
    if not isinstance(layer_name, str) or layer_name not in mrvl.KNOWN_LAYER_NAMES:
        problems.append(f"{where}: unknown layer_name {layer_name!r}")
    if node.get("op") == "input":
        return problems
    if node.get("op") != "tvm_op":
        problems.append(f"{where}: unknown op {node.get('op')!r}")
    if LAYER_NAME_RE.match(str(node.get("name"))) is None:
        problems.append(f"{where}: name does not match tvmgen_mrvl_main_[0-9]+")
    if not isinstance(node.get("inputs"), list):
        problems.append(f"{where}: \"inputs\" is not a list")
    for ref in node.get("inputs", []):
        if not _is_ref(ref, i):
            problems.append(f"{where}: input {ref} does not point at an earlier node")
    for kind in CONST_KINDS:
        const = attrs.get(f"{kind}_const", {})
        if not const:
            continue
        if not isinstance(const, dict):
            problems.append(f"{where}: {kind}_const is not an object")
            continue
        problems.extend(_check_const(where, const.get("name"), const.get("shape"), consts))
    for key in ("kernel_const_name", "bias_const_name", "input_const_name", "gamma_const_name",
                "beta_const_name"):
        for name in attrs.get(key, []):
            problems.extend(_check_const(where, name, None, consts))
    return problems


def _check_const(
    where: str, name: Any, shape: Any, consts: dict[str, Any]
) -> list[str]:
    entry = consts.get(name) if isinstance(name, str) else None
    if entry is None:
        return [f"{where}: constant {name!r} is not in the Constants-JSON"]
    if not isinstance(entry, dict):
        return [f"{where}: constant {name!r} is not an object"]
    if shape is not None and entry.get("shape") != shape:
        return [f"{where}: constant {name!r} shape {entry.get('shape')} != {shape}"]
    const_shape = entry.get("shape")
    if not (isinstance(const_shape, list) and all(_is_index(d, 2**31) for d in const_shape)):
        return [f"{where}: constant {name!r} shape {const_shape!r} is not a list of sizes"]
    try:
        raw = base64.b64decode(entry["data_base64"], validate=True)
    except (KeyError, TypeError, ValueError):
        return [f"{where}: constant {name!r} has no valid data_base64"]
    if len(raw) != 4 * math.prod(entry["shape"]):
        return [f"{where}: constant {name!r} holds {len(raw)} bytes for shape {entry['shape']}"]
    data = np.frombuffer(raw, dtype="<f4")
    if data.size and (
        entry.get("min") != fmt17(data.min()) or entry.get("max") != fmt17(data.max())
    ):
        return [f"{where}: constant {name!r} min/max do not match its data"]
    return []


# ----------------------------------------------------------------------------- reader


def _load(path: str | Path, what: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            doc = json.load(handle)
    except OSError as exc:
        raise JsonPairError(f"cannot read {what} '{path}': {exc}") from exc
    except json.JSONDecodeError as exc:
        raise JsonPairError(f"{what} '{path}' is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise JsonPairError(f"{what} '{path}' is not a JSON object")
    return doc


def read_json_pair(nodes_path: str | Path, consts_path: str | Path) -> ModuleOp:
    """Read a pair back into a module holding one accelerator sub-graph function.

    Raises `JsonPairError` naming the file when the pair fails `check_json_pair`.
    """
    nodes = _load(nodes_path, "Nodes-JSON")
    consts = _load(consts_path, "Constants-JSON")
    problems = check_json_pair(nodes, consts)
    if problems:
        raise JsonPairError(
            f"JSON pair '{nodes_path}' / '{consts_path}' is malformed: " + "; ".join(problems)
        )
    return ModuleOp([json_to_function(nodes, consts)])


def _const_value(
    name: str, shape: Sequence[int], consts: dict[str, Any], ops: list[Operation]
) -> SSAValue:
    from mrvl.dialects.graph import ConstantOp

    raw = base64.b64decode(consts[name]["data_base64"])
    arr = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
    op = ConstantOp.from_numpy(arr)
    ops.append(op)
    return op.results[0]


def _i(values: Sequence[str]) -> list[int]:
    return [int(v) for v in values]


def _clip_of(attrs: dict[str, Any]) -> tuple[float, float] | None:
    if "clip_min" not in attrs:
        return None
    return (float(attrs["clip_min"][0]), float(attrs["clip_max"][0]))


def _build_layer(
    node: dict[str, Any], data: list[SSAValue], consts: dict[str, Any], ops: list[Operation]
) -> mrvl.MrvlLayerOp:
    attrs = node["attrs"]
    name = node["name"]
    kind = attrs["layer_name"][0]
    act = attrs.get("activation_type", ["none"])[0]
    out_type = TensorType(f32, attrs["shape"][0])

    def weights(o_shape: Sequence[int]) -> tuple[SSAValue, SSAValue | None]:
        kernel_shape = attrs["kernel_const"]["shape"]
        w = _const_value(attrs["kernel_const_name"][0], kernel_shape, consts, ops)
        b = None
        if "bias_const_name" in attrs:
            b = _const_value(attrs["bias_const_name"][0], o_shape, consts, ops)
        return w, b

    if kind == "Conv2D":
        w, b = weights([int(attrs["channels"][0])])
        op: mrvl.MrvlLayerOp = mrvl.Conv2DOp(
            data[0],
            w,
            b,
            layer_name=name,
            strides=_i(attrs["strides"]),
            pads=_i(attrs["padding"]),
            dilations=_i(attrs["dilation"]),
            groups=int(attrs["groups"][0]),
            activation=act,
            clip=_clip_of(attrs),
            result_type=out_type,
        )
    elif kind == "FC":
        w, b = weights([int(attrs["units"][0])])
        op = mrvl.FCOp(
            data[0],
            w,
            b,
            layer_name=name,
            activation=act,
            clip=_clip_of(attrs),
            weights_need_transform=attrs.get("weights_need_transform") == ["yes"],
            result_type=out_type,
        )
    elif kind in ("Maxpool2D", "Avgpool2D"):
        common = dict(
            layer_name=name,
            kernel_shape=_i(attrs["kernel_layout_shape"]),
            strides=_i(attrs["strides"]),
            pads=_i(attrs["padding"]),
            result_type=out_type,
        )
        if kind == "Maxpool2D":
            op = mrvl.Maxpool2DOp(data[0], **common)  # type: ignore[arg-type]
        else:
            op = mrvl.Avgpool2DOp(
                data[0],
                count_include_pad=int(attrs.get("count_include_pad", ["0"])[0]),
                **common,  # type: ignore[arg-type]
            )
    elif kind == "GlobalAvgpool2D":
        op = mrvl.GlobalAvgpool2DOp(data[0], layer_name=name)
    elif kind == "GlobalMaxpool2D":
        op = mrvl.GlobalMaxpool2DOp(data[0], layer_name=name)
    elif kind in ("Sum2D", "Mul2D", "Div2D"):
        operands = list(data)
        if "input_const_name" in attrs:
            c = _const_value(
                attrs["input_const_name"][0], _i(attrs["input_const_shape"]), consts, ops
            )
            operands.insert(int(attrs.get("input_const_idx", ["1"])[0]), c)
        eltwise = {"Sum2D": mrvl.Sum2DOp, "Mul2D": mrvl.Mul2DOp, "Div2D": mrvl.Div2DOp}[kind]
        op = eltwise(
            operands[0], operands[1], layer_name=name, activation=act, clip=_clip_of(attrs)
        )
    elif kind == "Activation":
        alpha = float(attrs["alpha"][0]) if "alpha" in attrs else None
        op = mrvl.ActivationOp(
            data[0], layer_name=name, activation=act, clip=_clip_of(attrs), alpha=alpha
        )
    elif kind == "Concat":
        operands = list(data)
        if "input_const_name" in attrs:  # one constant operand (ViT's class token)
            c = _const_value(
                attrs["input_const_name"][0], _i(attrs["input_const_shape"]), consts, ops
            )
            operands.insert(int(attrs.get("input_const_idx", ["0"])[0]), c)
        op = mrvl.ConcatOp(operands, layer_name=name, axis=int(attrs["axis"][0]))
    elif kind == "reshape":
        op = mrvl.ReshapeOp(data[0], out_type, layer_name=name)
    elif kind == "nn.batch_flatten":
        op = mrvl.BatchFlattenOp(data[0], layer_name=name)
    elif kind == "squeeze":
        op = mrvl.SqueezeOp(data[0], _i(attrs["axis"]), layer_name=name)
    elif kind == "layout_transform":
        op = mrvl.LayoutTransformOp(
            data[0], attrs["src_layout"][0], attrs["dst_layout"][0], layer_name=name
        )
    elif kind == "transpose":
        op = mrvl.TransposeOp(data[0], _i(attrs["axes"]), layer_name=name)
    elif kind == "MatMul":
        op = mrvl.MatMulOp(
            data[0], data[1], layer_name=name,
            a_perm=_i(attrs["a_axes"]) if "a_axes" in attrs else None,
            b_perm=_i(attrs["b_axes"]) if "b_axes" in attrs else None,
            softmax_scale=(float(attrs["softmax_scale"][0]) if "softmax_scale" in attrs
                           else None),
            mask=data[2] if len(data) > 2 else None,  # data_layout_shape_2
        )
    elif kind == "Softmax":
        op = mrvl.SoftmaxOp(data[0], layer_name=name)
    elif kind == "LayerNorm":
        width = [int(attrs["shape"][0][-1])]
        gamma = _const_value(attrs["gamma_const_name"][0], width, consts, ops)
        beta = _const_value(attrs["beta_const_name"][0], width, consts, ops)
        op = mrvl.LayerNormOp(data[0], gamma, beta, layer_name=name,
                              epsilon=float(attrs["epsilon"][0]))
    elif kind == "slice":
        axis = int(attrs["axis"][0])
        op = mrvl.SliceOp(data[0], axis=axis, start=int(attrs["begin"][0]),
                          size=int(attrs["shape"][0][axis]), layer_name=name)
    else:
        raise JsonPairError(f"node {name}: unknown layer_name {kind!r}")
    if "onnx_node_names" in attrs:
        op.attributes[ONNX_NODES_ATTR] = ArrayAttr(
            [StringAttr(s) for s in attrs["onnx_node_names"]]
        )
    return op


def _input_type(node: dict[str, Any]) -> TensorType:
    """The tensor type of an input node (JsonPairError unless its shape is static)."""
    shapes = node["attrs"].get("shape")
    shape = shapes[0] if isinstance(shapes, list) and shapes else None
    if isinstance(shape, list) and all(_is_index(d, 2**31) and d > 0 for d in shape):
        return TensorType(f32, shape)
    raise JsonPairError(f"input node {node.get('name')}: shape is not a list of positive sizes")


def json_to_function(nodes: dict[str, Any], consts: dict[str, Any]) -> func.FuncOp:
    """Build the accelerator sub-graph function `@<symbol>` of a (checked) pair."""
    node_list = nodes["nodes"]
    arg_types = [_input_type(node_list[i]) for i in nodes["arg_nodes"]]
    block = Block(arg_types=arg_types)
    value_of: dict[int, SSAValue] = {i: block.args[k] for k, i in enumerate(nodes["arg_nodes"])}
    for i, node in enumerate(node_list):
        if node["op"] == "input":
            continue
        ops: list[Operation] = []
        try:
            data = [value_of[ref[0]] for ref in node["inputs"]]
            layer = _build_layer(node, data, consts, ops)
            for op in [*ops, layer]:
                op.verify()
        except VerifyException as exc:
            message = " ".join(str(exc).split())
            raise JsonPairError(f"node {node.get('name')}: invalid layer: {message}") from exc
        except _MALFORMED as exc:
            raise JsonPairError(f"node {node.get('name')}: missing or bad attribute {exc}") from exc
        block.add_ops([*ops, layer])
        value_of[i] = layer.results[0]
    outputs = [value_of[head[0]] for head in nodes["heads"]]
    block.add_op(func.ReturnOp(*outputs))
    fn = func.FuncOp(nodes["symbol"], (arg_types, [v.type for v in outputs]), Region(block))
    fn.attributes[TARGET_ATTR] = StringAttr("accelerator")
    return fn
