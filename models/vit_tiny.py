"""ViT-tiny-style image classifier (Dosovitskiy et al. 2021, timm's vit_tiny layout, smaller).

Patch embedding: Conv 16x16 stride 16 (3 -> D, bias), Reshape [B, D, P] (torch's flatten(2)),
Transpose [0, 2, 1]; the class token (a [1, 1, D] constant) concatenated in front on axis 1;
Add of the position embedding [1, P + 1, D]; `depth` pre-norm encoder blocks
(models/_transformer.py: LN, multi-head attention, residual Add, LN, MLP with GELU, residual
Add); final LayerNormalization; the class token's row (Gather axis 1, index 0); head Gemm
(D -> classes). Defaults: 224x224 input (196 patches, sequence 197), D = 192, 3 heads, MLP
768, depth 2, 1000 classes. Input "pixel_values" [B, 3, S, S], output "logits" [B, classes].
"""

from __future__ import annotations

import numpy as np
import onnx

from mrvl.errors import MrvlError
from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info
from mrvl.models._transformer import encoder_block, layer_norm

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
PATCH = 16


def vit_tiny(*, opset: int = 17, batch: int | None = 1, seed: int = 0, image_size: int = 224,
             dim: int = 192, heads: int = 3, depth: int = 2, mlp: int = 768,
             classes: int = 1000, decomposed_ln: bool = False,
             gelu_approximate: str = "none") -> onnx.ModelProto:
    check_opset("vit_tiny", opset)
    n = batch_dim("vit_tiny", batch)
    if not isinstance(n, int):
        raise MrvlError("model 'vit_tiny': needs a fixed batch (the class token is a constant)")
    if image_size % PATCH or image_size < PATCH or dim % heads:
        raise MrvlError(f"model 'vit_tiny': image_size {image_size} must be a multiple of "
                        f"{PATCH} and dim {dim} a multiple of heads {heads}")
    g = GraphBuilder(seed, opset)
    grid = image_size // PATCH
    patches = grid * grid
    seq = patches + 1
    x = g.conv("patch_embed.proj", INPUT_NAME, 3, dim, PATCH, stride=PATCH, pads=[0, 0, 0, 0],
               bias=True, gain=1.0)
    x = g.node("Reshape", [x, g.int64s("patch_embed.flat_shape", [n, dim, patches])],
               "patch_embed/Reshape")
    x = g.node("Transpose", [x], "patch_embed/Transpose", perm=[0, 2, 1])
    cls = g.initializer("cls_token",
                        np.broadcast_to(g.uniform((1, 1, dim), -0.1, 0.1), (n, 1, dim)))
    x = g.node("Concat", [cls, x], "Concat", axis=1)
    pos = g.initializer("pos_embed", (g.rng.standard_normal((1, seq, dim)) * 0.02)
                        .astype(np.float32))
    x = g.node("Add", [x, pos], "pos_embed/Add")
    for i in range(depth):
        x = encoder_block(g, f"blocks.{i}", x, n, seq, dim, heads, mlp, pre_norm=True,
                          decomposed_ln=decomposed_ln, gelu_approximate=gelu_approximate)
    x = layer_norm(g, "norm", x, dim, decomposed_ln)
    x = g.node("Gather", [x, g.int64s("cls_index", [0])], "Gather", axis=1)
    x = g.node("Reshape", [x, g.int64s("head.in_shape", [n, dim])], "head/Reshape")
    w = g.initializer("head.weight", g.he_normal((classes, dim), dim, gain=1.0))
    b = g.initializer("head.bias", (g.rng.standard_normal(classes) * 0.02).astype(np.float32))
    g.node("Gemm", [x, w, b], "head/Gemm", [OUTPUT_NAME], transB=1)
    return g.make_model(
        "vit_tiny",
        [tensor_info(INPUT_NAME, [n, 3, image_size, image_size])],
        [tensor_info(OUTPUT_NAME, [n, classes])],
    )
