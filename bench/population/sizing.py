"""How many members a population should hold: by device, and never more than memory allows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.models.spec import Dense, Variant

log = logging.getLogger(__name__)

#: Members per population by default. On a CPU small members gain from sharing a graph
#: (784-128-10 at batch 32: 0.33 s per member-epoch for 8 against 0.41 alone) and 4 keep
#: more trials sequential for TPE and the pruner; large ones lose (6 x 512 at batch 256:
#: 2.67 against 2.34; benchmarks/population_speed.py), so they train alone. A GPU needs
#: many members to fill it.
DEFAULT_CPU, DEFAULT_GPU = 4, 32
CPU_LARGE_PARAMS = 500_000
#: Share of the available memory a population may take.
MEMORY_SHARE = 0.5
_FLOAT = 4


@dataclass(frozen=True)
class Sizing:
    size: int
    note: str = ""  # why it is smaller than asked, when it is


def parameters(variant: Variant, input_size: int = 784, num_classes: int = 10) -> int:
    dims = [input_size, *(b.units for b in variant.blocks if isinstance(b, Dense)), num_classes]
    return sum(a * b + b for a, b in zip(dims, dims[1:], strict=False))


def member_bytes(variant: Variant, batch_size: int, input_size: int = 784, num_classes: int = 10,
                 eval_chunk: int = 2500) -> int:
    """Memory one member needs: weights, gradients, two optimizer moments and a scratch copy
    (5 x parameters), plus the activations of a training batch and a validation chunk."""
    dims = [input_size, *(b.units for b in variant.blocks if isinstance(b, Dense)), num_classes]
    params = parameters(variant, input_size, num_classes)
    activations = (batch_size * 6 + eval_chunk * 2) * sum(dims[1:])
    return _FLOAT * (5 * params + activations)


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); 8 GiB where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 8 << 30


def size_population(variant: Variant, batch_size: int, wanted: int | None, *, gpu: bool,
                    limit: int | None = None, memory: int | None = None) -> Sizing:
    """``wanted`` members (default: by device), at most ``limit`` (the trials left), and no more
    than fit in :data:`MEMORY_SHARE` of the available memory."""
    if wanted is not None:
        size = wanted
    elif gpu:
        size = DEFAULT_GPU
    else:
        size = 1 if parameters(variant) >= CPU_LARGE_PARAMS else DEFAULT_CPU
    if limit is not None:
        size = max(1, min(size, limit))
    room = int(MEMORY_SHARE * (memory if memory is not None else available_bytes()) // member_bytes(variant, batch_size))
    if room < 1:
        raise BenchError(
            f"one member of {variant.name} at batch {batch_size} needs {member_bytes(variant, batch_size) >> 20} MiB, "
            f"more than {MEMORY_SHARE:.0%} of the memory available"
        )
    if size > room:
        note = f"population sized down from {size} to {room} members to fit in memory"
        log.warning("%s (%s)", note, variant.name)
        return Sizing(room, note)
    return Sizing(size)


def seeds_size(variant: Variant, batch_size: int, seeds: int, *, gpu: bool, memory: int | None = None) -> Sizing:
    """Members per population when a comparison trains ``seeds`` seeds of a variant: all of
    them where members gain from sharing a graph (a GPU, small members on a CPU), one at a
    time where they lose (large members on a CPU); never more than memory holds."""
    default = size_population(variant, batch_size, None, gpu=gpu, memory=memory).size
    return size_population(variant, batch_size, seeds if default > 1 else 1, gpu=gpu, limit=seeds, memory=memory)
