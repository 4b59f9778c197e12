"""ResNet-50 v1 (He et al. 2015) in torchvision's layout ("v1.5": stride on the 3x3 conv).

conv1 7x7/2 + bn1 + relu, maxpool 3x3/2, four stages of bottlenecks [3, 4, 6, 3] with widths
64/128/256/512 (expansion 4; the first block of each stage has a conv1x1 + BN downsample
shortcut), GlobalAveragePool, Flatten, Gemm(1000). 25,557,032 parameters, like torchvision.
Node and initializer names follow torch's exporter ("layer1.0.conv1", "layer1.0.bn1.weight").
Input "data" [N,3,224,224], output "logits" [N,1000].
"""

from __future__ import annotations

import onnx

from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info

INPUT_NAME = "data"
OUTPUT_NAME = "logits"
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
"""(bottleneck width, number of blocks, stride of the first block) per stage."""
EXPANSION = 4
DOWNSAMPLE_GAMMA = 0.7
"""Scale of the downsample BN's gamma, so the shortcut does not grow the scale per stage."""
RESIDUAL_GAMMA = 0.3
"""Scale of the last BN's gamma in each residual branch, so activations stay O(1) in depth."""


def _bottleneck(
    g: GraphBuilder, prefix: str, x: str, cin: int, width: int, stride: int
) -> tuple[str, int]:
    cout = width * EXPANSION
    y = g.conv(f"{prefix}.conv1", x, cin, width, 1)
    y = g.batch_norm(f"{prefix}.bn1", y, width)
    y = g.node("Relu", [y], f"{prefix}.relu1")
    y = g.conv(f"{prefix}.conv2", y, width, width, 3, stride=stride)
    y = g.batch_norm(f"{prefix}.bn2", y, width)
    y = g.node("Relu", [y], f"{prefix}.relu2")
    y = g.conv(f"{prefix}.conv3", y, width, cout, 1)
    y = g.batch_norm(f"{prefix}.bn3", y, cout, gamma_scale=RESIDUAL_GAMMA)
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = g.conv(f"{prefix}.downsample.0", x, cin, cout, 1, stride=stride)
        shortcut = g.batch_norm(
            f"{prefix}.downsample.1", shortcut, cout, gamma_scale=DOWNSAMPLE_GAMMA
        )
    y = g.node("Add", [y, shortcut], f"{prefix}.add")
    return g.node("Relu", [y], f"{prefix}.relu3"), cout


def resnet50(
    opset: int = 17, batch: int | None = None, seed: int = 0, num_classes: int = 1000
) -> onnx.ModelProto:
    """ResNet-50 v1.5 with seeded weights; input "data" [N,3,224,224] (N fixed by `batch`)."""
    check_opset("resnet50", opset)
    n = batch_dim("resnet50", batch)
    g = GraphBuilder(seed, opset)
    x = g.conv("conv1", INPUT_NAME, 3, 64, 7, stride=2)
    x = g.batch_norm("bn1", x, 64)
    x = g.node("Relu", [x], "relu")
    x = g.node(
        "MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
    )
    cin = 64
    for stage, (width, blocks, stride) in enumerate(STAGES, start=1):
        for block in range(blocks):
            x, cin = _bottleneck(
                g, f"layer{stage}.{block}", x, cin, width, stride if block == 0 else 1
            )
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    w = g.initializer("fc.weight", g.he_normal((num_classes, cin), cin, gain=1.0))
    b = g.initializer("fc.bias", g.uniform((num_classes,), -0.01, 0.01))
    g.node("Gemm", [x, w, b], "fc", outputs=[OUTPUT_NAME], alpha=1.0, beta=1.0, transB=1)
    return g.make_model(
        "resnet50_v1",
        [tensor_info(INPUT_NAME, [n, 3, 224, 224])],
        [tensor_info(OUTPUT_NAME, [n, num_classes])],
    )
