"""Ctrl-C and SIGTERM at many random moments of real ``bench`` processes.

``bench compare --seeds 2`` and ``bench tune --workers 2`` are started as the user starts
them and sent SIGTERM (to the process, as ``kill`` does) or SIGINT (to its process group, as
a terminal's Ctrl-C does) at seeded random moments: right after the process starts, after a
given progress line (data loaded, parent run open, an epoch, a "done in", a finished trial,
the retraining), each plus a random delay. Every time the process must exit non-zero within
:data:`EXIT_WITHIN` seconds of the signal, leave no run RUNNING (and no trial RUNNING),
create no run and log no epoch after the signal (a :data:`MARGIN` allows for the store call
in progress when it arrived), and never hand a run to the stale-run clean-up of the next
start. The same command run again afterwards completes the work (a comparison resumes the
last interrupted one: its finished runs are kept, the rest trained).

Several signalled runs share one store (a lane): signal, check, run again and signal again,
and finally run to completion. The lanes run side by side.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from bench import stopping
from bench.result import HISTORY_KEYS
from tests.support import study_yaml

REPO = Path(__file__).resolve().parent.parent
SEED = 20240613
#: Seconds from the signal to the process's exit (a signal during an XLA compilation waits
#: for it: the compiled call ends, the next boundary stops it; then the interpreter exits).
#: Measured on 2 cores: 2-8 s, up to 25 s while other work held the load average at 8-10.
EXIT_WITHIN = 45.0
#: Seconds a run's start or an epoch's metric may follow the signal: the store call in progress
#: when it arrived finishes, the next boundary stops the work.
MARGIN = 1.5
INTERRUPTED = "error: interrupted; open runs were closed as KILLED"


@dataclass(frozen=True)
class Moment:
    """Send ``sig`` ``delay`` seconds after the first stderr line matching ``after`` (None: after
    the process started); SIGINT goes to the process group, as a terminal's Ctrl-C does."""

    after: str | None
    delay: float
    sig: signal.Signals

    def __str__(self) -> str:
        return f"{self.sig.name} {self.delay:.2f}s after {self.after or 'start'}"


@dataclass
class Shot:
    """One signalled (or, with no moment, completed) run of a command."""

    moment: Moment | None
    started: float = 0.0  # time.time()
    sent: float | None = None  # time.time() just before the signal
    returncode: int | None = None
    exit_after: float | None = None  # seconds from the signal to the exit
    lag: float = 0.0  # seconds from the signal to the last run created or epoch logged
    lines: list[str] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


#: (regex of the progress line, most seconds after it) for each command.
COMPARE_ANCHORS = [
    (None, 1.6),  # before the handlers, or while the data or TensorFlow load
    (r"^comparison ", 1.5),  # the parent run is open; the first population compiles
    (r"epoch 1/2", 0.3),  # between two epochs
    (r"done in", 0.1),  # the first population is done: its models are released (gc)
    (r"\[4/4\].*done in", 1.0),  # the comparison's figures and report
]
# (An interrupt in the second population and its resume: tests/test_tracking.py.)
TUNE_ANCHORS = [
    (r"^tuning ", 3.0),  # the study's run is open; the workers start
    (r"^\[w\d\] loaded ", 2.0),  # a worker asks for trials and trains them
    (r"trial #\d+ (COMPLETE|PRUNED)", 0.1),  # right after a trial finished
]
#: Last in a tuning lane, in this order: once a retraining is recorded, a run whose new trials
#: do not beat the best has nothing to retrain.
TUNE_LAST = [
    (r"retraining the best", 1.0),
    (r"tuned\] done in", 0.5),  # the study's figures and report
]


