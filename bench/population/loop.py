"""The compiled epoch: the splits live in the graph, each member's batch order is fed once
per epoch, and one call runs many steps with the batch gather inside it.

One Python call per :data:`STEPS_PER_CALL` steps, one for the last partial batch (its own
static shape) and one for the validation pass: nothing per step touches Python.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from bench import stopping
from bench.data import Splits
from bench.population.net import StackedNet
from bench.population.optim import StackedOptimizer

#: Steps per call into the compiled loop (a few hundred milliseconds of work on a CPU).
STEPS_PER_CALL = 256
#: Steps per iteration of the compiled loop (XLA's while loop costs as much per iteration as
#: a small model's step; measured: docs/speed.md, "Measurements behind the code's constants").
UNROLL = 4
#: Validation images per member per compiled step of the validation pass.
EVAL_CHUNK = 2500


def cross_entropy(labels: tf.Tensor, logits: tf.Tensor, smoothing: tf.Tensor) -> tf.Tensor:
    """Each example's cross-entropy (K, b), with each member's label smoothing (K,): Keras'
    ``CategoricalCrossentropy(label_smoothing=s)`` on one-hot labels,
    ``(1 - s) * ce + s * mean_c(-log p_c)``; a member without smoothing (s = 0) gets the
    plain loss and gradient bit for bit (even where the loss is not finite)."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    s = smoothing[:, None]
    uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=-1)
    return tf.where(s > 0, (1.0 - s) * ce + s * uniform, ce)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """A member's batch order for one epoch: a fresh permutation per (seed, epoch), the same
    whatever the population's size or the member's slot."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


class CompiledLoop:
    """Trains a :class:`StackedNet` with a :class:`StackedOptimizer` on ``splits``."""

    def __init__(
        self,
        net: StackedNet,
        optimizer: StackedOptimizer,
        splits: Splits,
        batch_size: int,
        *,
        jit_compile: bool = True,
    ) -> None:
        self.net, self.optimizer, self.batch_size = net, optimizer, batch_size
        self.jit_compile = jit_compile
        flat = int(np.prod(splits.input_shape))
        # Variables, not constants: XLA would fold a constant's bytes into every compilation.
        self.x = tf.Variable(splits.x_train.reshape(len(splits.x_train), flat), trainable=False)
        self.y = tf.Variable(splits.y_train.astype(np.int32), trainable=False)
        self.x_val = tf.Variable(splits.x_val.reshape(len(splits.x_val), flat), trainable=False)
        self.y_val = tf.Variable(splits.y_val.astype(np.int32), trainable=False)
        self.n = len(splits.x_train)
        self.full_steps, self.tail = divmod(self.n, batch_size)
        self.active = tf.Variable(tf.ones([net.k]), name="active")
        self.smoothing = tf.Variable(tf.zeros([net.k]), name="label_smoothing")  # per member
        compiled = tf.function(jit_compile=jit_compile, reduce_retracing=True)
        self._steps = compiled(self._run_steps)
        self._tail = compiled(self._run_tail)
        self._validate = compiled(self._run_validation)

    # -- compiled

    def _step(self, idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One update of every member on its batch ``idx`` (K, b): (loss, correct) per member."""
        xb, yb = tf.gather(self.x, idx), tf.gather(self.y, idx)
        with tf.GradientTape() as tape:
            logits = self.net.logits(
                xb, training=True, counter=tf.cast(self.optimizer.steps, tf.int32)
            )
            ce = cross_entropy(yb, logits, self.smoothing)
            loss = tf.reduce_mean(ce, axis=1) + self.net.penalty()
            total = tf.reduce_sum(loss)
        grads = tape.gradient(total, self.optimizer.variables)
        self.optimizer.apply(grads, self.active)
        hits = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), yb), tf.float32),
            axis=1,
        )
        return loss, hits

    def _run_steps(self, steps: tf.Tensor, first: tf.Tensor, count: tf.Tensor):
        """Full batches ``first`` to ``first + count - 1`` of ``steps`` (S, K, batch): UNROLL
        batches an iteration, then the rest one by one. The bounds are data, not constants,
        so one compilation serves every call."""
        k = self.net.k
        bs = float(self.batch_size)

        def one(step, loss_sum, hits_sum):
            loss, hits = self._step(tf.gather(steps, step))
            return step + 1, loss_sum + loss * bs, hits_sum + hits

        def unrolled(step, loss_sum, hits_sum):
            for _ in range(UNROLL):
                step, loss_sum, hits_sum = one(step, loss_sum, hits_sum)
            return step, loss_sum, hits_sum

        end = first + count
        start = (first, tf.zeros([k]), tf.zeros([k]))
        state = tf.while_loop(lambda step, *_: step + UNROLL <= end, unrolled, start)
        _, loss_sum, hits_sum = tf.while_loop(lambda step, *_: step < end, one, state)
        return loss_sum, hits_sum

    def _run_tail(self, order: tf.Tensor):
        loss, hits = self._step(order[:, self.n - self.tail :])
        return loss * float(self.tail), hits

    def _run_validation(self):
        k = self.net.k
        loss_sum, hits_sum = tf.zeros([k]), tf.zeros([k])
        for start in range(0, int(self.x_val.shape[0]), EVAL_CHUNK):
            x, y = self.x_val[start : start + EVAL_CHUNK], self.y_val[start : start + EVAL_CHUNK]
            logits = self.net.logits(x, training=False)
            labels = tf.broadcast_to(y[None], [k, y.shape[0]])
            loss_sum += tf.reduce_sum(cross_entropy(labels, logits, self.smoothing), axis=1)
            hits_sum += tf.reduce_sum(
                tf.cast(
                    tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32
                ),
                axis=1,
            )
        n = float(self.x_val.shape[0])
        return loss_sum / n, hits_sum / n

    # -- one epoch

    def train_epoch(self, orders: np.ndarray, on_chunk=None) -> tuple[np.ndarray, np.ndarray]:
        """One pass over the training split in each member's ``orders`` (K, n): mean loss and
        accuracy per member. ``on_chunk(loss_so_far)`` is called after every call (divergence
        checks) and may return True to stop the epoch early. A requested stop
        (:mod:`bench.stopping`) raises before the next call."""
        order = tf.constant(orders)
        k, full, bs = self.net.k, self.full_steps, self.batch_size
        steps = tf.constant(
            np.ascontiguousarray(orders[:, : full * bs].reshape(k, full, bs).transpose(1, 0, 2))
        )
        loss_sum, hits = np.zeros(k), np.zeros(k)
        seen = 0
        for first in range(0, full, STEPS_PER_CALL):
            stopping.check()
            count = min(STEPS_PER_CALL, full - first)
            loss, right = self._steps(steps, tf.constant(first), tf.constant(count))
            loss_sum += loss.numpy()
            hits += right.numpy()
            seen += count * bs
            if on_chunk is not None and on_chunk(loss_sum / seen):
                return loss_sum / seen, hits / seen
        if self.tail:
            stopping.check()
            loss, right = self._tail(order)
            loss_sum += loss.numpy()
            hits += right.numpy()
        return loss_sum / self.n, hits / self.n

    def validate(self) -> tuple[np.ndarray, np.ndarray]:
        loss, acc = self._validate()
        return loss.numpy(), acc.numpy()
