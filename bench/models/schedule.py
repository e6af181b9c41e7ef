"""Learning-rate schedules: the rate at each update, as a factor of the member's own rate.

The rule is written once (:func:`factor`, TensorFlow ops on per-member tensors): the stacked
engine applies it to every member at once (:mod:`bench.population.optim`) and Keras' ``fit``
through :func:`bench.models.build.make_optimizer`. ``tests/test_recipes.py`` checks it
against Keras' own schedules.

- ``constant``: 1 (the default; bit for bit the unscheduled rate).
- ``cosine``: Keras' ``CosineDecay`` (``alpha`` 0) over the epochs after the warm-up: from the
  rate down to 0 at the end of the last epoch.
- ``step``: x0.1 from epoch ceil(epochs / 2) and x0.01 from epoch ceil(3 * epochs / 4)
  (0-based epochs; Keras' ``PiecewiseConstantDecay`` with those boundaries), whatever the
  warm-up.
- ``warmup_epochs`` (any schedule): the factor rises linearly from 0 over the first
  ``warmup_epochs`` epochs (Keras' ``CosineDecay`` warm-up from 0 to ``warmup_target``).

Steps count updates (0 is the first), so an epoch is ``ceil(train examples / batch size)``
steps.
"""

from __future__ import annotations

import math
from typing import Any

SCHEDULES = ("constant", "cosine", "step")
#: A member's schedule as numbers, in :func:`factor`'s argument order (:func:`in_steps`).
FIELDS = ("kind", "warmup", "decay", "first", "second")


def in_steps(
    schedule: str, warmup_epochs: int, epochs: int, steps_per_epoch: int
) -> tuple[float, ...]:
    """The schedule of a member that trains ``epochs`` epochs, in update steps: its kind (index
    in :data:`SCHEDULES`), warm-up steps, cosine decay steps and the two step milestones."""
    warmup = min(warmup_epochs, epochs) * steps_per_epoch
    decay = max(1, epochs * steps_per_epoch - warmup)
    first, second = -(-epochs // 2) * steps_per_epoch, -(-3 * epochs // 4) * steps_per_epoch
    return tuple(float(n) for n in (SCHEDULES.index(schedule), warmup, decay, first, second))


def factor(step: Any, kind: Any, warmup: Any, decay: Any, first: Any, second: Any) -> Any:
    """The rate's factor at update ``step`` (0-based): tensors that broadcast, one value per
    member. Exactly 1 for ``constant`` without warm-up."""
    import tensorflow as tf

    step = tf.cast(step, tf.float32)
    after = tf.minimum(step - warmup, decay)
    cosine = 0.5 * (1.0 + tf.cos(math.pi * (after / decay)))
    stepped = tf.where(step < first, 1.0, tf.where(step < second, 0.1, 0.01))
    decayed = tf.where(kind == 1.0, cosine, tf.where(kind == 2.0, stepped, 1.0))
    return tf.where(step < warmup, step / tf.maximum(warmup, 1.0), decayed)
