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


def log_keras_model(
    tracker: Tracker, run_id: str, model, *, name: str, params: Mapping[str, object], input_name: str, input_dtype,
    pip_requirements: Sequence[str],
) -> tuple[str, str]:
    """Log a Keras model with MLflow's flavour and a tensor signature (its input's dtype
    and shape, float32 outputs) as the LoggedModel ``name`` with ``params``; returns its
    ``models:/`` URI and its model id."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(input_dtype), (-1, *model.input_shape[1:]), input_name)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.output_shape[-1]))]),
    )
    # The flavour logs to the fluent active run. Leaving it marks the run FINISHED;
    # :meth:`run` sets the final status right after, so a later failure still ends it FAILED.
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.keras.log_model(
            model, name=name, signature=signature, pip_requirements=list(pip_requirements),
            params={k: redact(str(v)) for k, v in params.items()},
        )
    tracker.set_tags(run_id, {schema.MODEL_URI: info.model_uri})
    return info.model_uri, info.model_id


def register_model(tracker: Tracker, model_uri: str, name: str, alias: str | None, tags: Mapping[str, str]) -> str:
    """A new version of registered model ``name`` from ``model_uri`` (``alias``, if given,
    pointing at it); returns the version."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints two lines of its own there
            version = mlflow.register_model(model_uri, name, tags=dict(tags))
        if alias:
            tracker.client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        raise TrackingError(f"cannot register {name!r} in {redact(tracker.uri)}: {first_line(exc)}") from None
    log.info("registered %s version %s%s", name, version.version, f" (alias {alias})" if alias else "")
    return str(version.version)
