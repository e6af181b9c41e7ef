"""Keras' Adam, SGD and RMSprop for stacked weights, each member with its own hyperparameters.

The update rules are Keras 3's ``update_step`` (keras/src/optimizers/{adam,sgd,rmsprop}.py)
written once for a leading member axis; each rule's hyperparameters (:data:`HYPER`: learning
rate, betas, epsilon, rho) are per member, read from the Keras optimizer that
:func:`bench.models.build.make_optimizer` makes for the member, so whatever
:class:`~bench.models.hparams.HParams` passes to Keras reaches the rule and Keras' defaults
stay the defaults. Each member keeps its own step count, so a slot refilled with a new member starts
with fresh moments and a fresh bias correction. Each member's learning rate follows its own
schedule (:mod:`bench.models.schedule`) over its step count.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import tensorflow as tf

from bench.models import schedule
from bench.models.hparams import DECLARED
from bench.models.spec import OPTIMIZERS, HParams

KINDS = OPTIMIZERS  # one list of optimizer names (spec.OPTIMIZERS); _RULES has a rule for each

#: The per-member hyperparameters each update rule reads: Keras optimizer attributes.
HYPER = {
    "adam": ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon"),
    "adamw": ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon"),
    "sgd": ("learning_rate", "weight_decay", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "weight_decay", "rho", "epsilon"),
}
#: The hyperparameters a rule also needs as ``1 - value``.
_COMPLEMENTED = ("beta_1", "beta_2", "rho")


def _broadcast(per_member: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return tf.reshape(per_member, [-1] + [1] * (len(like.shape) - 1))


def _keras_values(hparams: HParams) -> tuple[float, ...]:
    """The member's hyperparameters as its Keras optimizer holds them (Keras' defaults
    where ``hparams`` leaves them unset), in :data:`HYPER` order."""
    fields = tuple((n, getattr(hparams, n)) for n, d in DECLARED.items() if d.keras)
    return _read_keras(hparams.optimizer, fields)


@functools.lru_cache(maxsize=64)
def _read_keras(kind: str, fields: tuple[tuple[str, object], ...]) -> tuple[float, ...]:
    from bench.models.build import make_optimizer

    keras_opt = make_optimizer(HParams(optimizer=kind, **dict(fields)))
    values = (getattr(keras_opt, name) for name in HYPER[kind])
    return tuple(0.0 if value is None else float(value) for value in values)  # no decay: 0


class StackedOptimizer:
    """One optimizer kind for all members; each member's own hyperparameters (one (K,)
    variable each, :data:`HYPER`) and step count."""

    def __init__(
        self, kind: str, variables: Sequence[tf.Variable], k: int, steps_per_epoch: int = 1
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown optimizer {kind!r}; known: {', '.join(KINDS)}")
        self.kind, self.variables, self.steps_per_epoch = kind, list(variables), steps_per_epoch
        #: Per member: its learning-rate schedule in steps (schedule.FIELDS; zeros: constant).
        self.schedule = {
            name: tf.Variable(tf.zeros([k]), name=f"schedule_{name}") for name in schedule.FIELDS
        }
        #: Per member: each hyperparameter, and 1 - it (taken in float64 then rounded, as the
        #: Python constants of Keras' rules were).
        self.hyper = {name: tf.Variable(tf.zeros([k]), name=name) for name in HYPER[kind]}
        self.complement = {
            name: tf.Variable(tf.zeros([k]), name=f"1-{name}") for name in HYPER[kind]
        }
        self.steps = tf.Variable(tf.zeros([k]), name="steps")  # updates applied, per member
        self.first = (
            [tf.Variable(tf.zeros_like(v)) for v in self.variables] if kind != "rmsprop" else []
        )
        self.second = (
            [tf.Variable(tf.zeros_like(v)) for v in self.variables] if kind not in ("sgd",) else []
        )

    @property
    def learning_rate(self) -> tf.Variable:
        return self.hyper["learning_rate"]

    def load_member(self, k: int, hparams: HParams) -> None:
        """Slot ``k`` starts afresh with ``hparams``' optimizer (Keras' defaults where unset)."""
        if hparams.optimizer != self.kind:
            raise ValueError(f"a {self.kind} population cannot hold a {hparams.optimizer} member")
        values = _keras_values(hparams)
        if hparams.learning_rate is not None:  # as given, not as Keras' float32 variable holds it
            values = (hparams.learning_rate, *values[1:])
        steps = schedule.in_steps(
            hparams.schedule, hparams.warmup_epochs, hparams.epochs, self.steps_per_epoch
        )
        self._reset(
            tf.constant(k, tf.int32),
            tf.constant(values, tf.float32),
            tf.constant([1.0 - v for v in values], tf.float32),
            tf.constant(steps, tf.float32),
        )

    @tf.function
    def _reset(self, k, values, complements, steps):
        """Slot ``k``'s hyperparameters, schedule, step count and moments, in one call."""
        at = tf.reshape(k, [1, 1])
        for i, variable in enumerate(self.schedule.values()):
            variable.scatter_nd_update(at, steps[i : i + 1])
        for i, name in enumerate(self.hyper):
            self.hyper[name].scatter_nd_update(at, values[i : i + 1])
            self.complement[name].scatter_nd_update(at, complements[i : i + 1])
        self.steps.scatter_nd_update(at, tf.zeros([1]))
        for slot in (*self.first, *self.second):
            slot.scatter_nd_update(at, tf.zeros([1, *slot.shape[1:]]))

    def apply(self, grads: Sequence[tf.Tensor], active: tf.Tensor) -> None:
        """One update of every member whose ``active`` flag (K,) is 1; the others stay as they
        are. As Keras' ``apply``: a variable's constraint, if it has one, after its update."""
        self.steps.assign_add(active)
        rule = _RULES[self.kind]
        # each member's rate at this update (its step count less one: Keras' iterations)
        rate = self.learning_rate * schedule.factor(self.steps - 1.0, **self.schedule) * active
        for i, (var, grad) in enumerate(zip(self.variables, grads, strict=True)):
            lr, keep = _broadcast(rate, var), _broadcast(active, var)
            # Keras' decoupled weight decay, before the update (0 for a member without: exact)
            var.assign(var - var * _broadcast(self.hyper["weight_decay"], var) * lr)
            rule(self, i, var, grad, lr, keep)
            if var.constraint is not None:
                var.assign(var.constraint(var))

    def _per_member(self, like: tf.Tensor, *names: str) -> list[tf.Tensor]:
        """Each named hyperparameter (and, for a beta or rho, 1 - it) shaped to broadcast."""
        out = []
        for name in names:
            out.append(_broadcast(self.hyper[name], like))
            if name in _COMPLEMENTED:
                out.append(_broadcast(self.complement[name], like))
        return out

    def _sgd(
        self, i: int, var: tf.Variable, grad: tf.Tensor, lr: tf.Tensor, keep: tf.Tensor
    ) -> None:
        """Keras' SGD: plain where a member's momentum is 0, else with momentum (Nesterov's
        where ``nesterov``); an inactive member (lr 0) keeps its weights and momentum."""
        momentum, nesterov = self._per_member(var, "momentum", "nesterov")
        m = self.first[i]
        moved = m * momentum - grad * lr
        step = tf.where(nesterov > 0, moved * momentum - grad * lr, moved)
        on = tf.logical_and(momentum != 0, keep > 0)
        m.assign(tf.where(on, moved, m))
        var.assign(tf.where(on, var + step, var - lr * grad))

    def _rmsprop(
        self, i: int, var: tf.Variable, grad: tf.Tensor, lr: tf.Tensor, keep: tf.Tensor
    ) -> None:
        rho, one_rho, eps = self._per_member(var, "rho", "epsilon")
        v = self.second[i]
        v.assign(v + keep * ((rho * v + one_rho * tf.square(grad)) - v))
        var.assign_sub(lr * grad / tf.sqrt(v + eps))

    def _adam(
        self, i: int, var: tf.Variable, grad: tf.Tensor, lr: tf.Tensor, keep: tf.Tensor
    ) -> None:
        b1, one_b1, b2, one_b2, eps = self._per_member(var, "beta_1", "beta_2", "epsilon")
        m, v = self.first[i], self.second[i]
        m.assign_add(keep * (grad - m) * one_b1)
        v.assign_add(keep * (tf.square(grad) - v) * one_b2)
        step = _broadcast(tf.maximum(self.steps, 1.0), var)
        alpha = lr * tf.sqrt(1 - tf.pow(b2, step)) / (1 - tf.pow(b1, step))
        var.assign_sub(alpha * m / (tf.sqrt(v) + eps))


#: Each optimizer's update rule (Keras 3's ``update_step``), one per name in ``OPTIMIZERS``.
_RULES = {
    "adam": StackedOptimizer._adam,
    "adamw": StackedOptimizer._adam,  # Keras' AdamW is Adam with its weight decay (in apply)
    "sgd": StackedOptimizer._sgd,
    "rmsprop": StackedOptimizer._rmsprop,
}
assert set(_RULES) == set(KINDS), "every optimizer name needs a stacked update rule"
