"""Models into the store: a Keras model as an MLflow LoggedModel, and into the Model registry.

Functions of a :class:`~bench.store.tracker.Tracker` (they write through its client), kept
apart so the tracker stays about runs.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping, Sequence

import mlflow
from mlflow.exceptions import MlflowException

from bench.errors import TrackingError
from bench.store import schema
from bench.store.tracker import Tracker
from bench.store.uri import first_line, redact

log = logging.getLogger(__name__)


#: The step a model is logged at: one no metric uses. MLflow links every run metric logged at
#: the model's step to the model (step 0 by default: the first epoch's curves and the first
#: system-metrics sample); bench links the kept epoch's instead (:func:`link_metrics`).
UNUSED_STEP = 2**31 - 1


def log_keras_model(
    tracker: Tracker,
    run_id: str,
    model,
    *,
    name: str,
    params: Mapping[str, object],
    input_name: str,
    input_dtype,
    pip_requirements: Sequence[str],
    input_example=None,
    description: str = "",
) -> tuple[str, str]:
    """Log a Keras model with MLflow's flavour and a tensor signature (its input's dtype
    and shape, float32 outputs) as the LoggedModel ``name`` with ``params``, an input
    example and a description; returns its ``models:/`` URI and its model id. No run
    metric is linked to it here (:func:`link_metrics` links the kept epoch's)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema(
            [TensorSpec(np.dtype(input_dtype), (-1, *model.input_shape[1:]), input_name)]
        ),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.output_shape[-1]))]),
    )
    # The flavour logs to the fluent active run. Leaving it marks the run FINISHED;
    # :meth:`run` sets the final status right after, so a later failure still ends it FAILED.
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.keras.log_model(
            model,
            name=name,
            signature=signature,
            pip_requirements=list(pip_requirements),
            params={k: redact(str(v)) for k, v in params.items()},
            step=UNUSED_STEP,
        )
    tracker.set_tags(run_id, {schema.MODEL_URI: info.model_uri})
    if input_example is not None:
        _log_input_example(tracker, info.model_id, input_example)
    if description:
        tracker.client.set_logged_model_tags(
            info.model_id, {schema.MLFLOW_NOTE: redact(description)[:5000]}
        )
    return info.model_uri, info.model_id


#: The input example beside the model, as the scoring server takes it.
INPUT_EXAMPLE = "serving_input_example.json"


def _log_input_example(tracker: Tracker, model_id: str, example) -> None:
    """The input example, in the scoring server's JSON (MLflow's public converter), into the
    model's folder. Not through ``log_model(input_example=...)``: MLflow 3.17's Keras flavour
    writes the example before it creates the model's folder (keras/save.py) and fails."""
    import tempfile
    from pathlib import Path

    from mlflow.models import convert_input_example_to_serving_input

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / INPUT_EXAMPLE).write_text(
            convert_input_example_to_serving_input(example), encoding="utf-8"
        )
        tracker.client.log_model_artifacts(model_id, tmp)


def link_metrics(
    tracker: Tracker, run_id: str, model_id: str, step: int, keys: Sequence[str]
) -> None:
    """The run's ``keys`` at ``step`` (the epoch whose weights the model holds) as the
    model's metrics: the same points, linked to the model (as MLflow links a step's)."""
    from mlflow.entities import Metric

    points = [
        Metric(
            m.key,
            m.value,
            m.timestamp,
            m.step,
            dataset_name=m.dataset_name,
            dataset_digest=m.dataset_digest,
            run_id=run_id,
            model_id=model_id,
        )
        for key in keys
        for m in tracker.client.get_metric_history(run_id, key)
        if m.step == step
    ]
    if points:
        tracker.client.log_batch(run_id, metrics=points)


def register_model(
    tracker: Tracker,
    model_uri: str,
    name: str,
    alias: str | None,
    tags: Mapping[str, str],
    description: str = "",
) -> str:
    """A new version of registered model ``name`` from ``model_uri`` (``alias``, if given,
    pointing at it; ``description`` and ``tags``, e.g. its test scores, on the version);
    returns the version."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints two lines of its own there
            version = mlflow.register_model(model_uri, name, tags=dict(tags))
        if description:
            tracker.client.update_model_version(
                name, version.version, description=redact(description)[:5000]
            )
        if alias:
            tracker.client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        raise TrackingError(
            f"cannot register {name!r} in {redact(tracker.uri)}: {first_line(exc)}"
        ) from None
    log.info(
        "registered %s version %s%s", name, version.version, f" (alias {alias})" if alias else ""
    )
    return str(version.version)
