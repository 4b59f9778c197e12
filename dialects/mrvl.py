"""The `mrvl` dialect: fused accelerator layers (the RFC's "Marvell layers").

Each op is one layer kind of the pattern table in `../shared/docs/mrvl-json.md`. Invariants
shared by every layer op:

- Data is NHWC (4-D) or NC (2-D), float32; kernels are OHWI, dense weights are [O, K].
- Weights and biases are operands, produced by `graph.constant` ops (checked by the legality
  predicates and the JSON writer, not by the verifier, so hand-written IR may pass values).
- `layer_name` is the layer's node name in the JSON pair, `tvmgen_mrvl_main_<k>`.
- Conv2D, FC, Sum2D, Mul2D and Div2D carry a fused activation: `none`, `relu`, `clip` (with
  `clip_min`, `clip_max`; relu6 is clip 0..6), `sigmoid`, `silu`, `gelu` or `gelu_tanh`. The
  standalone `Activation` layer also takes `tanh` and `leaky_relu` (with `alpha`), never
  `none`.
- Transformer layers: MatMul (two activations, operand permutations folded in), Softmax and
  LayerNorm (both over the last axis); data of rank 1 to 4.
- Pads are 2-D ONNX order: top, left, bottom, right.

Sub-graphs are `func.func`s (see docs/architecture.md): `@tvmgen_mrvl_main_<N>` with
`mrvl.target = "accelerator"` holds layer ops and `graph.constant`s; `@cpu_main_<N>` with
`mrvl.target = "cpu"` holds graph ops.

```mlir
%y = mrvl.conv2d %x, %w, %b {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64,
       layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 1, 1>,
       strides = array<i64: 1, 1>} : (tensor<1x28x28x1xf32>, tensor<64x2x2x1xf32>,
       tensor<64xf32>) -> tensor<1x28x28x64xf32>
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects import func
from xdsl.dialects.builtin import (
    DenseArrayBase,
    Float32Type,
    FloatAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    UnitAttr,
    f32,
    i64,
)
from xdsl.ir import Attribute, Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from mrvl.dialects.graph import broadcast_shapes

TARGET_ATTR = "mrvl.target"
"""Function attribute naming where a sub-graph runs: "accelerator" or "cpu"."""


def subgraph_functions(module: ModuleOp, target: str = "accelerator") -> list[func.FuncOp]:
    """The sub-graph functions of `target` ("accelerator" or "cpu"), in module order."""
    found = []
    for op in module.ops:
        attr = op.attributes.get(TARGET_ATTR) if isinstance(op, func.FuncOp) else None
        if isinstance(attr, StringAttr) and attr.data == target:
            found.append(op)
    return found

ACCEL_PREFIX = "tvmgen_mrvl_main_"
CPU_PREFIX = "cpu_main_"
ACTIVATIONS = ("none", "relu", "clip", "sigmoid", "silu", "gelu", "gelu_tanh")
STANDALONE_ACTIVATIONS = ("relu", "clip", "sigmoid", "tanh", "leaky_relu", "gelu", "gelu_tanh")
"""Activations of the standalone `mrvl.activation` layer (the ISA's ACT functions)."""
LAYER_FORMAT = "operands attr-dict `:` functional-type(operands, results)"


def i64_array(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in values])


def tensor_shape(value: SSAValue | Attribute) -> tuple[int, ...]:
    """Static shape of a tensor value or type (VerifyException when not a tensor)."""
    typ = value.type if isinstance(value, SSAValue) else value
    if not isinstance(typ, TensorType):
        raise VerifyException(f"expected a tensor, got {typ}")
    return tuple(int(d) for d in typ.get_shape())


def _expect_rank(what: str, value: SSAValue, rank: int) -> tuple[int, ...]:
    shape = tensor_shape(value)
    if len(shape) != rank:
        raise VerifyException(f"expected {what} of rank {rank}, got shape {list(shape)}")
    return shape


def _expect_shape(what: str, got: Sequence[int], expected: Sequence[int]) -> None:
    if tuple(got) != tuple(expected):
        raise VerifyException(f"expected {what} shape {list(expected)}, got {list(got)}")


def _expect_len(what: str, attr: DenseArrayBase, n: int) -> tuple[int, ...]:
    values = tuple(int(v) for v in attr.get_values())
    if len(values) != n:
        raise VerifyException(f"expected {n} values in {what}, got {len(values)}")
    return values


def _pool_out(size: int, k: int, s: int, p0: int, p1: int, d: int = 1) -> int:
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


