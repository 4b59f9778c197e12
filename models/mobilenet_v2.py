"""MobileNet v2 (Sandler et al. 2018) in torchvision's layout.

features.0: conv 3x3/2 32 + BN + ReLU6; 17 inverted residual blocks from the paper's table
(t, c, n, s) = (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1):
expand 1x1 + BN + ReLU6 (absent when t = 1), depthwise 3x3 (group = channels) + BN + ReLU6,
linear projection 1x1 + BN (no activation), residual Add when stride 1 and cin == cout;
features.18: conv 1x1 1280 + BN + ReLU6; GlobalAveragePool, Flatten, Gemm(1000).
ReLU6 is Clip with min/max inputs (0, 6). 3,504,872 parameters, like torchvision.
Input "input" [N,3,224,224], output "logits" [N,1000].
"""

from __future__ import annotations

import onnx

from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
"""(expansion t, output channels c, repeats n, first stride s) per row of the paper's table."""
LAST_CHANNELS = 1280
RESIDUAL_GAMMA = 0.5
"""Scale of the projection BN's gamma in residual blocks, so activations stay O(1) in depth."""


def _conv_bn(
    g: GraphBuilder,
    prefix: str,
    x: str,
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    group: int = 1,
    relu6: bool = True,
    gamma_scale: float = 1.0,
) -> str:
    """torchvision's Conv2dNormActivation: `<prefix>.0` conv, `.1` BN, `.2` ReLU6."""
    gain = 2.0 if relu6 else 1.0
    y = g.conv(f"{prefix}.0", x, cin, cout, kernel, stride=stride, group=group, gain=gain)
    y = g.batch_norm(f"{prefix}.1", y, cout, gamma_scale=gamma_scale)
    if not relu6:
        return y
    return g.clip(f"{prefix}.2", y, 0.0, 6.0)


def _inverted_residual(
    g: GraphBuilder, prefix: str, x: str, cin: int, cout: int, stride: int, t: int
) -> str:
    hidden = cin * t
    residual = stride == 1 and cin == cout
    layers = f"{prefix}.conv"
    index = 0
    y = x
    if t != 1:
        y = _conv_bn(g, f"{layers}.{index}", y, cin, hidden, 1)
        index += 1
    y = _conv_bn(g, f"{layers}.{index}", y, hidden, hidden, 3, stride=stride, group=hidden)
    index += 1
    # Linear bottleneck: projection conv + BN, no activation.
    y = g.conv(f"{layers}.{index}", y, hidden, cout, 1, gain=1.0)
    y = g.batch_norm(
        f"{layers}.{index + 1}", y, cout, gamma_scale=RESIDUAL_GAMMA if residual else 1.0
    )
    if not residual:
        return y
    return g.node("Add", [x, y], f"{prefix}.add")


def mobilenet_v2(
    opset: int = 17, batch: int | None = None, seed: int = 0, num_classes: int = 1000
) -> onnx.ModelProto:
    """MobileNet v2 (width 1.0) with seeded weights; input "input" [N,3,224,224]."""
    check_opset("mobilenet_v2", opset)
    n = batch_dim("mobilenet_v2", batch)
    g = GraphBuilder(seed, opset)
    x = _conv_bn(g, "features.0", INPUT_NAME, 3, 32, 3, stride=2)
    cin = 32
    index = 1
    for t, c, repeats, s in SETTINGS:
        for i in range(repeats):
            x = _inverted_residual(g, f"features.{index}", x, cin, c, s if i == 0 else 1, t)
            cin = c
            index += 1
    x = _conv_bn(g, f"features.{index}", x, cin, LAST_CHANNELS, 1)
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    w = g.initializer("classifier.1.weight", g.he_normal((num_classes, LAST_CHANNELS), 1280, 1.0))
    b = g.initializer("classifier.1.bias", g.uniform((num_classes,), -0.01, 0.01))
    g.node(
        "Gemm", [x, w, b], "classifier.1", outputs=[OUTPUT_NAME], alpha=1.0, beta=1.0, transB=1
    )
    return g.make_model(
        "mobilenet_v2",
        [tensor_info(INPUT_NAME, [n, 3, 224, 224])],
        [tensor_info(OUTPUT_NAME, [n, num_classes])],
    )
