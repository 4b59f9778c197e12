"""A DenseNet-121-style classifier (Huang et al. 2017, "Densely Connected Convolutional Networks").

torchvision's layout and names: features.conv0 7x7/2 64 + norm0 + relu0, pool0 max 3x3/2;
four dense blocks of [6, 12, 24, 16] layers with growth rate k = 32; each dense layer is
BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k) and its output is concatenated (channel axis) to its
input, so a block's layer j sees c0 + j*k channels; a transition (BN-ReLU-Conv1x1 halving the
channels, AvgPool 2x2/2) follows each block but the last; features.norm5, ReLU,
GlobalAveragePool, Flatten, Gemm(1000). 7,978,856 parameters, like torchvision.

Each dense layer is one two-input Concat([x, new]) (the paper's "x_l = H([x_0..x_l-1])" written
as a chain), the form whose concats a backend can write in place: layer j's input is the
first slice of layer j's output. Input "data" [N,3,224,224], output "logits" [N,1000].

Not in `mrvl.models.MODELS` (the suites and the backend digest that iterate over it stay as
they are): the schedule benchmark and tests/test_densenet.py use it.
"""

from __future__ import annotations

import onnx

from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info

INPUT_NAME = "data"
OUTPUT_NAME = "logits"
GROWTH_RATE = 32
BLOCK_LAYERS = (6, 12, 24, 16)
BOTTLENECK_FACTOR = 4
"""The 1x1 bottleneck conv has BOTTLENECK_FACTOR * GROWTH_RATE output channels."""
INITIAL_FEATURES = 64


def _bn_relu(g: GraphBuilder, prefix: str, x: str, channels: int, index: str = "") -> str:
    y = g.batch_norm(f"{prefix}.norm{index}", x, channels)
    return g.node("Relu", [y], f"{prefix}.relu{index}")


def _dense_layer(g: GraphBuilder, prefix: str, x: str, cin: int) -> tuple[str, int]:
    """BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k), concatenated to `x`; returns (out, channels)."""
    bottleneck = BOTTLENECK_FACTOR * GROWTH_RATE
    y = _bn_relu(g, prefix, x, cin, "1")
    y = g.conv(f"{prefix}.conv1", y, cin, bottleneck, 1)
    y = _bn_relu(g, prefix, y, bottleneck, "2")
    y = g.conv(f"{prefix}.conv2", y, bottleneck, GROWTH_RATE, 3)
    return g.node("Concat", [x, y], f"{prefix}.concat", axis=1), cin + GROWTH_RATE


def _transition(g: GraphBuilder, prefix: str, x: str, cin: int) -> tuple[str, int]:
    """BN-ReLU-Conv1x1 (channels halved) - AvgPool 2x2/2."""
    cout = cin // 2
    y = _bn_relu(g, prefix, x, cin)
    y = g.conv(f"{prefix}.conv", y, cin, cout, 1)
    y = g.node("AveragePool", [y], f"{prefix}.pool", kernel_shape=[2, 2], strides=[2, 2])
    return y, cout


def densenet121(
    opset: int = 17,
    batch: int | None = None,
    seed: int = 0,
    num_classes: int = 1000,
    block_layers: tuple[int, ...] = BLOCK_LAYERS,
) -> onnx.ModelProto:
    """DenseNet-121 (k = 32) with seeded weights; input "data" [N,3,224,224].
    `block_layers` (dense layers per block) makes shallower variants for quick tests."""
    check_opset("densenet121", opset)
    n = batch_dim("densenet121", batch)
    g = GraphBuilder(seed, opset)
    x = g.conv("features.conv0", INPUT_NAME, 3, INITIAL_FEATURES, 7, stride=2)
    x = _bn_relu(g, "features", x, INITIAL_FEATURES, "0")
    x = g.node(
        "MaxPool", [x], "features.pool0", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
    )
    channels = INITIAL_FEATURES
    for block, layers in enumerate(block_layers, start=1):
        for layer in range(1, layers + 1):
            x, channels = _dense_layer(
                g, f"features.denseblock{block}.denselayer{layer}", x, channels
            )
        if block != len(block_layers):
            x, channels = _transition(g, f"features.transition{block}", x, channels)
    x = g.batch_norm("features.norm5", x, channels)
    x = g.node("Relu", [x], "features.relu5")
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    w = g.initializer("classifier.weight", g.he_normal((num_classes, channels), channels, 1.0))
    b = g.initializer("classifier.bias", g.uniform((num_classes,), -0.01, 0.01))
    g.node("Gemm", [x, w, b], "classifier", outputs=[OUTPUT_NAME], alpha=1.0, beta=1.0, transB=1)
    return g.make_model(
        "densenet121",
        [tensor_info(INPUT_NAME, [n, 3, 224, 224])],
        [tensor_info(OUTPUT_NAME, [n, num_classes])],
    )
