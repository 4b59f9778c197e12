"""Transformer encoder pieces shared by models/vit_tiny.py and models/bert_tiny.py, emitted
node by node the way `torch.onnx.export` (opset 17) writes them.

- Linear on a [B, S, D] tensor: MatMul with the transposed weight [D, N] + Add of the bias.
- LayerNorm: one LayerNormalization node (opset >= 17), or with `decomposed=True` (or an
  opset < 17) the ReduceMean / Sub / Pow / ReduceMean / Add / Sqrt / Div / Mul / Add chain
  older exporters emit.
- GELU: `x * 0.5 * (1 + erf(x / sqrt(2)))` as Div / Erf / Add / Mul / Mul, or the tanh
  approximation `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`.
- Attention: per projection Reshape [B, S, H, Dh] -> Transpose [0, 2, 1, 3] (K: [0, 2, 3, 1],
  the two transposes torch emits fused by its peephole pass); MatMul, Div by sqrt(Dh),
  [Add of the additive attention mask], Softmax(-1), MatMul, Transpose [0, 2, 1, 3],
  Reshape [B, S, D], output Linear.
- Attention mask (`extended_mask`): HF BERT's `(1 - mask[:, None, None, :]) * -10000` from
  an int64 [B, S] mask of ones and zeros: Unsqueeze [1, 2], Cast float, Sub from 1, Mul.
"""

from __future__ import annotations

import math

import numpy as np

from mrvl.models._graph_builder import GraphBuilder


def linear(g: GraphBuilder, name: str, x: str, d_in: int, d_out: int) -> str:
    """torch Linear on a [B, S, d_in] tensor: MatMul(x, W^T) + bias."""
    w = g.initializer(f"{name}.weight_t", g.he_normal((d_in, d_out), d_in, gain=1.0))
    b = g.initializer(f"{name}.bias", (g.rng.standard_normal(d_out) * 0.02).astype(np.float32))
    y = g.node("MatMul", [x, w], f"{name}/MatMul")
    return g.node("Add", [y, b], f"{name}/Add")


def layer_norm(g: GraphBuilder, name: str, x: str, dim: int, decomposed: bool = False,
               eps: float = 1e-5) -> str:
    gamma = g.initializer(f"{name}.weight", g.uniform((dim,), 0.8, 1.2))
    beta = g.initializer(f"{name}.bias", (g.rng.standard_normal(dim) * 0.05).astype(np.float32))
    if not decomposed and g.opset >= 17:
        return g.node("LayerNormalization", [x, gamma, beta], f"{name}/LayerNormalization",
                      axis=-1, epsilon=eps)

    def reduce_mean(suffix: str, value: str) -> str:
        if g.opset >= 18:
            axes = g.int64s(f"{name}.{suffix}_axes", [-1])
            return g.node("ReduceMean", [value, axes], f"{name}/{suffix}", keepdims=1)
        return g.node("ReduceMean", [value], f"{name}/{suffix}", axes=[-1], keepdims=1)

    mean = reduce_mean("ReduceMean", x)
    centred = g.node("Sub", [x, mean], f"{name}/Sub")
    square = g.node("Pow", [centred, g.scalar(f"{name}.two", 2.0)], f"{name}/Pow")
    var = reduce_mean("ReduceMean_1", square)
    shifted = g.node("Add", [var, g.scalar(f"{name}.eps", eps)], f"{name}/Add")
    std = g.node("Sqrt", [shifted], f"{name}/Sqrt")
    normed = g.node("Div", [centred, std], f"{name}/Div")
    scaled = g.node("Mul", [normed, gamma], f"{name}/Mul")
    return g.node("Add", [scaled, beta], f"{name}/Add_1")


def gelu(g: GraphBuilder, name: str, x: str, approximate: str = "none") -> str:
    if approximate == "tanh":
        cube = g.node("Pow", [x, g.scalar(f"{name}.three", 3.0)], f"{name}/Pow")
        small = g.node("Mul", [cube, g.scalar(f"{name}.c", 0.044715)], f"{name}/Mul")
        inner = g.node("Add", [x, small], f"{name}/Add")
        scaled = g.node("Mul", [inner, g.scalar(f"{name}.k", math.sqrt(2.0 / math.pi))],
                        f"{name}/Mul_1")
        t = g.node("Tanh", [scaled], f"{name}/Tanh")
        one = g.node("Add", [t, g.scalar(f"{name}.one", 1.0)], f"{name}/Add_1")
        half = g.node("Mul", [x, g.scalar(f"{name}.half", 0.5)], f"{name}/Mul_2")
        return g.node("Mul", [half, one], f"{name}/Mul_3")
    d = g.node("Div", [x, g.scalar(f"{name}.sqrt2", math.sqrt(2.0))], f"{name}/Div")
    e = g.node("Erf", [d], f"{name}/Erf")
    one = g.node("Add", [e, g.scalar(f"{name}.one", 1.0)], f"{name}/Add")
    m = g.node("Mul", [x, one], f"{name}/Mul")
    return g.node("Mul", [m, g.scalar(f"{name}.half", 0.5)], f"{name}/Mul_1")


