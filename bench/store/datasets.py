"""The data a run used, as MLflow datasets: what the UI's "Dataset" column shows.

A run's train, validation and test splits are logged as run inputs (``log_inputs``), each
an MLflow dataset with a name (``fashion_mnist-train``), a content digest that changes when
the data changes, its source (the data folder, the Keras cache, the Debian package's
path), its schema and its size, and the input tag ``mlflow.data.context`` (``training``,
``validation``, ``test``). Test metrics are logged against the test dataset's name and
digest (and the logged model), so the UI ties each score to the data it was measured on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
from mlflow.entities import Dataset, DatasetInput, InputTag

from bench.store import schema


@dataclass(frozen=True)
class SplitData:
    """One split as a dataset: ``name`` (task-split), digest, source, shapes and context."""

    name: str
    digest: str
    source: str
    context: str
    rows: int
    features_shape: tuple[int, ...]

    def as_input(self) -> DatasetInput:
        tensor_schema = {
            "mlflow_tensorspec": {
                "features": json.dumps(
                    [
                        {
                            "type": "tensor",
                            "tensor-spec": {
                                "dtype": "float32",
                                "shape": [-1, *self.features_shape],
                            },
                        }
                    ]
                ),
                "targets": json.dumps(
                    [{"type": "tensor", "tensor-spec": {"dtype": "int32", "shape": [-1]}}]
                ),
            }
        }
        profile = {
            "num_rows": self.rows,
            "features_shape": [self.rows, *self.features_shape],
            "targets_shape": [self.rows],
        }
        dataset = Dataset(
            name=self.name,
            digest=self.digest,
            source_type="local",
            source=json.dumps({"uri": self.source}),
            schema=json.dumps(tensor_schema),
            profile=json.dumps(profile),
        )
        return DatasetInput(dataset, tags=[InputTag(schema.MLFLOW_DATA_CONTEXT, self.context)])


def digest(x: np.ndarray, y: np.ndarray) -> str:
    """A content digest of a split: every pixel and label, and the shapes (10 hex digits,
    as MLflow's own digests)."""
    h = hashlib.sha256()
    h.update(repr((x.shape, str(x.dtype), y.shape, str(y.dtype))).encode())
    h.update(np.ascontiguousarray(x).data)
    h.update(np.ascontiguousarray(y).data)
    return h.hexdigest()[:10]
