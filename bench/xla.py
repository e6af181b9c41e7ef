"""Whether training compiles with XLA: ``$BENCH_XLA`` = ``auto`` (the default), ``on`` or ``off``.

``auto`` is each engine's own choice (measured in benchmarks/train_speed.py): the population
engine compiles its whole epoch loop with XLA; the Keras engine uses XLA on a GPU and on a
CPU except for dropout variants. ``off`` never compiles with XLA: a process that trains many
*different* networks (a test suite, a notebook sweeping architectures) keeps its memory flat,
because TensorFlow never frees an XLA executable once compiled (measured: docs/speed.md, "XLA
and a process's memory"). ``on`` always compiles with XLA.
"""

from __future__ import annotations

import os

from bench.errors import OptionError

LAYER = 1  # import layer (docs/development.md#layers): imports only lower layers' units

ENV = "BENCH_XLA"
CHOICES = ("auto", "on", "off")


def setting() -> str:
    """``$BENCH_XLA`` as one of :data:`CHOICES` (an :class:`OptionError` for anything else)."""
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    aliases = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}
    value = aliases.get(value, value)
    if value not in CHOICES:
        raise OptionError(f"${ENV} must be one of {', '.join(CHOICES)}; got {os.environ[ENV]!r}")
    return value


def wanted(engine_choice: bool) -> bool:
    """XLA or not, given what the engine would choose under ``auto``."""
    return {"auto": engine_choice, "on": True, "off": False}[setting()]
