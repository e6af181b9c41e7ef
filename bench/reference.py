"""A two-layer network in NumPy only, with hand-derived gradients (seed notebook 003, part 1).

Sigmoid hidden layer, sigmoid output, loss ``L = 1/(2N) * sum((y - y_t)**2)``. Shapes follow
the notebook: ``W1`` is (hidden, inputs), ``b1`` (hidden,), ``W2`` (outputs, hidden), ``b2``
(outputs,). The tests check these gradients by finite differences and against a Keras model
built by :func:`bench.models.build_model` with the same weights: that is how the suite shows
its Keras models compute what we think they compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYER = 1  # import layer (docs/development.md#layers): imports only lower layers' units

Weights = dict[str, np.ndarray]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Forward:
    z1: np.ndarray  # hidden pre-activation (N, hidden)
    h: np.ndarray  # hidden activation
    z2: np.ndarray  # output pre-activation (N, outputs)
    y: np.ndarray  # output


def init_weights(n_in: int, n_hidden: int, n_out: int, seed: int = 0) -> Weights:
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.normal(0, 0.5, (n_hidden, n_in)),
        "b1": rng.normal(0, 0.1, n_hidden),
        "W2": rng.normal(0, 0.5, (n_out, n_hidden)),
        "b2": rng.normal(0, 0.1, n_out),
    }


def forward(x: np.ndarray, w: Weights) -> Forward:
    z1 = x @ w["W1"].T + w["b1"]
    h = sigmoid(z1)
    z2 = h @ w["W2"].T + w["b2"]
    return Forward(z1=z1, h=h, z2=z2, y=sigmoid(z2))


def loss(y: np.ndarray, y_true: np.ndarray) -> float:
    """``1/(2N) * sum((y - y_t)^2)`` over all samples and outputs."""
    y_true = np.asarray(y_true, dtype=y.dtype).reshape(y.shape)
    return float(np.sum((y - y_true) ** 2) / (2 * len(y)))


def gradients(x: np.ndarray, y_true: np.ndarray, w: Weights) -> tuple[Weights, float]:
    """Backpropagation by the chain rule, written out layer by layer."""
    n = len(x)
    f = forward(x, w)
    y_true = np.asarray(y_true, dtype=f.y.dtype).reshape(f.y.shape)
    d_y = (f.y - y_true) / n  # dL/dy
    d_z2 = d_y * f.y * (1 - f.y)  # sigmoid'(z2) = y (1 - y)
    d_h = d_z2 @ w["W2"]
    d_z1 = d_h * f.h * (1 - f.h)
    grads = {
        "W2": d_z2.T @ f.h,
        "b2": d_z2.sum(axis=0),
        "W1": d_z1.T @ x,
        "b1": d_z1.sum(axis=0),
    }
    return grads, loss(f.y, y_true)


def numerical_gradients(
    x: np.ndarray, y_true: np.ndarray, w: Weights, eps: float = 1e-6
) -> Weights:
    """Central finite differences of :func:`loss` (slow; for checking :func:`gradients`)."""
    grads = {}
    for name, value in w.items():
        g = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in w.items()}
            minus = {k: v.copy() for k, v in w.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            g[idx] = (loss(forward(x, plus).y, y_true) - loss(forward(x, minus).y, y_true)) / (
                2 * eps
            )
        grads[name] = g
    return grads
