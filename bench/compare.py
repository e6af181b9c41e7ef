"""Train several variants side by side under one study and record them as one comparison."""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench import data, stats, training
from bench.studies import Study
from bench.tracking import Tracker, to_markdown
from bench.training import TrainResult
from bench.variants import HParams, Variant, get_variant, list_variants

log = logging.getLogger(__name__)
progress = logging.getLogger("bench.progress")

RUN_KINDS = ("comparison", "train", "tuned")  # the runs a comparison makes (and cleans up)

TABLE_COLUMNS = [
    "run",
    "variant",
    "setting",
    "seed",
    "params",
    "status",
    "epochs",
    "best_epoch",
    "best_val_accuracy",
    "final_val_accuracy",
    "test_accuracy",
    "test_loss",
    "train_seconds",
    "ref_test_accuracy",
    "ref_test_loss",
    "delta_test_accuracy",
    "delta_test_loss",
    "ref_params",
    "params_match",
]


@dataclass(frozen=True)
class Settings:
    """A study after command-line overrides: exactly what will be run."""

    study: Study
    task: str
    variants: tuple[str, ...]
    hparams: HParams
    seeds: tuple[int, ...]
    validation_size: int
    limit: int | None = None
    tuned: tuple[tuple[str, dict[str, object]], ...] = ()  # variant -> tuned hyperparameters
    per_variant: tuple[tuple[str, HParams], ...] = ()  # the study's overrides, after the CLI's

    @classmethod
    def from_study(
        cls,
        study: Study,
        *,
        task: str | None = None,
        variants: str | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        seeds: int | None = None,
        learning_rate: float | None = None,
        validation_size: int | None = None,
        limit: int | None = None,
    ) -> Settings:
        names = list_variants(variants) if variants else study.variant_names
        cli = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
        hp = study.hparams().replace(**cli)
        # A command-line value beats the study's per-variant override as well as its protocol.
        per_variant = tuple(
            (n, study.hparams(variant=n).replace(**cli)) for n in names if n in study.overrides
        )
        n_seeds = seeds if seeds is not None else study.protocol.seeds
        if n_seeds <= 0:
            raise ValueError("seeds must be > 0")
        return cls(
            study=study,
            task=data.get_task(task).name if task else study.task,
            variants=tuple(names),
            hparams=hp,
            seeds=tuple(range(n_seeds)),
            validation_size=validation_size or study.protocol.validation_size,
            limit=limit,
            per_variant=per_variant,
        )

    def hparams_for(self, variant: str) -> HParams:
        return dict(self.per_variant).get(variant, self.hparams)

    def run_name(self, variant: str, seed: int, setting: str = "default") -> str:
        name = variant if setting == "default" else f"{variant}/{setting}"
        return name if len(self.seeds) == 1 else f"{name}/s{seed}"

    def jobs(self) -> list[tuple[str, str, HParams]]:
        """(variant, setting, hyperparameters) for every run, default and tuned side by side."""
        tuned = dict(self.tuned)
        out = []
        for name in self.variants:
            base = self.hparams_for(name)
            for seed in self.seeds:
                out.append((name, "default", base.replace(seed=seed)))
                if name in tuned:
                    out.append((name, "tuned", dataclasses.replace(base, seed=seed, **tuned[name])))
        return out

    def params(self, splits: data.Splits) -> dict[str, object]:
        """The parent run's params, namespaced ``protocol.*`` so they never collide with the
        raw entry-point params that ``mlflow run`` logs on the same run."""
        hp = self.hparams
        values: dict[str, object] = {
            "study": self.study.name,
            "task": self.task,
            "variants": ",".join(self.variants),
            "epochs": hp.epochs,
            "batch_size": hp.batch_size,
            "optimizer": hp.optimizer,
            "learning_rate": "default" if hp.learning_rate is None else hp.learning_rate,
            "dropout": "variant" if hp.dropout is None else hp.dropout,
            "seeds": len(self.seeds),
            "validation_size": self.validation_size,
            "preprocessing": splits.preprocessing,
            "data_source": splits.source,
            **{f"split.{k}": v for k, v in splits.sizes.items()},
            **({"limit": self.limit} if self.limit else {}),
            **{
                f"override.{name}": ", ".join(
                    f"{k}={v}" for k, v in hp.as_params().items()
                    if k != "seed" and v != self.hparams.as_params()[k]
                )
                for name, hp in self.per_variant
            },
        }
        return {f"protocol.{k}": v for k, v in values.items()}


@dataclass
class ComparisonResult:
    table: pd.DataFrame
    parent_run_id: str
    experiment_id: str
    experiment_name: str
    tracking_uri: str
    results: list[TrainResult] = field(default_factory=list)
    side_by_side: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()
    summary: pd.DataFrame | None = None  # per variant and setting, over seeds
    rankings: dict[str, stats.Ranking] = field(default_factory=dict)

    @property
    def failed(self) -> list[TrainResult]:
        return [r for r in self.results if not r.healthy]


