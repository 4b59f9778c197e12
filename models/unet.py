"""A small UNet (Ronneberger et al. 2015) in the layout of the common PyTorch implementation
(milesial/Pytorch-UNet), as torch.onnx.export (opset 17) writes it.

`inc` and `down1..3`: DoubleConv = (conv 3x3 pad 1, no bias + BatchNorm + ReLU) x 2, each down
block after MaxPool 2x2/2; widths 16, 32, 64, 128 (`base` = 16). Decoder, each step joined to
the encoder's skip by Concat on the channel axis and followed by a DoubleConv:
`up1` ConvTranspose k2 s2 (128 -> 64), `up2` bilinear Resize x2 (align_corners=True, what
nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True) exports: an empty roi and a
scales input) + conv 1x1 (64 -> 32), `up3` ConvTranspose k4 s2 p1 (32 -> 16); `outc` conv 1x1
with bias to `classes` maps and a Sigmoid (per-class mask probabilities). Input "input"
[N,3,64,64], output "masks" [N,classes,64,64].

`groups=G` is the diffusion-style variant: every BatchNorm + ReLU is GroupNorm(G) + SiLU
(torch's Reshape / InstanceNormalization / Reshape / Mul / Add export below opset 18,
GroupNormalization from opset 21); `depthwise_up=True` makes `up1` and `up3` depthwise
ConvTransposes k4 s2 p1 (groups = channels, as segmentation decoders export depthwise
up-sampling) followed by a 1x1 conv to the narrower width.
"""

from __future__ import annotations

import numpy as np
import onnx

from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info

INPUT_NAME = "input"
OUTPUT_NAME = "masks"
SIZE = 64
GAMMA = 0.7
"""Scale of every BatchNorm's gamma: keeps the activations O(1) through the 18 convs and
the skip concats (so fp16 rounding stays small against the outputs)."""


def _double_conv(g: GraphBuilder, prefix: str, x: str, cin: int, cout: int,
                 shape: list[int] | None = None, groups: int | None = None) -> str:
    """`<prefix>.double_conv.{0..5}`: conv-BN-ReLU twice (conv-GroupNorm-SiLU with `groups`,
    `shape` = the conv output's NCHW shape)."""
    for index, channels in ((0, cin), (3, cout)):
        x = g.conv(f"{prefix}.double_conv.{index}", x, channels, cout, 3)
        if groups is None:
            x = g.batch_norm(f"{prefix}.double_conv.{index + 1}", x, cout, gamma_scale=GAMMA)
            x = g.node("Relu", [x], f"{prefix}.double_conv.{index + 2}")
            continue
        assert shape is not None
        name = f"{prefix}.double_conv.{index + 1}"
        x = g.group_norm(name, x, shape, groups, form="onnx" if g.opset >= 21 else "torch")
        sigmoid = g.node("Sigmoid", [x], f"{prefix}.double_conv.{index + 2}/Sigmoid")
        x = g.node("Mul", [x, sigmoid], f"{prefix}.double_conv.{index + 2}/Mul")
    return x


def _depthwise_up(g: GraphBuilder, name: str, x: str, cin: int, cout: int) -> str:
    """Depthwise ConvTranspose k4 s2 p1 (groups = cin) + conv 1x1 cin -> cout."""
    weight = g.initializer(f"{name}.weight", g.he_normal((cin, 1, 4, 4), 4))
    y = g.node("ConvTranspose", [x, weight], name, kernel_shape=[4, 4], strides=[2, 2],
               pads=[1, 1, 1, 1], dilations=[1, 1], group=cin)
    return g.conv(f"{name}.pointwise", y, cin, cout, 1, bias=True)


def _max_pool(g: GraphBuilder, name: str, x: str) -> str:
    return g.node("MaxPool", [x], name, kernel_shape=[2, 2], strides=[2, 2])


def _conv_transpose(g: GraphBuilder, name: str, x: str, cin: int, cout: int, kernel: int,
                    pad: int) -> str:
    weight = g.initializer(f"{name}.weight", g.he_normal((cin, cout, kernel, kernel), cin))
    bias = g.initializer(f"{name}.bias", (g.rng.standard_normal(cout) * 0.05).astype(np.float32))
    return g.node("ConvTranspose", [x, weight, bias], name, kernel_shape=[kernel, kernel],
                  strides=[2, 2], pads=[pad] * 4, dilations=[1, 1], group=1)


def _bilinear_x2(g: GraphBuilder, name: str, x: str) -> str:
    scales = g.initializer(f"{name}.scales", np.array([1, 1, 2, 2], np.float32))
    return g.node("Resize", [x, "", scales], name, mode="linear",
                  coordinate_transformation_mode="align_corners", nearest_mode="floor")


def unet(opset: int = 17, batch: int | None = None, seed: int = 0, classes: int = 2,
         base: int = 16, groups: int | None = None, depthwise_up: bool = False
         ) -> onnx.ModelProto:
    """The small UNet with seeded weights; input "input" [N,3,64,64] (`groups`,
    `depthwise_up`: the variant of the module docstring)."""
    check_opset("unet", opset)
    n = batch_dim("unet", batch)
    g = GraphBuilder(seed, opset)
    widths = [base, 2 * base, 4 * base, 8 * base]
    shape_n = n if isinstance(n, int) else 1

    def block(prefix: str, x: str, cin: int, cout: int, size: int) -> str:
        return _double_conv(g, prefix, x, cin, cout, [shape_n, cout, size, size], groups)

    def up(name: str, x: str, cin: int, cout: int, kernel: int, pad: int) -> str:
        if depthwise_up:
            return _depthwise_up(g, name, x, cin, cout)
        return _conv_transpose(g, name, x, cin, cout, kernel=kernel, pad=pad)

    x1 = block("inc", INPUT_NAME, 3, widths[0], SIZE)
    x2 = block("down1.maxpool_conv.1", _max_pool(g, "down1.maxpool_conv.0", x1), widths[0],
               widths[1], SIZE // 2)
    x3 = block("down2.maxpool_conv.1", _max_pool(g, "down2.maxpool_conv.0", x2), widths[1],
               widths[2], SIZE // 4)
    x4 = block("down3.maxpool_conv.1", _max_pool(g, "down3.maxpool_conv.0", x3), widths[2],
               widths[3], SIZE // 8)
    y = up("up1.up", x4, widths[3], widths[2], kernel=2, pad=0)
    y = g.node("Concat", [x3, y], "up1.concat", axis=1)
    y = block("up1.conv", y, 2 * widths[2], widths[2], SIZE // 4)
    y = _bilinear_x2(g, "up2.up", y)
    y = g.conv("up2.reduce", y, widths[2], widths[1], 1)
    y = g.node("Concat", [x2, y], "up2.concat", axis=1)
    y = block("up2.conv", y, 2 * widths[1], widths[1], SIZE // 2)
    y = up("up3.up", y, widths[1], widths[0], kernel=4, pad=1)
    y = g.node("Concat", [x1, y], "up3.concat", axis=1)
    y = block("up3.conv", y, 2 * widths[0], widths[0], SIZE)
    y = g.conv("outc.conv", y, widths[0], classes, 1, bias=True, gain=1.0)
    g.node("Sigmoid", [y], "outc.sigmoid", outputs=[OUTPUT_NAME])
    model = g.make_model(
        "unet", [tensor_info(INPUT_NAME, [n, 3, SIZE, SIZE])],
        [tensor_info(OUTPUT_NAME, [n, classes, SIZE, SIZE])],
    )
    onnx.checker.check_model(model, full_check=True)
    return model
