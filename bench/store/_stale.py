"""Runs left RUNNING by a process that died, found and ended FAILED (for :class:`Tracker`)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Protocol

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.store import _registry, owner, schema


class Tracker(Protocol):
    """What these functions use of :class:`bench.store.tracker.Tracker`."""

    client: MlflowClient
    experiment_id: str

    def set_tags(self, run_id: str, tags: Mapping[str, object]) -> None: ...


def close_orphan(tracker: Tracker, run_id: str, reason: str, *, state: str | None = "FAIL") -> bool:
    """End a run whose process died (it would otherwise stay RUNNING forever)."""
    with contextlib.suppress(MlflowException):
        if tracker.client.get_run(run_id).info.status == "RUNNING":
            tracker.set_tags(
                run_id, {schema.ERROR: reason, **({schema.OPTUNA_STATE: state} if state else {})}
            )
            _registry.drop_versions(tracker.client, run_id)
            tracker.client.set_terminated(run_id, "FAILED")
            return True
    return False


def close_stale_runs(tracker: Tracker, kinds: Sequence[str]) -> list[str]:
    """FAIL this experiment's RUNNING runs of ``kinds`` whose process is certainly gone
    (killed on this host: see :mod:`bench.store.owner`); returns their names."""
    runs = tracker.client.search_runs(
        [tracker.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=10_000
    )
    closed = []
    for run in runs:
        tags = run.data.tags
        if tags.get(schema.KIND) in kinds and owner.is_dead(tags.get(schema.OWNER, "")):
            reason = f"its process ({tags[schema.OWNER]}) died before the run ended"
            if close_orphan(tracker, run.info.run_id, reason, state=None):
                closed.append(run.info.run_name)
    return closed


def close_stale_children(tracker: Tracker, parent_run_id: str, keep: set[str | None]) -> list[str]:
    """Fail child runs still RUNNING under ``parent_run_id`` (left by killed processes)."""
    closed = []
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=(
            f"tags.`{schema.MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and "
            "attributes.status = 'RUNNING'"
        ),
    )
    for run in runs:
        if run.info.run_id not in keep:
            close_orphan(tracker, run.info.run_id, "its process died before the run ended")
            closed.append(run.info.run_id)
    return closed
