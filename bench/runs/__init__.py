"""The run service: train units of work and record each as its MLflow run.

A :class:`Unit` is a member of a variant (hyperparameters, seed included) and the run it
becomes; a :class:`Batch` holds units of one variant and kind; a :class:`Recording` says
where their runs land. Results come back as values (:class:`bench.result.TrainResult`, each
naming its run). Both commands record their runs here, and neither imports the other:
``compare`` (a study's default and tuned runs, :func:`record`) and ``tuning`` (the selection's
re-evaluations, :func:`validate`; the tuned setting retrained and tested, :func:`train`).

- :func:`train`: train a batch (in populations where the variant stacks) and record each
  unit as its tested run.
- :func:`validate`: the same on validation only, each run scored by an objective.
- :func:`replay`: record units as runs that repeat results trained and logged already (a
  kept default logged again as tuned), training nothing.
- :func:`record`: a plan of batches in order, each trained or replayed, every model held
  only as long as a replay needs it.

The service owns the models' lifetime: each is released once nothing needs it.
"""

from __future__ import annotations

from bench.runs._plan import record
from bench.runs._replay import Replays, replay
from bench.runs._train import populations, train, validate
from bench.runs.units import Batch, Recording, Unit

LAYER = 8  # import layer (docs/development.md#layers): imports only lower layers' units

__all__ = [
    "Batch",
    "Recording",
    "Replays",
    "Unit",
    "populations",
    "record",
    "replay",
    "train",
    "validate",
]
