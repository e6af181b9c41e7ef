"""Everything that touches MLflow lives here (the only module that imports ``mlflow``).

Training hands over a :class:`~bench.training.TrainResult`; this module decides how it
lands in the store: params, tags, per-epoch metrics (``step`` = epoch), test scores,
figures, CSV tables and an MLflow model that takes raw uint8 images.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import platform
import re
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bench import figures, owner
from bench.data import Splits, class_balance, summary
from bench.errors import TrackingError
from bench.training import HISTORY_KEYS, EpochHook, TrainResult

log = logging.getLogger(__name__)

# Reports download artifacts; MLflow's per-download progress bars would bury our output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
OWNER_TAG = "bench.owner"  # host:pid:start of the process that runs it (see bench.owner)
_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


# --------------------------------------------------------------------------- URIs


def redact(uri: str) -> str:
    """Hide the password (or token) in a URI: ``postgresql://u:***@host/db``."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return (uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI).strip()


def _sqlite_path(uri: str) -> Path:
    if not uri.startswith("sqlite:///"):
        raise TrackingError(f"malformed SQLite tracking URI {redact(uri)!r}: use sqlite:///path/to/mlflow.db")
    path = uri[len("sqlite:///") :]
    if not path or path.endswith("/"):
        raise TrackingError(f"malformed SQLite tracking URI {redact(uri)!r}: no database file named")
    return Path(path if path.startswith("/") or path == ":memory:" else path).expanduser()


