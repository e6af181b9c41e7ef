"""Training units and recording each as its MLflow run (:func:`train`, :func:`validate`)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

from bench import stopping, training
from bench.clock import Eta
from bench.models import Variant
from bench.models.hparams import SHARED
from bench.result import EpochHook, TrainResult
from bench.results import artifacts
from bench.runs.units import Batch, Recording, Unit
from bench.store import schema

progress = logging.getLogger("bench.progress")


def train(recording: Recording, batch: Batch) -> list[TrainResult]:
    """Train the batch's units and record each as its MLflow run, tested: params and
    datasets first, curves every epoch, then the test scores, artifacts and model. Units
    train together wherever their variant stacks (:func:`populations`). Every run ends
    FINISHED, or the runs still open end FAILED or KILLED. The models are released once
    logged; the results (each naming its run) are what remains."""
    out: list[TrainResult] = []
    for units in populations(batch):
        results = train_population(recording, batch.only(units))
        release(results)
        out += results
    return out


def validate(
    recording: Recording, batch: Batch, objective: Callable[[TrainResult], float]
) -> list[TrainResult]:
    """Train the batch's units on validation only, each its MLflow run: the train and
    validation datasets, curves every epoch, then its status and ``objective`` (logged as the
    objective). The test split is never touched; the models are released."""
    tracker, splits = recording.tracker, recording.splits
    out: list[TrainResult] = []
    for units in populations(batch):
        with contextlib.ExitStack() as stack:
            run_ids = [
                stack.enter_context(opened(recording, batch, unit, tags=unit.tags, tested=False))
                for unit in units
            ]
            results = training.train_population(
                batch.variant,
                [u.hparams for u in units],
                splits,
                on_epoch=[[tracker.epoch_hook(r)] for r in run_ids],
                evaluate_test=False,
            )
            for run_id, result in zip(run_ids, results, strict=True):
                tracker.set_tags(run_id, {schema.STATUS: result.status})
                tracker.log_metrics(run_id, {schema.OBJECTIVE: objective(result)})
            stopping.check()
        release(results)
        out += [
            dataclasses.replace(r, run_id=run_id)
            for r, run_id in zip(results, run_ids, strict=True)
        ]
    return out


def populations(batch: Batch) -> list[tuple[Unit, ...]]:
    """The batch's units in the populations they train in, in order: consecutive units that
    share batch size, epochs and optimizer (a population shares them), as many at once as
    train fastest here (:func:`bench.population.sizing.seeds_size`); one at a time where the
    variant cannot be stacked."""
    from bench.population import supports
    from bench.population.sizing import seeds_size

    gpu = training.device_description().startswith("GPU")
    out: list[tuple[Unit, ...]] = []
    for run in _same_shape_runs(batch.units):
        hp = run[0].hparams
        size = (
            seeds_size(batch.variant, hp.batch_size, len(run), gpu=gpu).size
            if supports(batch.variant)
            else 1
        )
        out += [run[i : i + size] for i in range(0, len(run), size)]
    return out


def _same_shape_runs(units: Sequence[Unit]) -> list[tuple[Unit, ...]]:
    runs: list[list[Unit]] = []
    for unit in units:
        if runs and _shape(runs[-1][0]) == _shape(unit):
            runs[-1].append(unit)
        else:
            runs.append([unit])
    return [tuple(run) for run in runs]


def _shape(unit: Unit) -> tuple[object, ...]:
    """What a population's members share: epochs and the hyperparameters not per member."""
    return unit.hparams.epochs, *(getattr(unit.hparams, name) for name in SHARED)


def train_population(
    recording: Recording, batch: Batch, eta: Eta | None = None
) -> list[TrainResult]:
    """One population of units (:func:`populations`), trained and tested, each its own run;
    the models kept (whoever called decides when they go)."""
    tracker = recording.tracker
    with contextlib.ExitStack() as stack:
        run_ids = [
            stack.enter_context(opened(recording, batch, unit, tags=seed_tags(unit), tested=True))
            for unit in batch.units
        ]
        hooks = [
            [tracker.epoch_hook(run_id), _progress_hook(unit.shown, unit.hparams.epochs, eta)]
            for run_id, unit in zip(run_ids, batch.units, strict=True)
        ]
        results = training.train_population(
            batch.variant, [u.hparams for u in batch.units], recording.splits, on_epoch=hooks
        )
        results = log_tested(recording, batch, run_ids, results)
    say_done(batch.units, results)
    return results


