"""Everything Optuna: the only package that imports ``optuna``.

:mod:`.target` turns a plan (:class:`bench.plan.Plan`) into one study per variant and repeat
(a :class:`Target`), :mod:`.storage` opens where it lives and the
lock its workers share, :mod:`.search` samples, seeds and prunes, :mod:`.worker` runs
trials (the one trial loop), :mod:`.pool` chooses the slots they train in, :mod:`.selection`
re-evaluates the best on more seeds, :mod:`.study` runs a study to the end and retrains the
chosen setting, :mod:`.study_log` is what a study logs on its parent run, and :mod:`.tuned`
reads a finished study's tuned hyperparameters back (``compare --tuned``). Every run that is
not a trial is recorded by the run service (:mod:`bench.runs`).
"""

from __future__ import annotations

import optuna

from bench.tuning.search import make_pruner, make_sampler, suggest
from bench.tuning.storage import STORAGE_ENV, default_storage, open_storage
from bench.tuning.study import TuneResult, tune, tune_plan, tune_variant
from bench.tuning.target import Target, check, prepare, targets
from bench.tuning.tuned import best_params, tuned_hparams, tuned_plan
from bench.tuning.worker import load_study

LAYER = 9  # import layer (docs/development.md#layers): imports only lower layers' units


def load_optuna_study(s: Target, *, create: bool) -> optuna.Study:
    """The Optuna study of ``s`` (created when ``create`` and missing)."""
    return load_study(s, create=create).study


__all__ = [
    "STORAGE_ENV",
    "TuneResult",
    "Target",
    "best_params",
    "check",
    "default_storage",
    "load_optuna_study",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "prepare",
    "suggest",
    "targets",
    "tune",
    "tune_plan",
    "tune_variant",
    "tuned_hparams",
    "tuned_plan",
]