def check_tracking_uri(uri: str) -> None:
    """Fail fast, before any run exists, on a malformed, unwritable or unreachable store."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme not in _SCHEMES:
        raise TrackingError(
            f"malformed tracking URI {redact(uri)!r}: expected sqlite:///path.db, "
            "http(s)://host:port, postgresql://..., or file:///dir"
        )
    if scheme == "sqlite":
        path = _sqlite_path(uri)
        folder = path.parent if str(path.parent) else Path(".")
        if folder.exists() and not folder.is_dir():
            raise TrackingError(f"tracking store folder {folder} is a file, not a folder")
        if not folder.is_dir():
            raise TrackingError(f"tracking store folder {folder} does not exist")
        target = path if path.exists() else folder
        if not os.access(target, os.W_OK):
            raise TrackingError(f"tracking store {path} is not writable")
        if path.exists():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
                    con.execute("select count(*) from sqlite_master").fetchone()
            except sqlite3.DatabaseError as exc:
                raise TrackingError(f"tracking store {path} is not an SQLite database: {exc}") from None
    elif scheme == "file":
        folder = Path(urllib.parse.urlsplit(uri).path)
        probe = folder if folder.exists() else folder.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK):
            raise TrackingError(f"tracking folder {folder} is not a writable directory")
    elif scheme in ("http", "https"):
        parts = urllib.parse.urlsplit(uri)
        if not parts.hostname:
            raise TrackingError(f"malformed tracking URI {redact(uri)!r}: no host")
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as resp:  # noqa: S310
                resp.read(64)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"tracking server {redact(uri)} is unreachable: {reason}") from None
    elif scheme in ("postgresql", "mysql", "mssql"):
        _check_database(uri, scheme)


def _check_database(uri: str, scheme: str) -> None:
    """The driver is installed and the database answers within 10 s (MLflow itself would
    retry for minutes, then print a traceback)."""
    import sqlalchemy
    import sqlalchemy.exc

    try:
        args = {"connect_timeout": 10} if scheme in ("postgresql", "mysql") else {}
        engine = sqlalchemy.create_engine(uri, connect_args=args)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as exc:
        raise TrackingError(
            f"tracking store {redact(uri)}: {_first_line(exc)} (is its database driver installed? "
            "for PostgreSQL: pip install 'bench[postgres]')"
        ) from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc)
        raise TrackingError(f"tracking store {redact(uri)} is unreachable: {reason}") from None
    finally:
        engine.dispose()


def check_artifact_location(location: str) -> None:
    """Fail before any run exists when a local artifact folder cannot be written (a server
    or cloud artifact store is checked when the first artifact is written)."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in ("", "file"):
        return
    folder = Path(urllib.request.url2pathname(parts.path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bench-write-check-"):
            pass
    except OSError as exc:
        raise TrackingError(f"artifact location {folder} is not writable: {exc.strerror or exc}") from None


def sanitize_name(name: str) -> str:
    """A safe file/folder name for an experiment or study (no separators, no traversal)."""
    cleaned = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", name)).strip(".-")
    return cleaned or "unnamed"


# --------------------------------------------------------------------------- environment


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out + ("-dirty" if dirty else "") if out else None


def environment_tags(device: str = "") -> dict[str, str]:
    import keras
    import optuna
    import tensorflow as tf

    tags = {
        "bench.version.python": platform.python_version(),
        "bench.version.tensorflow": tf.__version__,
        "bench.version.keras": keras.__version__,
        "bench.version.mlflow": mlflow.__version__,
        "bench.version.optuna": optuna.__version__,
        "bench.version.numpy": np.__version__,
        "bench.host.platform": platform.platform(),
        "bench.host.cpus": str(os.cpu_count()),
    }
    if device:
        tags["bench.device"] = device
    commit = _git_commit()
    if commit:
        tags["bench.git_commit"] = commit
    return tags


# --------------------------------------------------------------------------- the tracker


class Tracker:
    """One experiment in one store; opens runs and logs results into them."""

    def __init__(self, tracking_uri: str | None, experiment: str, *, description: str = "") -> None:
        self.uri = resolve_tracking_uri(tracking_uri)
        check_tracking_uri(self.uri)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        # `mlflow run` creates the run and passes it in MLFLOW_RUN_ID: our parent run adopts
        # it. Taken out of the environment, or MLflow would resume it for every child run too.
        self._adopted = os.environ.pop("MLFLOW_RUN_ID", None)
        adopted = self._adopted
        try:
            if adopted:
                self.experiment_id = self.client.get_run(adopted).info.experiment_id
                self._tag_experiment(self.experiment_id, description)
            else:
                self.experiment_id = self._ensure_experiment(experiment, description)
        except MlflowException as exc:
            raise TrackingError(f"tracking store {redact(self.uri)}: {_first_line(exc)}") from None
        experiment_entity = self.client.get_experiment(self.experiment_id)
        self.experiment_name = experiment_entity.name
        check_artifact_location(experiment_entity.artifact_location)

    # -- experiments

    def _artifact_location(self, name: str) -> str | None:
        if self.uri.startswith("sqlite:///"):
            db = _sqlite_path(self.uri).resolve()
            return (db.parent / "mlartifacts" / sanitize_name(name)).as_uri()
        return None

    def _ensure_experiment(self, name: str, description: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage == "deleted":
            raise TrackingError(
                f"experiment {name!r} is deleted in {redact(self.uri)}; restore it "
                "(mlflow experiments restore) or pick another with --experiment"
            )
        if exp is None:
            try:
                exp_id = self.client.create_experiment(name, artifact_location=self._artifact_location(name))
            except MlflowException as exc:
                # Another worker created it a moment ago (workers start together): use theirs.
                exp = self.client.get_experiment_by_name(name)
                if exc.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
        self._tag_experiment(exp_id, description)
        return exp_id

    def _tag_experiment(self, exp_id: str, description: str) -> None:
        exp = self.client.get_experiment(exp_id)
        wanted = {}
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            wanted[EXPERIMENT_KIND_TAG] = EXPERIMENT_KIND
        if description and not exp.tags.get("mlflow.note.content"):
            wanted["mlflow.note.content"] = description
        for key, value in wanted.items():
            try:
                self.client.set_experiment_tag(exp_id, key, value)
            except MlflowException:
                # Workers starting together race to set the same tag; theirs is as good.
                if key not in self.client.get_experiment(exp_id).tags:
                    raise

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
        from mlflow.tracking.context import registry

        all_tags = {"bench.kind": kind, OWNER_TAG: owner.identity(), **(tags or {})}
        if description:
            all_tags["mlflow.note.content"] = description
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        adopted, self._adopted = (self._adopted, None) if not parent_run_id else (None, self._adopted)
        existing = resume_run_id or adopted
        try:
            if existing:
                self.client.update_run(existing, status="RUNNING", name=name)
                run_id = existing
                self.set_tags(run_id, all_tags)
            else:
                run = self.client.create_run(
                    self.experiment_id, run_name=name, tags=registry.resolve_tags(all_tags)
                )
                run_id = run.info.run_id
            if params:
                self.log_params(run_id, params)
        except MlflowException as exc:
            raise TrackingError(f"cannot start a run in {redact(self.uri)}: {_first_line(exc)}") from None
        try:
            yield run_id
        except finished_on:
            self._end(run_id, "FINISHED")
            raise
        except KeyboardInterrupt:
            self._end(run_id, "KILLED", "interrupted (Ctrl-C or SIGTERM)")
            raise
        except BaseException as exc:
            self._end(run_id, "FAILED", f"{type(exc).__name__}: {exc}")
            if isinstance(exc, (OSError, MlflowException)):
                # A full disk, an unwritable artifact folder, a store that went away: the
                # half-written run is FAILED, and the user gets one line saying why.
                raise TrackingError(f"run {name!r} failed (marked FAILED): {_first_line(exc)}") from exc
            raise
        else:
            self._end(run_id, "FINISHED")

    def create_run(self, name: str, *, kind: str) -> str:
        """Create a run to be entered later with ``run(..., resume_run_id=...)`` (under
        ``mlflow run``, the run it created is the one returned)."""
        from mlflow.tracking.context import registry

        if self._adopted:
            run_id, self._adopted = self._adopted, None
            return run_id
        try:
            run = self.client.create_run(
                self.experiment_id,
                run_name=name,
                tags=registry.resolve_tags({"bench.kind": kind, OWNER_TAG: owner.identity()}),
            )
        except MlflowException as exc:
            raise TrackingError(f"cannot start a run in {redact(self.uri)}: {_first_line(exc)}") from None
        return run.info.run_id

    def _end(self, run_id: str, status: str, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            if reason:
                self.client.set_tag(run_id, "bench.error", redact(reason)[:5000])
        try:
            self.client.set_terminated(run_id, status)
        except MlflowException as exc:
            if status == "FINISHED":
                raise TrackingError(f"cannot end run {run_id} in {redact(self.uri)}: {_first_line(exc)}") from None
            # Already failing: keep the first error. The run stays RUNNING until the next
            # bench start on this host closes it (see close_stale_runs).
            log.warning("could not mark run %s %s: %s", run_id, status, _first_line(exc))

    def run_exists(self, run_id: str) -> bool:
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id

    def close_orphan(self, run_id: str, reason: str, *, state: str | None = "FAIL") -> bool:
        """End a run whose process died (it would otherwise stay RUNNING forever)."""
        with contextlib.suppress(MlflowException):
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.set_tags(run_id, {"bench.error": reason, **({"optuna.state": state} if state else {})})
                self.client.set_terminated(run_id, "FAILED")
                return True
        return False

    def close_stale_runs(self, kinds: Sequence[str]) -> list[str]:
        """FAIL this experiment's RUNNING runs of ``kinds`` whose process is certainly gone
        (killed on this host: see :mod:`bench.owner`); returns their names."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=10_000
        )
        closed = []
        for run in runs:
            tags = run.data.tags
            if tags.get("bench.kind") in kinds and owner.is_dead(tags.get(OWNER_TAG, "")):
                reason = f"its process ({tags[OWNER_TAG]}) died before the run ended"
                if self.close_orphan(run.info.run_id, reason, state=None):
                    closed.append(run.info.run_name)
        return closed

    def close_stale_children(self, parent_run_id: str, keep: set[str | None]) -> list[str]:
        """Fail child runs still RUNNING under ``parent_run_id`` (left by killed processes)."""
        closed = []
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'",
        )
        for run in runs:
            if run.info.run_id not in keep:
                self.close_orphan(run.info.run_id, "its process died before the run ended")
                closed.append(run.info.run_id)
        return closed

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        from mlflow.entities import Param

        items = [Param(k, redact(str(v))[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def set_tags(self, run_id: str, tags: Mapping[str, object]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, redact(str(v))[:5000]) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def epoch_hook(self, run_id: str) -> EpochHook:
        """Per-epoch metrics straight into the store, so a crash loses nothing logged so far."""

        def hook(epoch: int, metrics: Mapping[str, float]) -> None:
            self.log_metrics(run_id, metrics, step=epoch)

        return hook

    # -- artifacts

    def log_figure(self, run_id: str, fig, path: str) -> None:
        try:
            self.client.log_figure(run_id, fig, path)
        finally:
            figures.close(fig)

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self.client.log_text(run_id, text, path)

    def log_training(self, run_id: str, result: TrainResult, *, splits: Splits, log_model: bool = True) -> str | None:
        """Test scores, status, figures, tables and the model of one finished training run."""
        class_names = list(splits.class_names)
        self.set_tags(
            run_id,
            {
                "bench.status": result.status,
                "bench.device": result.device,
                **({"bench.status_message": result.message} if result.message else {}),
            },
        )
        summary = {
            "test_loss": result.test_loss,
            "test_accuracy": result.test_accuracy,
            "best_val_accuracy": result.best_val_accuracy,
            "best_epoch": result.best_epoch,
            "final_val_accuracy": result.final_val_accuracy,
            "train_seconds": result.train_seconds,
            "epochs_run": result.epochs_run,
        }
        self.log_metrics(run_id, {k: v for k, v in summary.items() if v is not None})
        history = pd.DataFrame({k: result.history[k] for k in HISTORY_KEYS})
        history.index.name = "epoch"
        self.log_text(run_id, history.to_csv(), "history.csv")
        title = f"{result.variant} (seed {result.hparams.seed})"
        if result.epochs_run:
            self.log_figure(run_id, figures.learning_curves(result.history, title), "figures/learning_curves.png")
        if result.confusion is not None:
            cm = pd.DataFrame(result.confusion, index=list(class_names), columns=list(class_names))
            cm.index.name = "true \\ predicted"
            self.log_text(run_id, cm.to_csv(), "confusion_matrix.csv")
            self.log_figure(
                run_id, figures.confusion_matrix(result.confusion, class_names, title), "figures/confusion_matrix.png"
            )
        if result.test_predictions is not None:
            self._log_predictions(run_id, result.test_predictions, splits, title)
        model_uri = None
        if result.model is not None and result.status != "diverged":
            from bench.models import weight_tensors

            self.log_figure(
                run_id, figures.weight_violins(weight_tensors(result.model), title), "figures/weights_violin.png"
            )
            self._log_batch_norm(run_id, result.model, title)
            if log_model:
                model_uri = self.log_model(run_id, result.model, scale=splits.scale, offset=splits.offset)
        return model_uri

    def _log_predictions(self, run_id: str, predicted: np.ndarray, splits: Splits, title: str, n: int = 25) -> None:
        """The first 25 test images captioned "GT: true, P: predicted" (seed 003), mistakes in red."""
        names = splits.class_names
        truth = splits.y_test[:n]
        guess = predicted[:n]
        labels = [f"GT: {names[t]}\nP: {names[p]}" for t, p in zip(truth, guess, strict=True)]
        fig = figures.image_grid(
            splits.raw(splits.x_test[:n]), labels, f"{title}: first {len(truth)} test images",
            wrong=list(truth != guess),
        )
        self.log_figure(run_id, fig, "figures/test_predictions.png")

    def _log_batch_norm(self, run_id: str, model, title: str) -> None:
        """Each batch-norm layer's gamma, beta, moving mean and variance per channel (seed 002)."""
        from bench.models import batch_norm_parameters

        found = batch_norm_parameters(model)
        if not found:
            return
        frame = pd.concat(
            [
                pd.DataFrame({"layer": name, "channel": np.arange(len(v["moving_mean"])), **v})
                for name, v in found.items()
            ],
            ignore_index=True,
        )
        self.log_text(run_id, frame.to_csv(index=False), "batch_norm/parameters.csv")
        means = frame.groupby("layer", sort=False)[["gamma", "beta", "moving_mean", "moving_variance"]].mean()
        means.insert(0, "channels", frame.groupby("layer", sort=False).size())
        self.log_text(run_id, to_markdown(means.reset_index()), "batch_norm/summary.md")
        self.log_figure(
            run_id, figures.batch_norm_parameters(frame, f"{title}: batch-norm parameters per channel"),
            "batch_norm/parameters.png",
        )

    def log_model(self, run_id: str, model, *, scale: float = 1.0 / 255.0, offset: float = 0.0) -> str:
        """Log the model as an MLflow Keras model that takes raw uint8 images."""
        import keras
        import tensorflow as tf
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        from bench.models import serving_model

        serving = serving_model(model, scale=scale, offset=offset)
        shape = (-1, *model.input_shape[1:])
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.uint8), shape, "raw_image")]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, model.output_shape[-1]))]),
        )
        with _active(run_id):
            info = mlflow.keras.log_model(
                serving,
                name="model",
                signature=signature,
                pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
            )
        self.set_tags(run_id, {"bench.model_uri": info.model_uri})
        return info.model_uri

    def log_comparison(
        self,
        run_id: str,
        table: pd.DataFrame,
        histories: Mapping[str, Mapping[str, list[float]]],
        groups: Mapping[str, str],
        *,
        title: str,
        splits: Splits | None = None,
        notes: Sequence[str] = (),
        reference_source: str = "",
        summary: pd.DataFrame | None = None,
        rankings: Mapping[str, object] | None = None,
        tuning_effect: pd.DataFrame | None = None,
    ) -> None:
        """The comparison table (CSV, Markdown with the study's notes), overlays per group,
        the accuracy chart, accuracy against depth, and the dataset summary."""
        self.log_text(run_id, table.to_csv(index=False), "comparison.csv")
        self.log_text(run_id, comparison_markdown(table, title, notes, reference_source), "comparison.md")
        if notes:
            self.log_text(run_id, "\n".join(f"- {n}" for n in notes) + "\n", "notes.md")
        for group in sorted(set(groups.values())):
            members = {run: h for run, h in histories.items() if groups[run] == group and h["accuracy"]}
            if members:
                fig = figures.overlay(members, f"{title}: {group} variants, train (solid) vs validation (dashed)")
                self.log_figure(run_id, fig, f"figures/overlay_{sanitize_name(group)}.png")
        if table["test_accuracy"].notna().any():
            self.log_figure(run_id, figures.test_accuracy_chart(table, f"{title}: test accuracy"), "figures/test_accuracy.png")
        depth = _depth_table(table)
        if depth is not None:
            self.log_figure(
                run_id, figures.accuracy_vs_depth(depth, f"{title}: test accuracy vs hidden layers"),
                "figures/accuracy_vs_depth.png",
            )
        if splits is not None:
            self.log_dataset(run_id, splits, title)
        if summary is not None:
            self.log_seed_statistics(run_id, table, summary, rankings or {}, tuning_effect, histories, groups,
                                     title=title)
        for row in table.itertuples():
            self.log_metrics(
                run_id,
                {f"{row.run}.test_accuracy": row.test_accuracy, f"{row.run}.test_loss": row.test_loss},
            )

    def log_seed_statistics(
        self,
        run_id: str,
        table: pd.DataFrame,
        summary: pd.DataFrame,
        rankings: Mapping[str, object],
        tuning_effect: pd.DataFrame | None,
        histories: Mapping[str, Mapping[str, list[float]]],
        groups: Mapping[str, str],
        *,
        title: str,
    ) -> None:
        """Over-seeds statistics: the summary table, aggregate metrics, rankings, bands."""
        self.log_text(run_id, summary.to_csv(index=False), "summary.csv")
        self.log_text(run_id, to_markdown(summary), "summary.md")
        metrics: dict[str, float] = {}
        for r in summary.itertuples():
            key = r.variant if r.setting == "default" else f"{r.variant}/{r.setting}"
            for stat in ("mean", "std", "ci95_low", "ci95_high"):
                for what in ("test_accuracy", "test_loss"):
                    value = getattr(r, f"{what}_{stat}")
                    if value is not None and math.isfinite(value):
                        metrics[f"{key}.{what}.{stat}"] = float(value)
        self.log_metrics(run_id, metrics)
        for setting, ranking in rankings.items():
            suffix = "" if setting == "default" else f"_{sanitize_name(setting)}"
            self.log_text(run_id, ranking.table().to_csv(index=False), f"ranking{suffix}.csv")
            self.log_text(run_id, ranking.pvalues.to_csv(), f"ranking{suffix}_pvalues.csv")
            if ranking.friedman_p is not None:
                self.log_metrics(run_id, {f"friedman_p{suffix}": ranking.friedman_p})
            fig = figures.ranking_diagram(
                ranking.mean_rank, ranking.pvalues, ranking.omnibus_rejects,
                f"{title}: mean rank on test accuracy over {len(ranking.scores)} seeds ({setting})",
            )
            self.log_figure(run_id, fig, f"figures/ranking{suffix}.png")
        if tuning_effect is not None:
            self.log_text(run_id, tuning_effect.to_csv(index=False), "tuning_effect.csv")
        if int(summary["seeds"].max()) > 1:
            by_variant: dict[str, list] = {}
            variant_group: dict[str, str] = {}
            for row in table.itertuples():
                key = row.variant if row.setting == "default" else f"{row.variant}/{row.setting}"
                by_variant.setdefault(key, []).append(histories[row.run])
                variant_group[key] = groups[row.run]
            for group in sorted(set(variant_group.values())):
                members = {k: v for k, v in by_variant.items() if variant_group[k] == group}
                fig = figures.learning_curve_bands(members, f"{title}: {group} variants")
                self.log_figure(run_id, fig, f"figures/curves_{sanitize_name(group)}.png")

    def log_dataset(self, run_id: str, splits: Splits, title: str) -> None:
        """The data a comparison ran on: summary, class balance per split (seed 000 checked
        it) and the first 25 development and test images with their class names (seed 003)."""
        names = list(splits.class_names)
        balance = class_balance(splits)
        frame = pd.DataFrame(balance, index=names)
        frame.index.name = "class"
        self.log_text(run_id, frame.to_csv(), "dataset/class_balance.csv")
        self.log_figure(run_id, figures.class_balance(balance, names, f"{title}: class balance"),
                        "dataset/class_balance.png")
        lines = [f"# Dataset: {splits.task}", ""]
        for key, value in summary(splits, balance).items():
            lines.append(f"- **{key}**: {value}")
        lines += ["", "## Images per class", "", to_markdown(frame.reset_index())]
        self.log_text(run_id, "\n".join(lines) + "\n", "dataset/summary.md")
        dev_x = splits.x_train[:25]  # the development set starts with the training split
        dev = figures.image_grid(splits.raw(dev_x), [names[y] for y in splits.y_train[:25]],
                                 f"{splits.task}: first 25 development images")
        self.log_figure(run_id, dev, "dataset/samples_development.png")
        test = figures.image_grid(splits.raw_test_images()[:25], [names[y] for y in splits.y_test[:25]],
                                  f"{splits.task}: first 25 test images")
        self.log_figure(run_id, test, "dataset/samples_test.png")

    def log_report(self, run_id: str) -> None:
        """Build the run's report from the store (as ``bench report`` would) and log it
        under ``report/``. A report that fails to build is a warning, not a lost comparison."""
        from bench import report

        try:
            stored = StoreReader(self.uri, self.client).load(run_id)
            built = report.build(stored)
            with tempfile.TemporaryDirectory() as tmp:
                built.write(Path(tmp))
                self.client.log_artifacts(run_id, tmp, "report")
        except OSError:
            raise  # a full disk or an unwritable artifact folder fails the run, not just the report
        except Exception as exc:  # noqa: BLE001 - everything else is already logged
            log.warning("the report could not be built: %s", exc)
            self.set_tags(run_id, {"bench.report_error": _first_line(exc)[:500]})

    def run_url(self, run_id: str) -> str:
        return f"#/experiments/{self.experiment_id}/runs/{run_id}"