def seed_tags(unit: Unit) -> dict[str, str]:
    """A tested run's tags: its seed (reports pair runs by seed) and the unit's own."""
    return {schema.SEED_TAG: str(unit.hparams.seed), **unit.tags}


@contextlib.contextmanager
def opened(
    recording: Recording, batch: Batch, unit: Unit, *, tags: Mapping[str, str], tested: bool
) -> Iterator[str]:
    """The unit's run, open: its params, tags and datasets (the test split only where the run
    is tested) logged. It always ends: FINISHED, FAILED on an error, KILLED on a stop."""
    from bench.models.build import logged_params

    stopping.check()  # no run starts once a stop is requested; the open ones end KILLED
    tracker, splits, variant = recording.tracker, recording.splits, batch.variant
    params = {
        **variant.structure_params(),
        **logged_params(unit.hparams, variant),
        schema.TASK: splits.task,
        **schema.split_params(splits.sizes),
        **unit.params,
    }
    with tracker.run(
        unit.run_name,
        kind=batch.kind,
        params=params,
        tags={schema.VARIANT_TAG: variant.name, **tags},
        parent_run_id=recording.parent_run_id,
        description=variant.description if tested else "",
    ) as run_id:
        datasets = artifacts.split_datasets(splits)
        tracker.log_datasets(run_id, datasets if tested else datasets[:2])
        yield run_id


def log_tested(
    recording: Recording, batch: Batch, run_ids: Sequence[str], results: Sequence[TrainResult]
) -> list[TrainResult]:
    """Each tested result into its run (parameter count, scores, artifacts, model); the
    results naming their runs. A run ends FINISHED only where no stop came before it closed."""
    tracker, out = recording.tracker, []
    default = artifacts.ModelNaming(_model_name(batch.variant, batch.kind))
    for run_id, unit, result in zip(run_ids, batch.units, results, strict=True):
        stopping.check()
        # The parameter count as training counted it: no model is built just to count.
        tracker.log_params(run_id, {schema.PARAMS: result.params})
        artifacts.log_training(
            tracker,
            run_id,
            result,
            splits=recording.splits,
            log_model=recording.log_model,
            naming=unit.naming or default,
        )
        out.append(dataclasses.replace(result, run_id=run_id))
    stopping.check()
    return out


def _model_name(variant: Variant, kind: str) -> str:
    return variant.name + ("-tuned" if kind == schema.KIND_TUNED else "")


def _progress_hook(label: str, epochs: int, eta: Eta | None) -> EpochHook:
    def hook(epoch: int, m: Mapping[str, float]) -> None:
        if eta is not None:
            eta.advance()
        progress.info(
            "%s epoch %*d/%d  loss %.4f acc %.4f | val_loss %.4f val_acc %.4f | %.1fs%s",
            label,
            len(str(epochs)),
            epoch + 1,
            epochs,
            m[schema.LOSS],
            m[schema.ACCURACY],
            m[schema.VAL_LOSS],
            m[schema.VAL_ACCURACY],
            m[schema.EPOCH_SECONDS],
            f" | {eta.text()}" if eta is not None else "",
        )

    return hook


def say_done(units: Sequence[Unit], results: Sequence[TrainResult]) -> None:
    for unit, result in zip(units, results, strict=True):
        summary = (
            f"test acc {result.test_accuracy:.4f} loss {result.test_loss:.4f}"
            if result.test_accuracy is not None
            else "no test score"
        )
        progress.info(
            "%s done in %.1fs: %s, %s", unit.shown, result.train_seconds, result.status, summary
        )


def release(results: Sequence[TrainResult]) -> None:
    """Drop the Keras models and graph state (memory stays flat over a study). Results
    derived from one another share their model: one release frees it for all."""
    import keras

    for result in results:
        result.release_model()
    keras.backend.clear_session()
    gc.collect()
