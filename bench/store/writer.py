"""The logging primitives: params, tags, metrics, datasets, figures, text and artifacts
written into runs that exist. Values are redacted: a URL with a password never lands in the
store."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from bench.store import schema
from bench.store.datasets import SplitData
from bench.store.uri import redact

_BATCH = 100  # params per log_batch call (MLflow's limit)


class RunWriter:
    """Writes into the runs of one store through its ``client``
    (:class:`bench.store.tracker.Tracker` opens the runs and ends them)."""

    client: MlflowClient

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        items = [Param(k, redact(str(v))[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(run_id, params=items[i : i + _BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, object]) -> None:
        self.client.log_batch(
            run_id,
            tags=[RunTag(k, redact(str(v))[: schema.MAX_TAG_VALUE]) for k, v in tags.items()],
        )

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float | None],
        step: int = 0,
        *,
        dataset: SplitData | None = None,
        model_id: str | None = None,
    ) -> None:
        """Finite values only (NaN and missing scores are left out, not logged as NaN);
        measured on ``dataset`` (its name and digest) by the logged model ``model_id``."""
        now = int(time.time() * 1000)
        linked = {"model_id": model_id, "run_id": run_id}
        if dataset is not None:
            linked.update(dataset_name=dataset.name, dataset_digest=dataset.digest)
        items = [
            Metric(k, float(v), now, step, **linked)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def log_datasets(self, run_id: str, splits: Sequence[SplitData]) -> None:
        """The data the run used, one MLflow dataset per split with its context."""
        self.client.log_inputs(run_id, datasets=[split.as_input() for split in splits])

    def epoch_hook(self, run_id: str) -> Callable[[int, Mapping[str, float]], None]:
        """Per-epoch metrics straight into the store, so a crash loses nothing logged so far."""

        def hook(epoch: int, metrics: Mapping[str, float]) -> None:
            self.log_metrics(run_id, metrics, step=epoch)

        return hook

    def log_figure(self, run_id: str, fig, path: str) -> None:
        """Log a matplotlib figure as a PNG and close it."""
        import matplotlib.pyplot as plt

        try:
            self.client.log_figure(run_id, fig, path)
        finally:
            plt.close(fig)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_table(self, run_id: str, frame, path: str) -> None:
        """A DataFrame as MLflow's table artifact ``path`` (``mlflow.log_table``, ``.json``);
        MLflow appends to one the run has: a resumed run's is written whole again instead."""
        folder = path.rpartition("/")[0] or None
        if any(f.path == path for f in self.client.list_artifacts(run_id, folder)):
            text = frame.to_json(orient="split", index=False, date_format="iso")
            return self.client.log_text(run_id, text, path)
        self.client.log_table(run_id, frame, path)

    def log_artifacts(self, run_id: str, folder: str, path: str) -> None:
        self.client.log_artifacts(run_id, folder, path)
