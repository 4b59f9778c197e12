"""A small YOLOv8-style detector (Ultralytics' layout at width 0.25, depth 1/3), as
torch.onnx.export (opset 17) writes it.

`Conv` = conv (no bias) + BatchNorm + SiLU (exported as Sigmoid + Mul). Backbone
`model.0..9`: Conv 3x3/2 x2, C2f, Conv 3x3/2, C2f (P3, /8), Conv 3x3/2, C2f (P4, /16),
Conv 3x3/2, C2f, SPPF (P5, /32). A C2f block: Conv 1x1 to 2c, Split (torch's chunk) into two
halves, a Bottleneck (two Conv 3x3, residual Add when `shortcut`) on the second, Concat of
the halves and the bottleneck output, Conv 1x1. SPPF: Conv 1x1 to c/2, three chained
MaxPool 5x5/1 pad 2, Concat of the four, Conv 1x1. Neck (PAN): nearest Resize x2 (what
nn.Upsample(scale_factor=2) exports: asymmetric, floor, scales input), Concat with the
backbone level, C2f; then Conv 3x3/2 down, Concat, C2f, twice. Detect head per level: a box
branch (Conv 3x3, Conv 3x3, conv 1x1 to 4 x `REG_MAX` channels) and a class branch (the
same to `classes` channels; the 1x1 biases as Ultralytics' `Detect.bias_init` sets them: 1.0
for the box, log(5 / classes / (size / stride)^2) for the classes), concatenated on channels, reshaped to [N, no, H*W]; the three
levels concatenated on axis 2. Input "images" [N,3,128,128], output "preds"
[N, 4*REG_MAX + classes, 336] (16x16 + 8x8 + 4x4 anchors); the box decoding (DFL softmax,
anchors) is post-processing and not part of the model.
"""

from __future__ import annotations

import numpy as np
import onnx

from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info

INPUT_NAME = "images"
OUTPUT_NAME = "preds"
SIZE = 128
REG_MAX = 16
WIDTHS = (16, 32, 64, 128, 128)
"""Output channels of model.0, model.1 (and .2), model.3/4 (P3), model.5/6 (P4), 7..9 (P5)."""
GAMMA = 0.8
"""Scale of every BatchNorm's gamma: keeps activations O(1) through the residual blocks."""


