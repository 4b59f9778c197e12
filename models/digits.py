"""The MNIST example's data: scikit-learn's bundled 8x8 digits, resized to 28x28.

`load_digits_28()` returns (x_train, y_train, x_test, y_test): x float32 [N,1,28,28] in [0, 1],
y int64 in 0..9, from a fixed stratified 75/25 split (seed 0) of the 1797 images (1347 / 450).
Nothing is downloaded: the data ships inside scikit-learn.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

IMAGE_SIZE = 28
TEST_FRACTION = 0.25
SPLIT_SEED = 0


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resize [N,H,W] images to [N,size,size], bilinear with half-pixel centres (numpy only).

    Sample points outside the source are clamped to the border, like
    onnx Resize(mode="linear", coordinate_transformation_mode="half_pixel").
    """
    n, h, w = images.shape

    def axis_weights(src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(size) + 0.5) * (src / size) - 0.5
        pos = np.clip(pos, 0.0, src - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, src - 1)
        return lo, hi, (pos - lo).astype(np.float64)

    y0, y1, fy = axis_weights(h)
    x0, x1, fx = axis_weights(w)
    img = images.astype(np.float64)
    rows = img[:, y0, :] * (1 - fy)[None, :, None] + img[:, y1, :] * fy[None, :, None]
    return rows[:, :, x0] * (1 - fx)[None, None, :] + rows[:, :, x1] * fx[None, None, :]


def _stratified_split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): per class, a seeded shuffle and the first 25 % go to test."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * TEST_FRACTION))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = resize_bilinear(digits.images, IMAGE_SIZE) / 16.0  # pixel values are 0..16
    x = np.clip(images, 0.0, 1.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    train, test = _stratified_split(y)
    split = (x[train], y[train], x[test], y[test])
    for arr in split:
        arr.setflags(write=False)
    return split


def load_digits_28() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); x float32 [N,1,28,28] in [0, 1], y int64.

    Returns fresh copies, so callers may modify them.
    """
    return tuple(arr.copy() for arr in _load())
