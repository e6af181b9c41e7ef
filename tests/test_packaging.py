"""A built wheel, installed into a fresh virtual environment, works outside the repository:
it finds the built-in studies (package data, not the source checkout) and trains."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bench.store import schema

ROOT = Path(__file__).resolve().parent.parent
#: What building the wheel reads; nothing else of the checkout is copied.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "bench", "studies")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (the build writes build/ and *.egg-info
    beside them), with this environment's setuptools: no build isolation, no download."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name, **({"ignore": _ignored} if copy is shutil.copytree else {}))
    out = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "-q",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("bench-*.whl")
    return path


def _ignored(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or n.endswith(".pyc")}


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; the dependencies come from this
    environment through a .pth line (its own .pth files, such as an editable install of
    bench, are not processed), so nothing is downloaded."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return venv


def test_the_wheel_carries_every_built_in_study(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).name for n in names if n.startswith("bench/study_files/"))
    assert shipped == sorted(p.name for p in (ROOT / "studies").glob("*.yaml"))
    assert not [n for n in names if n.startswith(("tests/", "studies/", "results/"))]


def test_an_installed_wheel_lists_studies_and_compares_outside_the_repository(
    installed: Path, tmp_path: Path
) -> None:
    """From a folder with no studies/ and no bench/: ``bench list --studies`` shows the
    built-in studies and a one-epoch compare of the default study trains and records."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    bench = str(installed / "bin" / "bench")
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import bench; print(bench.__file__)"],
        cwd=outside,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(installed)), where  # the wheel's bench, not the checkout's
    listed = subprocess.run(
        [bench, "list", "--studies"], cwd=outside, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    for study in (ROOT / "studies").glob("*.yaml"):
        assert study.stem in listed.stdout
    uri = f"sqlite:///{outside}/mlflow.db"
    done = subprocess.run(
        [
            bench,
            "compare",
            "--variants",
            "vanilla-shallow",
            "--epochs",
            "1",
            "--validation-size",
            "200",
            "--no-model",
            "--tracking-uri",
            uri,
        ],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{schema.VARIANT_TAG}` = 'vanilla-shallow'",
    )
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.params["epochs"] == "1"
    assert 0.0 <= runs[0].data.metrics["test_accuracy"] <= 1.0
