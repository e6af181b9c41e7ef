"""Which tuning objective makes "tuned" mean better on test: measured from stored runs.

A trial's validation accuracy swings by a point or two from one epoch to the next for the
deep variants, so the trial a study picks depends on how a trial is scored. This script
reads back what ``bench tune`` and ``bench compare --tuned --seeds N`` recorded and prints,
without training anything:

1. **Selection.** For every variant's Optuna study, the trial each scoring rule would pick
   from the same completed trials (their per-epoch validation accuracy is in the study's
   intermediate values): the last epoch (``last``, what the default study scores), the best
   epoch (``best``, what a ``restore_best`` study scores, its weights restored), and the
   mean of the last ``--last-k`` epochs (``mean-last-k``). Also the winner's curse: the
   chosen trial's score against the same hyperparameters' score when retrained (another
   seed), read from the study's retrain run.
2. **Outcome.** For every comparison named with ``--comparison EXPERIMENT`` (its newest
   FINISHED comparison with tuned runs): tuned minus default test accuracy per variant over
   the paired seeds, its Bonferroni interval and paired t-test verdict (bench's own
   ``stats.tuning_effect``), and whether tuned >= default in the mean.

Usage (the measurement behind results/objective.md):

    python benchmarks/objective_options.py \\
        --tracking-uri sqlite:///.runs/issue15/mlflow.db \\
        --storage journal:///.runs/issue15/optuna.journal \\
        --study default --study best-epoch \\
        --comparison core-fashion-mnist --comparison core-fashion-mnist-best-epoch \\
        --candidate objective-mean-last-5

``--candidate EXPERIMENT`` scores plain comparisons run with chosen hyperparameters (here
the trials the mean-of-the-last-epochs rule picks, passed as ``--learning-rate``) against
the default runs of the first ``--comparison``, paired by seed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rules(last_k: int) -> dict[str, callable]:
    """Scoring rule -> score of one completed trial's per-epoch validation accuracies."""
    return {
        "last": lambda curve: curve[-1],
        "best": max,
        f"mean-last-{last_k}": lambda curve: sum(curve[-last_k:]) / len(curve[-last_k:]),
    }


def selection(study, last_k: int) -> list[dict[str, object]]:
    """For each rule, the completed trial it picks, with its params and score."""
    from optuna.trial import TrialState

    epochs = max((len(t.intermediate_values) for t in study.trials), default=0)
    full = [
        t
        for t in study.get_trials(states=(TrialState.COMPLETE,))
        if len(t.intermediate_values) == epochs
        and all(math.isfinite(v) for v in t.intermediate_values.values())
    ]
    rows = []
    for rule, score in rules(last_k).items():
        if not full:
            break
        scored = [
            (score([t.intermediate_values[k] for k in sorted(t.intermediate_values)]), t)
            for t in full
        ]
        value, trial = max(scored, key=lambda st: st[0])
        rows.append(
            {
                "rule": rule,
                "trial": trial.number,
                "score": value,
                "default": bool(trial.user_attrs.get("bench_default")),
                "params": trial.params,
            }
        )
    return rows


