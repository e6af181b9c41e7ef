"""Raw arrays checked before anything is cached or trained: shapes, dtypes, ranges, labels.

Every problem is one :class:`~bench.errors.DataError` naming the source and what is wrong;
nothing is written (no cache entry) for data that fails here.
"""

from __future__ import annotations

import numpy as np

from bench.errors import DataError

RawArrays = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray
]  # x_train, y_train, x_test, y_test


def is_pixels(x: np.ndarray) -> bool:
    """Unsigned 8-bit data: pixel values, scaled by 1/255 (anything else is standardised per
    feature with the training split's statistics)."""
    return x.dtype == np.uint8


def check(
    arrays: RawArrays,
    source: str,
    *,
    input_shape: tuple[int, ...] | None,
    num_classes: int | None,
    pixels_only: bool = False,
    feature_names: list[str] | None = None,
) -> int:
    """Validate the four arrays; returns the number of classes (declared, else from the labels)."""
    x_train, y_train, x_test, y_test = arrays
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        _check_split(name, x, y, source, input_shape, pixels_only)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{source}: train examples have shape {x_train.shape[1:]} but test {x_test.shape[1:]}"
        )
    if not is_pixels(x_train) or not is_pixels(x_test):
        _check_features(x_train, x_test, source, feature_names)
    labels = [_labels(y, name, source) for name, y in (("train", y_train), ("test", y_test))]
    found = max(int(v.max()) for v in labels) + 1
    if num_classes is not None and found > num_classes:
        raise DataError(f"{source}: label {found - 1} out of range 0-{num_classes - 1}")
    classes = num_classes or found
    if classes < 2:
        raise DataError(
            f"{source}: every label is {found - 1}: a classifier needs at least 2 classes"
        )
    return classes


def _check_split(
    name: str, x: np.ndarray, y: np.ndarray, source: str, input_shape, pixels_only: bool
) -> None:
    if x.ndim < 2:
        raise DataError(
            f"{source}: {name} examples must be an array of at least 2 dimensions, got shape "
            f"{x.shape}"
        )
    if len(x) == 0:
        raise DataError(f"{source}: the {name} split is empty")
    if y.ndim != 1:
        raise DataError(
            f"{source}: {name} labels must be one integer per example, got shape {y.shape}"
        )
    if len(x) != len(y):
        raise DataError(
            f"{source}: {len(x)} {name} {'images' if is_pixels(x) else 'examples'} but {len(y)} "
            "labels"
        )
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        want = "x".join(map(str, input_shape))
        raise DataError(f"{source}: {name} images have shape {x.shape[1:]}, expected {want}")
    if x.dtype.kind not in "uif" or (pixels_only and not is_pixels(x)):
        what = "uint8 pixel values (0-255)" if pixels_only else "numbers"
        raise DataError(f"{source}: {name} examples are {x.dtype}, expected {what}")


def _check_features(
    x_train: np.ndarray, x_test: np.ndarray, source: str, names: list[str] | None
) -> None:
    """Finite values; no feature that is constant over the training split (it carries
    nothing, and per-feature standardisation would divide by zero)."""
    for name, x in (("train", x_train), ("test", x_test)):
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).argmax())
            raise DataError(f"{source}: {name} example {bad} has a NaN or infinite value")
    flat = x_train.reshape(len(x_train), -1)
    constant = np.flatnonzero(flat.min(axis=0) == flat.max(axis=0))
    if len(constant):
        col = int(constant[0])
        label = f"column {names[col]!r}" if names and col < len(names) else f"feature {col}"
        raise DataError(
            f"{source}: {label} is constant over the training examples "
            f"({len(constant)} such feature(s)); drop it"
        )


def _labels(y: np.ndarray, name: str, source: str) -> np.ndarray:
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise DataError(f"{source}: {name} labels must be integers")
    elif y.dtype.kind not in "ui":
        raise DataError(f"{source}: {name} labels are {y.dtype}, expected integers")
    if int(y.min()) < 0:
        raise DataError(f"{source}: {name} label {int(y.min())} is negative")
    return y