# --------------------------------------------------------------------------- reading back


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
        if self.uri.startswith("sqlite:///") and not _sqlite_path(self.uri).exists():
            raise TrackingError(f"no MLflow store at {redact(self.uri)}")
        self.client = client or MlflowClient(self.uri)

    def parents(self, experiment: str | None = None, run_ids: Sequence[str] = ()) -> list[str]:
        """The given runs, or the newest comparison / tuning parent of ``experiment``."""
        try:
            if run_ids:
                for run_id in run_ids:
                    self.client.get_run(run_id)
                return list(run_ids)
            if experiment is None:
                raise TrackingError("name the runs (--run-id) or the experiment (--experiment) to report on")
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                names = sorted(e.name for e in self.client.search_experiments())
                raise TrackingError(f"no experiment {experiment!r} in {redact(self.uri)}; known: {', '.join(names)}")
            runs = [
                run
                for kind in ("comparison", "study")
                for run in self.client.search_runs(
                    [exp.experiment_id], f"tags.`bench.kind` = '{kind}'",
                    order_by=["attributes.start_time DESC"], max_results=1,
                )
            ]
            runs.sort(key=lambda r: r.info.start_time or 0, reverse=True)
        except MlflowException as exc:
            raise TrackingError(f"{redact(self.uri)}: {_first_line(exc)}") from None
        if not runs:
            raise TrackingError(f"experiment {experiment!r} holds no comparison or tuning run")
        return [runs[0].info.run_id]

    def load(self, parent_run_id: str) -> StoredComparison:
        try:
            parent = self.client.get_run(parent_run_id)
            children = self.client.search_runs(
                [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                order_by=["attributes.start_time ASC"], max_results=10_000,
            )
            experiment = self.client.get_experiment(parent.info.experiment_id).name
            stored = [self._stored(r, with_history=r.data.tags.get("bench.kind") in ("train", "tuned"))
                      for r in children]
        except MlflowException as exc:
            raise TrackingError(f"{redact(self.uri)}: {_first_line(exc)}") from None
        return StoredComparison(self.uri, experiment, self._stored(parent), stored, self._artifact)

    def _stored(self, run, *, with_history: bool = False) -> StoredRun:
        histories = {}
        if with_history:
            for key in HISTORY_KEYS:
                points = sorted(self.client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
                histories[key] = [m.value for m in points]
        return StoredRun(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id,
            kind=run.data.tags.get("bench.kind", ""),
            status=run.info.status,
            start_time=run.info.start_time or 0,
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            histories=histories,
        )

    def _artifact(self, run_id: str, path: str, dst: Path) -> Path | None:
        dst.mkdir(parents=True, exist_ok=True)
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dst)))
        except (MlflowException, OSError):
            return None