def _moments(
    rng: random.Random, anchors: list[tuple[str | None, float]], count: int, *, shuffle: bool = True
) -> list[Moment]:
    """``count`` moments after the ``anchors`` (shuffled unless told), SIGTERM and SIGINT in
    turn."""
    picked = (rng.sample(anchors, len(anchors)) if shuffle else anchors) * (
        count // len(anchors) + 1
    )
    signals = [signal.SIGTERM, signal.SIGINT][rng.randrange(2) :] + [signal.SIGTERM, signal.SIGINT]
    return [
        Moment(after, rng.uniform(0.0, most), signals[i % 2])
        for i, (after, most) in enumerate(picked[:count])
    ]


def _env(folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
        "BENCH_CACHE_DIR": str(folder / "bench-cache"),
        "KERAS_HOME": str(folder / "keras-home"),
    }


def _run(cmd: list[str], folder: Path, moment: Moment | None) -> Shot:
    """Run ``cmd`` in ``folder``; at ``moment``, signal it; wait for it to exit."""
    shot = Shot(moment, started=time.time())
    proc = subprocess.Popen(
        cmd,
        cwd=folder,
        env=_env(folder),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen = threading.Event()
    pattern = re.compile(moment.after) if moment and moment.after else None

    def read() -> None:
        for line in proc.stderr:
            shot.lines.append(line.rstrip("\n"))
            if pattern is not None and pattern.search(line):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if moment is not None:
            deadline = time.monotonic() + 300
            while pattern is not None and not seen.wait(0.05):
                assert proc.poll() is None, (
                    f"{moment}: exited before the line\n" + shot.stderr[-3000:]
                )
                assert time.monotonic() < deadline, (
                    f"{moment}: no such line in 300 s\n" + shot.stderr[-3000:]
                )
            time.sleep(moment.delay)
            assert proc.poll() is None, (
                f"{moment}: exited before the signal\n" + shot.stderr[-3000:]
            )
            shot.sent = time.time()
            if moment.sig == signal.SIGINT:
                os.killpg(proc.pid, signal.SIGINT)
            else:
                proc.send_signal(signal.SIGTERM)
        shot.returncode = proc.wait(timeout=600 if moment is None else EXIT_WITHIN + 60)
        if shot.sent is not None:
            shot.exit_after = time.time() - shot.sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
    return shot


# --------------------------------------------------------------------------- in this process


def test_a_signal_is_recorded_and_the_work_stops_at_its_next_check():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(stopping.Interrupted, match="SIGTERM"), stopping.handling():
        stopping.check()  # nothing requested: goes on
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopping.requested()[0] == "SIGTERM"  # recorded, nothing raised
        with pytest.raises(stopping.Interrupted, match="again"):
            os.kill(os.getpid(), signal.SIGINT)  # a second signal: at once
            time.sleep(1)  # the handler runs at the next bytecode, well before this ends
        with pytest.raises(stopping.Interrupted):
            stopping.sleep(30)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert stopping.requested() is None


def test_inside_at_once_a_signal_raises_at_once():
    with pytest.raises(stopping.Interrupted), stopping.handling(), stopping.at_once():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
        pytest.fail("not raised")


@pytest.mark.parametrize("engine", ["compiled", "keras"])
def test_training_stops_at_the_boundary_after_the_signal(tiny_splits, engine):
    """The signal arrives during the first epoch's hooks: no second epoch is trained or recorded."""
    from bench import training
    from bench.models import HParams, get_variant

    epochs = []

    def hook(epoch, metrics):
        epochs.append(epoch)
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(stopping.Interrupted), stopping.handling():
        training.train(
            get_variant("vanilla-shallow"),
            HParams(epochs=3, batch_size=64),
            tiny_splits,
            on_epoch=[hook],
            engine=engine,
        )
    assert epochs == [0]


def test_a_run_interrupted_while_it_opens_ends_killed(tracking_uri, client, monkeypatch):
    from bench.store.tracker import Tracker

    tracker = Tracker(tracking_uri, "opening")

    def interrupted(*args, **kwargs):
        raise stopping.Interrupted("interrupted (SIGTERM)")

    monkeypatch.setattr(tracker, "log_params", interrupted)
    with pytest.raises(stopping.Interrupted), tracker.run("r", kind="train", params={"a": 1}):
        pytest.fail("the body must not run")
    [run] = client.search_runs([tracker.experiment_id])
    assert run.info.status == "KILLED"


# --------------------------------------------------------------------------- reading back


def _runs(folder: Path) -> list:
    if not (folder / "mlflow.db").exists():
        return []
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiments = client.search_experiments(view_type=ViewType.ALL)
    if not experiments:
        return []
    return client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=1000
    )


