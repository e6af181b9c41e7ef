"""Everything Optuna: the only package that imports ``optuna``.

:mod:`.settings` plans one study per variant, :mod:`.storage` opens where it lives and the
lock its workers share, :mod:`.search` samples, seeds and prunes, :mod:`.worker` runs
trials (the one trial loop), :mod:`.pool` chooses the slots they train in, :mod:`.selection`
re-evaluates the best on more seeds, :mod:`.study` runs a study to the end and retrains the
chosen setting. Every run that is not a trial is recorded by the run service
(:mod:`bench.runs`).
"""

from __future__ import annotations

import optuna

from bench.tuning.search import make_pruner, make_sampler, suggest
from bench.tuning.settings import TuneSettings, check, plan
from bench.tuning.storage import STORAGE_ENV, default_storage, open_storage
from bench.tuning.study import TuneResult, best_params, tune, tune_variant, tuned_hparams
from bench.tuning.worker import load_study


def load_optuna_study(s: TuneSettings, *, create: bool) -> optuna.Study:
    """The Optuna study of ``s`` (created when ``create`` and missing)."""
    return load_study(s, create=create).study


__all__ = [
    "STORAGE_ENV",
    "TuneResult",
    "TuneSettings",
    "best_params",
    "check",
    "default_storage",
    "load_optuna_study",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "plan",
    "suggest",
    "tune",
    "tune_variant",
    "tuned_hparams",
]