class MrvlLayerOp(IRDLOperation):
    """Helpers common to all layer ops; subclasses set the class constants."""

    LAYER_NAME: ClassVar[str] = ""
    """`layer_name` attribute in the Nodes-JSON (Conv2D, FC, Maxpool2D, ...)."""
    ALLOWED_ACTIVATIONS: ClassVar[tuple[str, ...]] = ACTIVATIONS
    """Values the `activation` property may take (fused activations by default)."""
    COMPOSITE: ClassVar[str] = ""
    """`composite_name` in the Nodes-JSON (empty for bare ops)."""

    @property
    def name_str(self) -> str:
        attr = self.properties["layer_name"]
        assert isinstance(attr, StringAttr)
        return attr.data

    def set_layer_name(self, name: str) -> None:
        self.properties["layer_name"] = StringAttr(name)

    def activation_str(self) -> str:
        attr = self.properties.get("activation")
        return attr.data if isinstance(attr, StringAttr) else "none"

    def data_operands(self) -> list[SSAValue]:
        """Operands that are layer inputs (not weights)."""
        return [self.operands[0]]

    def macs(self) -> int:
        """Multiply-accumulates of the layer (conv2d and FC override; 0 for the others)."""
        return 0

    def _verify_common(self) -> None:
        name = self.name_str
        if not name:
            raise VerifyException("expected a non-empty layer_name")
        for value in (*self.operands, *self.results):
            typ = value.type
            if not isinstance(typ, TensorType) or not isinstance(typ.element_type, Float32Type):
                raise VerifyException(f"expected f32 tensors, got {typ}")
        act = self.activation_str()
        if act not in self.ALLOWED_ACTIVATIONS:
            raise VerifyException(
                f"expected activation in {list(self.ALLOWED_ACTIVATIONS)}, got \"{act}\""
            )
        has_clip = (
            self.properties.get("clip_min") is not None
            and self.properties.get("clip_max") is not None
        )
        if act == "clip" and not has_clip:
            raise VerifyException("expected clip_min and clip_max with activation \"clip\"")


def _activation_props(
    activation: str, clip: tuple[float, float] | None
) -> dict[str, Attribute]:
    props: dict[str, Attribute] = {"activation": StringAttr(activation)}
    if clip is not None:
        props["clip_min"] = FloatAttr(float(clip[0]), f32)
        props["clip_max"] = FloatAttr(float(clip[1]), f32)
    return props


