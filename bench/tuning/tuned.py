"""What a finished study gives a comparison: each variant's tuned hyperparameters and where
they come from (the best trial, or the selection over repeats)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import optuna

import bench.tuning.selection as selection
from bench.errors import BenchError, NoStudyError
from bench.models import HParams
from bench.plan import Plan
from bench.store import schema
from bench.store.uri import redact
from bench.tuning.target import Target, check_identity, targets
from bench.tuning.worker import best_trial, load_study


def tuned_plan(plan: Plan) -> Plan:
    """``plan`` also running each variant's tuned setting, found in its Optuna study."""
    return plan.with_tuned(best_params(plan))


def tuned_hparams(s: Target, study: optuna.Study | None = None) -> HParams | None:
    """The best trial's hyperparameters (None when the study has no complete trial)."""
    study = study or load_study(s, create=False).study
    best = best_trial(study)
    if best is None:
        return None
    return dataclasses.replace(s.base, **{k: v for k, v in best.params.items()})


@dataclass(frozen=True)
class Tuned:
    """A variant's tuned hyperparameters and where they come from (``<study> trial <n>``)."""

    params: dict[str, object]
    origin: str
    record: dict[str, object] = dataclasses.field(
        default_factory=dict
    )  # selection.summary, if selected


def best_params(plan: Plan) -> dict[str, Tuned]:
    """Each variant's best hyperparameters from its Optuna study (for ``compare --tuned``)."""
    planned = targets(plan)
    found, missing = {}, []
    for s in planned:
        if s.repeat:
            continue  # repeat 0's study holds the selection over every repeat
        try:
            store = load_study(s, create=False)
        except NoStudyError:
            best, record = None, None
        else:
            check_identity(
                s, store.storage
            )  # a study of another variant or task is an error, not "missing"
            best, record = best_trial(store.study), stored_selection(store.study)
        if record is not None:
            chosen = record["candidates"][record["chosen"]]
            found[s.variant] = Tuned(
                dict(record["params"]),
                f"{chosen['source']}, selected over {len(record['repeats'])} repeats",
                selection.summary(record),
            )
        elif best is None:
            missing.append(f"{s.variant} (study {s.study_name!r})")
        else:
            found[s.variant] = Tuned(dict(best.params), f"{s.study_name} trial {best.number}")
    if missing:
        raise BenchError(
            f"no tuned hyperparameters in {redact(planned[0].storage)} for: {', '.join(missing)}; "
            "run `bench tune` first with the same --study/--task/--storage"
        )
    return found


def stored_selection(study: optuna.Study) -> dict[str, object] | None:
    """Repeat 0's selection record (:mod:`bench.tuning.selection`), if one was made."""
    text = study.user_attrs.get(schema.STUDY_SELECTION)
    return json.loads(text) if text else None
