"""bench: MLflow-tracked benchmarks of regularisation and depth on Fashion-MNIST and MNIST."""

from __future__ import annotations

import os as _os

LAYER = 0  # import layer (docs/development.md#layers): imports only lower layers' units

__version__ = "0.1.0"

# A worker process of a bench command: as quiet as the command (bench.quiet).
if _os.environ.get("BENCH_QUIET_LIBRARIES"):
    from bench import quiet as _quiet

    _quiet.install()
