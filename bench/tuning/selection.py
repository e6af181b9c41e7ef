"""After a variant's tuning repeats: re-evaluate the best trials on more seeds, pick one.

A single Optuna study scores each trial on one training seed, so its best trial is partly
the luckiest seed, and a second study with another sampler seed may well pick another
winner. The tuned setting is therefore chosen in two stages, both on validation only:

1. ``repeats`` independent studies per variant (sampler seeds ``REPEAT_STRIDE`` apart);
2. the ``select_top`` best distinct complete trials over all repeats, and the study's
   default setting, are each trained again on ``select_seeds`` training seeds that no trial
   and no comparison uses (``SELECT_SEED_BASE`` + j); the highest mean validation accuracy
   (the study's objective: last epoch, or the restored best epoch) wins.

The record (candidates, their per-seed scores, each repeat's winner, what tuning cost) is
kept as a user attribute of repeat 0's study, so ``bench compare --tuned`` reads the chosen
setting and the record from the Optuna storage alone, and a rerun with the same candidates
finds it done. Every re-evaluation is an MLflow run (kind ``selection``) under repeat 0's
parent run. The test split is never touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from bench import data, runs
from bench.models import get_variant
from bench.result import STATUS_DIVERGED, TrainResult
from bench.store import schema
from bench.store.tracker import Tracker
from bench.tuning.target import Target

log = logging.getLogger(__name__)
progress = logging.getLogger("bench.progress")

#: Training seeds of the re-evaluations: apart from the trials' (sampler seed + trial number)
#: and the comparisons' (0..N-1), so the runs that are tested never shared the seed that won.
SELECT_SEED_BASE = 1_500_000_000


@dataclass(frozen=True)
class Candidate:
    params: dict[str, object]
    source: str  # "<Optuna study>#<trial number>"
    tuning_value: float  # its trial's validation accuracy (one seed)
    default: bool = False


def _key(params: dict[str, object]) -> str:
    """Two trials are the same setting when every value agrees to 6 significant digits."""
    return json.dumps(
        {k: f"{v:.6g}" if isinstance(v, float) else v for k, v in sorted(params.items())}
    )


def candidates(studies: Sequence[optuna.Study], top: int) -> list[Candidate]:
    """The ``top`` best distinct complete trials over ``studies``, then the default setting
    (repeat 0's enqueued trial 0) if it is not among them."""
    done = [
        (s, t) for s in studies for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ]
    done.sort(key=lambda st: st[1].value, reverse=True)
    out: dict[str, Candidate] = {}
    for study, t in done:
        key = _key(t.params)
        if key not in out and len(out) < top:
            out[key] = Candidate(
                dict(t.params),
                f"{study.study_name}#{t.number}",
                float(t.value),
                bool(t.user_attrs.get(schema.TRIAL_DEFAULT)),
            )
    for study, t in done:
        if t.user_attrs.get(schema.TRIAL_DEFAULT) and study is studies[0]:
            key = _key(t.params)
            out.setdefault(
                key,
                Candidate(dict(t.params), f"{study.study_name}#{t.number}", float(t.value), True),
            )
            if not out[key].default:
                out[key] = dataclasses.replace(out[key], default=True)
    return list(out.values())


def seeds(n: int) -> list[int]:
    return [SELECT_SEED_BASE + j for j in range(n)]


def record_key(cands: Sequence[Candidate], s: Target) -> str:
    """What makes a selection the same: its candidates, its seeds and what each trains."""
    text = json.dumps(
        [[_key(c.params) for c in cands], seeds(s.select_seeds), s.base.as_params()], sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def evaluate(
    s: Target, cands: Sequence[Candidate], splits: data.Splits, tracker: Tracker, parent_run_id: str
) -> list[list[float]]:
    """Each candidate's validation score on each selection seed (a diverged run scores 0: the
    setting failed on that seed), each a run of kind ``selection`` recorded by the run
    service (members train as populations where the variant stacks)."""
    jobs = [(i, seed) for i in range(len(cands)) for seed in seeds(s.select_seeds)]
    units = tuple(
        runs.Unit(
            dataclasses.replace(s.base, seed=seed, **cands[i].params),
            f"select-{i}-s{seed - SELECT_SEED_BASE}",
            params={schema.CANDIDATE: cands[i].source, schema.OPTUNA_STUDY: s.study_name},
            tags={schema.OPTUNA_STUDY: s.study_name},
        )
        for i, seed in jobs
    )
    batch = runs.Batch(get_variant(s.variant), schema.KIND_SELECTION, units)
    results = runs.validate(
        runs.Recording(tracker, splits, parent_run_id=parent_run_id), batch, _score
    )
    scores: list[list[float]] = [[] for _ in cands]
    for (i, _), result in zip(jobs, results, strict=True):
        scores[i].append(_score(result))
    return scores


def _score(result: TrainResult) -> float:
    if result.status == STATUS_DIVERGED:
        return 0.0
    value = result.best_val_accuracy if result.hparams.restore_best else result.final_val_accuracy
    return float(value) if value is not None and math.isfinite(value) else 0.0


def winner(cands: Sequence[Candidate], scores: Sequence[Sequence[float]]) -> int:
    """The highest mean validation score; a tie goes to the default, then the better trial."""
    means = [sum(v) / len(v) for v in scores]
    return max(
        range(len(cands)),
        key=lambda i: (round(means[i], 10), cands[i].default, cands[i].tuning_value),
    )


def repeat_summary(study: optuna.Study) -> dict[str, object]:
    """One repeat's winner and what it cost: trials, epochs trained, CPU seconds."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(done, key=lambda t: t.value) if done else None
    return {
        "study": study.study_name,
        "best_value": None if best is None else float(best.value),
        "best_params": {} if best is None else dict(best.params),
        "best_trial": None if best is None else best.number,
        "complete": len(done),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "cpu_seconds": float(study.user_attrs.get(schema.STUDY_CPU_SECONDS, 0.0)),
    }


def make_record(
    s: Target,
    cands: Sequence[Candidate],
    scores: Sequence[Sequence[float]],
    repeats: Sequence[optuna.Study],
    cpu_seconds: float,
) -> dict[str, object]:
    chosen = winner(cands, scores)
    return {
        "key": record_key(cands, s),
        "seeds": seeds(s.select_seeds),
        "chosen": chosen,
        "params": cands[chosen].params,
        "candidates": [
            {
                "source": c.source,
                "params": c.params,
                "tuning_value": c.tuning_value,
                "default": c.default,
                "values": list(v),
                "mean": sum(v) / len(v),
            }
            for c, v in zip(cands, scores, strict=True)
        ],
        "repeats": [repeat_summary(r) for r in repeats],
        "cpu_seconds": cpu_seconds,
        "epochs": len(cands) * s.select_seeds * s.base.epochs,
    }


def summary(record: dict[str, object]) -> dict[str, object]:
    """What a tuned run carries about its tuning (params ``tuning_record.*``): how many
    repeats, what they cost, and how far their winners' validation scores lie apart."""
    reps = record["repeats"]
    values = [r["best_value"] for r in reps if r["best_value"] is not None]
    spread = max(values) - min(values) if len(values) > 1 else None
    cands = record["candidates"]
    chosen = cands[record["chosen"]]
    out = {
        "repeats": len(reps),
        "trials_complete": sum(r["complete"] for r in reps),
        "trials_pruned": sum(r["pruned"] for r in reps),
        "epochs": sum(r["epochs"] for r in reps) + record.get("epochs", 0),
        "cpu_seconds": round(
            sum(r["cpu_seconds"] for r in reps) + record.get("cpu_seconds", 0.0), 1
        ),
        "repeat_winners": "; ".join(
            f"{r['best_value']:.4f} ({_shown(r['best_params'])})"
            for r in reps
            if r["best_value"] is not None
        ),
        "repeat_winner_spread": None if spread is None else round(spread, 6),
        "distinct_winners": len(
            {_key(r["best_params"]) for r in reps if r["best_value"] is not None}
        ),
        "selected": chosen["source"] + (" (default)" if chosen["default"] else ""),
        "selected_val_mean": round(chosen["mean"], 6),
        "select_seeds": len(record["seeds"]),
        "candidates": len(cands),
    }
    return {k: v for k, v in out.items() if v is not None}


def _shown(params: dict[str, object]) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
