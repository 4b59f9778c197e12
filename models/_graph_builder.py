"""A small `onnx.helper` wrapper shared by the in-repo model builders.

Invariants:
- Every node gets a unique, exporter-like name; its (first) output tensor is named after it.
- Weights are float32 initializers drawn from one seeded `numpy.random.Generator`, so a builder
  called twice with the same arguments returns byte-identical models.
- Opset differences (attributes that became inputs) are handled here, once: Split `split`
  (an input from opset 13) and Dropout `ratio` (an input from opset 12); Clip takes `min`/`max`
  as inputs in every supported opset (>= 11).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mrvl.errors import MrvlError

MIN_OPSET = 11
"""Oldest default-domain opset the builders emit (Clip min/max and NMS need >= 11)."""

MAX_OPSET = 21
"""Newest default-domain opset the builders emit (checked with onnx 1.23 + onnxruntime 1.31)."""


def check_opset(model_name: str, opset: int) -> None:
    """Raise `MrvlError` unless `opset` is one the builders support."""
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise MrvlError(
            f"model '{model_name}': opset {opset!r} is not supported, "
            f"expected an integer in [{MIN_OPSET}, {MAX_OPSET}]"
        )


def batch_dim(model_name: str, batch: int | None) -> int | str:
    """The input batch dimension: the symbol "N" when `batch` is None, else a positive int."""
    if batch is None:
        return "N"
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise MrvlError(f"model '{model_name}': batch must be a positive integer, got {batch!r}")
    return batch


class GraphBuilder:
    """Collects nodes and initializers of one ONNX graph."""

    def __init__(self, seed: int, opset: int):
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    # ----------------------------------------------------------------- raw building blocks

    def initializer(self, name: str, array: np.ndarray) -> str:
        """Add a constant tensor (kept in its dtype) and return its name."""
        if name in self._names:
            raise ValueError(f"duplicate tensor name {name!r}")
        self._names.add(name)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(
        self,
        op_type: str,
        inputs: list[str],
        name: str,
        outputs: list[str] | None = None,
        **attrs,
    ) -> str:
        """Add a node; return the name of its first output (named after the node by default)."""
        if outputs is None:
            outputs = [name]
        for out in outputs:
            if out in self._names:
                raise ValueError(f"duplicate tensor name {out!r}")
            self._names.add(out)
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs[0]

    def int64s(self, name: str, values: list[int]) -> str:
        return self.initializer(name, np.asarray(values, dtype=np.int64))

    def scalar(self, name: str, value: float) -> str:
        return self.initializer(name, np.asarray(value, dtype=np.float32))

    # ----------------------------------------------------------------- weights

    def he_normal(self, shape: tuple[int, ...], fan_in: int, gain: float = 2.0) -> np.ndarray:
        """He et al. 2015 initialisation: N(0, gain / fan_in), float32."""
        std = np.sqrt(gain / fan_in)
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, shape).astype(np.float32)

    # ----------------------------------------------------------------- layers

    def conv(
        self,
        name: str,
        x: str,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        pads: list[int] | None = None,
        group: int = 1,
        bias: bool = False,
        weight_prefix: str | None = None,
        gain: float = 2.0,
    ) -> str:
        """Conv with He-initialised OIHW weights (and a small random bias when `bias`)."""
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if pads is None:
            pads = [(kh - 1) // 2, (kw - 1) // 2, (kh - 1) // 2, (kw - 1) // 2]
        prefix = name if weight_prefix is None else weight_prefix
        fan_in = (cin // group) * kh * kw
        w = self.initializer(
            f"{prefix}.weight", self.he_normal((cout, cin // group, kh, kw), fan_in, gain)
        )
        inputs = [x, w]
        if bias:
            inputs.append(
                self.initializer(
                    f"{prefix}.bias", (self.rng.standard_normal(cout) * 0.05).astype(np.float32)
                )
            )
        return self.node(
            "Conv",
            inputs,
            name,
            kernel_shape=[kh, kw],
            strides=[stride, stride],
            pads=pads,
            dilations=[1, 1],
            group=group,
        )

    def batch_norm(self, name: str, x: str, channels: int, gamma_scale: float = 1.0) -> str:
        """Inference BatchNormalization with non-trivial random statistics.

        gamma and running_var are random per channel but scaled so that the mean of
        gamma^2 / running_var is `gamma_scale`^2: the layer keeps the variance of an O(1)
        input roughly unchanged (times `gamma_scale`^2) while folding is really exercised.
        """
        var = self.uniform((channels,), 0.5, 2.0)
        gamma = self.uniform((channels,), 0.5, 1.5)
        gamma *= gamma_scale / np.sqrt(np.mean(gamma**2 / var))
        beta = (self.rng.standard_normal(channels) * 0.1).astype(np.float32)
        mean = (self.rng.standard_normal(channels) * 0.1).astype(np.float32)
        inputs = [
            self.initializer(f"{name}.weight", gamma.astype(np.float32)),
            self.initializer(f"{name}.bias", beta),
            self.initializer(f"{name}.running_mean", mean),
            self.initializer(f"{name}.running_var", var),
        ]
        return self.node("BatchNormalization", [x, *inputs], name, epsilon=1e-5, momentum=0.9)

    # ----------------------------------------------------------------- opset-dependent ops

    def group_norm(self, name: str, x: str, shape: list[int], groups: int,
                   epsilon: float = 1e-5, form: str = "torch") -> str:
        """GroupNorm of NCHW `x` (`shape` [N, C, H, W]) with seeded per-channel gamma / beta.
        `form` "torch": what torch.onnx.export writes below opset 18 (Reshape [0, G, -1] ->
        InstanceNormalization with ones / zeros -> Reshape to `shape` -> Mul gamma [C, 1, 1]
        -> Add beta [C, 1, 1]); "onnx": GroupNormalization (opset 18 on; per-group scale and
        bias below opset 21, per-channel from 21)."""
        channels = shape[1]
        if form == "onnx":
            width = channels if self.opset >= 21 else groups
            scale = self.initializer(f"{name}.weight", self.uniform((width,), 0.5, 1.5))
            bias = self.initializer(f"{name}.bias", self.uniform((width,), -0.5, 0.5))
            return self.node("GroupNormalization", [x, scale, bias], name, epsilon=epsilon,
                             num_groups=groups)
        flat = self.node("Reshape", [x, self.int64s(f"{name}.groups_shape", [0, groups, -1])],
                         f"{name}/Reshape")
        ones = self.initializer(f"{name}.ones", np.ones(groups, np.float32))
        zeros = self.initializer(f"{name}.zeros", np.zeros(groups, np.float32))
        norm = self.node("InstanceNormalization", [flat, ones, zeros],
                         f"{name}/InstanceNormalization", epsilon=epsilon)
        back = self.node("Reshape", [norm, self.int64s(f"{name}.shape", list(shape))],
                         f"{name}/Reshape_1")
        gamma = self.initializer(f"{name}.weight", self.uniform((channels, 1, 1), 0.5, 1.5))
        beta = self.initializer(f"{name}.bias", self.uniform((channels, 1, 1), -0.5, 0.5))
        scaled = self.node("Mul", [back, gamma], f"{name}/Mul")
        return self.node("Add", [scaled, beta], f"{name}/Add")

    def clip(self, name: str, x: str, low: float, high: float) -> str:
        """Clip with min/max as inputs (opset >= 11), shared scalar constants."""
        lo, hi = f"clip_min_{low:g}", f"clip_max_{high:g}"
        if lo not in self._names:
            self.scalar(lo, low)
        if hi not in self._names:
            self.scalar(hi, high)
        return self.node("Clip", [x, lo, hi], name)

    def dropout(self, name: str, x: str, ratio: float) -> str:
        if self.opset >= 12:
            return self.node("Dropout", [x, self.scalar(f"{name}.ratio", ratio)], name)
        return self.node("Dropout", [x], name, ratio=ratio)

    def split(self, name: str, x: str, axis: int, sizes: list[int]) -> list[str]:
        outputs = [f"{name}_{i}" for i in range(len(sizes))]
        if self.opset >= 13:
            self.node("Split", [x, self.int64s(f"{name}.split", sizes)], name, outputs, axis=axis)
        else:
            self.node("Split", [x], name, outputs, axis=axis, split=sizes)
        return outputs

    # ----------------------------------------------------------------- the model

    def make_model(
        self,
        graph_name: str,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
    ) -> onnx.ModelProto:
        """Wrap the graph in a model; the checker (full_check) must accept the result."""
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name="mrvl.models",
            producer_version="0.1.0",
        )
        # The oldest IR version that carries this opset: what a real exporter writes, and
        # readable by older onnxruntime releases too.
        model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
        return model


def tensor_info(name: str, shape: list[int | str], elem_type: int = TensorProto.FLOAT):
    """A value info with a (possibly symbolic) shape."""
    return helper.make_tensor_value_info(name, elem_type, shape)


def count_parameters(model: onnx.ModelProto) -> int:
    """Number of trainable parameters, counted like `torch` does.

    Counts the elements of float initializers with at least one dimension, except the running
    mean and variance of BatchNormalization (buffers in torch, not parameters); scalar
    constants (Clip bounds, Dropout ratio) and integer shape constants are not parameters.
    """
    bn_stats = set()
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            bn_stats.update(node.input[3:5])
    total = 0
    for init in model.graph.initializer:
        if init.name in bn_stats or init.data_type != TensorProto.FLOAT or len(init.dims) == 0:
            continue
        total += int(np.prod(init.dims))
    return total
