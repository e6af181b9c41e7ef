"""How many members a population should hold: by device, and never more than memory allows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.models.program import Linear, compile_variant, parameter_count
from bench.models.spec import Variant

log = logging.getLogger(__name__)

#: Members per population by default: 4 on a CPU, where small members gain from sharing a
#: graph and members of :data:`CPU_LARGE_PARAMS` parameters or more lose (so they train
#: alone); many on a GPU, to fill it (docs/speed.md, "Measurements behind the code's constants").
DEFAULT_CPU, DEFAULT_GPU = 4, 32
CPU_LARGE_PARAMS = 500_000
#: Share of the available memory a population may take.
MEMORY_SHARE = 0.5
_FLOAT = 4


@dataclass(frozen=True)
class Sizing:
    size: int
    note: str = ""  # why it is smaller than asked, when it is


def member_bytes(
    variant: Variant,
    batch_size: int,
    input_shape: tuple[int, ...] = (28, 28),
    num_classes: int = 10,
    eval_chunk: int = 2500,
) -> int:
    """Memory one member needs: weights, gradients, two optimizer moments and a scratch copy
    (5 x its parameters), plus the dense layers' activations for a training batch and a
    validation chunk."""
    compiled = compile_variant(variant, input_shape, num_classes)
    widths = sum(op.units for op in compiled.ops if isinstance(op, Linear))
    activations = (batch_size * 6 + eval_chunk * 2) * widths
    return _FLOAT * (5 * compiled.parameter_count() + activations)


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); 8 GiB where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 8 << 30


def size_population(
    variant: Variant,
    batch_size: int,
    wanted: int | None,
    *,
    gpu: bool,
    limit: int | None = None,
    memory: int | None = None,
) -> Sizing:
    """``wanted`` members (default: by device), at most ``limit`` (the trials left), and no more
    than fit in :data:`MEMORY_SHARE` of the available memory."""
    if wanted is not None:
        size = wanted
    elif gpu:
        size = DEFAULT_GPU
    else:
        size = 1 if parameter_count(variant) >= CPU_LARGE_PARAMS else DEFAULT_CPU
    if limit is not None:
        size = max(1, min(size, limit))
    need = member_bytes(variant, batch_size)
    room = int(MEMORY_SHARE * (memory if memory is not None else available_bytes()) // need)
    if room < 1:
        raise BenchError(
            f"one member of {variant.name} at batch {batch_size} needs {need >> 20} MiB, "
            f"more than {MEMORY_SHARE:.0%} of the memory available"
        )
    if size > room:
        note = f"population sized down from {size} to {room} members to fit in memory"
        log.warning("%s (%s)", note, variant.name)
        return Sizing(room, note)
    return Sizing(size)


def seeds_size(
    variant: Variant, batch_size: int, seeds: int, *, gpu: bool, memory: int | None = None
) -> Sizing:
    """Members per population when a comparison trains ``seeds`` seeds of a variant: all of
    them where members gain from sharing a graph (a GPU, small members on a CPU), one at a
    time where they lose (large members on a CPU); never more than memory holds."""
    default = size_population(variant, batch_size, None, gpu=gpu, memory=memory).size
    return size_population(
        variant, batch_size, seeds if default > 1 else 1, gpu=gpu, limit=seeds, memory=memory
    )
