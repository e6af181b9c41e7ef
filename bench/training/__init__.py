"""Fit and evaluate one variant: fast, seeded, and honest about dead or diverged runs.

No MLflow here: training returns a :class:`TrainResult` and calls the ``on_epoch`` hooks it
is given (tracking and tuning plug in through those). Two engines train, behind one
population interface (:mod:`.slots`): the compiled population loop (:mod:`bench.population`,
every MLP) and Keras' ``fit`` as a population of one (:mod:`.fit`, the convolutional
variants).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from bench.data import Splits
from bench.models.spec import HParams, Variant
from bench.result import (  # noqa: F401  (re-exported: the training API)
    DEAD_LOSS_FLOOR,
    DEAD_LOSS_PROGRESS,
    DEAD_MARGIN,
    DEAD_PATIENCE,
    DIVERGED_LOSS_FACTOR,
    HISTORY_KEYS,
    STATUS_DEAD,
    STATUS_DIVERGED,
    STATUS_OK,
    EpochHook,
    Health,
    TrainResult,
)
from bench.training.device import device_description
from bench.training.fit import (  # noqa: F401  (re-exported)
    DEFAULT_STEPS_PER_EXECUTION,
    EVAL_BATCH_SIZE,
    KerasPopulation,
    make_eval_dataset,
    make_train_dataset,
    seed_everything,
    use_xla,
)
from bench.training.slots import ENGINES, Separate, Slots, engine_for, population_of_one

LAYER = 6  # import layer (docs/development.md#layers): imports only lower layers' units

__all__ = [
    "ENGINES",
    "EpochHook",
    "KerasPopulation",
    "Separate",
    "Slots",
    "TrainResult",
    "device_description",
    "engine_for",
    "evaluate",
    "population_of_one",
    "train",
    "train_population",
]


def train(
    variant: Variant,
    hparams: HParams,
    splits: Splits,
    *,
    on_epoch: Sequence[EpochHook] = (),
    evaluate_test: bool = True,
    engine: str | None = None,
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
    jit_compile: bool | None = None,
) -> TrainResult:
    """Train ``variant`` with ``hparams`` on the train split, validating every epoch.

    The test split is touched only after training, and only when ``evaluate_test``.
    ``engine``: "compiled" or "keras" (default: :func:`engine_for`); ``steps_per_execution``
    and ``jit_compile`` tune the "keras" engine.
    """
    [result] = train_population(
        variant,
        [hparams],
        splits,
        on_epoch=[on_epoch],
        evaluate_test=evaluate_test,
        engine=engine,
        steps_per_execution=steps_per_execution,
        jit_compile=jit_compile,
    )
    return result


def train_population(
    variant: Variant,
    members: Sequence[HParams],
    splits: Splits,
    *,
    on_epoch: Sequence[Sequence[EpochHook]] | None = None,
    evaluate_test: bool = True,
    engine: str | None = None,
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
    jit_compile: bool | None = None,
) -> list[TrainResult]:
    """Train every member (same variant; seeds, learning rates, dropout may differ), one
    result each. The compiled engine trains them as one graph; Keras' trains them in turn.
    An error raised by a member's hook stops the training and is raised here."""
    from bench import population

    engine = engine or engine_for(variant)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    hooks = list(on_epoch) if on_epoch is not None else [()] * len(members)
    if engine == "compiled":
        results = population.train_population(
            variant, members, splits, on_epoch=hooks, device=device_description()
        )
    else:
        results = [
            _to_the_end(
                KerasPopulation(
                    variant,
                    splits,
                    steps_per_execution=steps_per_execution,
                    jit_compile=jit_compile,
                ),
                hp,
                member_hooks,
            )
            for hp, member_hooks in zip(members, hooks, strict=True)
        ]
    return [
        evaluate(r, splits) if evaluate_test and r.status != STATUS_DIVERGED else r for r in results
    ]


def _to_the_end(population: Slots, hparams: HParams, hooks: Sequence[EpochHook]) -> TrainResult:
    """One member trained in ``population`` until it stops; an error its hooks raised is raised."""
    population.start(0, hparams, hooks)
    while population.running:
        population.run_epoch()
    result, error = population.finish(0)
    if error is not None:
        raise error
    return result


def evaluate(result: TrainResult, splits: Splits) -> TrainResult:
    """``result`` tested: test loss, accuracy, predictions and confusion matrix, from one pass
    over the test set (a new value; ``result`` is left as it was)."""
    import keras

    probs = result.keras_model().predict(splits.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    loss = keras.losses.sparse_categorical_crossentropy(splits.y_test, probs)
    pred = np.argmax(probs, axis=1).astype(np.int32)
    k = splits.num_classes
    return dataclasses.replace(
        result,
        test_loss=float(np.mean(keras.ops.convert_to_numpy(loss))),
        test_accuracy=float(np.mean(pred == splits.y_test)),
        test_predictions=pred,
        confusion=np.bincount(splits.y_test * k + pred, minlength=k * k).reshape(k, k),
    )
