"""An SSD-style detector with an exporter-style decoding tail over 12096 anchors.

Made to look like what MXNet / GluonCV and other exporters write for SSD (their post-processing
is hundreds of small ops, most of them left to the CPU as `graph.onnx`): a small conv backbone,
then shape arithmetic and generic ops only. Input "image" [N,3,128,128], 6 classes (class 0 =
background); opset 12 to 21.

- backbone: conv 3x3/2 + BN + ReLU stages giving 32x32x32, 16x16x64 and 8x8x64 feature maps;
- heads: per scale a 3x3 class conv (9*6 channels) and box conv (9*4), each followed by
  Transpose(0,2,3,1) and a Reshape whose target shape is computed from the feature map's
  Shape (Shape -> Gather -> Unsqueeze -> Concat), then Concat over the scales
  (9 * (32*32 + 16*16 + 8*8) = 12096 anchors);
- box decoding per scale against constant anchors [1,A_i,4] expanded to the batch (Expand of a
  computed shape): Slice, Mul, Add, Exp, Sub, Concat, and clipping to [0, 1] with
  Less/Greater + Where, then Concat over the scales;
- scores: Softmax, Slice of the foreground classes, ReduceMax over them; TopK of the best
  `PRE_NMS_TOP_K` anchors with k = Min(number of anchors, PRE_NMS_TOP_K) computed from Shape;
  GatherElements of the top boxes and scores (indices Unsqueeze + Expand);
- per-class candidates as GluonCV's per-class decoder exports them (Slice, Greater, Where,
  Add, Concat): class id or -1, score or 0, box, and the box shifted by 2 * class;
- one NonMaxSuppression over all candidates (the shift keeps classes apart), GatherND of the
  selected candidates, and each row (x1, y1, x2, y2, score, label, batch) written by
  ScatterND at rows Range(0, K) of a [N*MAX_DETECTIONS, 7] buffer of -1 (ConstantOfShape of a
  computed shape).

Outputs: "detections" [N*MAX_DETECTIONS, 7] float32 (rows past "num_detections" are -1) and
"num_detections" [1] int64.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from mrvl.errors import MrvlError
from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info

INPUT_NAME = "image"
INPUT_SIZE = 128
NUM_CLASSES = 6
ANCHORS_PER_CELL = 9
STAGES = ((3, 16), (16, 32), (32, 64), (64, 64))
"""(in channels, out channels) of the stride-2 conv stages (64, 32, 16, 8 pixels wide)."""
FEATURE_STAGES = (1, 2, 3)
"""Stages whose outputs feed a head (32x32, 16x16, 8x8)."""
FEATURE_SIZES = (32, 16, 8)
ANCHOR_SCALES = (0.1, 0.3, 0.6)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SIZE_STEPS = (1.0, 1.26, 1.59)
VARIANCES = (0.1, 0.2)
PRE_NMS_TOP_K = 400
MAX_DETECTIONS = 50
SCORE_THRESHOLD = 0.8
IOU_THRESHOLD = 0.45
NUM_ANCHORS = ANCHORS_PER_CELL * sum(s * s for s in FEATURE_SIZES)


def anchor_boxes() -> np.ndarray:
    """Anchors [A,4] as (cx, cy, w, h): per cell (row-major) 3 sizes x 3 aspect ratios."""
    boxes = []
    for size, scale in zip(FEATURE_SIZES, ANCHOR_SCALES):
        shapes = [(scale * step * np.sqrt(r), scale * step / np.sqrt(r))
                  for step in ANCHOR_SIZE_STEPS for r in ANCHOR_RATIOS]
        for i in range(size):
            for j in range(size):
                boxes += [((j + 0.5) / size, (i + 0.5) / size, w, h) for w, h in shapes]
    return np.asarray(boxes, dtype=np.float32)


class _Builder(GraphBuilder):
    """GraphBuilder with the exporter-style shape arithmetic helpers."""

    def unsqueeze(self, x: str, axes: list[int], name: str) -> str:
        if self.opset >= 13:
            return self.node("Unsqueeze", [x, self.int64s(f"{name}.axes", axes)], name)
        return self.node("Unsqueeze", [x], name, axes=axes)

    def squeeze(self, x: str, axes: list[int], name: str) -> str:
        if self.opset >= 13:
            return self.node("Squeeze", [x, self.int64s(f"{name}.axes", axes)], name)
        return self.node("Squeeze", [x], name, axes=axes)

    def dim(self, x: str, axis: int, name: str) -> str:
        """Dimension `axis` of x as a 1-element int64 tensor (Shape -> Gather -> Unsqueeze)."""
        shape = self.node("Shape", [x], f"{name}.shape")
        index = self.initializer(f"{name}.index", np.asarray(axis, np.int64))
        scalar = self.node("Gather", [shape, index], f"{name}.gather", axis=0)
        return self.unsqueeze(scalar, [0], f"{name}.unsqueeze")

    def slice(self, x: str, starts: list[int], ends: list[int], axes: list[int], name: str) -> str:
        bounds = [self.int64s(f"{name}.{what}", values)
                  for what, values in (("starts", starts), ("ends", ends), ("axes", axes))]
        return self.node("Slice", [x, *bounds], name)

    def reduce_max(self, x: str, axes: list[int], name: str) -> str:
        if self.opset >= 18:
            return self.node("ReduceMax", [x, self.int64s(f"{name}.axes", axes)], name, keepdims=0)
        return self.node("ReduceMax", [x], name, axes=axes, keepdims=0)


def _head(g: _Builder, name: str, x: str, cin: int, width: int) -> str:
    """3x3 conv predicting `width` values per anchor, reshaped to [N, H*W*anchors, width]
    with the target shape computed from the input's Shape."""
    y = g.conv(name, x, cin, ANCHORS_PER_CELL * width, 3, bias=True, gain=1.0)
    y = g.node("Transpose", [y], f"{name}.permute", perm=[0, 2, 3, 1])
    n = g.dim(y, 0, f"{name}.batch")
    shape = g.node("Concat", [n, g.int64s(f"{name}.rest", [-1, width])], f"{name}.target", axis=0)
    return g.node("Reshape", [y, shape], f"{name}.reshape")