@irdl_op_definition
class Conv2DOp(MrvlLayerOp):
    """2-D convolution NHWC x OHWI (grouped and depthwise too), bias, fused activation.

    ```mlir
    %y = mrvl.conv2d %x, %w, %b {activation = "relu", dilations = array<i64: 1, 1>,
           groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>,
           strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>,
           tensor<3xf32>) -> tensor<1x4x4x3xf32>
    ```
    """

    name = "mrvl.conv2d"
    LAYER_NAME: ClassVar[str] = "Conv2D"
    COMPOSITE: ClassVar[str] = "mrvl.conv2d_nhwc2nhwc"

    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    dilations = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr)
    activation = prop_def(StringAttr)
    clip_min = opt_prop_def(FloatAttr)
    clip_max = opt_prop_def(FloatAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(
        self,
        input: SSAValue | Operation,
        weight: SSAValue | Operation,
        bias: SSAValue | Operation | None,
        *,
        layer_name: str,
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        dilations: Sequence[int] = (1, 1),
        groups: int = 1,
        activation: str = "none",
        clip: tuple[float, float] | None = None,
        result_type: Attribute | None = None,
    ):
        if result_type is None:
            n, h, w, _ = tensor_shape(SSAValue.get(input))
            o, kh, kw, _ = tensor_shape(SSAValue.get(weight))
            oh = _pool_out(h, kh, strides[0], pads[0], pads[2], dilations[0])
            ow = _pool_out(w, kw, strides[1], pads[1], pads[3], dilations[1])
            result_type = TensorType(f32, [n, oh, ow, o])
        super().__init__(
            operands=[input, weight, [] if bias is None else [bias]],
            result_types=[result_type],
            properties={
                "layer_name": StringAttr(layer_name),
                "strides": i64_array(strides),
                "pads": i64_array(pads),
                "dilations": i64_array(dilations),
                "groups": IntegerAttr(groups, i64),
                **_activation_props(activation, clip),
            },
        )

    def verify_(self) -> None:
        self._verify_common()
        n, h, w, c = _expect_rank("input", self.input, 4)
        o, kh, kw, ci = _expect_rank("weight (OHWI)", self.weight, 4)
        strides = _expect_len("strides", self.strides, 2)
        pads = _expect_len("pads", self.pads, 4)
        dil = _expect_len("dilations", self.dilations, 2)
        groups = self.groups.value.data
        if groups < 1 or c % groups != 0 or o % groups != 0:
            raise VerifyException(
                f"expected groups dividing input channels {c} and output channels {o}, "
                f"got {groups}"
            )
        if ci * groups != c:
            raise VerifyException(
                f"expected weight input channels {c // groups} (= {c} / groups {groups}), "
                f"got {ci}"
            )
        if min(strides) < 1 or min(dil) < 1 or min(pads) < 0:
            raise VerifyException("expected positive strides and dilations, non-negative pads")
        if self.bias is not None:
            _expect_shape("bias", tensor_shape(self.bias), (o,))
        oh = _pool_out(h, kh, strides[0], pads[0], pads[2], dil[0])
        ow = _pool_out(w, kw, strides[1], pads[1], pads[3], dil[1])
        _expect_shape("result", tensor_shape(self.output), (n, oh, ow, o))

    @property
    def is_depthwise(self) -> bool:
        o = tensor_shape(self.weight)[0]
        groups = self.groups.value.data
        return groups > 1 and groups == o

    def macs(self) -> int:
        n, oh, ow, o = tensor_shape(self.output)
        _, kh, kw, ci = tensor_shape(self.weight)
        return n * oh * ow * o * kh * kw * ci


@irdl_op_definition
class FCOp(MrvlLayerOp):
    """Fully connected layer: y = flatten(x) @ weight^T + bias, fused activation.

    ```mlir
    %y = mrvl.fc %x, %w, %b {layer_name = "tvmgen_mrvl_main_6", activation = "relu"}
           : (tensor<1x1568xf32>, tensor<256x1568xf32>, tensor<256xf32>) -> tensor<1x256xf32>
    ```

    `x` is [N, K] or any [N, ...] flattened row-major. With `weights_need_transform`, `x` is
    NHWC [N, H, W, C] and the weights were made for the NCHW flatten of x (the layer flattens
    in NCHW order, as the RFC's `weights_need_transform = yes`).
    """

    name = "mrvl.fc"
    LAYER_NAME: ClassVar[str] = "FC"
    COMPOSITE: ClassVar[str] = "mrvl.fc_ni2no"

    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = opt_operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    activation = prop_def(StringAttr)
    clip_min = opt_prop_def(FloatAttr)
    clip_max = opt_prop_def(FloatAttr)
    weights_need_transform = opt_prop_def(UnitAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(
        self,
        input: SSAValue | Operation,
        weight: SSAValue | Operation,
        bias: SSAValue | Operation | None,
        *,
        layer_name: str,
        activation: str = "none",
        clip: tuple[float, float] | None = None,
        weights_need_transform: bool = False,
        result_type: Attribute | None = None,
    ):
        if result_type is None:
            n = tensor_shape(SSAValue.get(input))[0]
            o = tensor_shape(SSAValue.get(weight))[0]
            result_type = TensorType(f32, [n, o])
        props = {"layer_name": StringAttr(layer_name), **_activation_props(activation, clip)}
        if weights_need_transform:
            props["weights_need_transform"] = UnitAttr()
        super().__init__(
            operands=[input, weight, [] if bias is None else [bias]],
            result_types=[result_type],
            properties=props,
        )

    def verify_(self) -> None:
        self._verify_common()
        xs = tensor_shape(self.input)
        if len(xs) < 2:
            raise VerifyException(f"expected input of rank >= 2, got shape {list(xs)}")
        if self.weights_need_transform is not None and len(xs) != 4:
            raise VerifyException(
                f"expected NHWC input of rank 4 with weights_need_transform, got {list(xs)}"
            )
        o, k = _expect_rank("weight", self.weight, 2)
        if math.prod(xs[1:]) != k:
            raise VerifyException(
                f"expected input features {k} (weight [O, K]), got {math.prod(xs[1:])}"
            )
        if self.bias is not None:
            _expect_shape("bias", tensor_shape(self.bias), (o,))
        _expect_shape("result", tensor_shape(self.output), (xs[0], o))

    def macs(self) -> int:
        n, o = tensor_shape(self.output)
        return n * o * tensor_shape(self.weight)[1]


class _PoolBase(MrvlLayerOp):
    def _array(self, name: str) -> DenseArrayBase:
        attr = self.properties[name]
        assert isinstance(attr, DenseArrayBase)
        return attr

    def _verify_pool(self) -> None:
        self._verify_common()
        n, h, w, c = _expect_rank("input", self.operands[0], 4)
        kernel = _expect_len("kernel_shape", self._array("kernel_shape"), 2)
        strides = _expect_len("strides", self._array("strides"), 2)
        pads = _expect_len("pads", self._array("pads"), 4)
        if min(kernel) < 1 or min(strides) < 1 or min(pads) < 0:
            raise VerifyException("expected positive kernel_shape and strides, pads >= 0")
        oh = _pool_out(h, kernel[0], strides[0], pads[0], pads[2])
        ow = _pool_out(w, kernel[1], strides[1], pads[1], pads[3])
        _expect_shape("result", tensor_shape(self.results[0]), (n, oh, ow, c))


def _pool_init(
    op: IRDLOperation,
    input: SSAValue | Operation,
    layer_name: str,
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    result_type: Attribute | None,
    extra: dict[str, Attribute],
) -> None:
    if result_type is None:
        n, h, w, c = tensor_shape(SSAValue.get(input))
        oh = _pool_out(h, kernel_shape[0], strides[0], pads[0], pads[2])
        ow = _pool_out(w, kernel_shape[1], strides[1], pads[1], pads[3])
        result_type = TensorType(f32, [n, oh, ow, c])
    IRDLOperation.__init__(
        op,
        operands=[input],
        result_types=[result_type],
        properties={
            "layer_name": StringAttr(layer_name),
            "kernel_shape": i64_array(kernel_shape),
            "strides": i64_array(strides),
            "pads": i64_array(pads),
            **extra,
        },
    )


@irdl_op_definition
class Maxpool2DOp(_PoolBase):
    """2-D max pooling on NHWC (a fused -inf pad is folded into `pads`).

    ```mlir
    %y = mrvl.maxpool2d %x {layer_name = "tvmgen_mrvl_main_2", kernel_shape = array<i64: 2, 2>,
           strides = array<i64: 2, 2>, pads = array<i64: 0, 0, 0, 0>}
           : (tensor<1x28x28x64xf32>) -> tensor<1x14x14x64xf32>
    ```
    """

    name = "mrvl.maxpool2d"
    LAYER_NAME: ClassVar[str] = "Maxpool2D"
    COMPOSITE: ClassVar[str] = "mrvl.maxpool2d_nhwc2nhwc"

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    kernel_shape = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        layer_name: str,
        kernel_shape: Sequence[int],
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        result_type: Attribute | None = None,
    ):
        _pool_init(self, input, layer_name, kernel_shape, strides, pads, result_type, {})

    def verify_(self) -> None:
        self._verify_pool()


@irdl_op_definition
class Avgpool2DOp(_PoolBase):
    """2-D average pooling on NHWC; `count_include_pad` as in ONNX AveragePool."""

    name = "mrvl.avgpool2d"
    LAYER_NAME: ClassVar[str] = "Avgpool2D"
    COMPOSITE: ClassVar[str] = "mrvl.avgpool2d_nhwc2nhwc"

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    kernel_shape = prop_def(DenseArrayBase)
    strides = prop_def(DenseArrayBase)
    pads = prop_def(DenseArrayBase)
    count_include_pad = prop_def(IntegerAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        layer_name: str,
        kernel_shape: Sequence[int],
        strides: Sequence[int] = (1, 1),
        pads: Sequence[int] = (0, 0, 0, 0),
        count_include_pad: int = 0,
        result_type: Attribute | None = None,
    ):
        extra: dict[str, Attribute] = {"count_include_pad": IntegerAttr(count_include_pad, i64)}
        _pool_init(self, input, layer_name, kernel_shape, strides, pads, result_type, extra)

    def verify_(self) -> None:
        self._verify_pool()


class _GlobalPoolBase(MrvlLayerOp):
    def verify_(self) -> None:
        self._verify_common()
        n, _, _, c = _expect_rank("input", self.operands[0], 4)
        _expect_shape("result", tensor_shape(self.results[0]), (n, 1, 1, c))


def _global_init(op: IRDLOperation, input: SSAValue | Operation, layer_name: str) -> None:
    n, _, _, c = tensor_shape(SSAValue.get(input))
    IRDLOperation.__init__(
        op,
        operands=[input],
        result_types=[TensorType(f32, [n, 1, 1, c])],
        properties={"layer_name": StringAttr(layer_name)},
    )


@irdl_op_definition
class GlobalAvgpool2DOp(_GlobalPoolBase):
    """Mean over H and W of NHWC: [N, H, W, C] -> [N, 1, 1, C]."""

    name = "mrvl.global_avgpool2d"
    LAYER_NAME: ClassVar[str] = "GlobalAvgpool2D"
    COMPOSITE: ClassVar[str] = "mrvl.globalavgpool2d_nhwc2nhwc"

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, *, layer_name: str):
        _global_init(self, input, layer_name)


