"""Resident memory of one process that trains many *different* networks, with and without XLA.

    python benchmarks/xla_memory.py [--networks 10]

TensorFlow keeps every XLA executable it compiled until the process ends, so a process that
compiles many shapes (the test suite: hundreds of tiny networks per worker) grows by the
size of each executable. This trains ``--networks`` registered variants in turn, one
two-member population of one epoch each on generated 2,400-image data, in a fresh process
per setting of ``$BENCH_XLA`` (off, on), and prints the resident memory after each network
and the growth per network after the first three (allocator warm-up). Measured here, it is
why tests/conftest.py runs the suite with ``BENCH_XLA=off``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARM = 3


def child(count: int) -> None:
    import gc

    import keras
    import psutil

    sys.path.insert(0, str(ROOT))
    from bench import data
    from bench.models import HParams, get_variant, list_variants
    from bench.population import supports, train_population
    from tests.support import TASK_FOLDERS, make_task_arrays, write_task

    root = Path(tempfile.mkdtemp())
    write_task(root / TASK_FOLDERS["fashion_mnist"], make_task_arrays("fashion_mnist", seed=1000))
    splits = data.load("fashion_mnist", data_dir=str(root), validation_size=200)
    names = [n for n in list_variants() if supports(get_variant(n))][:count]
    hp = HParams(dropout=0.0, batch_size=64, epochs=1, seed=3)
    process = psutil.Process()
    for name in names:
        train_population(get_variant(name), [hp, hp.replace(seed=11)], splits)
        keras.backend.clear_session()
        gc.collect()
        print(f"{name} {process.memory_info().rss >> 20}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", type=int, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.networks)
        return
    rows: dict[str, list[tuple[str, int]]] = {}
    for setting in ("off", "on"):
        env = {**os.environ, "BENCH_XLA": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--networks", str(args.networks)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows[setting] = [
            (name, int(mb)) for name, mb in (line.split() for line in out.splitlines())
        ]
    print(f"{'network':<26}{'MB, XLA off':>13}{'MB, XLA on':>13}")
    for (name, off), (_, on) in zip(rows["off"], rows["on"], strict=True):
        print(f"{name:<26}{off:>13}{on:>13}")
    for setting, values in rows.items():
        mb = [v for _, v in values]
        per = (mb[-1] - mb[WARM - 1]) / (len(mb) - WARM)
        print(f"XLA {setting}: {per:+.0f} MB per further network (networks {WARM + 1}-{len(mb)})")


if __name__ == "__main__":
    main()
