"""``$BENCH_XLA``: each engine's own XLA choice by default, never or always when told.

The test suite itself runs with ``BENCH_XLA=off`` (tests/conftest.py): TensorFlow keeps
every XLA executable it compiled until the process ends (benchmarks/xla_memory.py measures
it), and a worker training hundreds of different networks grew past 10 GB.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bench import xla
from bench.cli import cli
from bench.errors import OptionError
from bench.models import HParams, get_variant
from bench.population import Population
from bench.training.fit import use_xla


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "auto"),
        ("auto", "auto"),
        ("ON", "on"),
        ("1", "on"),
        ("true", "on"),
        ("off", "off"),
        (" 0 ", "off"),
        ("no", "off"),
    ],
)
def test_the_setting_reads_its_spellings(monkeypatch, value, expected):
    monkeypatch.setenv(xla.ENV, value)
    assert xla.setting() == expected


def test_an_unset_variable_means_auto(monkeypatch):
    monkeypatch.delenv(xla.ENV, raising=False)
    assert xla.setting() == "auto"
    assert xla.wanted(True) and not xla.wanted(False)


def test_a_bad_value_is_one_error_line_before_anything_runs(monkeypatch, write_study, client):
    monkeypatch.setenv(xla.ENV, "sometimes")
    with pytest.raises(
        OptionError, match=r"\$BENCH_XLA must be one of auto, on, off; got 'sometimes'"
    ):
        xla.setting()
    study = write_study(variants=["vanilla-shallow"])
    result = CliRunner().invoke(
        cli, ["compare", "--study", str(study), "--epochs", "1", "--no-model"]
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: $BENCH_XLA must be one of auto, on, off; got 'sometimes'"], (
        result.output
    )
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs == []  # nothing trained, nothing recorded


@pytest.mark.parametrize(("value", "compiled"), [("auto", True), ("on", True), ("off", False)])
def test_the_population_engine_compiles_with_xla_unless_told_off(
    monkeypatch, tiny_splits, value, compiled
):
    monkeypatch.setenv(xla.ENV, value)
    population = Population(
        get_variant("vanilla-shallow"), 1, tiny_splits, batch_size=64, optimizer="adam"
    )
    assert population._c.loop.jit_compile is compiled


@pytest.mark.parametrize(
    ("value", "plain", "with_dropout"),
    [("auto", True, False), ("on", True, True), ("off", False, False)],
)
def test_the_keras_engine_keeps_its_cpu_rule_unless_told(monkeypatch, value, plain, with_dropout):
    """On a CPU, ``auto`` skips XLA for dropout (its random numbers made those 4x slower)."""
    monkeypatch.setenv(xla.ENV, value)
    hp = HParams()
    assert use_xla(get_variant("vanilla-shallow"), hp) is plain
    assert use_xla(get_variant("dropout-shallow"), hp) is with_dropout
