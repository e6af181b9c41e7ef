"""Finding or creating a tracker's experiment (a private helper of :mod:`bench.store.tracker`)."""

from __future__ import annotations

import contextlib
import logging
import sqlite3

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.errors import TrackingError
from bench.store import schema
from bench.store.uri import (
    check_artifact_location,
    first_line,
    redact,
    sanitize_name,
    sqlite_path,
)

log = logging.getLogger(__name__)

#: MLflow's Default experiment, where `mlflow run` without --experiment-name puts its run.
DEFAULT_EXPERIMENT_ID = "0"


def artifact_location(uri: str, name: str) -> str | None:
    """For an SQLite store, ``mlartifacts/<experiment>`` beside the database (MLflow's
    default would be ``./mlruns`` in whatever folder bench runs from)."""
    if uri.startswith("sqlite:///"):
        db = sqlite_path(uri).resolve()
        return (db.parent / "mlartifacts" / sanitize_name(name)).as_uri()
    return None


def planned_artifact_location(uri: str, name: str) -> str | None:
    """Where experiment ``name``'s artifacts go: an existing experiment's own location (read
    from an SQLite store without writing to it), else where a new one would put them."""
    if uri.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite":
        db = sqlite_path(uri)
        if db.is_file() and db.stat().st_size:
            read_only = f"{db.absolute().as_uri()}?mode=ro"
            with contextlib.closing(sqlite3.connect(read_only, uri=True)) as con:
                query = "select artifact_location from experiments where name = ?"
                row = con.execute(query, (name,)).fetchone()
            if row is not None and row[0]:
                return str(row[0])
    return artifact_location(uri, name)


def open_experiment(
    client: MlflowClient, uri: str, name: str, description: str, *, adopted_run: str | None
) -> str:
    """The id of the experiment runs go to: the adopted run's (``mlflow run`` made it), else
    experiment ``name``'s (created when new); its artifact location checked before the first
    write into it. One line says so when ``mlflow run`` used MLflow's Default experiment."""
    try:
        if not adopted_run:
            return ensure_experiment(client, uri, name, description)
        experiment_id = client.get_run(adopted_run).info.experiment_id
        location = client.get_experiment(experiment_id).artifact_location
        check_artifact_location(location)
        if experiment_id == DEFAULT_EXPERIMENT_ID:
            log.warning(
                "`mlflow run` put this run into MLflow's Default experiment (artifacts in "
                "%s); pass it --experiment-name %s to keep the study apart",
                location,
                name,
            )
        tag_experiment(client, experiment_id, description)
        return experiment_id
    except MlflowException as exc:
        raise TrackingError(f"tracking store {redact(uri)}: {first_line(exc)}") from None


def ensure_experiment(client: MlflowClient, uri: str, name: str, description: str) -> str:
    """The id of experiment ``name``, created (and tagged) when missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise TrackingError(
            f"experiment {name!r} is deleted in {redact(uri)}; restore it "
            "(mlflow experiments restore) or pick another with --experiment"
        )
    if exp is None:
        try:
            exp_id = client.create_experiment(name, artifact_location=artifact_location(uri, name))
        except MlflowException as exc:
            # Another worker created it a moment ago (workers start together): use theirs.
            exp = client.get_experiment_by_name(name)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
        check_artifact_location(exp.artifact_location)  # before the first write into it
    tag_experiment(client, exp_id, description)
    return exp_id


def tag_experiment(client: MlflowClient, exp_id: str, description: str) -> None:
    """Mark the experiment as model training and give it the study's description."""
    exp = client.get_experiment(exp_id)
    wanted = {}
    if exp.tags.get(schema.MLFLOW_EXPERIMENT_KIND) != schema.EXPERIMENT_KIND_VALUE:
        wanted[schema.MLFLOW_EXPERIMENT_KIND] = schema.EXPERIMENT_KIND_VALUE
    if description and not exp.tags.get(schema.MLFLOW_NOTE):
        wanted[schema.MLFLOW_NOTE] = description
    for key, value in wanted.items():
        try:
            client.set_experiment_tag(exp_id, key, value)
        except MlflowException:
            # Workers starting together race to set the same tag; theirs is as good.
            if key not in client.get_experiment(exp_id).tags:
                raise
