"""System metrics of training runs (a private helper of :mod:`bench.store.tracker`).

MLflow's own monitor (``mlflow.system_metrics``: CPU, memory, disk and network through
``psutil``; NVIDIA GPUs through ``pynvml`` where installed) samples while a run trains and
logs ``system/*`` metrics, the run page's "System metrics" tab. MLflow logs a sample only
after a full sampling interval, so a run shorter than that (a pruned one-epoch trial) would
have none: each run also gets one closing sample when it ends.

Why not MLflow's public switch: ``mlflow.start_run(log_system_metrics=True)`` (or
``mlflow.enable_system_metrics_logging()``) starts a monitor for the fluent *active* run of
the calling thread only, while bench opens its runs through ``MlflowClient`` and keeps
several open at once (a population's members, parallel trials). So this drives MLflow's own
``SystemMetricsMonitor`` per run; its ``start`` / ``finish`` are what the fluent API calls.
The closing sample uses the monitor's collect / publish methods, which are not public: they
are called inside ``contextlib.suppress`` and a change in them costs only that last sample
(``tests/test_mlflow3.py`` checks that training runs still get system metrics).
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger(__name__)

#: Seconds between samples (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides it).
SAMPLING_SECONDS = 5.0
#: Set to "false" to record no system metrics (MLflow's own switch, read here as an opt-out).
SWITCH_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"


class SystemMetrics:
    """One MLflow monitor per training run that is open."""

    def __init__(self, tracking_uri: str) -> None:
        self.uri = tracking_uri
        self._monitors: dict[str, object] = {}
        self._warned = False

    @property
    def enabled(self) -> bool:
        return os.environ.get(SWITCH_ENV, "").strip().lower() not in ("false", "0", "no")

    def start(self, run_id: str) -> None:
        if not self.enabled or run_id in self._monitors:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError as exc:  # psutil missing: say so once, train anyway
            if not self._warned:
                log.warning("no system metrics: %s (pip install psutil)", exc)
                self._warned = True
            return
        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=SAMPLING_SECONDS, tracking_uri=self.uri
        )
        monitor.start()
        self._monitors[run_id] = monitor

    def stop(self, run_id: str) -> None:
        """Stop the run's monitor and log its closing sample (before the run is ended)."""
        monitor = self._monitors.pop(run_id, None)
        if monitor is None:
            return
        monitor.finish()
        with contextlib.suppress(Exception):  # never fail a run over its system metrics
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
