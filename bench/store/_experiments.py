"""Finding or creating a tracker's experiment (a private helper of :mod:`bench.store.tracker`)."""

from __future__ import annotations

import contextlib
import sqlite3

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.errors import TrackingError
from bench.store import schema
from bench.store.uri import check_artifact_location, redact, sanitize_name, sqlite_path


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
            with contextlib.closing(sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)) as con:
                row = con.execute("select artifact_location from experiments where name = ?", (name,)).fetchone()
            if row is not None and row[0]:
                return str(row[0])
    return artifact_location(uri, name)


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
