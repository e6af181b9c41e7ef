"""One experiment in one MLflow store: runs that always end, and the logging primitives.

This is MLflow plumbing only. What a training run, a comparison or a study logs is decided
in :mod:`bench.results.artifacts`; the keys come from :mod:`bench.store.schema`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.errors import TrackingError
from bench.store import _experiments, _registry, _stale, owner, schema, views
from bench.store._first_use import first_use
from bench.store._system import SystemMetrics
from bench.store.environment import git_tags
from bench.store.probe import check_tracking_uri
from bench.store.uri import (
    check_artifact_location,
    check_name,
    first_line,
    redact,
    resolve_tracking_uri,
)
from bench.store.writer import RunWriter

log = logging.getLogger(__name__)

# Reports download artifacts; MLflow's per-download progress bars would bury our output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def check_store(tracking_uri: str | None, experiment: str) -> str:
    """Everything that can be known about a store before writing to it (its URI, what it
    holds, the experiment's name, an SQLite store's artifact folder), checked without writing
    anything. Returns the resolved URI."""
    uri = resolve_tracking_uri(tracking_uri)
    check_name(experiment, "experiment")
    check_tracking_uri(uri)
    planned = _experiments.planned_artifact_location(uri, experiment)
    if planned is not None:
        check_artifact_location(planned)
    return uri


class Tracker(RunWriter):
    """One experiment in one store; opens runs and logs into them (:class:`RunWriter`)."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        *,
        description: str = "",
        checked: bool = False,
    ) -> None:
        """``checked``: :func:`check_store` already passed for this store and experiment."""
        self.uri = (
            resolve_tracking_uri(tracking_uri) if checked else check_store(tracking_uri, experiment)
        )
        mlflow.set_tracking_uri(self.uri)
        # `mlflow run` creates the run and passes it in MLFLOW_RUN_ID: our parent run adopts
        # it. Taken out of the environment, or MLflow would resume it for every child run too.
        self._adopted = os.environ.pop("MLFLOW_RUN_ID", None)
        # The client creates (migrates) a new store: one process at a time.
        with first_use(self.uri):
            self.client = MlflowClient(self.uri)
            self.experiment_id = _experiments.open_experiment(
                self.client, self.uri, experiment, description, adopted_run=self._adopted
            )
        self._system = SystemMetrics(self.uri)
        experiment_entity = self.client.get_experiment(self.experiment_id)
        self.experiment_name = experiment_entity.name
        check_artifact_location(experiment_entity.artifact_location)

    # -- runs

    @contextlib.contextmanager
    def run(
        self,
        name: str,
        *,
        kind: str,
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
        description: str = "",
        finished_on: tuple[type[BaseException], ...] = (),
    ) -> Iterator[str]:
        """Open a run and always close it: FINISHED; FAILED on an error; KILLED on Ctrl-C.

        ``finished_on`` lists exceptions that still end the run FINISHED (a pruned trial).
        Runs are created through the client, not MLflow's process-global "active run", so
        workers and nested runs never depend on fluent state.
        """
        run_id = self.start_run(
            name,
            kind=kind,
            params=params,
            tags=tags,
            parent_run_id=parent_run_id,
            resume_run_id=resume_run_id,
            description=description,
        )
        try:
            yield run_id
        except finished_on:
            self.end_run(run_id, "FINISHED")
            raise
        except BaseException as exc:
            error = self.end_run_on_error(run_id, name, exc)
            if error is not None:
                raise error from exc
            raise
        else:
            self.end_run(run_id, "FINISHED")

    def end_run_on_error(self, run_id: str, name: str, exc: BaseException) -> TrackingError | None:
        """End a run that ``exc`` interrupted: KILLED on Ctrl-C or SIGTERM, else FAILED with
        the reason. A store or disk failure comes back as the one-line error to raise."""
        if isinstance(exc, KeyboardInterrupt):
            self.end_run(run_id, "KILLED", "interrupted (Ctrl-C or SIGTERM)")
            return None
        self.end_run(run_id, "FAILED", f"{type(exc).__name__}: {exc}")
        if isinstance(exc, (OSError, MlflowException)):
            # A full disk, an unwritable artifact folder, a store that went away: the
            # half-written run is FAILED, and the user gets one line saying why.
            return TrackingError(f"run {name!r} failed (marked FAILED): {first_line(exc)}")
        return None

    def start_run(
        self,
        name: str,
        *,
        kind: str,
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        resume_run_id: str | None = None,
        description: str = "",
    ) -> str:
        """Open a run that the caller ends with :meth:`end_run` (prefer :meth:`run`, which
        always ends it; this is for runs that end at different times, a population's)."""
        all_tags = {**self._base_tags(kind), **(tags or {})}
        if description:
            all_tags[schema.MLFLOW_NOTE] = description
        if parent_run_id:
            all_tags[schema.MLFLOW_PARENT_RUN_ID] = parent_run_id
        adopted = None if parent_run_id else self._take_adopted()
        existing = resume_run_id or adopted
        run_id = None
        try:
            if existing:
                self.client.update_run(existing, status="RUNNING", name=name)
                run_id = existing
                self.set_tags(run_id, all_tags)
            else:
                run_id = self._create(name, all_tags)
            if params:
                self.log_params(run_id, params)
            if kind in schema.TRAINED_KINDS:
                self._system.start(run_id)
        except BaseException as exc:
            # Opened, then failed or interrupted: ended here, never left RUNNING.
            if run_id is not None:
                with contextlib.suppress(Exception):
                    self.end_run_on_error(run_id, name, exc)
            if isinstance(exc, MlflowException):
                raise TrackingError(
                    f"cannot start a run in {redact(self.uri)}: {first_line(exc)}"
                ) from None
            raise
        return run_id

    def create_run(self, name: str, *, kind: str) -> str:
        """Create a run to be entered later with ``run(..., resume_run_id=...)`` (under
        ``mlflow run``, the run it created is the one returned)."""
        adopted = self._take_adopted()
        if adopted:
            return adopted
        try:
            return self._create(name, self._base_tags(kind))
        except MlflowException as exc:
            raise TrackingError(
                f"cannot start a run in {redact(self.uri)}: {first_line(exc)}"
            ) from None

    @property
    def adopts(self) -> bool:
        """True while a run created by ``mlflow run`` waits to become the next parent run."""
        return self._adopted is not None

    def _take_adopted(self) -> str | None:
        adopted, self._adopted = self._adopted, None
        return adopted

    @staticmethod
    def _base_tags(kind: str) -> dict[str, str]:
        return {schema.KIND: kind, schema.OWNER: owner.identity(), **git_tags()}

    def _create(self, name: str, tags: Mapping[str, str]) -> str:
        from mlflow.tracking.context import registry

        run = self.client.create_run(
            self.experiment_id, run_name=name, tags=registry.resolve_tags(dict(tags))
        )
        return run.info.run_id

    def end_run(self, run_id: str, status: str = "FINISHED", reason: str = "") -> None:
        """End a run; one that did not finish first loses the model versions registered from
        it (:mod:`bench.store._registry`)."""
        self._system.stop(run_id)
        with contextlib.suppress(Exception):
            if reason:
                self.client.set_tag(run_id, schema.ERROR, redact(reason)[: schema.MAX_TAG_VALUE])
        if status != "FINISHED":
            with contextlib.suppress(Exception):
                _registry.drop_versions(self.client, run_id)
        try:
            self.client.set_terminated(run_id, status)
        except MlflowException as exc:
            if status == "FINISHED":
                raise TrackingError(
                    f"cannot end run {run_id} in {redact(self.uri)}: {first_line(exc)}"
                ) from None
            # Already failing: keep the first error. The run stays RUNNING until the next
            # bench start on this host closes it (see close_stale_runs).
            log.warning("could not mark run %s %s: %s", run_id, status, first_line(exc))

    def save_view(self, view_id: str, value: str) -> None:
        """A saved view of the experiment's Runs page (:mod:`bench.store.views`), which
        :func:`bench.store.uri.ui_url` opens."""
        self.client.set_experiment_tag(self.experiment_id, views.tag_key(view_id), value)

    def run_exists(self, run_id: str) -> bool:
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id

    # -- runs whose process died (bench.store._stale)

    def close_orphan(self, run_id: str, reason: str, *, state: str | None = "FAIL") -> bool:
        """End a run whose process died (it would otherwise stay RUNNING forever)."""
        return _stale.close_orphan(self, run_id, reason, state=state)

    def close_stale_runs(self, kinds: Sequence[str]) -> list[str]:
        """FAIL this experiment's RUNNING runs of ``kinds`` whose process is certainly gone
        (killed on this host: see :mod:`bench.store.owner`); returns their names."""
        return _stale.close_stale_runs(self, kinds)

    def close_stale_children(self, parent_run_id: str, keep: set[str | None]) -> list[str]:
        """Fail child runs still RUNNING under ``parent_run_id`` (left by killed processes)."""
        return _stale.close_stale_children(self, parent_run_id, keep)
