"""Training speed of `bench` against plain seed-style ``model.fit``, and MLflow's cost.

Run on real Fashion-MNIST, on an otherwise idle machine:

    BENCH_DATA_DIR=../shared/data python benchmarks/train_speed.py

It prints, per variant and batch size:
  * seconds per epoch of seed-style ``model.fit(x, y, batch_size=B, validation_split=1/6)``
    (Keras defaults: numpy arrays, one step per call) and of ``bench.training.train``
    (same model, optimizer, batch size, epochs, data and validation split);
  * the speed-up;
  * the matrix-multiply bound: forward + backward FLOPs of one epoch (plus the validation
    forward pass) divided by the machine's measured float32 matmul FLOP/s, and how far
    ``bench`` is from it;
and, for one full tracked run per variant, the share of wall time MLflow logging takes.
The first epoch (graph tracing and XLA compilation) is excluded; the median of the others
is reported (this 2-core VM's epoch times wander by 20-30% from one epoch to the next).
Results are also written as JSON to ``--out`` (default benchmarks/results/train_speed.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def time_matmul(a_shape, b_shape, *, transpose_a=False, transpose_b=False, reps: int = 20) -> float:
    """Best-of-3 seconds for one float32 ``tf.matmul`` of the given shapes."""
    import tensorflow as tf

    a = tf.random.normal(a_shape, dtype=tf.float32)
    b = tf.random.normal(b_shape, dtype=tf.float32)
    f = tf.function(lambda: tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b))
    f().numpy()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            r = f()
        r.numpy()
        times.append((time.perf_counter() - t) / reps)
    return min(times)


def matmul_flops(sizes=(512, 1024, 2048), repeats: int = 10) -> dict[str, float]:
    """Best float32 matmul throughput (FLOP/s) over a few square sizes."""
    return {str(n): 2 * n**3 / time_matmul((n, n), (n, n), reps=repeats) for n in sizes}


def epoch_flops(model, n_train: int, n_val: int) -> float:
    """Forward + backward FLOPs of one training epoch plus the validation forward pass.

    Dense: forward 2*in*out per sample; backward 2*in*out for the kernel gradient and
    2*in*out for the input gradient (not needed by the first layer). Conv layers likewise
    with in*out = H_out*W_out*k*k*C_in*C_out. Element-wise work (activations, batch norm,
    dropout, bias) is ignored: the bound is for the matrix multiplies only.
    """
    import keras

    macs, first_macs, first = 0, 0, True
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            m = int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
        elif isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            k = layer.kernel.shape
            m = int(out[1] * out[2] * k[0] * k[1] * k[2] * k[3])
        else:
            continue
        macs += m
        if first:
            first_macs, first = m, False
    train = n_train * (2 * macs + 2 * macs + 2 * (macs - first_macs))
    return float(train + n_val * 2 * macs)


def shape_bound_seconds(
    model, batch: int, n_train: int, n_val: int, eval_batch: int = 1024
) -> float:
    """Seconds one epoch spends in its matrix multiplies alone, timed at the model's own shapes.

    For every Dense layer: the forward product (B x in)(in x out), and in the backward pass the
    kernel gradient (in x B)(B x out) and, except for the first layer, the input gradient
    (B x out)(out x in); plus the validation forward pass. Each product is timed on this machine
    (best of 3), so the bound reflects what these GEMM shapes can reach, not a square peak.
    """
    import keras

    steps = -(-n_train // batch)
    val_steps = -(-n_val // eval_batch)
    total, first = 0.0, True
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Dense):
            continue
        i, o = (int(d) for d in layer.kernel.shape)
        per_step = time_matmul((batch, i), (i, o))  # forward
        per_step += time_matmul((batch, i), (batch, o), transpose_a=True)  # kernel gradient
        if not first:
            per_step += time_matmul((batch, o), (i, o), transpose_b=True)  # input gradient
        first = False
        total += steps * per_step + val_steps * time_matmul((eval_batch, i), (i, o))
    return total


def seed_style_epochs(variant, splits, batch_size: int, epochs: int) -> list[float]:
    """Plain ``model.fit`` as the seed notebooks call it (Keras defaults)."""
    import keras

    from bench.models.build import build_model

    keras.utils.set_random_seed(0)
    model = build_model(variant)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.concatenate([splits.x_train, splits.x_val])
    y = np.concatenate([splits.y_train, splits.y_val])
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=len(splits.x_val) / len(x),
        callbacks=[Timer()],
        verbose=0,
    )
    keras.backend.clear_session()
    return times


def bench_epochs(variant, splits, batch_size: int, epochs: int) -> list[float]:
    import keras

    from bench.models import HParams
    from bench.training import train

    result = train(
        variant, HParams(batch_size=batch_size, epochs=epochs), splits, evaluate_test=False
    )
    keras.backend.clear_session()
    return result.history["epoch_seconds"]


def tracking_cost(variant, splits, batch_size: int, epochs: int, store: Path) -> dict[str, float]:
    """One full tracked run (as `bench compare` does it), with MLflow calls timed."""
    import keras

    from bench import training
    from bench.models import HParams
    from bench.results import artifacts
    from bench.store.tracker import Tracker

    tracker = Tracker(f"sqlite:///{store}", "benchmark-tracking")
    spent = {"epoch_logging": 0.0}
    hp = HParams(batch_size=batch_size, epochs=epochs)
    t_start = time.perf_counter()
    with tracker.run(
        variant.name, kind="benchmark", params={**variant.structure_params(), **hp.as_params()}
    ) as run_id:
        hook = tracker.epoch_hook(run_id)

        def timed(epoch, metrics):
            t = time.perf_counter()
            hook(epoch, metrics)
            spent["epoch_logging"] += time.perf_counter() - t

        result = training.train(variant, hp, splits, on_epoch=[timed])
        t = time.perf_counter()
        artifacts.log_training(tracker, run_id, result, splits=splits)
        spent["artifacts_and_model"] = time.perf_counter() - t
    spent["run_wall"] = time.perf_counter() - t_start
    spent["train"] = result.train_seconds
    spent["logging_share_of_train"] = (
        spent["epoch_logging"] + spent["artifacts_and_model"]
    ) / result.train_seconds
    keras.backend.clear_session()
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    parser.add_argument(
        "--variants",
        default=(
            "vanilla-shallow,dropout-shallow,batchnorm-shallow,"
            "vanilla-deep,dropout-deep,batchnorm-residual-deep"
        ),
    )
    parser.add_argument("--shallow-batch", type=int, default=32)
    parser.add_argument("--deep-batch", type=int, default=256)
    parser.add_argument(
        "--epochs",
        type=int,
        default=5,
        help="epochs per measurement; the first is dropped, the median of the rest kept",
    )
    parser.add_argument("--tracking-epochs", type=int, default=20)
    parser.add_argument("--tracking-batch", type=int, default=128)
    parser.add_argument("--skip-tracking", action="store_true")
    parser.add_argument("--skip-seed-style", action="store_true", help="measure bench only")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "train_speed.json")
    )
    args = parser.parse_args()

    import tempfile

    import tensorflow as tf

    from bench import data
    from bench.models import get_variant, list_variants
    from bench.models.build import build_model
    from bench.training import device_description

    splits = data.load("fashion_mnist", data_dir=args.data_dir)
    flops = matmul_flops()
    peak = max(flops.values())
    print(
        f"device: {device_description()}, TensorFlow {tf.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        "float32 matmul: "
        + ", ".join(f"{n}^2 {v / 1e9:.0f} GFLOP/s" for n, v in flops.items())
        + f" -> peak {peak / 1e9:.0f} GFLOP/s"
    )
    rows = []
    header = (
        f"{'variant':<24} {'batch':>5} {'seed-style s/ep':>15} {'bench s/ep':>10} {'speed-up':>8} "
        f"{'peak bound':>10} {'bench/peak':>10} {'GEMM bound':>10} {'bench/GEMM':>10}"
    )
    print(header)
    print("-" * len(header))
    for name in list_variants(args.variants):
        v = get_variant(name)
        batch = args.deep_batch if v.group == "deep" else args.shallow_batch
        model = build_model(v)
        bound = epoch_flops(model, len(splits.x_train), len(splits.x_val)) / peak
        gemm = shape_bound_seconds(model, batch, len(splits.x_train), len(splits.x_val))
        seed_t = (
            [float("nan")] * args.epochs
            if args.skip_seed_style
            else seed_style_epochs(v, splits, batch, args.epochs)
        )
        bench_t = bench_epochs(v, splits, batch, args.epochs)
        s, b = float(np.median(seed_t[1:])), float(np.median(bench_t[1:]))
        row = {
            "variant": name,
            "batch_size": batch,
            "seed_style_s_per_epoch": s,
            "bench_s_per_epoch": b,
            "speedup": s / b,
            "matmul_bound_s_per_epoch": bound,
            "bench_over_bound": b / bound,
            "gemm_bound_s_per_epoch": gemm,
            "bench_over_gemm_bound": b / gemm,
            "seed_style_epochs": seed_t,
            "bench_epochs": bench_t,
        }
        rows.append(row)
        print(
            f"{name:<24} {batch:>5} {s:>15.2f} {b:>10.2f} {s / b:>7.2f}x {bound:>10.2f} "
            f"{b / bound:>9.2f}x {gemm:>10.2f} {b / gemm:>9.2f}x",
            flush=True,
        )

    tracking = {}
    if not args.skip_tracking:
        print(
            f"\nMLflow logging cost, one tracked run per variant ({args.tracking_epochs} epochs, "
            f"batch {args.tracking_batch}):"
        )
        with tempfile.TemporaryDirectory() as tmp:
            total_log = total_train = 0.0
            for name in list_variants(args.variants):
                cost = tracking_cost(
                    get_variant(name),
                    splits,
                    args.tracking_batch,
                    args.tracking_epochs,
                    Path(tmp) / "mlflow.db",
                )
                tracking[name] = cost
                total_log += cost["epoch_logging"] + cost["artifacts_and_model"]
                total_train += cost["train"]
                print(
                    f"  {name:<24} train {cost['train']:7.1f}s  per-epoch metrics "
                    f"{cost['epoch_logging']:.3f}s  artifacts+model "
                    f"{cost['artifacts_and_model']:.2f}s  -> "
                    f"{100 * cost['logging_share_of_train']:.1f}%",
                    flush=True,
                )
            tracking["all"] = {
                "logging": total_log,
                "train": total_train,
                "share": total_log / total_train,
            }
            print(
                f"  all variants: logging {total_log:.1f}s of {total_train:.1f}s training = "
                f"{100 * total_log / total_train:.1f}%"
            )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": device_description(),
                "python": sys.version.split()[0],
                "tensorflow": tf.__version__,
                "matmul_flops": flops,
                "rows": rows,
                "tracking": tracking,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
