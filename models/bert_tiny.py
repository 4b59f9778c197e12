"""BERT-tiny-style text encoder (Devlin et al. 2019; the google/bert_uncased_L-2_H-128_A-2
shape): token ids -> last hidden state.

Embeddings: Gather of the word embedding [vocab, D] by the int64 token ids (stays on the
CPU), Add of the position embedding [1, S, D] and of the segment (token type 0) embedding
[1, S, D] (torch folds both Gathers of constant ids into constants), LayerNormalization;
`layers` post-norm encoder blocks (models/_transformer.py: attention, Add, LN, FFN with
GELU, Add, LN). Defaults: sequence 128, D = 128, 2 heads, FFN 512, 2 layers, vocabulary
1000. Input "input_ids" int64 [B, S], output "last_hidden_state" [B, S, D]. With
`attention_mask=True` a second input "attention_mask" int64 [B, S] (1 = attend, 0 =
padding) becomes HF BERT's additive mask `(1 - mask[:, None, None, :]) * -10000`, added to
every layer's scaled scores before the Softmax.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from mrvl.errors import MrvlError
from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info
from mrvl.models._transformer import encoder_block, extended_mask, layer_norm

INPUT_NAME = "input_ids"
MASK_NAME = "attention_mask"
OUTPUT_NAME = "last_hidden_state"


def bert_tiny(*, opset: int = 17, batch: int | None = 1, seed: int = 0, seq: int = 128,
              dim: int = 128, heads: int = 2, layers: int = 2, ffn: int = 512,
              vocab: int = 1000, decomposed_ln: bool = False,
              gelu_approximate: str = "none", attention_mask: bool = False) -> onnx.ModelProto:
    check_opset("bert_tiny", opset)
    n = batch_dim("bert_tiny", batch)
    if dim % heads:
        raise MrvlError(f"model 'bert_tiny': dim {dim} must be a multiple of heads {heads}")
    g = GraphBuilder(seed, opset)
    words = g.initializer("embeddings.word_embeddings.weight",
                          (g.rng.standard_normal((vocab, dim)) * 0.5).astype(np.float32))
    x = g.node("Gather", [words, INPUT_NAME], "embeddings/word_embeddings/Gather", axis=0)
    pos = g.initializer("embeddings.position_embeddings",
                        (g.rng.standard_normal((1, seq, dim)) * 0.2).astype(np.float32))
    x = g.node("Add", [x, pos], "embeddings/Add")
    seg = g.initializer("embeddings.token_type_embeddings",
                        (g.rng.standard_normal((1, seq, dim)) * 0.2).astype(np.float32))
    x = g.node("Add", [x, seg], "embeddings/Add_1")
    x = layer_norm(g, "embeddings.LayerNorm", x, dim, decomposed_ln, eps=1e-12)
    mask = extended_mask(g, MASK_NAME) if attention_mask else None
    for i in range(layers):
        x = encoder_block(g, f"encoder.layer.{i}", x, n, seq, dim, heads, ffn, pre_norm=False,
                          decomposed_ln=decomposed_ln, gelu_approximate=gelu_approximate,
                          mask=mask)
    g.nodes[-1].output[0] = OUTPUT_NAME
    return g.make_model(
        "bert_tiny",
        [tensor_info(INPUT_NAME, [n, seq], TensorProto.INT64)]
        + ([tensor_info(MASK_NAME, [n, seq], TensorProto.INT64)] if attention_mask else []),
        [tensor_info(OUTPUT_NAME, [n, seq, dim])],
    )
