"""Keras' Adam, SGD and RMSprop for stacked weights, each member with its own learning rate.

The update rules are Keras 3's ``update_step`` (keras/src/optimizers/{adam,sgd,rmsprop}.py)
written once for a leading member axis; the hyperparameters (betas, epsilon, rho, and the
default learning rate when a member has none) are read from the Keras optimizer that
:func:`bench.models.build.make_optimizer` makes for the member, so Keras' defaults stay the
defaults. Each member keeps its own step count, so a slot refilled with a new member starts
with fresh moments and a fresh bias correction.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from bench.models.spec import OPTIMIZERS, HParams

KINDS = OPTIMIZERS  # one list of optimizer names (spec.OPTIMIZERS); _RULES has a rule for each


def _broadcast(per_member: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return tf.reshape(per_member, [-1] + [1] * (len(like.shape) - 1))


class StackedOptimizer:
    """One optimizer kind for all members; learning rates and step counts per member."""

    def __init__(self, kind: str, variables: Sequence[tf.Variable], k: int) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(KINDS)}")
        self.kind, self.variables = kind, list(variables)
        self.learning_rate = tf.Variable(tf.zeros([k]), name="learning_rate")
        self.steps = tf.Variable(tf.zeros([k]), name="steps")  # updates applied, per member
        self.first = (
            [tf.Variable(tf.zeros_like(v)) for v in self.variables] if kind == "adam" else []
        )
        self.second = (
            [tf.Variable(tf.zeros_like(v)) for v in self.variables] if kind != "sgd" else []
        )
        self.config: dict[str, float] = {}

    def load_member(self, k: int, hparams: HParams) -> None:
        """Slot ``k`` starts afresh with ``hparams``' optimizer (Keras' defaults where unset)."""
        if hparams.optimizer != self.kind:
            raise ValueError(f"a {self.kind} population cannot hold a {hparams.optimizer} member")
        if not self.config:  # Keras' defaults for this kind, read once
            from bench.models.build import make_optimizer

            keras_opt = make_optimizer(hparams.replace(learning_rate=None))
            self.config = {
                name: float(getattr(keras_opt, name))
                for name in ("learning_rate", "beta_1", "beta_2", "epsilon", "rho", "momentum")
                if hasattr(keras_opt, name)
            }
        if self.config.get("momentum"):
            raise ValueError("momentum is not supported in populations")
        lr = (
            hparams.learning_rate
            if hparams.learning_rate is not None
            else self.config["learning_rate"]
        )
        self._reset(tf.constant(k, tf.int32), tf.constant(lr, tf.float32))

    @tf.function
    def _reset(self, k, learning_rate):
        """Slot ``k``'s learning rate, step count and moments, in one call."""
        at = tf.reshape(k, [1, 1])
        self.learning_rate.scatter_nd_update(at, learning_rate[None])
        self.steps.scatter_nd_update(at, tf.zeros([1]))
        for slot in (*self.first, *self.second):
            slot.scatter_nd_update(at, tf.zeros([1, *slot.shape[1:]]))

    def apply(self, grads: Sequence[tf.Tensor], active: tf.Tensor) -> None:
        """One update of every member whose ``active`` flag (K,) is 1; the others stay as they
        are. As Keras' ``apply``: a variable's constraint, if it has one, after its update."""
        self.steps.assign_add(active)
        rule = _RULES[self.kind]
        for i, (var, grad) in enumerate(zip(self.variables, grads, strict=True)):
            lr, keep = _broadcast(self.learning_rate * active, var), _broadcast(active, var)
            rule(self, i, var, grad, lr, keep)
            if var.constraint is not None:
                var.assign(var.constraint(var))

    def _sgd(
        self, i: int, var: tf.Variable, grad: tf.Tensor, lr: tf.Tensor, keep: tf.Tensor
    ) -> None:
        var.assign_sub(lr * grad)

    def _rmsprop(
        self, i: int, var: tf.Variable, grad: tf.Tensor, lr: tf.Tensor, keep: tf.Tensor
    ) -> None:
        rho, eps = self.config["rho"], self.config["epsilon"]
        v = self.second[i]
        v.assign(v + keep * ((rho * v + (1 - rho) * tf.square(grad)) - v))
        var.assign_sub(lr * grad / tf.sqrt(v + eps))

    def _adam(
        self, i: int, var: tf.Variable, grad: tf.Tensor, lr: tf.Tensor, keep: tf.Tensor
    ) -> None:
        b1, b2, eps = self.config["beta_1"], self.config["beta_2"], self.config["epsilon"]
        m, v = self.first[i], self.second[i]
        m.assign_add(keep * (grad - m) * (1 - b1))
        v.assign_add(keep * (tf.square(grad) - v) * (1 - b2))
        step = _broadcast(tf.maximum(self.steps, 1.0), var)
        alpha = lr * tf.sqrt(1 - tf.pow(b2, step)) / (1 - tf.pow(b1, step))
        var.assign_sub(alpha * m / (tf.sqrt(v) + eps))


#: Each optimizer's update rule (Keras 3's ``update_step``), one per name in ``OPTIMIZERS``.
_RULES = {
    "adam": StackedOptimizer._adam,
    "sgd": StackedOptimizer._sgd,
    "rmsprop": StackedOptimizer._rmsprop,
}
assert set(_RULES) == set(KINDS), "every optimizer name needs a stacked update rule"