def retrain_score(
    client, experiment: str, study_name: str
) -> tuple[float | None, float | None, float | None]:
    """The study's retrain run: final and best validation accuracy, test accuracy."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None, None, None
    runs = client.search_runs(
        [exp.experiment_id],
        f"tags.`bench.kind` = 'tuned' and params.`optuna.study` = '{study_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None, None, None
    m = runs[0].data.metrics
    return m.get("final_val_accuracy"), m.get("best_val_accuracy"), m.get("test_accuracy")


def print_selection(args, client) -> None:
    import optuna

    from bench.studies import load_study
    from bench.tuning import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.storage)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    for study_ref in args.study:
        study = load_study(study_ref)
        print(f"\n## Selection: study {study.name} (restore_best={study.protocol.restore_best})\n")
        print(
            "| variant | rule | trial | default? | score | learning_rate | dropout | retrain "
            "final val | retrain best val | retrain test |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for variant in study.variant_names:
            name = f"{study.name}-{study.task}-{variant}"
            if name not in names:
                print(f"| {variant} | (no study {name}) | | | | | | | | |")
                continue
            optuna_study = optuna.load_study(study_name=name, storage=storage)
            final, best, test = retrain_score(client, f"{study.name}-tuning", name)
            own = (
                "best" if study.protocol.restore_best else "last"
            )  # the rule the study itself scores by
            for row in selection(optuna_study, args.last_k):
                p = row["params"]
                retrain = [_f(final), _f(best), _f(test)] if row["rule"] == own else ["", "", ""]
                print(
                    f"| {variant} | {row['rule']} | {row['trial']} | "
                    f"{'yes' if row['default'] else ''} | {row['score']:.4f} | "
                    f"{p.get('learning_rate', ''):.3g} | {_f(p.get('dropout'), '.3f')} | "
                    + " | ".join(retrain)
                    + " "
                    "|"
                )


def seeded_tables(client, reader, experiment: str) -> list[tuple[str, object]]:
    """(parent run id, run table) of every FINISHED comparison over seeds in ``experiment``,
    newest first."""
    from bench.results import table as tables

    exp = client.get_experiment_by_name(experiment)
    runs = (
        []
        if exp is None
        else client.search_runs(
            [exp.experiment_id],
            "tags.`bench.kind` = 'comparison' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
    )
    return [
        (r.info.run_id, tables.stored_run_table(reader.load(r.info.run_id).children))
        for r in runs
        if int(r.data.params.get("protocol.seeds", "1")) > 1
    ]


def print_outcome(args, client) -> None:
    import pandas as pd

    from bench.store.reader import StoreReader

    reader = StoreReader(args.tracking_uri, client)
    for experiment in args.comparison:
        print(f"\n## Outcome: experiment {experiment}\n")
        found = seeded_tables(client, reader, experiment)
        if not found:
            print("(no finished comparison over seeds yet)")
            continue
        parent, table = found[0]
        print_effect(table, f"comparison run {parent}")
    if args.candidate and args.comparison:
        found = seeded_tables(client, reader, args.comparison[0])
        if not found:
            return
        baseline = found[0][1]
        candidates = [
            t for experiment in args.candidate for _, t in seeded_tables(client, reader, experiment)
        ]
        for experiment in args.candidate:
            print(
                f"\n## Outcome: the runs of experiment {experiment} against the defaults of "
                f"{args.comparison[0]}\n"
            )
        if not candidates:
            print("(no finished comparison over seeds yet)")
            return
        tuned = pd.concat(candidates).assign(setting="tuned")
        default = baseline[
            (baseline["setting"] == "default") & baseline["variant"].isin(set(tuned["variant"]))
        ]
        print_effect(pd.concat([default, tuned]), "paired by seed")


def print_effect(table, source: str) -> None:
    from bench import stats

    effect = stats.tuning_effect(table)
    if effect is None:
        print("(no tuned runs)")
        return
    means = table.pivot_table(
        index="variant", columns="setting", values="test_accuracy", aggfunc="mean"
    )
    print(f"{source}, {int(effect['seeds'].max())} seeds\n")
    print(
        "| variant | default test | tuned test | tuned - default [CI, Bonferroni] "
        "| p (Bonferroni) | verdict | tuned >= default |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in effect.itertuples():
        print(
            f"| {r.variant} | {means.loc[r.variant, 'default']:.4f} "
            f"| {means.loc[r.variant, 'tuned']:.4f} | "
            f"{r.delta_mean:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}] "
            f"| {_f(r.p_adjusted, '.3g')} | {r.verdict} | "
            f"{'yes' if r.delta_mean >= 0 else 'NO'} |"
        )


def _f(value, fmt: str = ".4f") -> str:
    return (
        ""
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, fmt)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--storage", required=True, help="the Optuna storage bench tune used")
    parser.add_argument(
        "--study", action="append", default=[], help="study file or name (repeatable)"
    )
    parser.add_argument(
        "--comparison",
        action="append",
        default=[],
        help="experiment of a compare --tuned (repeatable)",
    )
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        help=(
            "experiment of plain comparisons with chosen hyperparameters, scored against the "
            "default runs of the first --comparison, paired by seed (repeatable)"
        ),
    )
    parser.add_argument("--last-k", type=int, default=5)
    args = parser.parse_args()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(args.tracking_uri)
    print_selection(args, client)
    print_outcome(args, client)


if __name__ == "__main__":
    main()