@irdl_op_definition
class GlobalMaxpool2DOp(_GlobalPoolBase):
    """Max over H and W of NHWC: [N, H, W, C] -> [N, 1, 1, C]."""

    name = "mrvl.global_maxpool2d"
    LAYER_NAME: ClassVar[str] = "GlobalMaxpool2D"
    COMPOSITE: ClassVar[str] = "mrvl.globalmaxpool2d_nhwc2nhwc"

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, *, layer_name: str):
        _global_init(self, input, layer_name)


class BroadcastEltwiseLayerOp(MrvlLayerOp):
    """The constructor and verifier shared by the two-input element-wise layers (Sum2D,
    Mul2D): operands `lhs`, `rhs` broadcast (numpy rules) to the f32 result's shape. The
    subclasses declare the fields (`lhs`, `rhs`, `output` and the activation properties)."""

    def __init__(
        self,
        lhs: SSAValue | Operation,
        rhs: SSAValue | Operation,
        *,
        layer_name: str,
        activation: str = "none",
        clip: tuple[float, float] | None = None,
    ):
        try:
            shape = broadcast_shapes(tensor_shape(SSAValue.get(lhs)),
                                     tensor_shape(SSAValue.get(rhs)))
        except VerifyException:
            raise VerifyException(f"operands of {self.name} do not broadcast") from None
        super().__init__(
            operands=[lhs, rhs],
            result_types=[TensorType(f32, shape)],
            properties={
                "layer_name": StringAttr(layer_name),
                **_activation_props(activation, clip),
            },
        )

    def data_operands(self) -> list[SSAValue]:
        return [self.lhs, self.rhs]

    def verify_(self) -> None:
        self._verify_common()
        try:
            shape = broadcast_shapes(tensor_shape(self.lhs), tensor_shape(self.rhs))
        except VerifyException:
            raise VerifyException(
                f"expected broadcastable operands, got {list(tensor_shape(self.lhs))} and "
                f"{list(tensor_shape(self.rhs))}"
            ) from None
        _expect_shape("result", tensor_shape(self.output), shape)


@irdl_op_definition
class Sum2DOp(BroadcastEltwiseLayerOp):
    """Element-wise sum (numpy broadcasting; one side may be a constant), fused activation.

    ```mlir
    %y = mrvl.sum %a, %b {layer_name = "tvmgen_mrvl_main_7", activation = "relu"}
           : (tensor<1x56x56x256xf32>, tensor<1x56x56x256xf32>) -> tensor<1x56x56x256xf32>
    ```
    """

    name = "mrvl.sum"
    LAYER_NAME: ClassVar[str] = "Sum2D"
    COMPOSITE: ClassVar[str] = "mrvl.sum"

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    activation = prop_def(StringAttr)
    clip_min = opt_prop_def(FloatAttr)
    clip_max = opt_prop_def(FloatAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)



