"""What a command runs: a study after the command line's values (:class:`Plan`), and the one
table of those values (:mod:`.table`) that the click options, the ``MLproject`` entry points
(:mod:`.mlproject`) and the plan all read."""

from __future__ import annotations

from bench.plan._plan import HYPERPARAMETERS, Plan
from bench.plan.table import COMMANDS, OPTIONS, Option, options

LAYER = 4  # import layer (docs/development.md#layers): imports only lower layers' units

__all__ = ["COMMANDS", "HYPERPARAMETERS", "OPTIONS", "Option", "Plan", "options"]