def extended_mask(g: GraphBuilder, mask: str) -> str:
    """The additive [B, 1, 1, S] attention mask of an int64 [B, S] mask input."""
    if g.opset >= 13:
        wide = g.node("Unsqueeze", [mask, g.int64s("mask.axes", [1, 2])], "mask/Unsqueeze")
    else:
        wide = g.node("Unsqueeze", [mask], "mask/Unsqueeze", axes=[1, 2])
    real = g.node("Cast", [wide], "mask/Cast", to=1)
    inverted = g.node("Sub", [g.scalar("mask.one", 1.0), real], "mask/Sub")
    return g.node("Mul", [inverted, g.scalar("mask.min", -10000.0)], "mask/Mul")


def attention(g: GraphBuilder, name: str, x: str, batch: int | str, seq: int, dim: int,
              heads: int, mask: str | None = None) -> str:
    """Multi-head self-attention on [B, S, D], with an optional additive mask broadcast
    over heads and rows ([B, 1, 1, S], `extended_mask`)."""
    dh = dim // heads
    b = 0 if isinstance(batch, str) else batch
    split = g.int64s(f"{name}.split_shape", [b, seq, heads, dh])
    merge = g.int64s(f"{name}.merge_shape", [b, seq, dim])

    def heads_of(proj: str, perm: list[int]) -> str:
        y = linear(g, f"{name}.{proj}", x, dim, dim)
        r = g.node("Reshape", [y, split], f"{name}/{proj}/Reshape")
        return g.node("Transpose", [r], f"{name}/{proj}/Transpose", perm=perm)

    q = heads_of("query", [0, 2, 1, 3])
    k = heads_of("key", [0, 2, 3, 1])
    v = heads_of("value", [0, 2, 1, 3])
    scores = g.node("MatMul", [q, k], f"{name}/MatMul")
    scaled = g.node("Div", [scores, g.scalar(f"{name}.scale", math.sqrt(dh))], f"{name}/Div")
    if mask is not None:
        scaled = g.node("Add", [scaled, mask], f"{name}/Add")
    probs = g.node("Softmax", [scaled], f"{name}/Softmax", axis=-1)
    ctx = g.node("MatMul", [probs, v], f"{name}/MatMul_1")
    t = g.node("Transpose", [ctx], f"{name}/Transpose", perm=[0, 2, 1, 3])
    merged = g.node("Reshape", [t, merge], f"{name}/Reshape")
    return linear(g, f"{name}.out", merged, dim, dim)


def encoder_block(g: GraphBuilder, name: str, x: str, batch: int | str, seq: int, dim: int,
                  heads: int, mlp: int, pre_norm: bool, decomposed_ln: bool = False,
                  gelu_approximate: str = "none", mask: str | None = None) -> str:
    """Pre-norm (ViT: x + MHA(LN(x)), x + MLP(LN(x))) or post-norm (BERT: LN(x + MHA(x)),
    LN(x + FFN(x))) encoder block."""

    def mlp_of(h: str) -> str:
        h = linear(g, f"{name}.mlp.fc1", h, dim, mlp)
        h = gelu(g, f"{name}.mlp.gelu", h, gelu_approximate)
        return linear(g, f"{name}.mlp.fc2", h, mlp, dim)

    if pre_norm:
        h = layer_norm(g, f"{name}.norm1", x, dim, decomposed_ln)
        x = g.node("Add", [x, attention(g, f"{name}.attn", h, batch, seq, dim, heads)],
                   f"{name}/Add")
        h = layer_norm(g, f"{name}.norm2", x, dim, decomposed_ln)
        return g.node("Add", [x, mlp_of(h)], f"{name}/Add_1")
    a = attention(g, f"{name}.attention", x, batch, seq, dim, heads, mask)
    x = layer_norm(g, f"{name}.attention.norm", g.node("Add", [x, a], f"{name}/Add"), dim,
                   decomposed_ln)
    f = mlp_of(x)
    return layer_norm(g, f"{name}.output.norm", g.node("Add", [x, f], f"{name}/Add_1"), dim,
                      decomposed_ln)
