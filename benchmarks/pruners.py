"""Which Optuna pruner finds the best validation accuracy for the least training?

Runs the same seeded TPE search (the default study's search space, the objective
`bench tune` uses: last-epoch validation accuracy) under each pruner on real
Fashion-MNIST, and prints the best validation accuracy and the total number of epochs
trained, relative to the unpruned search:

    BENCH_DATA_DIR=../shared/data python benchmarks/pruners.py

Target for the default pruner: within 0.3 points of the unpruned best, with <= 40% of
its epochs. Results go to benchmarks/results/pruners.json. Optuna storage is in memory
and nothing is logged to MLflow: this measures the search, not the bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def search(pruner_name: str, seed: int, args, splits) -> dict:
    import keras
    import optuna

    from bench import training
    from bench.models import get_variant
    from bench.studies import load_study
    from bench.tuning import make_pruner, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_cfg = load_study(args.study)
    variant = get_variant(args.variant)
    base = study_cfg.hparams().replace(epochs=args.epochs, batch_size=args.batch_size)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=make_pruner(pruner_name, args.epochs),
    )
    epochs_trained = 0

    def objective(trial):
        nonlocal epochs_trained
        hp = suggest(trial, study_cfg.search_space, base.replace(seed=seed + trial.number), variant)

        def report(epoch, metrics):
            nonlocal epochs_trained
            epochs_trained += 1
            value = metrics["val_accuracy"]
            if math.isfinite(value):
                trial.report(value, epoch + 1)  # step = epochs trained (the pruners' resource)
                if trial.should_prune():
                    raise optuna.TrialPruned()

        try:
            result = training.train(variant, hp, splits, on_epoch=[report], evaluate_test=False)
        finally:
            keras.backend.clear_session()
        if result.status == training.STATUS_DIVERGED:
            raise optuna.TrialPruned()
        return result.final_val_accuracy

    t0 = time.perf_counter()
    study.optimize(objective, n_trials=args.trials)
    states = [t.state.name for t in study.trials]
    return {
        "pruner": pruner_name,
        "seed": seed,
        "best_val_accuracy": study.best_value,
        "best_params": study.best_params,
        "epochs_trained": epochs_trained,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "seconds": time.perf_counter() - t0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    parser.add_argument("--study", default="default")
    parser.add_argument("--variant", default="vanilla-shallow")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seeds", type=int, default=2, help="sampler seeds per pruner")
    parser.add_argument("--pruners", default="none,median,successive-halving,hyperband")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pruners.json"))
    args = parser.parse_args()

    from bench import data

    splits = data.load("fashion_mnist", data_dir=args.data_dir)
    print(
        f"{args.variant}, {args.trials} trials x {args.epochs} epochs, batch {args.batch_size}, "
        f"sampler seeds 0..{args.seeds - 1}"
    )
    rows = []
    for name in args.pruners.split(","):
        for seed in range(args.seeds):
            row = search(name, seed, args, splits)
            rows.append(row)
            print(
                f"  {name:<19} seed {seed}: best val {row['best_val_accuracy']:.4f}, "
                f"{row['epochs_trained']:>3} epochs ({row['complete']} complete, {row['pruned']} "
                f"pruned), {row['seconds']:.0f}s",
                flush=True,
            )
    print()
    base = {r["seed"]: r for r in rows if r["pruner"] == "none"}
    print(
        f"{'pruner':<19} {'best val (mean)':>15} {'Δ vs none (pts)':>15} {'epochs (mean)':>13} "
        f"{'epochs vs none':>14}"
    )
    summary = {}
    for name in args.pruners.split(","):
        mine = [r for r in rows if r["pruner"] == name]
        best = sum(r["best_val_accuracy"] for r in mine) / len(mine)
        epochs = sum(r["epochs_trained"] for r in mine) / len(mine)
        if base:
            delta = sum(
                100 * (r["best_val_accuracy"] - base[r["seed"]]["best_val_accuracy"]) for r in mine
            ) / len(mine)
            share = sum(
                r["epochs_trained"] / base[r["seed"]]["epochs_trained"] for r in mine
            ) / len(mine)
        else:
            delta, share = float("nan"), float("nan")
        summary[name] = {
            "best_val_accuracy": best,
            "delta_points": delta,
            "epochs": epochs,
            "epoch_share": share,
        }
        print(f"{name:<19} {best:>15.4f} {delta:>+15.2f} {epochs:>13.1f} {100 * share:>13.0f}%")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary}, indent=2))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