@irdl_op_definition
class Mul2DOp(BroadcastEltwiseLayerOp):
    """Element-wise product (numpy broadcasting; one side may be a constant), fused
    activation: squeeze-excite `x * s` ([N, H, W, C] * [N, 1, 1, C]), SiLU `x * sigmoid(x)`,
    HardSwish's `x * hard_sigmoid(x)`, a division by a constant (as its reciprocal).

    ```mlir
    %y = mrvl.mul %a, %b {layer_name = "tvmgen_mrvl_main_8", activation = "none"}
           : (tensor<1x7x7x16xf32>, tensor<1x1x1x16xf32>) -> tensor<1x7x7x16xf32>
    ```
    """

    name = "mrvl.mul"
    LAYER_NAME: ClassVar[str] = "Mul2D"
    COMPOSITE: ClassVar[str] = "mrvl.mul"

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    activation = prop_def(StringAttr)
    clip_min = opt_prop_def(FloatAttr)
    clip_max = opt_prop_def(FloatAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)



@irdl_op_definition
class Div2DOp(BroadcastEltwiseLayerOp):
    """Element-wise quotient `lhs / rhs` (numpy broadcasting; one side may be a constant),
    fused activation: a division by a tensor (ELTWISE DIV, fp32 IEEE division). A division
    by a constant stays a Mul2D by its reciprocal.

    ```mlir
    %y = mrvl.div %a, %b {layer_name = "tvmgen_mrvl_main_9", activation = "none"}
           : (tensor<1x8x8x16xf32>, tensor<1x8x8x1xf32>) -> tensor<1x8x8x16xf32>
    ```
    """

    name = "mrvl.div"
    LAYER_NAME: ClassVar[str] = "Div2D"
    COMPOSITE: ClassVar[str] = "mrvl.div"

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    activation = prop_def(StringAttr)
    clip_min = opt_prop_def(FloatAttr)
    clip_max = opt_prop_def(FloatAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)


@irdl_op_definition
class ActivationOp(MrvlLayerOp):
    """A standalone activation (the ISA's ACT): `relu`, `clip` (`clip_min`, `clip_max`;
    relu6 is clip 0..6), `sigmoid`, `tanh`, `leaky_relu` (slope `alpha` below 0). The
    result has the input's shape.

    ```mlir
    %y = mrvl.activation %x {layer_name = "tvmgen_mrvl_main_3", activation = "leaky_relu",
           alpha = 1.000000e-01 : f32} : (tensor<1x4x4x8xf32>) -> tensor<1x4x4x8xf32>
    ```
    """

    name = "mrvl.activation"
    LAYER_NAME: ClassVar[str] = "Activation"
    COMPOSITE: ClassVar[str] = "mrvl.activation"
    ALLOWED_ACTIVATIONS: ClassVar[tuple[str, ...]] = STANDALONE_ACTIVATIONS

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    activation = prop_def(StringAttr)
    clip_min = opt_prop_def(FloatAttr)
    clip_max = opt_prop_def(FloatAttr)
    alpha = opt_prop_def(FloatAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(
        self,
        input: SSAValue | Operation,
        *,
        layer_name: str,
        activation: str,
        clip: tuple[float, float] | None = None,
        alpha: float | None = None,
    ):
        props = {"layer_name": StringAttr(layer_name), **_activation_props(activation, clip)}
        if alpha is not None:
            props["alpha"] = FloatAttr(float(alpha), f32)
        super().__init__(
            operands=[input], result_types=[SSAValue.get(input).type], properties=props
        )

    def verify_(self) -> None:
        self._verify_common()
        act = self.activation_str()
        if (act == "leaky_relu") != (self.alpha is not None):
            raise VerifyException(
                f"expected alpha exactly with activation \"leaky_relu\", got activation "
                f"\"{act}\" {'with' if self.alpha is not None else 'without'} alpha"
            )
        _expect_shape("result", tensor_shape(self.output), tensor_shape(self.input))


@irdl_op_definition
class ConcatOp(MrvlLayerOp):
    """Concatenation along `axis` (the channel axis of NHWC for the accelerator).

    ```mlir
    %y = mrvl.concat %a, %b {layer_name = "tvmgen_mrvl_main_9", axis = 3 : i64}
           : (tensor<1x4x4x2xf32>, tensor<1x4x4x3xf32>) -> tensor<1x4x4x5xf32>
    ```
    """

    name = "mrvl.concat"
    LAYER_NAME: ClassVar[str] = "Concat"
    COMPOSITE: ClassVar[str] = "mrvl.concat"

    inputs = var_operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    axis = prop_def(IntegerAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, inputs: Sequence[SSAValue | Operation], *, layer_name: str, axis: int):
        shapes = [list(tensor_shape(SSAValue.get(v))) for v in inputs]
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        super().__init__(
            operands=[list(inputs)],
            result_types=[TensorType(f32, out)],
            properties={"layer_name": StringAttr(layer_name), "axis": IntegerAttr(axis, i64)},
        )

    def data_operands(self) -> list[SSAValue]:
        return list(self.inputs)

    def verify_(self) -> None:
        self._verify_common()
        if len(self.inputs) < 1:
            raise VerifyException("expected at least one input")
        shapes = [tensor_shape(v) for v in self.inputs]
        rank = len(shapes[0])
        axis = self.axis.value.data
        if not 0 <= axis < rank:
            raise VerifyException(f"expected axis in [0, {rank}), got {axis}")
        for s in shapes:
            if len(s) != rank or any(s[i] != shapes[0][i] for i in range(rank) if i != axis):
                raise VerifyException(
                    f"expected inputs equal except on axis {axis}, got {[list(x) for x in shapes]}"
                )
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        _expect_shape("result", tensor_shape(self.output), out)


class _ShapeOpBase(MrvlLayerOp):
    """Data-movement layers (no arithmetic)."""


@irdl_op_definition
class ReshapeOp(_ShapeOpBase):
    """Row-major reshape to the static result type."""

    name = "mrvl.reshape"
    LAYER_NAME: ClassVar[str] = "reshape"
    COMPOSITE: ClassVar[str] = "mrvl.reshape"

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, result_type: Attribute, *, layer_name: str):
        super().__init__(
            operands=[input],
            result_types=[result_type],
            properties={"layer_name": StringAttr(layer_name)},
        )

    def verify_(self) -> None:
        self._verify_common()
        a, b = tensor_shape(self.input), tensor_shape(self.output)
        if math.prod(a) != math.prod(b):
            raise VerifyException(
                f"expected a result with {math.prod(a)} elements, got {list(b)}"
            )


