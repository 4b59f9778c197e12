"""The RFC's MNIST CNN (a Keras model exported to ONNX), untrained or trained.

The graph follows the RFC's Relay dump node for node (shapes for batch 1):

    permute_input [N,1,28,28]
    conv2d      Conv 64x1x2x2, pads [0,0,1,1] + Relu   -> [N,64,28,28]
    max_pooling2d   MaxPool 2x2/2                      -> [N,64,14,14]
    conv2d_1    Conv 32x64x2x2, pads [0,0,1,1] + Relu  -> [N,32,14,14]
    max_pooling2d_1 MaxPool 2x2/2                      -> [N,32,7,7]
    dropout     Dropout(0.3) (identity at inference)
    flatten     Transpose(0,2,3,1) (Keras flattens NHWC) + Reshape [-1,1568]
    dense       MatMul [1568,256] + Add + Relu
    dense_1     MatMul [256,10] + Add                  -> "dense_1" [N,10]

`mnist_cnn()` has seeded He-initialised weights; `mnist_cnn_trained()` loads the model trained
on scikit-learn's digits by `python -m mrvl.models.train_mnist` (models/data/mnist_cnn.onnx).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from mrvl.errors import MrvlError
from mrvl.models._graph_builder import GraphBuilder, batch_dim, check_opset, tensor_info

INPUT_NAME = "permute_input"
OUTPUT_NAME = "dense_1"
TRAINED_PATH = Path(__file__).resolve().parent / "data" / "mnist_cnn.onnx"

WEIGHT_SHAPES: dict[str, tuple[int, ...]] = {
    "conv2d.weight": (64, 1, 2, 2),
    "conv2d.bias": (64,),
    "conv2d_1.weight": (32, 64, 2, 2),
    "conv2d_1.bias": (32,),
    "dense.kernel": (1568, 256),
    "dense.bias": (256,),
    "dense_1.kernel": (256, 10),
    "dense_1.bias": (10,),
}
"""Name and shape of every weight; `mnist_cnn(weights=...)` takes a dict with these keys."""


def init_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded He-initialised float32 weights (zero biases for dense, small for conv)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in WEIGHT_SHAPES.items():
        if name.endswith(".bias"):
            weights[name] = (rng.standard_normal(shape) * 0.01).astype(np.float32)
            continue
        fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
        weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return weights


def _check_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = sorted(set(WEIGHT_SHAPES) - set(weights))
    if missing:
        raise MrvlError(f"mnist_cnn: weights missing {missing}")
    checked = {}
    for name, shape in WEIGHT_SHAPES.items():
        arr = np.asarray(weights[name], dtype=np.float32)
        if arr.shape != shape:
            raise MrvlError(f"mnist_cnn: weight '{name}' expected shape {shape}, got {arr.shape}")
        checked[name] = arr
    return checked


def mnist_cnn(
    weights: dict[str, np.ndarray] | None = None,
    opset: int = 17,
    batch: int | None = None,
    seed: int = 0,
) -> onnx.ModelProto:
    """The RFC's Keras MNIST CNN as ONNX, input "permute_input" [N,1,28,28], output [N,10].

    `weights` maps the names of `WEIGHT_SHAPES` to arrays; None uses `init_weights(seed)`.
    """
    check_opset("mnist_cnn", opset)
    n = batch_dim("mnist_cnn", batch)
    w = _check_weights(init_weights(seed) if weights is None else weights)
    g = GraphBuilder(seed, opset)
    for name, arr in w.items():
        g.initializer(name, arr)

    def conv_relu(name: str, x: str) -> str:
        y = g.node(
            "Conv",
            [x, f"{name}.weight", f"{name}.bias"],
            name,
            kernel_shape=[2, 2],
            strides=[1, 1],
            pads=[0, 0, 1, 1],
            dilations=[1, 1],
            group=1,
        )
        return g.node("Relu", [y], f"{name}/Relu")

    x = conv_relu("conv2d", INPUT_NAME)
    x = g.node("MaxPool", [x], "max_pooling2d", kernel_shape=[2, 2], strides=[2, 2])
    x = conv_relu("conv2d_1", x)
    x = g.node("MaxPool", [x], "max_pooling2d_1", kernel_shape=[2, 2], strides=[2, 2])
    x = g.dropout("dropout", x, 0.3)
    x = g.node("Transpose", [x], "flatten/Transpose", perm=[0, 2, 3, 1])
    x = g.node("Reshape", [x, g.int64s("flatten.shape", [-1, 1568])], "flatten/Reshape")
    x = g.node("MatMul", [x, "dense.kernel"], "dense/MatMul")
    x = g.node("Add", [x, "dense.bias"], "dense/BiasAdd")
    x = g.node("Relu", [x], "dense/Relu")
    x = g.node("MatMul", [x, "dense_1.kernel"], "dense_1/MatMul")
    g.node("Add", [x, "dense_1.bias"], "dense_1/BiasAdd", outputs=[OUTPUT_NAME])
    return g.make_model(
        "mnist_cnn",
        [tensor_info(INPUT_NAME, [n, 1, 28, 28])],
        [tensor_info(OUTPUT_NAME, [n, 10])],
    )


def mnist_cnn_trained(path: str | Path | None = None) -> onnx.ModelProto:
    """The MNIST CNN trained on scikit-learn's digits (>= 95 % test accuracy).

    Raises `MrvlError` naming the file and the command that regenerates it when it is missing
    or unreadable.
    """
    file = TRAINED_PATH if path is None else Path(path)
    regenerate = "regenerate it with `python -m mrvl.models.train_mnist`"
    if not file.is_file():
        raise MrvlError(f"trained MNIST model '{file}' not found; {regenerate}")
    try:
        return onnx.load(str(file))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise MrvlError(f"trained MNIST model '{file}' is unreadable ({exc}); {regenerate}")