def _clip01(g: _Builder, x: str, name: str) -> str:
    """Clip to [0, 1] the way exporters without Clip do: Less/Greater + Where."""
    zero, one = g.scalar(f"{name}.zero", 0.0), g.scalar(f"{name}.one", 1.0)
    low = g.node("Less", [x, zero], f"{name}.below")
    x = g.node("Where", [low, zero, x], f"{name}.floor")
    high = g.node("Greater", [x, one], f"{name}.above")
    return g.node("Where", [high, one, x], f"{name}.ceil")


def _decode(g: _Builder, name: str, deltas: str, anchor_array: np.ndarray) -> str:
    """Corner boxes [N, A, 4] from deltas [N, A, 4] and anchors (cx, cy, w, h) [A, 4]:
    center = d_xy * v0 * a_wh + a_xy, size = exp(d_wh * v1) * a_wh, corners = center -/+ size/2,
    clipped to [0, 1]."""
    anchors = g.initializer(f"{name}.anchors", anchor_array[None])
    batch_n = g.dim(deltas, 0, f"{name}.batch")
    # The anchor count as exporters compute it: in float, from the element count.
    elements = g.node("Cast", [g.node("Size", [deltas], f"{name}.size_all")], f"{name}.size_float",
                      to=TensorProto.FLOAT)
    per_image = g.node("Div", [elements, g.node("Cast", [batch_n], f"{name}.batch_float",
                                                to=TensorProto.FLOAT)], f"{name}.per_image")
    count = g.node("Div", [per_image, g.scalar(f"{name}.box_width", 4.0)], f"{name}.count_float")
    count = g.node("Cast", [g.node("Floor", [count], f"{name}.count_floor")], f"{name}.count",
                   to=TensorProto.INT64)
    shape = g.node("Concat", [batch_n, count, g.int64s(f"{name}.width", [4])],
                   f"{name}.anchor_shape", axis=0)
    anchors = g.node("Expand", [anchors, shape], f"{name}.anchors_n")
    a_xy = g.slice(anchors, [0], [2], [2], f"{name}.anchor_xy")
    a_wh = g.slice(anchors, [2], [4], [2], f"{name}.anchor_wh")
    d_xy = g.slice(deltas, [0], [2], [2], f"{name}.delta_xy")
    d_wh = g.slice(deltas, [2], [4], [2], f"{name}.delta_wh")
    c = g.node("Mul", [d_xy, g.scalar(f"{name}.var_center", VARIANCES[0])], f"{name}.scale_center")
    c = g.node("Add", [g.node("Mul", [c, a_wh], f"{name}.center_mul"), a_xy], f"{name}.center")
    s = g.node("Mul", [d_wh, g.scalar(f"{name}.var_size", VARIANCES[1])], f"{name}.scale_size")
    s = g.node("Mul", [g.node("Exp", [s], f"{name}.exp"), a_wh], f"{name}.size")
    half = g.node("Mul", [s, g.scalar(f"{name}.half", 0.5)], f"{name}.half_size")
    lo = g.node("Sub", [c, half], f"{name}.min")
    hi = g.node("Add", [c, half], f"{name}.max")
    return _clip01(g, g.node("Concat", [lo, hi], f"{name}.corners", axis=2), f"{name}.clip")


