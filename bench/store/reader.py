"""Reading comparisons and tuning studies back from any MLflow store (``bench report``).

A report is built from what this returns and nothing else, so it can be rebuilt from any
tracking server the runs were logged to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench.errors import TrackingError
from bench.store import schema
from bench.store.probe import check_tracking_uri
from bench.store.uri import first_line, redact, resolve_tracking_uri

#: The curves read back per run kind: all of a training run's; a trial's validation accuracy
#: (how many epochs it trained before it completed or was pruned).
_HISTORIES = {
    **{kind: schema.HISTORY for kind in schema.TRAINING_KINDS},
    schema.KIND_TRIAL: (schema.VAL_ACCURACY,),
}


@dataclass
class StoredRun:
    """One run as the store holds it (what reports are built from)."""

    run_id: str
    name: str
    kind: str
    status: str
    start_time: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    histories: dict[str, list[float]] = field(default_factory=dict)
    # The MLflow datasets the run logged: (name, digest, context: training / validation / test).
    datasets: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class StoredComparison:
    """A parent run (comparison or tuning study), its children and where it lives."""

    uri: str
    experiment_name: str
    parent: StoredRun
    children: list[StoredRun]
    artifacts: Callable[[str, str, Path], Path | None]  # (run_id, path, dst) -> local file or None


class StoreReader:
    """Reads comparisons and tuning studies back from any MLflow store (for ``bench report``)."""

    def __init__(self, tracking_uri: str | None, client: MlflowClient | None = None) -> None:
        self.uri = resolve_tracking_uri(tracking_uri)
        if client is None:
            check_tracking_uri(
                self.uri, write=False
            )  # exists, reachable, MLflow's schema: before MLflow opens it
        self.client = client or MlflowClient(self.uri)

    def parents(self, experiment: str | None = None, run_ids: Sequence[str] = ()) -> list[str]:
        """The given runs, or the newest comparison / tuning parent of ``experiment``."""
        try:
            if run_ids:
                for run_id in run_ids:
                    self._check_parent(self.client.get_run(run_id))
                return list(run_ids)
            if experiment is None:
                raise TrackingError(
                    "name the runs (--run-id) or the experiment (--experiment) to report on"
                )
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                names = sorted(e.name for e in self.client.search_experiments())
                raise TrackingError(
                    f"no experiment {experiment!r} in {redact(self.uri)}; known: {', '.join(names)}"
                )
            runs = [
                run
                for kind in schema.PARENT_KINDS
                for run in self.client.search_runs(
                    [exp.experiment_id],
                    f"tags.`{schema.KIND}` = '{kind}'",
                    order_by=["attributes.start_time DESC"],
                    max_results=1,
                )
            ]
            runs.sort(key=lambda r: r.info.start_time or 0, reverse=True)
        except MlflowException as exc:
            raise TrackingError(f"{redact(self.uri)}: {first_line(exc)}") from None
        if not runs:
            raise TrackingError(f"experiment {experiment!r} holds no comparison or tuning run")
        return [runs[0].info.run_id]

    @staticmethod
    def _check_parent(run) -> None:
        """A report is built from a comparison's or a study's parent run, nothing else."""
        kind = run.data.tags.get(schema.KIND)
        if kind in schema.PARENT_KINDS:
            return
        parent = run.data.tags.get(schema.MLFLOW_PARENT_RUN_ID)
        what = f"a {kind} run" if kind else "not a bench run"
        hint = f"; report on its parent: --run-id {parent}" if parent else ""
        raise TrackingError(
            f"run {run.info.run_id} is {what}, not a comparison or tuning study{hint}"
        )

    def run(self, run_id: str) -> StoredRun:
        """One run's params, metrics and tags (no histories)."""
        try:
            return self._stored(self.client.get_run(run_id))
        except MlflowException as exc:
            raise TrackingError(f"{redact(self.uri)}: {first_line(exc)}") from None

    def load(self, parent_run_id: str) -> StoredComparison:
        try:
            parent = self.client.get_run(parent_run_id)
            children = self.client.search_runs(
                [parent.info.experiment_id],
                f"tags.`{schema.MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
                order_by=["attributes.start_time ASC"],
                max_results=10_000,
            )
            experiment = self.client.get_experiment(parent.info.experiment_id).name
            stored = [
                self._stored(r, history=_HISTORIES.get(r.data.tags.get(schema.KIND), ()))
                for r in children
            ]
        except MlflowException as exc:
            raise TrackingError(f"{redact(self.uri)}: {first_line(exc)}") from None
        return StoredComparison(self.uri, experiment, self._stored(parent), stored, self._artifact)

    def _stored(self, run, *, history: Sequence[str] = ()) -> StoredRun:
        histories = {}
        if history:
            for key in history:
                points = sorted(
                    self.client.get_metric_history(run.info.run_id, key), key=lambda m: m.step
                )
                histories[key] = [m.value for m in points]
        return StoredRun(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id,
            kind=run.data.tags.get(schema.KIND, ""),
            status=run.info.status,
            start_time=run.info.start_time or 0,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            histories=histories,
            datasets=[
                (d.dataset.name, d.dataset.digest, _context(d)) for d in run.inputs.dataset_inputs
            ]
            if run.inputs is not None
            else [],
        )

    def _artifact(self, run_id: str, path: str, dst: Path) -> Path | None:
        dst.mkdir(parents=True, exist_ok=True)
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dst)))
        except (MlflowException, OSError):
            return None


def _context(dataset_input) -> str:
    return next((t.value for t in dataset_input.tags if t.key == schema.MLFLOW_DATA_CONTEXT), "")
