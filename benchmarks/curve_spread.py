"""How much one run's number can move: read a comparison's learning curves back and measure.

A seed notebook reports one run per variant, scored at its last epoch. Where our mean over
seeds differs from that number, two measured things say how far one such draw can land
from the mean: the spread of the final test accuracy over our seeds, and how much each
run's validation accuracy moves over its last epochs (a run stopped one epoch earlier or
later would have scored that differently). This script prints, per variant of a stored
comparison (training nothing):

* test accuracy over the seeds: mean, min, max, and the notebook's number when the study
  records one, with the difference in points;
* validation accuracy over each run's last ``--last-k`` epochs: the lowest and highest
  value any seed reached there, and the largest epoch-to-epoch change;
* training accuracy at the last epoch, and against validation (the generalisation gap);
  whether validation still rose over the last ``--last-k`` epochs (a run still learning),
  and at which epoch validation peaked (mean over seeds, of how many trained).

Usage (the numbers behind results/README.md's seed 000 section):

    python benchmarks/curve_spread.py --tracking-uri sqlite:///.runs/issue15/mlflow.db \\
        --run-id <comparison parent run id> [--last-k 10]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def spread(children, last_k: int) -> list[dict[str, object]]:
    """One row per variant (and setting) of a comparison's finished training runs."""
    from statistics import fmean

    from bench.results.table import row_from_stored
    from bench.store import schema

    groups: dict[str, list] = {}
    refs: dict[str, float | None] = {}
    for run in children:
        row = row_from_stored(run)  # no test score unless the run FINISHED
        if row["test_accuracy"] is None:
            continue
        key = schema.display_key(row["variant"], row["setting"])
        groups.setdefault(key, []).append(run)
        refs[key] = row["ref_test_accuracy"]
    rows = []
    for key, runs in groups.items():
        tests = [r.metrics[schema.TEST_ACCURACY] for r in runs]
        curves = [c for c in (r.histories.get(schema.VAL_ACCURACY, []) for r in runs) if c]
        tails = [c[-last_k:] for c in curves]
        steps = [abs(b - a) for t in tails for a, b in zip(t, t[1:], strict=False)]
        train_last = [
            r.histories[schema.ACCURACY][-1] for r in runs if r.histories.get(schema.ACCURACY)
        ]
        peaks = [
            1 + r.metrics[schema.BEST_EPOCH] for r in runs if schema.BEST_EPOCH in r.metrics
        ]  # 0-based
        ref, mean = refs[key], fmean(tests)
        rows.append(
            {
                "variant": key,
                "seeds": len(runs),
                "test mean": mean,
                "test min": min(tests),
                "test max": max(tests),
                "notebook": ref,
                "Δ pts": None if ref is None else 100 * (mean - ref),
                f"val min (last {last_k})": min((min(t) for t in tails), default=None),
                f"val max (last {last_k})": max((max(t) for t in tails), default=None),
                "largest epoch step": max(steps, default=None),
                "train acc (last)": fmean(train_last) if train_last else None,
                "train − val (last)": fmean(train_last) - fmean(t[-1] for t in tails)
                if train_last and tails
                else None,
                f"val rise (last {last_k})": fmean(t[-1] - t[0] for t in tails) if tails else None,
                "best val epoch": fmean(peaks) if peaks else None,
                "epochs": max((len(c) for c in curves), default=None),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--run-id", required=True, help="a comparison's parent run")
    parser.add_argument("--last-k", type=int, default=10)
    args = parser.parse_args()

    import pandas as pd

    from bench.store.reader import StoreReader

    stored = StoreReader(args.tracking_uri).load(
        args.run_id
    )  # training runs come with their curves
    frame = pd.DataFrame(spread(stored.children, args.last_k))
    print(f"comparison {args.run_id} ({stored.experiment_name}), last {args.last_k} epochs\n")
    print(frame.to_markdown(index=False, floatfmt=".4f"))


if __name__ == "__main__":
    main()