@contextlib.contextmanager
def _active(run_id: str) -> Iterator[None]:
    """Make ``run_id`` the fluent active run for a flavour's ``log_model`` (which logs to the
    active run). Leaving it marks the run FINISHED; :meth:`Tracker.run` sets the final status
    right after, so a later failure still ends it FAILED."""
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        yield


def _depth_table(table: pd.DataFrame) -> pd.DataFrame | None:
    """Rows for the accuracy-vs-depth figure, when some family was run at two depths or more."""
    from bench.variants import get_variant

    rows = table.dropna(subset=["test_accuracy"])
    if rows.empty:
        return None
    rows = rows.assign(
        family=[get_variant(v).family for v in rows["variant"]],
        hidden_layers=[get_variant(v).hidden_layers for v in rows["variant"]],
    )
    if rows.groupby("family")["hidden_layers"].nunique().max() < 2:
        return None
    return rows


def comparison_markdown(table: pd.DataFrame, title: str, notes: Sequence[str] = (), source: str = "") -> str:
    """The comparison table as Markdown, under the study's notes on its protocol."""
    parts = [f"# {title}", ""]
    if source:
        parts += [f"Reference numbers: {source}.", ""]
    if notes:
        parts += ["## Notes on the protocol", "", *[f"- {n}" for n in notes], ""]
    parts += [to_markdown(table), ""]
    return "\n".join(parts)


def to_markdown(table: pd.DataFrame) -> str:
    buf = io.StringIO()
    table.to_markdown(buf, index=False, floatfmt=".4f")
    return buf.getvalue() + "\n"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0]) if text else type(exc).__name__


def browse_hint(uri: str, experiment_id: str | None = None) -> str:
    """How to look at the runs: a server's page, or the ``mlflow ui`` command for a local store."""
    if uri.startswith(("http://", "https://")):
        page = f"{redact(uri).rstrip('/')}/#/experiments"
        return f"{page}/{experiment_id}" if experiment_id else page
    return f"mlflow ui --backend-store-uri {redact(uri)} --host 127.0.0.1 --port 5000"
