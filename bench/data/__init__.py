"""Tasks and their data: find or read the files, validate, decode, split, cache.

* :mod:`.tasks`: the task registry (the built-in Fashion-MNIST and MNIST, and tasks a study
  file or a plug-in declares), each with its input shape, classes and source;
* :mod:`.sources`: where a task's data comes from, in order, and the decoded-array cache;
* :mod:`.idx`: the IDX file format; :mod:`.arrays`: raw arrays validated before anything
  is cached or trained;
* :mod:`.splits`: train / validation / test splits, preprocessed (:func:`load`).
"""

from __future__ import annotations

from bench.data.arrays import RawArrays
from bench.data.idx import FILES, IMAGE_MAGIC, LABEL_MAGIC, read_idx, write_idx
from bench.data.sources import candidate_sources
from bench.data.splits import (
    DEFAULT_VALIDATION_SIZE,
    Splits,
    _load_raw,
    class_balance,
    load,
    summary,
)
from bench.data.tasks import (
    FASHION_CLASSES,
    FORMATS,
    TASKS,
    FileSource,
    Task,
    get_task,
    register_task,
)
from bench.errors import DataError

LAYER = 1  # import layer (docs/development.md#layers): imports only lower layers' units

IMAGE_SHAPE = (28, 28)  # the built-in tasks'
NUM_CLASSES = 10

__all__ = [
    "DEFAULT_VALIDATION_SIZE",
    "FASHION_CLASSES",
    "FILES",
    "FORMATS",
    "IMAGE_MAGIC",
    "IMAGE_SHAPE",
    "LABEL_MAGIC",
    "NUM_CLASSES",
    "TASKS",
    "DataError",
    "FileSource",
    "RawArrays",
    "Splits",
    "Task",
    "_load_raw",
    "candidate_sources",
    "class_balance",
    "get_task",
    "load",
    "read_idx",
    "register_task",
    "summary",
    "write_idx",
]
