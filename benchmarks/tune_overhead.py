"""Where a tuning study's wall time goes: training against everything around it.

Run on real Fashion-MNIST, on an otherwise idle machine:

    BENCH_DATA_DIR=../shared/data python benchmarks/tune_overhead.py --trials 50 --epochs 4

For each ``--population`` given (default: 1 and 4) it runs ``bench tune --variants
vanilla-shallow`` into a fresh temporary MLflow store and Optuna journal under cProfile and
prints: the wall time, the epochs trained (from the study's intermediate values), the
seconds per trained epoch against a bare epoch of the compiled loop (``solo s/epoch``, timed
in the same process before the study), the overhead ratio ``wall / (epochs x solo s/epoch)``,
and the cumulative time of the phases that make up a trial (training, per-epoch metric
logging, run creation and closing, Optuna asks and tells, the retrain with its artifacts,
Optuna's figures and the report).

``--from-store URI`` instead reads a finished ``bench tune`` back from its MLflow store (for
example the full default study, which takes half an hour): its wall time (first study run's
start to last run's end), the epochs every trial and retrain trained, and each variant's solo
seconds per epoch, the median epoch of its tuned retrain (one model alone, 20 epochs, in the
same run), so the ratio is measured side by side without timing anything again.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PHASES = {  # label -> (module path fragment, function name) summed as cumulative time
    "training (compiled epochs)": ("bench/population/engine.py", "run_epoch"),
    "per-epoch metrics to MLflow": ("bench/store/tracker.py", "hook"),
    "run start (params, tags)": ("bench/store/tracker.py", "start_run"),
    "run end": ("bench/store/tracker.py", "end_run"),
    "Optuna ask": ("optuna/study/study.py", "ask"),
    "Optuna tell": ("optuna/study/study.py", "tell"),
    "trial counts / best (storage reads)": ("bench/tuning/worker.py", "counts"),
    "members entering slots (initial weights)": ("bench/population/engine.py", "start"),
    "retrain of the best, test, artifacts": ("bench/tuning/study.py", "_retrain_best"),
    "study figures and trials.csv": ("bench/tuning/study.py", "_log_study"),
    "report": ("bench/results/report.py", "log_report"),
}


def bare_epoch_seconds(splits, epochs: int = 4) -> float:
    from bench.models import HParams, get_variant
    from bench.population import train_population
    from bench.studies import load_study

    batch = load_study("default").protocol.batch_size  # what the default study's trials train with
    hp = HParams(batch_size=batch, epochs=epochs, learning_rate=1e-3)
    [result] = train_population(get_variant("vanilla-shallow"), [hp], splits)
    times = sorted(result.history["epoch_seconds"][1:])
    return times[len(times) // 2]


def profile_tune(population: int, trials: int, epochs: int, data_dir: str, folder: Path) -> dict:
    import optuna
    from click.testing import CliRunner

    from bench.cli import cli

    uri = f"sqlite:///{folder}/mlflow.db"
    args = [
        "tune",
        "--variants",
        "vanilla-shallow",
        "--trials",
        str(trials),
        "--epochs",
        str(epochs),
        "--population",
        str(population),
        "--tracking-uri",
        uri,
        "--storage",
        f"journal://{folder}/optuna.journal",
        "--data-dir",
        data_dir,
        "--study-name",
        f"overhead-{population}",
    ]
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    result = CliRunner().invoke(cli, args)
    profiler.disable()
    wall = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(result.output[-3000:])
    from bench.tuning import open_storage

    study = optuna.load_study(
        study_name=f"overhead-{population}",
        storage=open_storage(f"journal://{folder}/optuna.journal"),
    )
    trained = sum(len(t.intermediate_values) for t in study.get_trials())
    stats = pstats.Stats(profiler)
    phases = {}
    for label, (path, name) in PHASES.items():
        phases[label] = sum(
            entry[3]
            for (file, _line, func), entry in stats.stats.items()
            if func == name and file.endswith(path)
        )
    return {"population": population, "wall": wall, "epochs_trained": trained, "phases": phases}


def store_overhead(uri: str) -> dict:
    """Wall time against epochs x solo s/epoch, per variant and overall, for a finished study."""
    import statistics

    from mlflow import MlflowClient

    from bench.store import schema

    client = MlflowClient(uri)
    runs = [
        r
        for e in client.search_experiments()
        for r in client.search_runs([e.experiment_id], max_results=50_000)
    ]
    studies = [r for r in runs if r.data.tags.get(schema.KIND) == schema.KIND_STUDY]
    if not studies:
        raise SystemExit(f"no bench tune study in {uri}")
    wall = (
        max(r.info.end_time or 0 for r in runs) - min(r.info.start_time for r in studies)
    ) / 1000
    per: dict[str, dict] = {}
    for r in runs:
        kind = r.data.tags.get(schema.KIND)
        if kind not in (schema.KIND_TRIAL, schema.KIND_TUNED):
            continue
        row = per.setdefault(
            r.data.tags[schema.VARIANT_TAG], {"epochs": 0, "logged_s": 0.0, "solo_s": None}
        )
        seconds = [m.value for m in client.get_metric_history(r.info.run_id, schema.EPOCH_SECONDS)]
        row["epochs"] += len(seconds)
        row["logged_s"] += sum(seconds)
        if kind == schema.KIND_TUNED:
            row["solo_s"] = statistics.median(seconds)
    missing = [v for v, row in per.items() if row["solo_s"] is None]
    if missing:
        raise SystemExit(f"no tuned retrain (the solo epoch time) for {', '.join(missing)}")
    for row in per.values():
        row["bare_s"] = row["epochs"] * row["solo_s"]
    epochs = sum(row["epochs"] for row in per.values())
    bare = sum(row["bare_s"] for row in per.values())
    return {
        "uri": uri,
        "wall": wall,
        "epochs_trained": epochs,
        "epochs_x_solo_s": bare,
        "overhead_ratio": wall / bare,
        "variants": per,
    }


def print_store_overhead(row: dict) -> None:
    print(
        f"{row['uri']}: {row['wall']:.0f} s wall for {row['epochs_trained']} trained epochs "
        f"(trials and retrains); epochs x solo s/epoch = {row['epochs_x_solo_s']:.0f} s; "
        f"overhead ratio {row['overhead_ratio']:.2f}x"
    )
    print(
        f"  {'variant':<26} {'epochs':>7} {'solo s/epoch':>13} {'epochs x solo':>14} "
        f"{'logged epoch s':>15}"
    )
    for name, v in row["variants"].items():
        print(
            f"  {name:<26} {v['epochs']:>7} {v['solo_s']:>13.3f} {v['bare_s']:>14.0f} "
            f"{v['logged_s']:>15.0f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--populations", default="1,4")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--from-store",
        metavar="URI",
        help="read a finished bench tune from its MLflow store instead",
    )
    args = parser.parse_args()
    results = Path(__file__).parent / "results"
    if args.from_store:
        row = store_overhead(args.from_store)
        print_store_overhead(row)
        out = Path(args.out or results / "tune_overhead_store.json")
        out.write_text(json.dumps(row, indent=2))
        print(f"\nwritten: {out}")
        return 0
    args.out = args.out or str(results / "tune_overhead.json")

    from bench import data

    splits = data.load("fashion_mnist", data_dir=args.data_dir)
    bare = bare_epoch_seconds(splits)
    print(
        "bare compiled epoch (vanilla-shallow, the default study's batch size, validation "
        f"included): {bare:.3f} s"
    )
    rows = []
    for population in (int(p) for p in args.populations.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            row = profile_tune(population, args.trials, args.epochs, args.data_dir, Path(tmp))
        row["bare_epoch_s"] = bare
        row["s_per_trained_epoch"] = row["wall"] / row["epochs_trained"]
        row["overhead_ratio"] = row["wall"] / (row["epochs_trained"] * bare)
        rows.append(row)
        print(
            f"\n--population {population}: {row['wall']:.1f} s wall for {row['epochs_trained']} "
            f"trained epochs = {row['s_per_trained_epoch']:.3f} s per trained epoch, "
            f"{row['overhead_ratio']:.2f}x a bare epoch"
        )
        for label, seconds in sorted(row["phases"].items(), key=lambda kv: -kv[1]):
            print(f"  {label:<40} {seconds:7.1f} s  {100 * seconds / row['wall']:5.1f}%")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
