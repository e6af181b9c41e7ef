"""The NumPy reference network: its gradients, and the same numbers from a suite-built Keras
model."""

from __future__ import annotations

import numpy as np
import pytest

from bench import reference
from bench.models import Dense, Variant
from bench.models.build import build_model


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(16, 4))
    y_true = rng.integers(0, 2, size=(16, 2)).astype(float)
    w = reference.init_weights(4, 3, 2, seed=1)
    return x, y_true, w


def test_gradients_match_finite_differences(problem):
    x, y_true, w = problem
    grads, value = reference.gradients(x, y_true, w)
    numeric = reference.numerical_gradients(x, y_true, w)
    assert value == pytest.approx(reference.loss(reference.forward(x, w).y, y_true))
    for name in ("W1", "b1", "W2", "b2"):
        assert grads[name].shape == w[name].shape
        np.testing.assert_allclose(grads[name], numeric[name], rtol=1e-5, atol=1e-9)


def test_a_wrong_gradient_is_caught(problem):
    """The check has teeth: a gradient that forgets the sigmoid derivative fails it."""
    x, y_true, w = problem
    f = reference.forward(x, w)
    wrong = ((f.y - y_true) / len(x)).T @ f.h  # missing y (1 - y)
    numeric = reference.numerical_gradients(x, y_true, w)
    assert not np.allclose(wrong, numeric["W2"], rtol=1e-3, atol=1e-6)


def test_keras_model_from_the_builder_computes_the_same(problem):
    import keras
    import tensorflow as tf

    x, y_true, w = problem
    variant = Variant(
        "reference-mlp",
        family="reference",
        group="reference",
        blocks=(Dense(3, activation="sigmoid"),),
        output_activation="sigmoid",
    )
    model = build_model(variant, input_shape=(4,), num_classes=2)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert len(dense) == 2
    dense[0].set_weights([w["W1"].T, w["b1"]])  # Keras kernels are (inputs, units)
    dense[1].set_weights([w["W2"].T, w["b2"]])

    xt = tf.constant(x, tf.float32)
    yt = tf.constant(y_true, tf.float32)
    with tf.GradientTape() as tape:
        y = model(xt, training=True)
        # L = 1/(2N) sum (y - y_t)^2  ==  mean over outputs of Keras MSE * outputs / 2
        loss = tf.reduce_sum(tf.square(y - yt)) / (2 * x.shape[0])
    keras_grads = tape.gradient(
        loss, [dense[0].kernel, dense[0].bias, dense[1].kernel, dense[1].bias]
    )

    ref = reference.forward(x, w)
    grads, value = reference.gradients(x, y_true, w)
    np.testing.assert_allclose(y.numpy(), ref.y, rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(value, rel=1e-5)
    mse = keras.losses.MeanSquaredError()(yt, y)  # Keras' own loss: the mean, i.e. 2L / outputs
    assert float(mse) * y_true.shape[1] / 2 == pytest.approx(value, rel=1e-5)
    for got, name, transpose in zip(
        keras_grads, ("W1", "b1", "W2", "b2"), (True, False, True, False), strict=True
    ):
        expected = grads[name].T if transpose else grads[name]
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-6)