def ssd_export_detector(opset: int = 17, batch: int | None = None,
                        seed: int = 0) -> onnx.ModelProto:
    """The detector with seeded weights; input "image" [N,3,128,128]."""
    check_opset("ssd_export_detector", opset)
    if opset < 12:
        raise MrvlError(f"model 'ssd_export_detector': opset {opset} is too old (Min on int64 "
                        f"needs opset 12 or newer)")
    n = batch_dim("ssd_export_detector", batch)
    g = _Builder(seed, opset)

    # Backbone.
    x, features = INPUT_NAME, []
    for i, (cin, cout) in enumerate(STAGES):
        x = g.conv(f"backbone.{i}.conv", x, cin, cout, 3, stride=2)
        x = g.batch_norm(f"backbone.{i}.bn", x, cout)
        x = g.node("Relu", [x], f"backbone.{i}.relu")
        if i in FEATURE_STAGES:
            features.append((x, cout))

    # Heads.
    cls_heads = [_head(g, f"head.cls.{i}", f, c, NUM_CLASSES) for i, (f, c) in enumerate(features)]
    box_heads = [_head(g, f"head.box.{i}", f, c, 4) for i, (f, c) in enumerate(features)]
    logits = g.node("Concat", cls_heads, "head.cls.concat", axis=1)

    # Box decoding per scale (as exporters unroll it), against constant anchors expanded to
    # [N, A_i, 4] by a computed shape; the decoded scales are concatenated.
    all_anchors = anchor_boxes()
    decoded, first = [], 0
    for i, (deltas, size) in enumerate(zip(box_heads, FEATURE_SIZES)):
        count = ANCHORS_PER_CELL * size * size
        decoded.append(_decode(g, f"decode.{i}", deltas, all_anchors[first:first + count]))
        first += count
    boxes = g.node("Concat", decoded, "decode.concat", axis=1)

    # Scores and the pre-NMS top k, with k computed from the number of anchors.
    probs = g.node("Softmax", [logits], "score.softmax", axis=-1)
    num_classes = g.dim(probs, 2, "score.classes")
    fg = g.node("Slice", [probs, g.int64s("score.fg_start", [1]), num_classes,
                          g.int64s("score.fg_axis", [2])], "score.foreground")
    best = g.reduce_max(fg, [2], "score.best")
    count = g.dim(best, 1, "score.count")
    k = g.node("Min", [count, g.int64s("score.top_k_limit", [PRE_NMS_TOP_K])], "score.k")
    top_index = "score.top_index"
    g.node("TopK", [best, k], "score.top_k", outputs=["score.top_values", top_index],
           axis=1, largest=1, sorted=1)
    index3 = g.unsqueeze(top_index, [2], "score.top_index3")
    index_shape = g.node("Shape", [index3], "score.index_shape")
    index_n_k = g.slice(index_shape, [0], [2], [0], "score.index_n_k")
    box_index_shape = g.node("Concat", [index_n_k, g.int64s("score.box_width", [4])],
                             "score.box_index_shape", axis=0)
    box_index = g.node("Expand", [index3, box_index_shape], "score.box_index")
    top_boxes = g.node("GatherElements", [boxes, box_index], "score.top_boxes", axis=1)
    fg_classes = g.node("Sub", [num_classes, g.int64s("score.one", [1])], "score.fg_classes")
    fg_index_shape = g.node("Concat", [index_n_k, fg_classes], "score.fg_index_shape", axis=0)
    fg_index = g.node("Expand", [index3, fg_index_shape], "score.fg_index")
    top_fg = g.node("GatherElements", [fg, fg_index], "score.top_fg", axis=1)

    # Per-class candidates, as GluonCV's per-class decoder exports them: the class id where
    # the score passes the threshold (else -1), the score (else 0), the box, and the box
    # shifted by 2 * class so that one NMS over all candidates never suppresses across classes.
    threshold = g.scalar("class.threshold", SCORE_THRESHOLD)
    none, zero = g.scalar("class.none", -1.0), g.scalar("class.zero", 0.0)
    candidates = []
    for c in range(1, NUM_CLASSES):
        score = g.slice(top_fg, [c - 1], [c], [2], f"class.{c}.score")
        keep = g.node("Greater", [score, threshold], f"class.{c}.keep")
        class_id = g.node("Where", [keep, g.scalar(f"class.{c}.id", float(c)), none],
                          f"class.{c}.id_or_none")
        score = g.node("Where", [keep, score, zero], f"class.{c}.score_or_zero")
        shifted = g.node("Add", [top_boxes, g.scalar(f"class.{c}.shift", 2.0 * c)],
                         f"class.{c}.shifted")
        candidates.append(g.node("Concat", [class_id, score, top_boxes, shifted],
                                 f"class.{c}.candidates", axis=2))
    candidates = g.node("Concat", candidates, "class.candidates", axis=1)  # [N, 5k, 10]
    nms_scores = g.node("Transpose", [g.slice(candidates, [1], [2], [2], "nms.score_col")],
                        "nms.scores", perm=[0, 2, 1])
    nms_boxes = g.slice(candidates, [6], [10], [2], "nms.boxes")

    # One NMS over the candidates, then the selected rows scattered into a fixed-size buffer.
    selected = g.node(
        "NonMaxSuppression",
        [nms_boxes, nms_scores, g.int64s("nms.max_output", [MAX_DETECTIONS]),
         g.initializer("nms.iou", np.asarray([IOU_THRESHOLD], np.float32)),
         g.initializer("nms.score", np.asarray([SCORE_THRESHOLD], np.float32))],
        "nms", center_point_box=0,
    )
    batch_col = g.slice(selected, [0], [1], [1], "select.batch")
    candidate_col = g.slice(selected, [2], [3], [1], "select.candidate")
    at = g.node("Concat", [batch_col, candidate_col], "select.at", axis=1)
    chosen = g.node("GatherND", [candidates, at], "select.chosen")  # [K, 10]
    det_boxes = g.slice(chosen, [2], [6], [1], "select.boxes")
    det_scores = g.slice(chosen, [1], [2], [1], "select.scores")
    label = g.slice(chosen, [0], [1], [1], "select.labels")
    image = g.node("Cast", [g.squeeze(batch_col, [1], "select.batch_flat")], "select.batch_float",
                   to=TensorProto.FLOAT)
    rows = g.node("Concat", [det_boxes, det_scores, label,
                             g.unsqueeze(image, [1], "select.batch_col")], "select.rows", axis=1)
    found = g.node("Shape", [selected], "select.found_shape")
    found = g.node("Gather", [found, g.initializer("select.found_index", np.asarray(0, np.int64))],
                   "select.found", axis=0)
    start = g.initializer("select.zero", np.asarray(0, np.int64))
    step = g.initializer("select.step", np.asarray(1, np.int64))
    row_index = g.node("Range", [start, found, step], "select.range")
    row_index = g.unsqueeze(row_index, [1], "select.row_index")
    slots = g.node("Mul", [g.dim(top_boxes, 0, "output.batch"),
                           g.int64s("output.per_image", [MAX_DETECTIONS])], "output.slots")
    buffer_shape = g.node("Concat", [slots, g.int64s("output.width", [7])], "output.shape", axis=0)
    empty = g.node("ConstantOfShape", [buffer_shape], "output.empty",
                   value=helper.make_tensor("value", TensorProto.FLOAT, [1], [-1.0]))
    g.node("ScatterND", [empty, row_index, rows], "output.scatter", outputs=["detections"])
    g.unsqueeze(found, [0], "output.count_vector")
    g.node("Identity", ["output.count_vector"], "output.count", outputs=["num_detections"])

    return g.make_model(
        "ssd_export_detector",
        [tensor_info(INPUT_NAME, [n, 3, INPUT_SIZE, INPUT_SIZE])],
        [tensor_info("detections", [n * MAX_DETECTIONS if isinstance(n, int) else "D", 7]),
         tensor_info("num_detections", [1], TensorProto.INT64)],
    )