def comparison_table(
    results: Sequence[TrainResult],
    run_names: Sequence[str],
    study: Study,
    settings: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per training run, with the study's reference numbers beside ours."""
    rows = []
    settings = settings or ["default"] * len(results)
    for name, r, setting in zip(run_names, results, settings, strict=True):
        ref = study.references.get(r.variant)
        ref_acc = ref.test_accuracy if ref else None
        ref_loss = ref.test_loss if ref else None
        ref_params = ref.params if ref else None
        rows.append(
            {
                "run": name,
                "variant": r.variant,
                "setting": setting,
                "seed": r.hparams.seed,
                "params": r.params,
                "status": r.status,
                "epochs": r.epochs_run,
                "best_epoch": None if r.best_epoch is None else r.best_epoch + 1,
                "best_val_accuracy": r.best_val_accuracy,
                "final_val_accuracy": r.final_val_accuracy,
                "test_accuracy": r.test_accuracy,
                "test_loss": r.test_loss,
                "train_seconds": round(r.train_seconds, 1),
                "ref_test_accuracy": ref_acc,
                "ref_test_loss": ref_loss,
                "delta_test_accuracy": delta(r.test_accuracy, ref_acc),
                "delta_test_loss": delta(r.test_loss, ref_loss),
                "ref_params": ref_params,
                "params_match": None if ref_params is None else r.params == ref_params,
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def delta(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or theirs is None else ours - theirs


def tuned_vs_default(
    table: pd.DataFrame, tuned: dict[str, dict[str, object]] | None = None
) -> pd.DataFrame | None:
    """Per variant: mean test accuracy with default and with tuned hyperparameters."""
    if "tuned" not in set(table["setting"]):
        return None
    means = table.pivot_table(index="variant", columns="setting", values="test_accuracy", aggfunc="mean")
    frame = pd.DataFrame(
        {
            "variant": means.index,
            "default test acc": means.get("default"),
            "tuned test acc": means.get("tuned"),
        }
    ).reset_index(drop=True)
    frame["Δ tuned - default"] = frame["tuned test acc"] - frame["default test acc"]
    frame["tuned hyperparameters"] = [
        ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in (tuned or {}).get(name, {}).items()
        )
        for name in frame["variant"]
    ]
    order = list(dict.fromkeys(table["variant"]))
    return frame.set_index("variant").loc[order].reset_index()


def _progress_hook(label: str, epochs: int) -> training.EpochHook:
    def hook(epoch: int, m: dict[str, float]) -> None:
        progress.info(
            "%s epoch %*d/%d  loss %.4f acc %.4f | val_loss %.4f val_acc %.4f | %.1fs",
            label,
            len(str(epochs)),
            epoch + 1,
            epochs,
            m["loss"],
            m["accuracy"],
            m["val_loss"],
            m["val_accuracy"],
            m["epoch_seconds"],
        )

    return hook


def train_and_log(
    tracker: Tracker,
    variant: Variant,
    hparams: HParams,
    splits: data.Splits,
    *,
    run_name: str,
    kind: str,
    label: str,
    extra_params: dict[str, object] | None = None,
    parent_run_id: str | None = None,
    log_model: bool = True,
) -> TrainResult:
    """One training run as one MLflow run: params first, curves per epoch, artifacts last."""
    from bench.models import build_model

    params = {
        **variant.structure_params(),
        **hparams.as_params(),
        "task": splits.task,
        "params": build_model(variant, hparams, input_shape=splits.input_shape).count_params(),
        **{f"split.{k}": v for k, v in splits.sizes.items()},
        **(extra_params or {}),
    }
    tags = {"bench.variant": variant.name, "bench.seed": str(hparams.seed)}
    with tracker.run(
        run_name,
        kind=kind,
        params=params,
        tags=tags,
        parent_run_id=parent_run_id,
        description=variant.description,
    ) as run_id:
        result = training.train(
            variant,
            hparams,
            splits,
            on_epoch=[tracker.epoch_hook(run_id), _progress_hook(label, hparams.epochs)],
        )
        tracker.log_training(run_id, result, splits=splits, log_model=log_model)
        result.run_id = run_id
    summary = (
        f"test acc {result.test_accuracy:.4f} loss {result.test_loss:.4f}"
        if result.test_accuracy is not None
        else "no test score"
    )
    progress.info("%s done in %.1fs: %s, %s", label, result.train_seconds, result.status, summary)
    _release(result)
    return result


def _release(result: TrainResult) -> None:
    """Drop the Keras model and graph state between runs (memory stays flat over a study)."""
    import keras

    result.model = None
    keras.backend.clear_session()
    gc.collect()


def run_comparison(
    settings: Settings,
    *,
    data_dir: str | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    log_models: bool = True,
) -> ComparisonResult:
    """Train every (variant, seed) of ``settings`` under one parent run and log the table."""
    variants = [get_variant(n) for n in settings.variants]
    # Everything that can fail on bad input fails here, before any run exists.
    study = settings.study
    splits = data.load(
        settings.task,
        data_dir=data_dir,
        validation_size=settings.validation_size,
        limit=settings.limit,
        standardize=study.protocol.standardize,
    )
    tracker = Tracker(tracking_uri, experiment or study.name, description=study.description)
    stale = tracker.close_stale_runs(RUN_KINDS)
    if stale:
        progress.warning(
            "closed %d run(s) left RUNNING by a killed bench process as FAILED: %s", len(stale), ", ".join(stale)
        )
    jobs = settings.jobs()
    description = study.description + (
        "\n\nNotes:\n" + "\n".join(f"- {n}" for n in study.notes) if study.notes else ""
    )
    results: list[TrainResult] = []
    names: list[str] = []
    kinds: list[str] = []
    with tracker.run(
        f"compare-{study.name}",
        kind="comparison",
        params=settings.params(splits),
        tags={"bench.study": study.name, "bench.task": settings.task, **_env_tags()},
        description=description,
    ) as parent_id:
        progress.info(
            "comparison %s: %d runs (%d variants x %d seeds%s) on %s [%s]",
            study.name,
            len(jobs),
            len(variants),
            len(settings.seeds),
            ", default and tuned" if settings.tuned else "",
            settings.task,
            ", ".join(f"{k} {v}" for k, v in splits.sizes.items()),
        )
        for i, (vname, setting, hparams) in enumerate(jobs, start=1):
            name = settings.run_name(vname, hparams.seed, setting)
            result = train_and_log(
                tracker,
                get_variant(vname),
                hparams,
                splits,
                run_name=name,
                kind="train" if setting == "default" else "tuned",
                label=f"[{i}/{len(jobs)}] {name}",
                extra_params={"study": study.name, "setting": setting, **_reference_params(study, vname)},
                parent_run_id=parent_id,
                log_model=log_models,
            )
            results.append(result)
            names.append(name)
            kinds.append(setting)
        table = comparison_table(results, names, study, kinds)
        summary = stats.aggregate(table)
        rankings = {setting: stats.rank(table, setting) for setting in dict.fromkeys(table["setting"])}
        side_by_side = tuned_vs_default(table, dict(settings.tuned))
        if side_by_side is not None:
            tracker.log_text(parent_id, side_by_side.to_csv(index=False), "tuned_vs_default.csv")
            tracker.log_text(parent_id, to_markdown(side_by_side), "tuned_vs_default.md")
        tracker.log_comparison(
            parent_id,
            table,
            {n: r.history for n, r in zip(names, results, strict=True)},
            {n: get_variant(r.variant).group for n, r in zip(names, results, strict=True)},
            title=study.name,
            splits=splits,
            notes=study.notes,
            reference_source=study.reference_source,
            summary=summary,
            rankings=rankings,
            tuning_effect=stats.tuning_effect(table),
        )
        healthy = [r.test_accuracy for r in results if r.healthy and r.test_accuracy is not None]
        tracker.set_tags(parent_id, {"bench.unhealthy_runs": str(sum(not r.healthy for r in results))})
        if healthy:
            tracker.log_metrics(parent_id, {"best_test_accuracy": float(np.max(healthy))})
        tracker.log_report(parent_id)
    return ComparisonResult(
        table=table,
        side_by_side=side_by_side,
        parent_run_id=parent_id,
        experiment_id=tracker.experiment_id,
        experiment_name=tracker.experiment_name,
        tracking_uri=tracker.uri,
        results=results,
        notes=tuple(study.notes),
        summary=summary,
        rankings=rankings,
    )


def _reference_params(study: Study, variant: str) -> dict[str, object]:
    """The notebook's numbers as the child run's params (``ref.*``), so a report rebuilt
    from the store alone shows them too."""
    ref = study.references.get(variant)
    if ref is None:
        return {}
    values = {"test_accuracy": ref.test_accuracy, "test_loss": ref.test_loss, "params": ref.params}
    return {f"ref.{k}": v for k, v in values.items() if v is not None}


def _env_tags() -> dict[str, str]:
    from bench.tracking import environment_tags

    return environment_tags(training.device_description())


def format_table(table: pd.DataFrame) -> str:
    """The table as the terminal shows it (fewer columns than the CSV)."""
    cols = [
        "run",
        "params",
        "status",
        "epochs",
        "best_val_accuracy",
        "test_accuracy",
        "test_loss",
        "ref_test_accuracy",
        "delta_test_accuracy",
        "ref_test_loss",
        "params_match",
        "train_seconds",
    ]
    shown = table[cols].rename(
        columns={
            "best_val_accuracy": "best val acc",
            "test_accuracy": "test acc",
            "test_loss": "test loss",
            "ref_test_accuracy": "ref acc",
            "delta_test_accuracy": "Δ vs ref",
            "ref_test_loss": "ref loss",
            "params_match": "params = ref",
            "train_seconds": "seconds",
        }
    )
    if shown["ref acc"].isna().all():
        shown = shown.drop(columns=["ref acc", "Δ vs ref"])
    if shown["ref loss"].isna().all():
        shown = shown.drop(columns=["ref loss"])
    if shown["params = ref"].isna().all():
        shown = shown.drop(columns=["params = ref"])
    else:
        shown["params = ref"] = [
            "" if v is None or v != v else ("yes" if v else "NO") for v in shown["params = ref"]
        ]
    formats = {"params": "{:,.0f}", "seconds": "{:.1f}", "epochs": "{:.0f}", "Δ vs ref": "{:+.4f}"}
    for col in shown.columns:
        if col in ("run", "status", "params = ref"):
            continue
        fmt = formats.get(col, "{:.4f}")
        shown[col] = [fmt.format(v) if v is not None and v == v else "" for v in shown[col]]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=("left",) + ("right",) * (len(shown.columns) - 1))


def format_summary(summary: pd.DataFrame, rankings: dict[str, stats.Ranking]) -> str:
    """The over-seeds table as the terminal shows it: mean ± std, 95% CI, rank and mark."""
    return summary_frame(summary, rankings).to_markdown(index=False, disable_numparse=True)


def summary_frame(summary: pd.DataFrame, rankings: dict[str, stats.Ranking]) -> pd.DataFrame:
    """The over-seeds table with formatted cells (terminal and reports)."""
    rows = []
    for r in summary.itertuples():
        ranking = rankings.get(r.setting)
        mark = ranking.marks().get(r.variant, "") if ranking else ""
        mean_rank = ranking.mean_rank.get(r.variant) if ranking else None
        name = r.variant if r.setting == "default" else f"{r.variant}/{r.setting}"
        rows.append(
            {
                "variant": name,
                "seeds": f"{r.healthy}/{r.seeds}" if r.healthy != r.seeds else str(r.seeds),
                "params": f"{r.params:,}",
                "test acc mean ± std": _pm(r.test_accuracy_mean, r.test_accuracy_std),
                "95% CI": _ci(r.test_accuracy_ci95_low, r.test_accuracy_ci95_high),
                "test loss mean ± std": _pm(r.test_loss_mean, r.test_loss_std),
                "best val acc": _num(r.best_val_accuracy_mean),
                "ref acc": _num(r.ref_test_accuracy),
                "Δ vs ref": "" if r.delta_vs_ref is None or r.delta_vs_ref != r.delta_vs_ref else f"{r.delta_vs_ref:+.4f}",
                "mean rank": "" if mean_rank is None else f"{mean_rank:.2f}",
                "vs best (paired t, Holm, 5%)": mark,
                "seconds": f"{r.train_seconds_mean:.1f}",
            }
        )
    frame = pd.DataFrame(rows)
    if frame["ref acc"].eq("").all():
        frame = frame.drop(columns=["ref acc", "Δ vs ref"])
    return frame


def format_ranking(ranking: stats.Ranking) -> str:
    """One paragraph: the omnibus test and the groups that cannot be told apart."""
    if not ranking.testable:
        return f"ranking ({ranking.setting}): " + "; ".join(ranking.notes or ["not testable"])
    if ranking.friedman_p is not None:
        head = f"Friedman test over {len(ranking.scores)} seeds: p = {ranking.friedman_p:.3g}"
    else:
        head = f"paired t-test over {len(ranking.scores)} seeds"
    verdict = "the variants differ" if ranking.omnibus_rejects else "no significant difference between the variants"
    groups = ranking.groups()
    joined = "; ".join(" ≈ ".join(g) for g in groups) if groups else "none"
    text = f"ranking ({ranking.setting}): {head} ({verdict} at 5%). Not significantly different: {joined}."
    return " ".join([text, *ranking.notes])


def _num(v: float | None) -> str:
    return "" if v is None or v != v else f"{v:.4f}"


def _pm(mean: float, std: float) -> str:
    if mean != mean:
        return ""
    return f"{mean:.4f}" if std != std else f"{mean:.4f} ± {std:.4f}"


def _ci(low: float, high: float) -> str:
    return "" if low != low else f"[{low:.4f}, {high:.4f}]"
