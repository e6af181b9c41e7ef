"""Plug-ins (issue 25 item 3): variants and tasks from a local module (``--plugin``) or an
installed package's entry points, registered with where they came from, trained like the
built-in ones; a broken plug-in is one error line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from bench import plugins
from bench.cli import cli
from bench.store import schema

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = """\
from bench.models import Dense, Variant, register

register(Variant("plug-wide", family="wide", group="plug", blocks=(Dense(16), Dense(16))))
variants = [{"name": "plug-narrow", "base": "vanilla-shallow", "units": 8}]
"""


@pytest.fixture(autouse=True)
def fresh(monkeypatch, fresh_registries):
    """What a plug-in registers stays in this test; nothing counts as loaded yet."""
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.delenv(plugins.ENV, raising=False)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_a_local_module_adds_variants_that_list_and_train(tmp_path, tracking_uri):
    (tmp_path / "myplug.py").write_text(PLUGIN)
    listed = invoke("--plugin", str(tmp_path / "myplug.py"), "list", "plug-*,vanilla-shallow")
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.output.splitlines()[1:]}
    assert (
        f"plug-in {tmp_path / 'myplug.py'}" in rows["plug-wide"]
        and "plug-in" in rows["plug-narrow"]
    )
    assert "built-in" in rows["vanilla-shallow"]
    assert os.environ[plugins.ENV] == str(tmp_path / "myplug.py")  # spawned workers load it too
    done = invoke(
        "--plugin",
        str(tmp_path / "myplug.py"),
        "compare",
        "--variants",
        "plug-wide,plug-narrow",
        "--epochs",
        "1",
        "--validation-size",
        "200",
        "--no-model",
    )
    assert done.exit_code == 0, done.output
    client = MlflowClient(tracking_uri)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.`{schema.KIND}` = 'train'"
    )
    widths = {r.data.params[schema.VARIANT]: r.data.params[schema.VARIANT_WIDTHS] for r in runs}
    assert widths == {"plug-wide": "16,16", "plug-narrow": "8"}
    assert {r.info.status for r in runs} == {"FINISHED"}


def _installed_package(root: Path) -> Path:
    """A package ``benchplug`` with entry points in both groups, installed the way pip
    leaves one (a dist-info folder on sys.path), without pip."""
    pkg = root / "benchplug"
    pkg.mkdir(parents=True)
    x = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(pkg / "halves.npz", x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\nfrom bench.data import FileSource, Task\nfrom bench.models "
        "import Dense, Variant\n\ndef variants():\n    return [Variant('ep-mlp', family='ep', "
        "group='ep', blocks=(Dense(8),))]\n\nTASK = Task(name='halves', "
        "input_shape=None,\n            source=FileSource('npz', Path(__file__).parent / "
        "'halves.npz', 'label', None))\n"
    )
    info = root / "benchplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: benchplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[bench.variants]\nmlps = benchplug:variants\n\n[bench.tasks]\nhalves = benchplug:TASK\n"
    )
    return root


def test_an_installed_package_registers_through_entry_points(tmp_path):
    """In a fresh process (entry points are read at start-up), without any option."""
    root = _installed_package(tmp_path / "site")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop(plugins.ENV, None)
    run = [sys.executable, "-m", "bench", "list"]
    variants = subprocess.run([*run, "ep-*"], env=env, capture_output=True, text=True, cwd=tmp_path)
    tasks = subprocess.run([*run, "--tasks"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert variants.returncode == 0 and tasks.returncode == 0, variants.stderr + tasks.stderr
    [row] = variants.stdout.splitlines()[1:]
    assert row.split()[0] == "ep-mlp" and "plug-in benchplug:variants (bench.variants)" in row
    halves = next(line for line in tasks.stdout.splitlines() if line.startswith("halves"))
    assert "plug-in benchplug:TASK (bench.tasks)" in halves and "from the data" in halves


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("raise RuntimeError('no GPU here')\n", "failed to load: RuntimeError: no GPU here"),
        (
            "variants = [{'name': 'vanilla-deep', 'family': 'f', 'group': 'g', 'blocks': "
            "[{'dense': 4}]}]\n",
            "'vanilla-deep' is already declared (built-in)",
        ),
        (
            "variants = [{'name': 'x', 'base': 'vanilla-deep', 'unitz': 3}]\n",
            "unknown field 'unitz'",
        ),
        ("variants = 42\n", "gave int, not a variant"),
    ],
    ids=["raises", "shadows-a-built-in", "bad-declaration", "not-a-variant"],
)
def test_a_broken_plugin_is_one_error_line_naming_it(tmp_path, source, expected):
    (tmp_path / "broken.py").write_text(source)
    result = invoke("--plugin", str(tmp_path / "broken.py"), "list")
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert f"plug-in {tmp_path / 'broken.py'}" in lines[0] and expected in lines[0]


def test_a_missing_plugin_is_one_error_line(tmp_path):
    for spec, expected in (
        (str(tmp_path / "absent.py"), "does not exist"),
        ("no_such_module_x", "ModuleNotFoundError"),
    ):
        result = invoke("--plugin", spec, "list")
        assert result.exit_code == 1 and expected in result.output, result.output
