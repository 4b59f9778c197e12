"""The MNIST example's data: scikit-learn's bundled 8x8 digits, resized to 28x28.

`load_digits_28()` returns (x_train, y_train, x_test, y_test): x float32 [N,1,28,28] in [0, 1],
y int64 in 0..9, from a fixed stratified 75/25 split (seed 0) of the 1797 images (1347 / 450).
Nothing is downloaded: the data ships inside scikit-learn, and is read from its file
(`sklearn/datasets/data/digits.csv.gz`, the file `sklearn.datasets.load_digits` reads) without
importing scikit-learn, whose import (scipy.stats and friends) took a third of
`mrvl example mnist`'s run time.
"""

from __future__ import annotations

import gzip
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from mrvl.errors import MrvlError

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


def digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as `load_digits()` gives them: images float64 [1797, 8, 8] with
    values 0..16 and targets int64, read from the package's data file (no sklearn import)."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    files = [Path(root) / "datasets" / "data" / "digits.csv.gz" for root in locations]
    file = next((f for f in files if f.is_file()), None)
    if file is None:
        raise MrvlError("the MNIST example's digits ship with scikit-learn, which is not "
                        "installed (pip install -r requirements.txt)")
    with gzip.open(file, "rt", encoding="utf-8") as text:
        data = np.loadtxt(text, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digit_images, target = digits_8x8()
    images = resize_bilinear(digit_images, IMAGE_SIZE) / 16.0  # pixel values are 0..16
    x = np.clip(images, 0.0, 1.0).astype(np.float32)[:, None, :, :]
    y = target
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