@irdl_op_definition
class BatchFlattenOp(_ShapeOpBase):
    """[N, d1, ...] -> [N, d1 * ...] (row-major)."""

    name = "mrvl.batch_flatten"
    LAYER_NAME: ClassVar[str] = "nn.batch_flatten"
    COMPOSITE: ClassVar[str] = "mrvl.batch_flatten"

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, *, layer_name: str):
        shape = tensor_shape(SSAValue.get(input))
        super().__init__(
            operands=[input],
            result_types=[TensorType(f32, [shape[0], math.prod(shape[1:])])],
            properties={"layer_name": StringAttr(layer_name)},
        )

    def verify_(self) -> None:
        self._verify_common()
        a = tensor_shape(self.input)
        if len(a) < 1:
            raise VerifyException("expected an input of rank >= 1")
        _expect_shape("result", tensor_shape(self.output), (a[0], math.prod(a[1:])))


@irdl_op_definition
class SqueezeOp(_ShapeOpBase):
    """Removes the size-1 dimensions listed in `axes`."""

    name = "mrvl.squeeze"
    LAYER_NAME: ClassVar[str] = "squeeze"
    COMPOSITE: ClassVar[str] = "mrvl.squeeze"

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    axes = prop_def(DenseArrayBase)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, axes: Sequence[int], *, layer_name: str):
        shape = tensor_shape(SSAValue.get(input))
        rank = len(shape)
        norm = {a % rank for a in axes}
        out = [d for i, d in enumerate(shape) if i not in norm]
        super().__init__(
            operands=[input],
            result_types=[TensorType(f32, out)],
            properties={"layer_name": StringAttr(layer_name), "axes": i64_array(axes)},
        )

    def verify_(self) -> None:
        self._verify_common()
        shape = tensor_shape(self.input)
        rank = len(shape)
        axes = [int(a) for a in self.axes.get_values()]
        for a in axes:
            if not -rank <= a < rank or shape[a % rank] != 1:
                raise VerifyException(
                    f"expected axes of size-1 dimensions of {list(shape)}, got {axes}"
                )
        norm = {a % rank for a in axes}
        out = [d for i, d in enumerate(shape) if i not in norm]
        _expect_shape("result", tensor_shape(self.output), out)


def layout_permutation(src: str, dst: str) -> tuple[int, ...] | None:
    """Axis permutation taking `src` layout to `dst` ("NCHW" -> "NHWC" is (0, 2, 3, 1))."""
    if sorted(src) != sorted(dst) or len(set(src)) != len(src):
        return None
    return tuple(src.index(ch) for ch in dst)


@irdl_op_definition
class LayoutTransformOp(_ShapeOpBase):
    """Data layout change, e.g. NCHW -> NHWC (a transpose named by layouts).

    ```mlir
    %y = mrvl.layout_transform %x {layer_name = "tvmgen_mrvl_main_0", src_layout = "NCHW",
           dst_layout = "NHWC"} : (tensor<1x1x28x28xf32>) -> tensor<1x28x28x1xf32>
    ```
    """

    name = "mrvl.layout_transform"
    LAYER_NAME: ClassVar[str] = "layout_transform"
    COMPOSITE: ClassVar[str] = ""

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    src_layout = prop_def(StringAttr)
    dst_layout = prop_def(StringAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(
        self, input: SSAValue | Operation, src_layout: str, dst_layout: str, *, layer_name: str
    ):
        perm = layout_permutation(src_layout, dst_layout)
        if perm is None:
            raise VerifyException(f"layouts {src_layout} and {dst_layout} do not match")
        shape = tensor_shape(SSAValue.get(input))
        super().__init__(
            operands=[input],
            result_types=[TensorType(f32, [shape[p] for p in perm])],
            properties={
                "layer_name": StringAttr(layer_name),
                "src_layout": StringAttr(src_layout),
                "dst_layout": StringAttr(dst_layout),
            },
        )

    def permutation(self) -> tuple[int, ...]:
        perm = layout_permutation(self.src_layout.data, self.dst_layout.data)
        assert perm is not None
        return perm

    def verify_(self) -> None:
        self._verify_common()
        src, dst = self.src_layout.data, self.dst_layout.data
        perm = layout_permutation(src, dst)
        shape = tensor_shape(self.input)
        if perm is None or len(perm) != len(shape):
            raise VerifyException(
                f"expected layouts of rank {len(shape)} with the same axes, got \"{src}\" -> "
                f"\"{dst}\""
            )
        _expect_shape("result", tensor_shape(self.output), [shape[p] for p in perm])


@irdl_op_definition
class TransposeOp(_ShapeOpBase):
    """Axis permutation (numpy transpose with `perm`)."""

    name = "mrvl.transpose"
    LAYER_NAME: ClassVar[str] = "transpose"
    COMPOSITE: ClassVar[str] = ""

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    perm = prop_def(DenseArrayBase)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, perm: Sequence[int], *, layer_name: str):
        shape = tensor_shape(SSAValue.get(input))
        super().__init__(
            operands=[input],
            result_types=[TensorType(f32, [shape[p] for p in perm])],
            properties={"layer_name": StringAttr(layer_name), "perm": i64_array(perm)},
        )

    def verify_(self) -> None:
        self._verify_common()
        shape = tensor_shape(self.input)
        perm = [int(p) for p in self.perm.get_values()]
        if sorted(perm) != list(range(len(shape))):
            raise VerifyException(
                f"expected a permutation of {len(shape)} axes, got {perm}"
            )
        _expect_shape("result", tensor_shape(self.output), [shape[p] for p in perm])