def _trials(folder: Path, study_name: str) -> list:
    from bench.tuning import open_storage

    if not (folder / "optuna.journal").exists():
        return []
    try:
        return optuna.load_study(
            study_name=study_name, storage=open_storage(f"journal://{folder}/optuna.journal")
        ).trials
    except KeyError:
        return []


def _last_epoch_ms(client: MlflowClient, run) -> int:
    """When the run's last epoch was logged (0: none)."""
    keys = [key for key in run.data.metrics if key in HISTORY_KEYS]
    return max(
        (m.timestamp for key in keys for m in client.get_metric_history(run.info.run_id, key)),
        default=0,
    )


def _check_stopped(shot: Shot, folder: Path, study_name: str | None = None) -> float:
    """What must hold after every signal; returns how long after it the store was last written."""
    where = f"{shot.moment}:\n" + shot.stderr[-3000:]
    assert shot.returncode != 0, where
    assert shot.exit_after is not None and shot.exit_after <= EXIT_WITHIN, (
        f"exit {shot.exit_after:.1f}s after " + where
    )
    errors = [line for line in shot.lines if line.startswith("error:")]
    if (
        shot.returncode == 130
    ):  # else the signal came before the handlers or after the command ended
        assert errors[-1:] == [INTERRUPTED], where
    assert "Exception ignored" not in shot.stderr, where
    assert "left RUNNING by a killed" not in shot.stderr and "its worker" not in shot.stderr, where
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    limit = (shot.sent + MARGIN) * 1000
    last = 0.0
    for run in _runs(folder):
        assert run.info.status != "RUNNING", f"run {run.info.run_name} left RUNNING; " + where
        if run.info.start_time < shot.started * 1000:
            continue  # an earlier shot's, checked then
        assert run.info.status in ("FINISHED", "KILLED"), (
            f"{run.info.run_name} {run.info.status}; " + where
        )
        written = max(run.info.start_time, _last_epoch_ms(client, run))
        if run.info.status == "FINISHED":
            written = max(written, run.info.end_time)
        assert written <= limit, (
            f"{run.info.run_name} written {written / 1000 - shot.sent:.2f}s after " + where
        )
        last = max(last, written / 1000 - shot.sent)
    if study_name is not None:
        for trial in _trials(folder, study_name):
            assert trial.state != TrialState.RUNNING, (
                f"trial #{trial.number} left RUNNING; " + where
            )
            start = trial.datetime_start.timestamp() if trial.datetime_start else 0  # None: WAITING
            if start >= shot.started:
                assert start <= limit / 1000, (
                    f"trial #{trial.number} started {start - shot.sent:.2f}s after; " + where
                )
    return last


# --------------------------------------------------------------------------- the lanes


