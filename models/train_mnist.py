"""Train the RFC's MNIST CNN on scikit-learn's digits with plain numpy; write the ONNX model.

    python -m mrvl.models.train_mnist [--epochs 12] [--output models/data/mnist_cnn.onnx]

Same layers as `mnist_cnn` (conv 2x2 same-padding + ReLU, max-pool, conv, max-pool, dropout 0.3,
NHWC flatten, dense 256 + ReLU, dense 10), trained with softmax cross-entropy and Adam
(cosine-decayed learning rate) on mini-batches of 32, dropout active in training. Activations
are kept NHWC (what Keras flattens); convolutions are im2col matrix products with hand-written
backward passes. Everything is seeded,
so a rerun on the same machine writes the same model. The saved model is checked in
onnxruntime on the held-out split; the script fails if its accuracy is below 95 %.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from mrvl.errors import MrvlError
from mrvl.models.digits import load_digits_28
from mrvl.models.mnist_cnn import INPUT_NAME, TRAINED_PATH, init_weights, mnist_cnn

SEED = 0
EPOCHS = 12
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
DROPOUT = 0.3
MIN_ACCURACY = 0.95


# ----------------------------------------------------------------------------- layers


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray):
    """NHWC conv, 2x2 kernel, pads [0,0,1,1] (bottom/right), stride 1; w is OIHW."""
    out_c, in_c, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, kh - 1), (0, kw - 1), (0, 0)))
    # windows: [B, H, W, C, kh, kw] -> rows ordered (C, kh, kw) like w.reshape(O, -1).
    cols = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
    bsz, h, wd = x.shape[:3]
    cols = cols.reshape(bsz * h * wd, in_c * kh * kw)
    out = cols @ w.reshape(out_c, -1).T + b
    return out.reshape(bsz, h, wd, out_c), cols


def conv_backward(dout: np.ndarray, cols: np.ndarray, w: np.ndarray, need_dx: bool):
    out_c, in_c, kh, kw = w.shape
    bsz, h, wd = dout.shape[:3]
    d = dout.reshape(-1, out_c)
    dw = (d.T @ cols).reshape(w.shape)
    db = d.sum(axis=0)
    if not need_dx:
        return None, dw, db
    dcols = (d @ w.reshape(out_c, -1)).reshape(bsz, h, wd, in_c, kh, kw)
    dxp = np.zeros((bsz, h + kh - 1, wd + kw - 1, in_c), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, i : i + h, j : j + wd, :] += dcols[..., i, j]
    return dxp[:, :h, :wd, :], dw, db


def pool_forward(x: np.ndarray):
    """2x2/2 max-pool, NHWC; returns the output and the argmax mask for the backward pass."""
    bsz, h, w, c = x.shape
    win = x.reshape(bsz, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
    win = win.reshape(bsz, h // 2, w // 2, c, 4)
    arg = win.argmax(axis=-1)
    out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
    return out, arg


def pool_backward(dout: np.ndarray, arg: np.ndarray):
    bsz, h2, w2, c = dout.shape
    dwin = np.zeros((bsz, h2, w2, c, 4), dtype=dout.dtype)
    np.put_along_axis(dwin, arg[..., None], dout[..., None], axis=-1)
    dwin = dwin.reshape(bsz, h2, w2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    return dwin.reshape(bsz, h2 * 2, w2 * 2, c)


# ----------------------------------------------------------------------------- model


def forward(p: dict[str, np.ndarray], x_nchw: np.ndarray, rng: np.random.Generator | None):
    """Logits and a cache; dropout is active when `rng` is given (inverted dropout)."""
    x = x_nchw.transpose(0, 2, 3, 1)
    c1, cols1 = conv_forward(x, p["conv2d.weight"], p["conv2d.bias"])
    r1 = np.maximum(c1, 0)
    p1, arg1 = pool_forward(r1)
    c2, cols2 = conv_forward(p1, p["conv2d_1.weight"], p["conv2d_1.bias"])
    r2 = np.maximum(c2, 0)
    p2, arg2 = pool_forward(r2)
    mask = None
    if rng is not None:
        mask = (rng.random(p2.shape) >= DROPOUT).astype(np.float32) / (1.0 - DROPOUT)
        p2 = p2 * mask
    flat = p2.reshape(len(x), -1)
    h = flat @ p["dense.kernel"] + p["dense.bias"]
    hr = np.maximum(h, 0)
    logits = hr @ p["dense_1.kernel"] + p["dense_1.bias"]
    cache = (cols1, c1, arg1, p1, cols2, c2, arg2, mask, flat, h, hr)
    return logits, cache


def backward(p: dict[str, np.ndarray], cache, dlogits: np.ndarray) -> dict[str, np.ndarray]:
    cols1, c1, arg1, p1, cols2, c2, arg2, mask, flat, h, hr = cache
    g = {}
    g["dense_1.kernel"] = hr.T @ dlogits
    g["dense_1.bias"] = dlogits.sum(axis=0)
    dh = (dlogits @ p["dense_1.kernel"].T) * (h > 0)
    g["dense.kernel"] = flat.T @ dh
    g["dense.bias"] = dh.sum(axis=0)
    dp2 = (dh @ p["dense.kernel"].T).reshape(len(dh), 7, 7, 32)
    if mask is not None:
        dp2 = dp2 * mask
    dr2 = pool_backward(dp2, arg2) * (c2 > 0)
    dp1, g["conv2d_1.weight"], g["conv2d_1.bias"] = conv_backward(
        dr2, cols2, p["conv2d_1.weight"], need_dx=True
    )
    dr1 = pool_backward(dp1, arg1) * (c1 > 0)
    _, g["conv2d.weight"], g["conv2d.bias"] = conv_backward(
        dr1, cols1, p["conv2d.weight"], need_dx=False
    )
    return g


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(prob[np.arange(n), labels] + 1e-12).mean()
    grad = prob
    grad[np.arange(n), labels] -= 1.0
    return float(loss), grad / n


def predict(p: dict[str, np.ndarray], x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate(
        [forward(p, x[i : i + batch], None)[0].argmax(axis=1) for i in range(0, len(x), batch)]
    )


def train(epochs: int = EPOCHS, seed: int = SEED, verbose: bool = True) -> dict[str, np.ndarray]:
    """Train on the digits train split with Adam; returns float32 weights for `mnist_cnn`."""
    x_train, y_train, x_test, y_test = load_digits_28()
    rng = np.random.default_rng(seed)
    params = init_weights(seed)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(w) for k, w in params.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        lr = LEARNING_RATE * 0.5 * (1.0 + np.cos(np.pi * (epoch - 1) / epochs))
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(0, len(order), BATCH_SIZE):
            idx = order[i : i + BATCH_SIZE]
            logits, cache = forward(params, x_train[idx], rng)
            loss, dlogits = softmax_cross_entropy(logits, y_train[idx])
            grads = backward(params, cache, dlogits.astype(np.float32))
            step += 1
            for k, grad in grads.items():
                m[k] = beta1 * m[k] + (1 - beta1) * grad
                v[k] = beta2 * v[k] + (1 - beta2) * grad * grad
                m_hat = m[k] / (1 - beta1**step)
                v_hat = v[k] / (1 - beta2**step)
                params[k] = (params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)).astype(
                    np.float32
                )
            losses.append(loss)
        if verbose:
            acc = float((predict(params, x_test) == y_test).mean())
            print(
                f"epoch {epoch}/{epochs}: loss {np.mean(losses):.4f}, "
                f"test accuracy {acc:.4f} ({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    return params


def onnxruntime_accuracy(model: onnx.ModelProto, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of `model` in onnxruntime on (x, y)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = session.run(None, {INPUT_NAME: x})[0]
    return float((logits.argmax(axis=1) == y).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mrvl.models.train_mnist",
        description="Train the RFC's MNIST CNN on scikit-learn's digits and save it as ONNX.",
    )
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"default {EPOCHS}")
    parser.add_argument("--seed", type=int, default=SEED, help=f"default {SEED}")
    parser.add_argument(
        "-o", "--output", type=Path, default=TRAINED_PATH, help=f"default {TRAINED_PATH}"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    start = time.perf_counter()
    params = train(args.epochs, args.seed)
    model = mnist_cnn(weights=params)
    onnx.checker.check_model(model, full_check=True)
    _, _, x_test, y_test = load_digits_28()
    acc = onnxruntime_accuracy(model, x_test, y_test)
    print(f"onnxruntime test accuracy: {acc:.4f} on {len(y_test)} held-out digits")
    if acc < MIN_ACCURACY:
        raise MrvlError(f"training reached only {acc:.4f} < {MIN_ACCURACY}; not saving")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.output))
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB) "
          f"in {time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MrvlError as exc:
        print(f"train_mnist: error: {exc}", file=sys.stderr)
        sys.exit(2)