def _perm_prop(perm: Sequence[int] | None) -> DenseArrayBase | None:
    return None if perm is None else i64_array(perm)


def _permuted(shape: Sequence[int], perm: DenseArrayBase | None) -> list[int]:
    if perm is None:
        return list(shape)
    values = [int(p) for p in perm.get_values()]
    if sorted(values) != list(range(len(shape))):
        raise VerifyException(f"expected a permutation of {len(shape)} axes, got {values}")
    return [shape[p] for p in values]


@irdl_op_definition
class MatMulOp(MrvlLayerOp):
    """Batched matrix product of two activations: `A @ B` with A = transpose(a, a_perm)
    [..., M, K] and B = transpose(b, b_perm) [..., K, N] (numpy matmul; the batch dims are
    equal, no broadcasting; rank 2 to 4). The optional permutations are transposes folded
    into the operand layout (the backend reads the operands with strides). With
    `softmax_scale` the layer is attention's score epilogue too: the result is
    softmax(softmax_scale * (A @ B) + mask) over the last axis (the scores never leave the
    OCM), with the optional additive `mask` (an activation broadcast to the scores' shape:
    BERT's `(1 - attention_mask) * -10000` of shape [B, 1, 1, S]; only with a scale).

    ```mlir
    %s = mrvl.matmul %q, %k {layer_name = "tvmgen_mrvl_main_4", b_perm = array<i64: 0, 2, 3, 1>}
           : (tensor<1x3x8x4xf32>, tensor<1x8x3x4xf32>) -> tensor<1x3x8x8xf32>
    ```
    """

    name = "mrvl.matmul"
    LAYER_NAME: ClassVar[str] = "MatMul"
    COMPOSITE: ClassVar[str] = "mrvl.matmul"

    a = operand_def(TensorType)
    b = operand_def(TensorType)
    mask = opt_operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    a_perm = opt_prop_def(DenseArrayBase)
    b_perm = opt_prop_def(DenseArrayBase)
    softmax_scale = opt_prop_def(FloatAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, a: SSAValue | Operation, b: SSAValue | Operation, *, layer_name: str,
                 a_perm: Sequence[int] | None = None, b_perm: Sequence[int] | None = None,
                 softmax_scale: float | None = None, mask: SSAValue | Operation | None = None):
        sa = _permuted(tensor_shape(SSAValue.get(a)), _perm_prop(a_perm))
        sb = _permuted(tensor_shape(SSAValue.get(b)), _perm_prop(b_perm))
        props: dict[str, Attribute] = {"layer_name": StringAttr(layer_name)}
        if a_perm is not None:
            props["a_perm"] = i64_array(a_perm)
        if b_perm is not None:
            props["b_perm"] = i64_array(b_perm)
        if softmax_scale is not None:
            props["softmax_scale"] = FloatAttr(float(softmax_scale), f32)
        super().__init__(operands=[a, b, [] if mask is None else [mask]],
                         result_types=[TensorType(f32, [*sa[:-1], sb[-1]])],
                         properties=props)

    def data_operands(self) -> list[SSAValue]:
        return [self.a, self.b] + ([] if self.mask is None else [self.mask])

    def logical_shapes(self) -> tuple[list[int], list[int]]:
        """Shapes of A and B after their permutations."""
        return (_permuted(tensor_shape(self.a), self.a_perm),
                _permuted(tensor_shape(self.b), self.b_perm))

    def verify_(self) -> None:
        self._verify_common()
        sa, sb = self.logical_shapes()
        if not 2 <= len(sa) <= 4 or len(sa) != len(sb):
            raise VerifyException(f"expected operands of equal rank 2 to 4, got {sa} and {sb}")
        if sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
            raise VerifyException(f"expected [..., M, K] @ [..., K, N], got {sa} and {sb}")
        _expect_shape("result", tensor_shape(self.output), [*sa[:-1], sb[-1]])
        if self.mask is not None:
            scores = [*sa[:-1], sb[-1]]
            mask = tensor_shape(self.mask)
            if self.softmax_scale is None:
                raise VerifyException("expected softmax_scale with a mask")
            if len(mask) != len(scores) or any(m not in (1, s) for m, s in zip(mask, scores)):
                raise VerifyException(f"expected a mask broadcastable to {scores}, got {mask}")

    def macs(self) -> int:
        sa, sb = self.logical_shapes()
        return math.prod(sa) * sb[-1]