class _Yolo:
    def __init__(self, g: GraphBuilder):
        self.g = g

    def conv(self, prefix: str, x: str, cin: int, cout: int, kernel: int = 1,
             stride: int = 1) -> str:
        """Ultralytics' Conv: `<prefix>.conv`, `.bn`, `.act` (Sigmoid + Mul)."""
        g = self.g
        y = g.conv(f"{prefix}.conv", x, cin, cout, kernel, stride=stride)
        y = g.batch_norm(f"{prefix}.bn", y, cout, gamma_scale=GAMMA)
        gate = g.node("Sigmoid", [y], f"{prefix}.act.Sigmoid")
        return g.node("Mul", [y, gate], f"{prefix}.act.Mul")

    def c2f(self, prefix: str, x: str, cin: int, cout: int, shortcut: bool) -> str:
        hidden = cout // 2
        y = self.conv(f"{prefix}.cv1", x, cin, 2 * hidden)
        first, second = self.g.split(f"{prefix}.Split", y, 1, [hidden, hidden])
        z = self.conv(f"{prefix}.m.0.cv1", second, hidden, hidden, 3)
        z = self.conv(f"{prefix}.m.0.cv2", z, hidden, hidden, 3)
        if shortcut:
            z = self.g.node("Add", [second, z], f"{prefix}.m.0.add")
        y = self.g.node("Concat", [first, second, z], f"{prefix}.Concat", axis=1)
        return self.conv(f"{prefix}.cv2", y, 3 * hidden, cout)

    def sppf(self, prefix: str, x: str, channels: int) -> str:
        hidden = channels // 2
        y = self.conv(f"{prefix}.cv1", x, channels, hidden)
        pooled = [y]
        for k in range(3):
            pooled.append(self.g.node("MaxPool", [pooled[-1]], f"{prefix}.m.MaxPool_{k}",
                                      kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2]))
        y = self.g.node("Concat", pooled, f"{prefix}.Concat", axis=1)
        return self.conv(f"{prefix}.cv2", y, 4 * hidden, channels)

    def upsample(self, name: str, x: str) -> str:
        scales = self.g.initializer(f"{name}.scales", np.array([1, 1, 2, 2], np.float32))
        return self.g.node("Resize", [x, "", scales], name, mode="nearest",
                           coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    def branch(self, prefix: str, x: str, cin: int, hidden: int, cout: int,
               bias: float) -> str:
        """Conv 3x3, Conv 3x3, conv 1x1 whose bias is Ultralytics' `Detect.bias_init` value."""
        y = self.conv(f"{prefix}.0", x, cin, hidden, 3)
        y = self.conv(f"{prefix}.1", y, hidden, hidden, 3)
        g = self.g
        weight = g.initializer(f"{prefix}.2.weight", g.he_normal((cout, hidden, 1, 1), hidden,
                                                                 gain=1.0))
        bias_name = g.initializer(f"{prefix}.2.bias", np.full(cout, bias, np.float32))
        return g.node("Conv", [y, weight, bias_name], f"{prefix}.2", kernel_shape=[1, 1],
                      strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)


def yolo(opset: int = 17, batch: int | None = None, seed: int = 0, classes: int = 8
         ) -> onnx.ModelProto:
    """The small YOLOv8-style detector with seeded weights; input "images" [N,3,128,128]."""
    check_opset("yolo", opset)
    n = batch_dim("yolo", batch)
    g = GraphBuilder(seed, opset)
    m = _Yolo(g)
    c0, c1, c3, c4, c5 = WIDTHS
    x = m.conv("model.0", INPUT_NAME, 3, c0, 3, 2)
    x = m.conv("model.1", x, c0, c1, 3, 2)
    x = m.c2f("model.2", x, c1, c1, True)
    x = m.conv("model.3", x, c1, c3, 3, 2)
    p3 = m.c2f("model.4", x, c3, c3, True)
    x = m.conv("model.5", p3, c3, c4, 3, 2)
    p4 = m.c2f("model.6", x, c4, c4, True)
    x = m.conv("model.7", p4, c4, c5, 3, 2)
    x = m.c2f("model.8", x, c5, c5, True)
    p5 = m.sppf("model.9", x, c5)
    y = g.node("Concat", [m.upsample("model.10", p5), p4], "model.11", axis=1)
    n4 = m.c2f("model.12", y, c5 + c4, c3, False)
    y = g.node("Concat", [m.upsample("model.13", n4), p3], "model.14", axis=1)
    out3 = m.c2f("model.15", y, c3 + c3, c1, False)
    y = g.node("Concat", [m.conv("model.16", out3, c1, c1, 3, 2), n4], "model.17", axis=1)
    out4 = m.c2f("model.18", y, c1 + c3, c3, False)
    y = g.node("Concat", [m.conv("model.19", out4, c3, c3, 3, 2), p5], "model.20", axis=1)
    out5 = m.c2f("model.21", y, c3 + c5, c5, False)
    outputs = 4 * REG_MAX + classes
    box_hidden, cls_hidden = max(16, c1 // 4, 4 * REG_MAX // 4), max(c1, min(classes, 100))
    levels = []
    for i, (feature, channels) in enumerate(((out3, c1), (out4, c3), (out5, c5))):
        stride = 8 * 2**i
        box = m.branch(f"model.22.cv2.{i}", feature, channels, box_hidden, 4 * REG_MAX, 1.0)
        cls = m.branch(f"model.22.cv3.{i}", feature, channels, cls_hidden, classes,
                       float(np.log(5 / classes / (SIZE / stride) ** 2)))
        y = g.node("Concat", [box, cls], f"model.22.Concat_{i}", axis=1)
        levels.append(g.node("Reshape", [y, g.int64s(f"model.22.shape_{i}", [0, outputs, -1])],
                             f"model.22.Reshape_{i}"))
    g.node("Concat", levels, "model.22.Concat", axis=2, outputs=[OUTPUT_NAME])
    anchors = sum((SIZE // s) ** 2 for s in (8, 16, 32))
    model = g.make_model(
        "yolo", [tensor_info(INPUT_NAME, [n, 3, SIZE, SIZE])],
        [tensor_info(OUTPUT_NAME, [n, outputs, anchors])],
    )
    onnx.checker.check_model(model, full_check=True)
    return model
