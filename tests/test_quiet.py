"""No third-party noise on any command's output (issue 27, H), and a full disk at the SQLite
commit is one line (issue 27, G).

TensorFlow's native start-up lines, absl, Optuna's ExperimentalWarning and MLflow's log lines
used to come before bench's own (7 to 9 lines on a bad ``bench tune`` input, 12 on every
``--workers 2`` run, 84 when a commit hit a full disk). Real processes, as a user starts them.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import study_yaml

REPO = Path(__file__).resolve().parent.parent
#: What third-party output looks like: absl's native lines (I0000 00:00:... file.cc:12]),
#: its pre-init notice, oneDNN/CUDA notices, Python warnings, MLflow's log format, tracebacks.
NOISE = re.compile(
    r"absl::InitializeLog|^[IWEF]\d{4} \d\d:\d\d:|oneDNN|cuda|cuDNN|cuFFT|cuBLAS"
    r"|Warning:|warnings\.warn"
    r"|^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) |Traceback|^\s+File \""
)


def _bench(
    args: list[str], folder: Path, *, preexec=None, timeout: float = 900
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
        "BENCH_CACHE_DIR": str(folder / "bench-cache"),
        "KERAS_HOME": str(folder / "keras-home"),
    }
    for inherited in (
        "BENCH_QUIET_LIBRARIES",
        "MLFLOW_CONFIGURE_LOGGING",
        "TF_CPP_MIN_LOG_LEVEL",
        "MLFLOW_LOGGING_LEVEL",
    ):
        env.pop(inherited, None)  # as a user's shell starts it: nothing set by an earlier command
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=folder,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        preexec_fn=preexec,
    )


def _noise(text: str) -> list[str]:
    return [line for line in text.splitlines() if NOISE.search(line)]


def test_bad_tune_input_is_one_line_and_nothing_else(tmp_path):
    proc = _bench(["tune", "--study", "no-such-study"], tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("error: no study named 'no-such-study'")


def test_a_databricks_uri_is_one_line(tmp_path):
    study = tmp_path / "q.yaml"
    study.write_text(study_yaml("q", variants=["vanilla-shallow"]))
    proc = _bench(
        ["tune", "--study", str(study), "--trials", "1", "--tracking-uri", "databricks://nowhere"],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.startswith("error:")]) == 1, (
        proc.stderr
    )
    assert _noise(proc.stderr + proc.stdout) == [], proc.stderr


@pytest.mark.long
def test_tune_with_two_workers_prints_no_third_party_line(tmp_path):
    study = tmp_path / "q.yaml"
    study.write_text(study_yaml("q", variants=["vanilla-shallow"]))
    proc = _bench(
        [
            "tune",
            "--study",
            str(study),
            "--trials",
            "2",
            "--epochs",
            "1",
            "--workers",
            "2",
            "--no-model",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _noise(proc.stderr + proc.stdout) == [], proc.stderr
    assert "[w1]" in proc.stderr and "[w2]" in proc.stderr  # the workers' own lines still come


def _file_size_limit(limit: int):
    """In the child: files may not grow past ``limit`` bytes (a full disk, for every file);
    SIGXFSZ ignored, so a write past it fails with EFBIG instead of killing the process."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_at_the_sqlite_commit_is_one_line(tmp_path, empty_store):
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    study = tmp_path / "q.yaml"
    study.write_text(study_yaml("q", variants=["vanilla-shallow"]))
    size = (tmp_path / "mlflow.db").stat().st_size
    proc = _bench(
        ["train", "vanilla-shallow", "--study", str(study), "--no-model"],
        tmp_path,
        preexec=_file_size_limit(size // 2),
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert re.search(r"disk I/O error|database or disk is full|File too large", errors[0]), errors[
        0
    ]
    assert _noise(proc.stderr) == [], proc.stderr
