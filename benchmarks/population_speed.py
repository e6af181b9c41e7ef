"""Seconds per model-epoch: seed-style ``fit``, bench's Keras engine, the compiled loop alone
and a population of K members in one graph, side by side in one run, with peak memory.

Run on real Fashion-MNIST, on an otherwise idle machine:

    BENCH_DATA_DIR=../shared/data python benchmarks/population_speed.py

Every measurement runs in its own process (so its peak resident memory is its own, and no
compilation cache is shared); the first epoch (tracing, XLA compilation) is dropped and the
median of the others kept. It prints, per variant and batch size:
  * ``seed-style``: ``model.fit(x, y, batch_size=B, validation_split=1/6)`` as the notebooks
    call it (Keras defaults: NumPy arrays, one step per call);
  * ``keras``: ``bench.training.train(..., engine="keras")``, Keras' fit on a cached dataset,
    many steps per call (bench's engine before populations);
  * ``solo``: the compiled loop with one member (``engine="compiled"``);
  * ``pop K``: K members in one graph, seconds per member-epoch;
and the speed-ups over seed-style. Results also go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHALLOW = ("vanilla-shallow", "dropout-shallow", "batchnorm-shallow")
DEEP = ("vanilla-deep", "dropout-deep", "batchnorm-residual-deep")


def _bench(variant, splits, batch: int, epochs: int, engine: str, k: int) -> list[float]:
    """Wall seconds per epoch of the whole population (K members), validation included."""
    from bench.models import HParams
    from bench.training import train_population

    members = [HParams(batch_size=batch, epochs=epochs, seed=s) for s in range(k)]
    wall: list[float] = []
    last = [time.perf_counter()]

    def tick(epoch, metrics):
        now = time.perf_counter()
        wall.append(now - last[0])
        last[0] = now

    hooks = [[tick]] + [[] for _ in range(k - 1)]
    train_population(variant, members, splits, on_epoch=hooks, evaluate_test=False, engine=engine)
    return wall


def child(mode: str, name: str, batch: int, epochs: int, k: int, data_dir: str | None) -> None:
    """One measurement in this process; prints one JSON line."""
    from bench import data
    from bench.models import get_variant

    splits = data.load("fashion_mnist", data_dir=data_dir)
    variant = get_variant(name)
    if mode == "seed-style":
        sys.path.insert(0, str(Path(__file__).parent))
        from train_speed import seed_style_epochs

        times = seed_style_epochs(variant, splits, batch, epochs)
    else:
        times = _bench(
            variant, splits, batch, epochs, "keras" if mode == "keras" else "compiled", k
        )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"epochs": times, "k": k, "peak_mib": peak_mib}))


def measure(mode: str, name: str, batch: int, epochs: int, k: int, data_dir: str | None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, name, str(batch), str(epochs), str(k)]
    env = {**os.environ, **({"BENCH_DATA_DIR": data_dir} if data_dir else {})}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    times = sorted(row["epochs"][1:])
    row["s_per_model_epoch"] = times[len(times) // 2] / k
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    parser.add_argument(
        "--epochs", type=int, default=4, help="per measurement; the first is dropped"
    )
    parser.add_argument(
        "--population", type=int, default=8, help="K for the population measurement"
    )
    parser.add_argument("--shallow-batches", default="32,128")
    parser.add_argument("--deep-batch", type=int, default=256)
    parser.add_argument("--variants", default=",".join(SHALLOW + DEEP))
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "population_speed.json")
    )
    parser.add_argument(
        "--child",
        nargs=5,
        metavar=("MODE", "VARIANT", "BATCH", "EPOCHS", "K"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.child:
        mode, name, batch, epochs, k = args.child
        child(mode, name, int(batch), int(epochs), int(k), args.data_dir)
        return 0

    sys.path.insert(0, str(Path(__file__).parent))
    from train_speed import epoch_flops, matmul_flops

    from bench import data
    from bench.models import get_variant
    from bench.models.build import build_model
    from bench.training import device_description

    print(
        f"device: {device_description()}, Python {platform.python_version()}, {platform.machine()}"
    )
    peak = max(matmul_flops().values())
    splits = data.load("fashion_mnist", data_dir=args.data_dir)
    print(
        f"float32 square-matmul peak: {peak / 1e9:.0f} GFLOP/s (bound = the epoch's matmul FLOPs / "
        "peak)"
    )
    modes = [("seed-style", 1), ("keras", 1), ("solo", 1), ("pop", args.population)]
    header = f"{'variant':<24} {'batch':>5} " + " ".join(
        f"{m if m != 'pop' else f'pop {k}':>10}" for m, k in modes
    )
    header += (
        f" {'solo x':>7} {'pop x':>7} {'bound':>6} {'solo/bd':>7}   peak MiB "
        "(seed-style/keras/solo/pop)"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for name in args.variants.split(","):
        batches = (
            [args.deep_batch]
            if name.endswith("-deep")
            else [int(b) for b in args.shallow_batches.split(",")]
        )
        for batch in batches:
            got = {m: measure(m, name, batch, args.epochs, k, args.data_dir) for m, k in modes}
            s = {m: got[m]["s_per_model_epoch"] for m in got}
            bound = (
                epoch_flops(build_model(get_variant(name)), len(splits.x_train), len(splits.x_val))
                / peak
            )
            row = {
                "variant": name,
                "batch_size": batch,
                "population": args.population,
                **{f"{m}_s_per_model_epoch": s[m] for m in s},
                **{f"{m}_peak_mib": got[m]["peak_mib"] for m in got},
                "solo_speedup": s["seed-style"] / s["solo"],
                "pop_speedup": s["seed-style"] / s["pop"],
                "matmul_bound_s": bound,
                "solo_over_bound": s["solo"] / bound,
            }
            rows.append(row)
            print(
                f"{name:<24} {batch:>5} "
                + " ".join(f"{s[m]:>10.3f}" for m, _ in modes)
                + f" {row['solo_speedup']:>6.1f}x {row['pop_speedup']:>6.1f}x {bound:>6.2f} "
                f"{s['solo'] / bound:>6.2f}x   "
                + "/".join(f"{got[m]['peak_mib']:.0f}" for m, _ in modes),
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"device": device_description(), "matmul_peak_flops": peak, "rows": rows}, indent=2
        )
    )
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
