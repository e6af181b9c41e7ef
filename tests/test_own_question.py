"""Your own question (issue 25): variants and datasets declared in a study file, with nothing
in ``bench/`` changed, compared, tuned and reported like the built-in ones; and bad
declarations refused in one ``error:`` line with nothing written anywhere."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from bench.cli import cli
from bench.store import schema

STUDY = """\
name: my-regulariser
task:
  name: blobs
  source: {{format: npz, path: blobs.npz}}
  validation_size: 100
variants:
  - vanilla-shallow
  - name: wide-input-dropout
    family: wide
    group: wide
    input_dropout: 0.2
    blocks:
      - {{dense: 32, dropout: 0.5}}
      - {{dense: 32, dropout: 0.5}}
  - {{name: shallow-16, base: vanilla-shallow, units: 16}}
protocol: {{epochs: 2, batch_size: 64, optimizer: adamw, learning_rate: 0.003, \
weight_decay: 1.0e-4, seeds: 2}}
search_space:
  learning_rate: {{low: 1.0e-4, high: 1.0e-2, log: true}}
  weight_decay: {{low: 1.0e-6, high: 1.0e-2, log: true}}
tuning: {{trials: 3, select_top: 1}}
{extra}"""


def blobs(
    n: int = 700, features: int = 10, classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: learnable in two epochs, features on different scales."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, features)) * (1 + np.arange(features)) + y[:, None] * 3.0 + 20.0
    return x.astype(np.float32), y.astype(np.int64)


def write_npz(
    folder: Path, name: str = "blobs.npz", split: int = 600, **arrays: np.ndarray
) -> Path:
    x, y = blobs()
    layout = {
        "x_train": x[:split],
        "y_train": y[:split],
        "x_test": x[split:],
        "y_test": y[split:],
        **arrays,
    }
    np.savez(folder / name, **{k: v for k, v in layout.items() if v is not None})
    return folder / name


@pytest.fixture(autouse=True)
def _fresh(fresh_registries):
    """Variants and tasks a study declares stay in this test."""


def bench(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_question_in_one_study_file_and_one_dataset_file(tmp_path, tracking_uri):
    """The example study runs as written: compare, tune and report, queried back."""
    write_npz(tmp_path)
    study = tmp_path / "my-study.yaml"
    study.write_text(STUDY.format(extra=""))
    bench("compare", "--study", str(study), "--no-model")
    bench("tune", "--study", str(study), "--variants", "shallow-16", "--no-model")
    bench("report", "--experiment", "my-regulariser", "--out", str(tmp_path / "reports"))

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("my-regulariser")
    runs = client.search_runs([exp.experiment_id], f"tags.`{schema.KIND}` = 'train'")
    by_variant: dict[str, list] = {}
    for run in runs:
        by_variant.setdefault(run.data.params[schema.VARIANT], []).append(run)
    assert sorted(by_variant) == ["shallow-16", "vanilla-shallow", "wide-input-dropout"]
    assert all(
        len(v) == 2 and {r.info.status for r in v} == {"FINISHED"} for v in by_variant.values()
    )
    wide = by_variant["wide-input-dropout"][0].data.params
    assert wide[schema.VARIANT_WIDTHS] == "32,32" and wide[schema.VARIANT_DROPOUT_SITES] == "0,1"
    assert wide[schema.VARIANT_FAMILY] == "wide" and wide[schema.VARIANT_SUMMARY].startswith(
        "D0.2 -> [0] 32"
    )
    assert by_variant["shallow-16"][0].data.params[schema.VARIANT_WIDTHS] == "16"
    recipe = {(r.data.params["optimizer"], float(r.data.params[schema.WEIGHT_DECAY])) for r in runs}
    assert recipe == {("adamw", 1e-4)}  # the training recipe, logged as numbers
    # the study's dataset, digested: every training run names the same train split digest
    digests = {
        i.dataset.digest
        for r in runs
        for i in r.inputs.dataset_inputs
        if i.dataset.name.endswith("train")
    }
    assert len(digests) == 1
    # tuned: the declared variant's trials in Optuna, learning rates in the declared range
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    [name] = [
        s.study_name
        for s in optuna.get_all_study_summaries(storage)
        if "shallow-16" in s.study_name
    ]
    trials = optuna.load_study(study_name=name, storage=storage).trials
    done = [t.params for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) >= 3 and done
    assert all(
        1e-4 <= p["learning_rate"] <= 1e-2 and 1e-6 <= p["weight_decay"] <= 1e-2 for p in done
    )
    report = (tmp_path / "reports").rglob("report.md")
    text = "\n".join(p.read_text() for p in report)
    assert "wide-input-dropout" in text and "shallow-16" in text


def test_a_csv_dataset_and_a_variant_derived_from_a_registered_one(tmp_path, tracking_uri):
    x, y = blobs(n=500, features=6)
    rows = [
        "f0,f1,f2,f3,f4,f5,label",
        *(",".join(f"{v:.4f}" for v in xi) + f",{yi}" for xi, yi in zip(x, y, strict=True)),
    ]
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    study = tmp_path / "csv-study.yaml"
    study.write_text(
        "name: csv-question\ntask: {name: table, source: {format: csv, path: table.csv, label: "
        "label, test_size: 100}, validation_size: 80}\nvariants:\n  - {name: deep-24, base: "
        "vanilla-deep, units: 24, description: six blocks of 24}\nprotocol: {epochs: 1, "
        "batch_size: 32, seeds: 1}\n"
    )
    output = bench("compare", "--study", str(study), "--no-model")
    assert "deep-24" in output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("csv-question")
    [run] = client.search_runs([exp.experiment_id], f"tags.`{schema.KIND}` = 'train'")
    params = run.data.params
    assert (
        params[schema.VARIANT_WIDTHS] == ",".join(["24"] * 6)
        and params[schema.VARIANT_FAMILY] == "vanilla"
    )
    assert run.info.status == "FINISHED" and 0 <= run.data.metrics["test_accuracy"] <= 1
    # 6 features -> 6 x 24 + 24, then five 24 x 24 + 24, then 24 x 3 + 3
    assert int(params["params"]) == (6 * 24 + 24) + 5 * (24 * 24 + 24) + (24 * 3 + 3)


# --------------------------------------------------------------------------- bad declarations

VARIANT = "  - {{name: mine, family: f, group: g, blocks: [{block}]}}\n"


def _variant_study(entry: str) -> str:
    return (
        f"name: bad\ntask: fashion_mnist\nvariants:\n{entry}protocol: {{epochs: 1, "
        "validation_size: 200}\n"
    )


def _block(block: str) -> str:
    return _variant_study(VARIANT.format(block=block))


def _task_study(source: str, extra: str = "") -> str:
    return (
        f"name: bad\ntask: {{name: mine, source: {{{source}}}{extra}}}\n"
        "variants: [vanilla-shallow]\nprotocol: {epochs: 1}\n"
    )


def _npz(**arrays):
    return lambda folder: write_npz(folder, "data.npz", **arrays)


def _csv(text: str):
    return lambda folder: (folder / "data.csv").write_text(text)


_X, _Y = blobs()
_NAN = _X[:600].copy()
_NAN[3, 2] = np.nan
_INF = _X[:600].copy()
_INF[5, 0] = np.inf
_CONST = _X[:600].copy()
_CONST[:, 4] = 1.0

# id -> (study text, dataset writer or None, text the one error line must contain)
BAD: dict[str, tuple[str, object, str]] = {
    "unknown-variant-field": (
        _variant_study("  - {name: mine, family: f, group: g, unit: 3, blocks: [{dense: 4}]}\n"),
        None,
        "unknown field 'unit'",
    ),
    "unknown-block-field": (
        _block("{dense: 4, unit: 3}"),
        None,
        "unknown field 'unit' for a Dense block",
    ),
    "units-not-a-number": (_block("{dense: many}"), None, "blocks[0].units"),
    "units-true": (_block("{dense: true}"), None, "blocks[0].units"),
    "units-zero": (_block("{dense: 0}"), None, "units must be > 0"),
    "dense-and-conv": (
        _block("{dense: 4, conv: 3}"),
        None,
        "one of {dense: UNITS} or {conv: FILTERS}",
    ),
    "block-not-a-mapping": (_block("512"), None, "one of {dense: UNITS}"),
    "no-blocks": (
        _variant_study("  - {name: mine, family: f, group: g, blocks: []}\n"),
        None,
        "non-empty list",
    ),
    "residual-to-a-later-block": (
        _block("{dense: 4, residual_from: 1}, {dense: 4}"),
        None,
        "not an earlier block",
    ),
    "residual-from-itself": (_block("{dense: 4, residual_from: 0}"), None, "not an earlier block"),
    "conv-after-dense": (
        _block("{dense: 4}, {conv: 3}"),
        None,
        "a Conv block follows a Dense block",
    ),
    "dropout-1.5": (_block("{dense: 4, dropout: 1.5}"), None, "dropout rate 1.5"),
    "batch-norm-mid": (_block("{dense: 4, batch_norm: mid}"), None, "blocks[0].batch_norm"),
    "kernel-size-0": (_block("{conv: 3, kernel_size: 0}"), None, "kernel_size must be > 0"),
    "unknown-activation": (
        _block("{dense: 4, activation: relux}"),
        None,
        "unknown activation 'relux'",
    ),
    "unknown-initializer": (
        _variant_study(
            "  - {name: mine, family: f, group: g, kernel_initializer: nope, blocks: [{dense: "
            "4}]}\n"
        ),
        None,
        "unknown initializer 'nope'",
    ),
    "no-family": (
        _variant_study("  - {name: mine, group: g, blocks: [{dense: 4}]}\n"),
        None,
        "missing field 'family'",
    ),
    "no-name": (
        _variant_study("  - {family: f, group: g, blocks: [{dense: 4}]}\n"),
        None,
        "needs a name",
    ),
    "shadows-a-built-in": (
        _variant_study("  - {name: vanilla-deep, family: f, group: g, blocks: [{dense: 4}]}\n"),
        None,
        "already declared (built-in)",
    ),
    "declared-twice": (
        _variant_study(VARIANT.format(block="{dense: 4}") + VARIANT.format(block="{dense: 8}")),
        None,
        "'mine' is already declared",
    ),
    "unknown-base": (
        _variant_study("  - {name: mine, base: vanila-deep}\n"),
        None,
        "did you mean vanilla-deep",
    ),
    "derived-field-no-block-has": (
        _variant_study("  - {name: mine, base: vanilla-deep, filters: 8}\n"),
        None,
        "'filters' is not a field of any block",
    ),
    "variant-a-number": (_variant_study("  - 5\n"), None, "variants.0"),
    "missing-dataset-file": (_task_study("format: npz, path: absent.npz"), None, "absent.npz"),
    "npz-without-x-train": (
        _task_study("format: npz, path: data.npz"),
        _npz(x_train=None),
        "x_train",
    ),
    "labels-negative": (
        _task_study("format: npz, path: data.npz"),
        _npz(y_train=-_Y[:600]),
        "label",
    ),
    "labels-fractional": (
        _task_study("format: npz, path: data.npz"),
        _npz(y_train=_Y[:600] + 0.5),
        "label",
    ),
    "nan-feature": (_task_study("format: npz, path: data.npz"), _npz(x_train=_NAN), "NaN"),
    "inf-feature": (_task_study("format: npz, path: data.npz"), _npz(x_train=_INF), "inf"),
    "constant-feature": (
        _task_study("format: npz, path: data.npz"),
        _npz(x_train=_CONST),
        "constant",
    ),
    "labels-and-images-differ": (
        _task_study("format: npz, path: data.npz"),
        _npz(y_train=_Y[:500]),
        "label",
    ),
    "csv-text-in-a-feature": (
        _task_study("format: csv, path: data.csv, test_size: 2"),
        _csv("a,b,label\n1,2,0\n3,x,1\n5,6,0\n7,8,1\n9,1,0\n"),
        "'b'",
    ),
    "csv-without-its-label-column": (
        _task_study("format: csv, path: data.csv, label: y, test_size: 2"),
        _csv("a,b,label\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n"),
        "'y'",
    ),
    "too-few-rows-for-the-splits": (
        _task_study("format: npz, path: data.npz", ", validation_size: 5000"),
        _npz(),
        "validation",
    ),
    "task-shadows-a-built-in": (
        _task_study("format: npz, path: data.npz").replace("name: mine", "name: mnist"),
        _npz(),
        "already declared (built-in)",
    ),
}


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file's digest, except Keras' own config (``keras-home/keras.json``, which any
    ``import keras`` creates where it is missing: activation names are checked by Keras)."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "keras-home" not in p.relative_to(folder).parts
    }


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_declaration_is_one_error_line_and_nothing_written(case, tmp_path):
    text, writer, expected = BAD[case]
    folder = tmp_path / "question"
    folder.mkdir()
    if writer is not None:
        writer(folder)
    study = folder / "study.yaml"
    study.write_text(text)
    before = _snapshot(tmp_path)  # the store, the data cache, the study and its data
    result = CliRunner().invoke(cli, ["compare", "--study", str(study), "--no-model"])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert expected in lines[0], lines[0]
    assert _snapshot(tmp_path) == before


def test_there_are_at_least_25_bad_declarations():
    assert len(BAD) >= 25
    assert json.dumps(sorted(BAD))  # ids are plain names
