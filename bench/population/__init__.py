"""Population training: K members of one variant trained as one compiled graph.

Members may differ in seed (initial weights, dropout masks, data order), learning rate and
dropout rate; they share the variant, optimizer kind, batch size and epochs. Each member
ends as an ordinary Keras model (built by :func:`bench.models.build.build_model`) and an
ordinary :class:`~bench.result.TrainResult`: its own per-epoch history, health verdict and
hooks, exactly as a model trained alone. One member is the solo case.

The test split is never touched here: callers evaluate the returned models.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.data import Splits
from bench.models.spec import HParams, Variant
from bench.population.engine import Population
from bench.population.net import supports
from bench.result import EpochHook, TrainResult

LAYER = 5  # import layer (docs/development.md#layers): imports only lower layers' units

__all__ = ["Population", "supports", "train_population"]


def _check(members: Sequence[HParams]) -> None:
    if not members:
        raise ValueError("a population needs at least one member")
    shared = {(hp.batch_size, hp.epochs, hp.optimizer) for hp in members}
    if len(shared) != 1:
        raise ValueError(
            f"members must share batch size, epochs and optimizer; got {sorted(shared)}"
        )


def train_population(
    variant: Variant,
    members: Sequence[HParams],
    splits: Splits,
    *,
    on_epoch: Sequence[Sequence[EpochHook]] | None = None,
    jit_compile: bool | None = None,
    device: str = "",
) -> list[TrainResult]:
    """Train every member for its epochs (or until it dies or diverges); one result each.
    An error raised by a member's hook stops the population and is raised here.
    ``jit_compile`` None: XLA unless ``$BENCH_XLA`` says off (:mod:`bench.xla`)."""
    _check(members)
    hooks = list(on_epoch) if on_epoch is not None else [()] * len(members)
    population = Population(
        variant,
        len(members),
        splits,
        batch_size=members[0].batch_size,
        optimizer=members[0].optimizer,
        jit_compile=jit_compile,
        device=device,
    )
    for k, (hp, member_hooks) in enumerate(zip(members, hooks, strict=True)):
        population.start(k, hp, member_hooks)
    while population.running:
        for k in population.run_epoch():
            error = population.slots[k].error
            if error is not None:
                raise error
    return [population.finish(k)[0] for k in range(len(members))]