@irdl_op_definition
class SoftmaxOp(MrvlLayerOp):
    """Softmax over the last axis: exp(x - max) / sum(exp(x - max)) per row.

    ```mlir
    %y = mrvl.softmax %x {layer_name = "tvmgen_mrvl_main_5"}
           : (tensor<1x3x8x8xf32>) -> tensor<1x3x8x8xf32>
    ```
    """

    name = "mrvl.softmax"
    LAYER_NAME: ClassVar[str] = "Softmax"
    COMPOSITE: ClassVar[str] = "mrvl.softmax"

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, *, layer_name: str):
        super().__init__(operands=[input], result_types=[SSAValue.get(input).type],
                         properties={"layer_name": StringAttr(layer_name)})

    def verify_(self) -> None:
        self._verify_common()
        if not 1 <= len(tensor_shape(self.input)) <= 4:
            raise VerifyException(f"expected rank 1 to 4, got {list(tensor_shape(self.input))}")
        _expect_shape("result", tensor_shape(self.output), tensor_shape(self.input))


@irdl_op_definition
class LayerNormOp(MrvlLayerOp):
    """Layer normalisation over the last axis: (x - mean) / sqrt(var + epsilon) * gamma +
    beta (biased variance; gamma and beta are constants of the last axis' size).

    ```mlir
    %y = mrvl.layernorm %x, %g, %b {layer_name = "tvmgen_mrvl_main_2", epsilon = 1.0e-05 : f32}
           : (tensor<1x8x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<1x8x16xf32>
    ```
    """

    name = "mrvl.layernorm"
    LAYER_NAME: ClassVar[str] = "LayerNorm"
    COMPOSITE: ClassVar[str] = "mrvl.layernorm"

    input = operand_def(TensorType)
    gamma = operand_def(TensorType)
    beta = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    epsilon = prop_def(FloatAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, gamma: SSAValue | Operation,
                 beta: SSAValue | Operation, *, layer_name: str, epsilon: float):
        super().__init__(operands=[input, gamma, beta], result_types=[SSAValue.get(input).type],
                         properties={"layer_name": StringAttr(layer_name),
                                     "epsilon": FloatAttr(float(epsilon), f32)})

    def verify_(self) -> None:
        self._verify_common()
        shape = tensor_shape(self.input)
        if not 1 <= len(shape) <= 4:
            raise VerifyException(f"expected rank 1 to 4, got {list(shape)}")
        _expect_shape("gamma", tensor_shape(self.gamma), (shape[-1],))
        _expect_shape("beta", tensor_shape(self.beta), (shape[-1],))
        _expect_shape("result", tensor_shape(self.output), shape)
        if not self.epsilon.value.data >= 0.0:
            raise VerifyException(f"expected epsilon >= 0, got {self.epsilon.value.data}")


@irdl_op_definition
class SliceOp(_ShapeOpBase):
    """The elements `start .. start + size - 1` of `axis` (one output of an ONNX Split; the
    result type gives `size`).

    ```mlir
    %y = mrvl.slice %x {layer_name = "tvmgen_mrvl_main_3", axis = 3 : i64, start = 2 : i64}
           : (tensor<1x4x4x6xf32>) -> tensor<1x4x4x4xf32>
    ```
    """

    name = "mrvl.slice"
    LAYER_NAME: ClassVar[str] = "slice"
    COMPOSITE: ClassVar[str] = ""

    input = operand_def(TensorType)
    layer_name = prop_def(StringAttr)
    axis = prop_def(IntegerAttr)
    start = prop_def(IntegerAttr)
    output = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = LAYER_FORMAT
    irdl_options = (ParsePropInAttrDict(),)

    def __init__(self, input: SSAValue | Operation, *, axis: int, start: int, size: int,
                 layer_name: str):
        shape = list(tensor_shape(SSAValue.get(input)))
        shape[axis] = size
        super().__init__(
            operands=[input],
            result_types=[TensorType(f32, shape)],
            properties={"layer_name": StringAttr(layer_name), "axis": IntegerAttr(axis, i64),
                        "start": IntegerAttr(start, i64)},
        )

    def verify_(self) -> None:
        self._verify_common()
        shape = list(tensor_shape(self.input))
        out = tensor_shape(self.output)
        axis, start = self.axis.value.data, self.start.value.data
        if not 0 <= axis < len(shape):
            raise VerifyException(f"expected axis in [0, {len(shape)}), got {axis}")
        if len(out) != len(shape) or not 0 <= start or start + out[axis] > shape[axis]:
            raise VerifyException(
                f"expected a slice of {list(shape)} on axis {axis} from {start}, got {list(out)}"
            )
        shape[axis] = out[axis]
        _expect_shape("result", out, shape)


LAYER_OPS: tuple[type[MrvlLayerOp], ...] = (
    Conv2DOp,
    FCOp,
    Maxpool2DOp,
    Avgpool2DOp,
    GlobalAvgpool2DOp,
    GlobalMaxpool2DOp,
    Sum2DOp,
    Mul2DOp,
    ActivationOp,
    ConcatOp,
    ReshapeOp,
    BatchFlattenOp,
    SqueezeOp,
    LayoutTransformOp,
    TransposeOp,
    MatMulOp,
    SoftmaxOp,
    LayerNormOp,
    SliceOp,
    Div2DOp,
)

KNOWN_LAYER_NAMES = frozenset(op.LAYER_NAME for op in LAYER_OPS) | {"input"}
"""Every `layer_name` a Nodes-JSON may hold."""

COMPUTE_OPS = (Conv2DOp, FCOp, MatMulOp)
"""Layers that make a region compute-intensive (upstream's rule)."""

Mrvl = Dialect("mrvl", list(LAYER_OPS), [])