def _compare_lane(folder: Path, moments: list[Moment]) -> list[Shot]:
    folder.mkdir()
    study = folder / "sig.yaml"
    study.write_text(study_yaml("sig", variants=["vanilla-shallow", "batchnorm-shallow"], epochs=2))
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "compare",
        "--study",
        str(study),
        "--seeds",
        "2",
        "--no-model",
    ]
    shots = []
    for moment in moments:  # --fresh: each signalled run has the whole comparison ahead of it
        shot = _run([*cmd, "--fresh"], folder, moment)
        shot.lag = _check_stopped(shot, folder)
        shots.append(shot)
    interrupted = [r for r in _runs(folder) if r.data.tags["bench.kind"] == "comparison"]
    final = _run(cmd, folder, None)
    assert final.returncode == 0, final.stderr[-3000:]
    # The rerun resumed the last interrupted comparison: one parent FINISHED, holding exactly
    # the four runs, FINISHED and tested, whichever attempt trained them; the unfinished deleted.
    runs = _runs(folder)
    [parent] = [
        r for r in runs if r.data.tags["bench.kind"] == "comparison" and r.info.status == "FINISHED"
    ]
    children = [
        r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
        and r.info.lifecycle_stage == "active"
    ]
    assert sorted(r.info.run_name for r in children) == sorted(
        f"{v}/s{s}" for v in ("vanilla-shallow", "batchnorm-shallow") for s in (0, 1)
    )
    assert {r.info.status for r in children} == {"FINISHED"}
    assert all("test_accuracy" in r.data.metrics for r in children)
    assert not [r for r in runs if r.info.status not in ("FINISHED", "KILLED")]
    assert not [
        r
        for r in runs
        if r.info.status == "KILLED"
        and r.info.lifecycle_stage == "active"
        and r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    if interrupted:
        newest = max(interrupted, key=lambda r: r.info.start_time)
        assert f"resuming comparison {newest.info.run_id}" in final.stderr, final.stderr[-3000:]
        assert parent.info.run_id == newest.info.run_id
    return shots


#: A comparison that registers its models: signals right after a registration (the run is
#: complete but still open), and at random moments around them.
REGISTER_ANCHORS = [
    (r"registered \S+ version", 0.05),  # the version exists; its run has not ended yet
    (r"registered \S+ version", 0.6),
    (r"epoch 1/2", 0.3),
]


def _check_registry(folder: Path) -> dict[str, object]:
    """No registered version points at a deleted or unfinished run; returns each model's
    versions' run ids and its alias's run id."""
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    out = {}
    for model in client.search_registered_models():
        versions = client.search_model_versions(f"name = '{model.name}'")
        for version in versions:
            run = client.get_run(version.run_id)
            assert run.info.lifecycle_stage == "active", (
                f"{model.name} v{version.version}: run deleted"
            )
            assert run.info.status == "FINISHED", (
                f"{model.name} v{version.version}: run {run.info.status}"
            )
        aliases = {
            alias: client.get_model_version_by_alias(model.name, alias).run_id
            for alias in model.aliases
        }
        out[model.name] = ({v.run_id for v in versions}, aliases)
    return out


def _register_lane(folder: Path, moments: list[Moment]) -> list[Shot]:
    """``compare --register`` signalled (right after a registration, and around it), each
    time checked: no version points at an unfinished or deleted run; the rerun resumes the
    last one and every run of it is registered, the alias on the first seed's."""
    folder.mkdir()
    study = folder / "sigreg.yaml"
    study.write_text(study_yaml("sigreg", variants=["vanilla-shallow"], epochs=2))
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "compare",
        "--study",
        str(study),
        "--seeds",
        "2",
        "--register",
    ]
    shots = []
    for moment in moments:  # --fresh: each signalled run has the whole comparison ahead of it
        shot = _run([*cmd, "--fresh"], folder, moment)
        shot.lag = _check_stopped(shot, folder)
        _check_registry(folder)
        shots.append(shot)
    final = _run(cmd, folder, None)
    assert final.returncode == 0, final.stderr[-3000:]
    runs = _runs(folder)
    [parent] = [
        r for r in runs if r.data.tags["bench.kind"] == "comparison" and r.info.status == "FINISHED"
    ]
    children = {
        r.data.tags["bench.seed"]: r.info.run_id
        for r in runs
        if r.info.lifecycle_stage == "active"
        and r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert sorted(children) == ["0", "1"]
    [(registered, aliases)] = _check_registry(folder).values()
    assert (
        set(children.values()) <= registered
    )  # every finished run of the comparison is registered
    assert aliases == {"default": children["0"]}
    return shots


TUNE_STUDY = "sig-tune"


def _tune_lane(folder: Path, moments: list[Moment]) -> list[Shot]:
    """Each signalled run wants two finished trials more than the one before, so every run has
    trials to train; the last command, run again, completes the study."""
    folder.mkdir()
    study = folder / "sigtune.yaml"
    study.write_text(study_yaml("sigtune", variants=["vanilla-shallow"], epochs=2, batch_size=64))

    def cmd(trials: int, population: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench",
            "tune",
            "--study",
            str(study),
            "--workers",
            "2",
            "--trials",
            str(trials),
            "--population",
            str(population),
            "--study-name",
            TUNE_STUDY,
            "--storage",
            f"journal://{folder}/optuna.journal",
        ]

    shots = []
    for i, moment in enumerate(moments, start=1):
        shot = _run(cmd(2 * i, 1 + i % 2), folder, moment)  # solo and population workers in turn
        shot.lag = _check_stopped(shot, folder, TUNE_STUDY)
        shots.append(shot)
    wanted = 2 * len(moments)
    final = _run(cmd(wanted, 1 + len(moments) % 2), folder, None)
    assert final.returncode == 0, final.stderr[-3000:]
    trials = _trials(folder, TUNE_STUDY)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == wanted
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    runs = _runs(folder)
    by_id = {r.info.run_id: r for r in runs}
    for t in trials:
        run = by_id.get(t.user_attrs.get("mlflow_run_id"))
        if t.state == TrialState.FAIL:
            assert run is None or run.info.status == "KILLED", t.number
        else:
            assert run is not None and run.info.status == "FINISHED", t.number
    [parent] = [r for r in runs if r.data.tags.get("bench.kind") == "study"]
    assert parent.info.status == "FINISHED"
    tuned = [r for r in runs if r.data.tags.get("bench.kind") == "tuned"]
    assert [r.info.status for r in tuned if r.info.start_time >= final.started * 1000] in (
        ["FINISHED"],
        [],
    )
    assert [r for r in tuned if r.info.status == "FINISHED"], "the best trial was never retrained"
    assert not [r for r in runs if r.info.status not in ("FINISHED", "KILLED")]
    return shots


@pytest.mark.long
def test_signals_at_random_moments_stop_every_time_and_a_rerun_completes(tmp_path, capsys):
    rng = random.Random(SEED)
    lanes = [  # every anchor once, each at a random delay after its line
        (_compare_lane, tmp_path / "compare", _moments(rng, COMPARE_ANCHORS, len(COMPARE_ANCHORS))),
        (
            _tune_lane,
            tmp_path / "tune",
            _moments(rng, TUNE_ANCHORS, 3) + _moments(rng, TUNE_LAST, 2, shuffle=False),
        ),
        (_register_lane, tmp_path / "register", _moments(rng, REGISTER_ANCHORS, 3, shuffle=False)),
    ]
    assert sum(len(moments) for _, _, moments in lanes) == 13
    t0 = time.monotonic()

    def timed(lane, folder, moments):
        shots = lane(folder, moments)
        return shots, time.monotonic() - t0

    with ThreadPoolExecutor(len(lanes)) as pool:
        futures = [pool.submit(timed, *lane) for lane in lanes]
        done = [future.result() for future in futures]
    shots = [shot for lane_shots, _ in done for shot in lane_shots]
    with capsys.disabled():
        print(
            "\n  lanes ended after "
            + ", ".join(
                f"{folder.name} {t:.0f}s"
                for (_, folder, _), (_, t) in zip(lanes, done, strict=True)
            ),
            end="",
        )
        for shot in shots:
            print(
                f"\n  {shot.moment}: exit {shot.returncode} {shot.exit_after:.1f}s later, "
                f"last write {shot.lag:+.2f}s",
                end="",
            )
        print()
    assert len([s for s in shots if s.sent is not None]) == 13
