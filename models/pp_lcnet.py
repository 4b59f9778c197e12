"""A PP-LCNet-style small classifier (Cui et al. 2021, "PP-LCNet"), width 0.25 by default.

Stem conv 3x3/2 + BN + HardSwish; 13 depthwise-separable blocks from the paper's table
(kernel, in, out, stride, SE): depthwise kxk (group = channels) + BN + HardSwish, an optional
squeeze-and-excitation (GlobalAveragePool, 1x1 conv c -> c/4 + ReLU, 1x1 conv c/4 -> c +
HardSigmoid(1/6, 1/2), Mul), pointwise 1x1 + BN + HardSwish; GlobalAveragePool, 1x1 conv to
1280 + HardSwish, Flatten, Gemm(1000). Channels are `make_divisible(c * scale, 8)` like the
reference. Input "x" [N,3,224,224], output "logits" [N,1000]; opset >= 14 (HardSwish).

Not in `mrvl.models.MODELS` (the suites that iterate over it stay as they are): the simulator
speed benchmark uses it as its many-small-layers case.
"""

from __future__ import annotations

import onnx

from mrvl.errors import MrvlError
from mrvl.models._graph_builder import GraphBuilder, batch_dim, tensor_info

INPUT_NAME = "x"
OUTPUT_NAME = "logits"
BLOCKS = ((3, 16, 32, 1, False), (3, 32, 64, 2, False), (3, 64, 64, 1, False),
          (3, 64, 128, 2, False), (3, 128, 128, 1, False), (3, 128, 256, 2, False),
          (5, 256, 256, 1, False), (5, 256, 256, 1, False), (5, 256, 256, 1, False),
          (5, 256, 256, 1, False), (5, 256, 256, 1, False), (5, 256, 512, 2, True),
          (5, 512, 512, 1, True))  # fmt: skip
"""(kernel, input channels, output channels, stride, SE) at scale 1.0, the paper's table."""
HEAD_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """The reference's channel rounding: nearest multiple of `divisor`, never below 90 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn_hswish(g: GraphBuilder, prefix: str, x: str, cin: int, cout: int, kernel: int,
                    stride: int = 1, group: int = 1) -> str:
    y = g.conv(f"{prefix}.conv", x, cin, cout, kernel, stride=stride, group=group)
    y = g.batch_norm(f"{prefix}.bn", y, cout)
    return g.node("HardSwish", [y], f"{prefix}.hardswish")


def _se(g: GraphBuilder, prefix: str, x: str, channels: int) -> str:
    squeezed = channels // 4
    s = g.node("GlobalAveragePool", [x], f"{prefix}.pool")
    s = g.conv(f"{prefix}.conv1", s, channels, squeezed, 1, bias=True)
    s = g.node("Relu", [s], f"{prefix}.relu")
    s = g.conv(f"{prefix}.conv2", s, squeezed, channels, 1, bias=True, gain=1.0)
    s = g.node("HardSigmoid", [s], f"{prefix}.hardsigmoid", alpha=1.0 / 6.0, beta=0.5)
    return g.node("Mul", [x, s], f"{prefix}.mul")


def pp_lcnet(scale: float = 0.25, opset: int = 17, batch: int | None = None, seed: int = 0,
             num_classes: int = 1000) -> onnx.ModelProto:
    """PP-LCNet at width `scale` with seeded weights; input "x" [N,3,224,224]."""
    if not 14 <= opset <= 21:
        raise MrvlError(f"pp_lcnet: opset {opset} is not supported (14 to 21: HardSwish)")
    if not 0.0 < scale <= 4.0:
        raise MrvlError(f"pp_lcnet: scale {scale} must be in (0, 4]")
    n = batch_dim("pp_lcnet", batch)
    g = GraphBuilder(seed, opset)
    cin = make_divisible(16 * scale)
    x = _conv_bn_hswish(g, "stem", INPUT_NAME, 3, cin, 3, stride=2)
    for index, (kernel, _, out, stride, se) in enumerate(BLOCKS):
        cout = make_divisible(out * scale)
        prefix = f"blocks.{index}"
        x = _conv_bn_hswish(g, f"{prefix}.dw", x, cin, cin, kernel, stride=stride, group=cin)
        if se:
            x = _se(g, f"{prefix}.se", x, cin)
        x = _conv_bn_hswish(g, f"{prefix}.pw", x, cin, cout, 1)
        cin = cout
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.conv("last_conv", x, cin, HEAD_CHANNELS, 1, bias=True)
    x = g.node("HardSwish", [x], "last_hardswish")
    x = g.node("Flatten", [x], "flatten", axis=1)
    w = g.initializer("fc.weight", g.he_normal((num_classes, HEAD_CHANNELS), HEAD_CHANNELS, 1.0))
    b = g.initializer("fc.bias", g.uniform((num_classes,), -0.01, 0.01))
    g.node("Gemm", [x, w, b], "fc", outputs=[OUTPUT_NAME], alpha=1.0, beta=1.0, transB=1)
    return g.make_model("pp_lcnet", [tensor_info(INPUT_NAME, [n, 3, 224, 224])],
                        [tensor_info(OUTPUT_NAME, [n, num_classes])])
