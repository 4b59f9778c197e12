"""An SSD-style single-shot detector (Liu et al. 2016) with a MobileNet-v1-like backbone.

Structure (input "image" [N,3,160,160], 21 classes with class 0 = background):

- backbone: conv 3x3/2 + BN + ReLU, then depthwise-separable blocks (depthwise 3x3 + BN + ReLU,
  pointwise 1x1 + BN + ReLU); feature maps at 20x20x256, 10x10x512 and 5x5x512;
- extras: 1x1 + 3x3/2 conv pairs (with BN) giving 3x3, 2x2 and 1x1 feature maps;
- heads: per scale a 3x3 class conv (A*21 channels) and box conv (A*4), each followed by
  Transpose(0,2,3,1) + Reshape [N,-1,C] and a Concat over the scales (2424 anchors in all);
- softmax over classes; box decoding against constant SSD prior boxes (cx, cy, w, h) with
  variances (0.1, 0.2): Split, Mul, Add, Exp, Sub, Concat, Clip to [0, 1];
- NonMaxSuppression over the 20 foreground classes and GatherND / Gather / Slice of the selected
  boxes: a CPU-only tail with data-dependent output shapes.

Outputs: "boxes" [K,4] (x1, y1, x2, y2, normalised), "scores" [K], "labels" [K] (int64,
1..20) and "selected_indices" [K,3] (batch, class - 1, anchor) where K = "num_detections".
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info

INPUT_NAME = "image"
INPUT_SIZE = 160
NUM_CLASSES = 21
BACKBONE = ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
            (256, 512, 2), (512, 512, 1), (512, 512, 2))  # fmt: skip
"""(in channels, out channels, depthwise stride) of the depthwise-separable blocks."""
FEATURE_BLOCKS = (4, 6, 7)
"""Indices of the backbone blocks whose outputs feed a head (20x20, 10x10, 5x5)."""
EXTRAS = ((512, 128, 256), (256, 64, 128), (128, 64, 128))
"""(in channels, 1x1 channels, 3x3/2 output channels) of the extra feature layers."""
ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
"""Extra aspect ratios per scale; each r adds r and 1/r, plus two boxes of ratio 1."""
VARIANCES = (0.1, 0.2)
SCORE_THRESHOLD = 0.2
IOU_THRESHOLD = 0.45
MAX_PER_CLASS = 10


def prior_boxes(feature_sizes: list[int]) -> np.ndarray:
    """SSD default boxes [A,4] as (cx, cy, w, h) in [0, 1], scales 0.1 then 0.2 .. 0.9.

    For each cell (row-major) and scale k: a box of ratio 1 and size s_k, one of size
    sqrt(s_k * s_k+1), then for each ratio r boxes of s_k*sqrt(r) x s_k/sqrt(r) and its
    transpose; the order matches the head channels (anchor-major within a cell).
    """
    m = len(feature_sizes)
    scales = [0.1] + [0.2 + 0.7 * k / (m - 2) for k in range(m - 1)] + [1.0]
    boxes = []
    for k, size in enumerate(feature_sizes):
        s, s_next = scales[k], scales[k + 1]
        shapes = [(s, s), (np.sqrt(s * s_next),) * 2]
        for r in ASPECT_RATIOS[k]:
            shapes += [(s * np.sqrt(r), s / np.sqrt(r)), (s / np.sqrt(r), s * np.sqrt(r))]
        for i in range(size):
            for j in range(size):
                cx, cy = (j + 0.5) / size, (i + 0.5) / size
                boxes += [(cx, cy, w, h) for w, h in shapes]
    return np.clip(np.asarray(boxes, dtype=np.float32), 0.0, 1.0)


def _conv_bn_relu(
    g: GraphBuilder, prefix: str, x: str, cin: int, cout: int, k: int, stride=1, group=1
) -> str:
    y = g.conv(f"{prefix}.conv", x, cin, cout, k, stride=stride, group=group)
    y = g.batch_norm(f"{prefix}.bn", y, cout)
    return g.node("Relu", [y], f"{prefix}.relu")


def _head(g: GraphBuilder, name: str, x: str, cin: int, anchors: int, width: int) -> str:
    """3x3 conv predicting `width` values per anchor, as [N, H*W*anchors, width]."""
    y = g.conv(name, x, cin, anchors * width, 3, bias=True, gain=1.0)
    y = g.node("Transpose", [y], f"{name}.permute", perm=[0, 2, 3, 1])
    shape = g.int64s(f"{name}.shape", [0, -1, width])
    return g.node("Reshape", [y, shape], f"{name}.reshape")


def ssd_detector(opset: int = 17, batch: int | None = None, seed: int = 0) -> onnx.ModelProto:
    """The SSD-style detector with seeded weights; input "image" [N,3,160,160]."""
    check_opset("ssd_detector", opset)
    n = batch_dim("ssd_detector", batch)
    g = GraphBuilder(seed, opset)

    # Backbone.
    x = _conv_bn_relu(g, "backbone.0", INPUT_NAME, 3, 32, 3, stride=2)
    features: list[tuple[str, int]] = []
    for i, (cin, cout, stride) in enumerate(BACKBONE, start=1):
        x = _conv_bn_relu(g, f"backbone.{i}.dw", x, cin, cin, 3, stride=stride, group=cin)
        x = _conv_bn_relu(g, f"backbone.{i}.pw", x, cin, cout, 1)
        if i - 1 in FEATURE_BLOCKS:
            features.append((x, cout))
    for i, (cin, mid, cout) in enumerate(EXTRAS):
        x = _conv_bn_relu(g, f"extras.{i}.0", x, cin, mid, 1)
        x = _conv_bn_relu(g, f"extras.{i}.1", x, mid, cout, 3, stride=2)
        features.append((x, cout))

    # Heads.
    sizes = [20, 10, 5, 3, 2, 1]
    anchors = [2 + 2 * len(r) for r in ASPECT_RATIOS]
    cls_heads, box_heads = [], []
    for i, ((feat, channels), a) in enumerate(zip(features, anchors)):
        cls_heads.append(_head(g, f"head.cls.{i}", feat, channels, a, NUM_CLASSES))
        box_heads.append(_head(g, f"head.box.{i}", feat, channels, a, 4))
    cls_logits = g.node("Concat", cls_heads, "head.cls.concat", axis=1)
    box_deltas = g.node("Concat", box_heads, "head.box.concat", axis=1)
    probs = g.node("Softmax", [cls_logits], "postprocess.softmax", axis=-1)

    # Box decoding against the priors: center = d_xy * v0 * p_wh + p_xy,
    # size = exp(d_wh * v1) * p_wh, corners = center -/+ size / 2.
    priors = prior_boxes(sizes)
    assert priors.shape[0] == sum(a * s * s for a, s in zip(anchors, sizes))
    p_xy = g.initializer("priors.center", priors[:, :2])
    p_wh = g.initializer("priors.size", priors[:, 2:])
    d_xy, d_wh = g.split("decode.split", box_deltas, axis=2, sizes=[2, 2])
    c = g.node("Mul", [d_xy, g.scalar("decode.var_center", VARIANCES[0])], "decode.scale_center")
    c = g.node("Mul", [c, p_wh], "decode.center_mul")
    c = g.node("Add", [c, p_xy], "decode.center")
    s = g.node("Mul", [d_wh, g.scalar("decode.var_size", VARIANCES[1])], "decode.scale_size")
    s = g.node("Exp", [s], "decode.exp")
    s = g.node("Mul", [s, p_wh], "decode.size")
    half = g.node("Mul", [s, g.scalar("decode.half", 0.5)], "decode.half_size")
    lo = g.node("Sub", [c, half], "decode.min")
    hi = g.node("Add", [c, half], "decode.max")
    corners = g.node("Concat", [lo, hi], "decode.corners", axis=2)
    boxes = g.clip("decode.clip", corners, 0.0, 1.0)

    # NMS over the foreground classes, then gather the selected boxes and scores.
    scores_t = g.node("Transpose", [probs], "postprocess.scores_t", perm=[0, 2, 1])
    starts, ends = g.int64s("fg.starts", [1]), g.int64s("fg.ends", [NUM_CLASSES])
    fg_axes = g.int64s("fg.axes", [1])
    fg = g.node("Slice", [scores_t, starts, ends, fg_axes], "postprocess.foreground")
    selected = g.node(
        "NonMaxSuppression",
        [
            boxes,
            fg,
            g.int64s("nms.max_output_boxes_per_class", [MAX_PER_CLASS]),
            g.initializer("nms.iou_threshold", np.asarray([IOU_THRESHOLD], np.float32)),
            g.initializer("nms.score_threshold", np.asarray([SCORE_THRESHOLD], np.float32)),
        ],
        "nms",
        outputs=["selected_indices"],
        center_point_box=0,
    )
    cols = g.int64s("gather.box_columns", [0, 2])
    batch_anchor = g.node("Gather", [selected, cols], "gather.batch_anchor", axis=1)
    g.node("GatherND", [boxes, batch_anchor], "gather.boxes", outputs=["boxes"])
    g.node("GatherND", [fg, selected], "gather.scores", outputs=["scores"])
    class_col = g.initializer("gather.class_column", np.asarray(1, np.int64))
    label = g.node("Gather", [selected, class_col], "gather.class", axis=1)
    one = g.initializer("gather.background_offset", np.asarray(1, np.int64))
    g.node("Add", [label, one], "gather.labels", outputs=["labels"])

    k = "num_detections"
    return g.make_model(
        "ssd_detector",
        [tensor_info(INPUT_NAME, [n, 3, INPUT_SIZE, INPUT_SIZE])],
        [
            tensor_info("boxes", [k, 4]),
            tensor_info("scores", [k]),
            tensor_info("labels", [k], TensorProto.INT64),
            tensor_info("selected_indices", [k, 3], TensorProto.INT64),
        ],
    )
