"""bench: MLflow-tracked benchmarks of regularisation and depth on Fashion-MNIST and MNIST."""

from __future__ import annotations

__version__ = "0.1.0"
