"""Where tuning spent its trials: read every shipped tuning report and measure the waste.

The tuning defaults (learning-rate range, the pruner's first judgement, trials per study)
are set from these numbers. The input is the "Trials, best first" table that
``bench report`` writes for a tuning study (results/**/tuning/**/report.md): no store is
needed, and nothing is trained. For every study, and summed over all of them:

* trials run, complete, pruned, failed; how many complete trials were not trial 0 (the
  default setting), i.e. how many configurations the search really compared at full length;
* learning rates: the range of the complete trials, and how many trials fell outside
  ``--lr-low .. --lr-high``, with what became of them (pruned at the first rung, at chance);
* slow starters: trials with dropout >= ``--heavy-dropout`` pruned at or before epoch
  ``--early``, and the best final validation accuracy of a heavy-dropout trial that ran on.

Usage:

    python benchmarks/trial_usage.py [--results results] [--lr-low 1e-5 --lr-high 1e-2]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pandas as pd

HEADER = "**Trials, best first**"


def trials_table(report: Path) -> pd.DataFrame | None:
    """The report's trial table (one row per trial), or None when it has none."""
    text = report.read_text(encoding="utf-8")
    if HEADER not in text:
        return None
    lines = []
    for line in text.split(HEADER, 1)[1].strip().splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if not set(line) <= set("|:- ")
    ]
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    for col in ("val_accuracy (last)", "epochs", "learning_rate", "dropout"):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col].replace("", None), errors="coerce")
    return frame


def usage(
    frame: pd.DataFrame, lr_low: float, lr_high: float, heavy: float, early: int
) -> dict[str, object]:
    state = frame["state"]
    complete = frame[state == "COMPLETE"]
    lr = frame["learning_rate"]
    outside = frame[(lr < lr_low) | (lr > lr_high)]
    has_dropout = "dropout" in frame and frame["dropout"].notna().any()
    heavy_rows = frame[frame["dropout"] >= heavy] if has_dropout else frame.iloc[0:0]
    heavy_cut = heavy_rows[(heavy_rows["state"] == "PRUNED") & (heavy_rows["epochs"] <= early)]
    heavy_done = heavy_rows[heavy_rows["state"] == "COMPLETE"]
    return {
        "trials": len(frame),
        "complete": len(complete),
        "complete_not_default": int((complete["trial"] != "trial-0").sum()),
        "pruned": int((state == "PRUNED").sum()),
        "pruned_epoch1": int(((state == "PRUNED") & (frame["epochs"] <= 1)).sum()),
        "failed": int((state == "FAIL").sum()),
        "complete_lr_min": float(complete["learning_rate"].min()) if len(complete) else None,
        "complete_lr_max": float(complete["learning_rate"].max()) if len(complete) else None,
        "outside_lr": len(outside),
        "outside_lr_complete": int((outside["state"] == "COMPLETE").sum()),
        "outside_lr_best_val": float(outside["val_accuracy (last)"].max())
        if len(outside)
        else None,
        "inside_lr_best_val": float(frame.drop(outside.index)["val_accuracy (last)"].max()),
        "heavy_dropout": len(heavy_rows),
        "heavy_dropout_cut_early": len(heavy_cut),
        "heavy_dropout_best_complete": float(heavy_done["val_accuracy (last)"].max())
        if len(heavy_done)
        else None,
        "best_val": float(complete["val_accuracy (last)"].max()) if len(complete) else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", type=Path, default=Path(__file__).resolve().parent.parent / "results"
    )
    parser.add_argument("--lr-low", type=float, default=1e-5)
    parser.add_argument("--lr-high", type=float, default=1e-2)
    parser.add_argument("--heavy-dropout", type=float, default=0.45)
    parser.add_argument(
        "--early", type=int, default=1, help="'cut early': pruned at or before this epoch"
    )
    args = parser.parse_args(argv)
    rows = []
    for report in sorted(args.results.glob("**/tuning/**/report.md")):
        frame = trials_table(report)
        if frame is not None and len(frame):
            name = str(report.parent.relative_to(args.results))
            rows.append(
                {
                    "study": name,
                    **usage(frame, args.lr_low, args.lr_high, args.heavy_dropout, args.early),
                }
            )
    if not rows:
        print(f"no tuning reports under {args.results}", file=sys.stderr)
        return 1
    table = pd.DataFrame(rows)
    buf = io.StringIO()
    table.to_string(buf, index=False, float_format=lambda v: f"{v:.4g}")
    print(buf.getvalue())
    total = table[
        [c for c in table.columns if c not in ("study",) and table[c].dtype.kind == "i"]
    ].sum()
    print("\nsummed over", len(table), "studies:")
    for key, value in total.items():
        print(f"  {key:28s} {int(value)}")
    share = total["outside_lr"] / total["trials"]
    print(
        f"  trials outside [{args.lr_low:g}, {args.lr_high:g}]: {share:.1%} of all; "
        f"{int(total['outside_lr_complete'])} of them completed"
    )
    worse = table.dropna(subset=["outside_lr_best_val"])
    worse = worse[worse["outside_lr_best_val"] > worse["inside_lr_best_val"]]
    print(
        f"  studies where a trial outside the range beat every trial inside it: {len(worse)}"
        + (f" ({', '.join(worse['study'])})" if len(worse) else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
