"""Resuming an interrupted comparison.

A comparison's parent run carries the fingerprint of everything it trains (the study's
protocol after overrides, every run's hyperparameters, the data's digests, what is logged).
Run again with the same fingerprint after an interrupt or a crash, ``bench compare`` reopens
that parent, keeps its FINISHED training runs as they are, deletes (MLflow's soft delete,
``mlflow runs restore`` undoes it) the runs that never finished, and trains only the rest.
A FINISHED comparison is never reopened: running it again is a new repetition.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlflow.exceptions import MlflowException

from bench.errors import TrackingError
from bench.store import _registry, schema
from bench.store.reader import StoredRun, StoreReader
from bench.store.uri import first_line, redact


def fingerprint(payload: Mapping[str, object]) -> str:
    """A short stable digest of ``payload`` (JSON, keys sorted)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class Resumable:
    """An interrupted comparison to go on with."""

    parent_run_id: str
    status: str  # what it ended as: FAILED or KILLED
    kept: dict[str, StoredRun] = field(default_factory=dict)  # run name -> FINISHED training run
    discarded: list[str] = field(default_factory=list)  # names of the unfinished runs deleted


def find(tracker, key: str) -> Resumable | None:
    """The newest comparison of ``tracker``'s experiment with fingerprint ``key``, if it did
    not finish (FAILED or KILLED); None when there is none, or when it FINISHED or is still
    RUNNING in a live process."""
    try:
        runs = tracker.client.search_runs(
            [tracker.experiment_id],
            f"tags.`{schema.COMPARISON_KEY}` = '{key}' and tags.`{schema.KIND}` = "
            f"'{schema.KIND_COMPARISON}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except MlflowException as exc:
        raise TrackingError(f"{redact(tracker.uri)}: {first_line(exc)}") from None
    if not runs or runs[0].info.status not in ("FAILED", "KILLED"):
        return None
    return Resumable(runs[0].info.run_id, runs[0].info.status)


def prepare(tracker, resumable: Resumable) -> Resumable:
    """Sort the interrupted comparison's training runs: FINISHED ones are kept (with their
    curves, for the comparison's figures), the others deleted so that each run name appears
    once among the parent's children."""
    stored = StoreReader(tracker.uri, tracker.client).load(resumable.parent_run_id)
    for run in stored.children:
        if run.kind not in schema.TRAINING_KINDS:
            continue
        if run.status == "FINISHED" and run.name not in resumable.kept:
            resumable.kept[run.name] = run
            continue
        try:
            _registry.drop_versions(tracker.client, run.run_id)  # none may point at a deleted run
            tracker.client.delete_run(run.run_id)
        except MlflowException as exc:
            raise TrackingError(
                f"cannot delete the unfinished run {run.name}: {first_line(exc)}"
            ) from None
        resumable.discarded.append(run.name)
    return resumable
