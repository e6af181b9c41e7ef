"""Where registrations come from: the variant and task registries record, for each entry,
the place that declared it (``built-in``, a study file, a plug-in), so ``bench list`` can
say it and a clash can name both. A leaf module both registries read."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

LAYER = 0  # import layer (docs/development.md#layers): imports only lower layers' units

BUILT_IN = "built-in"
_ORIGINS = [BUILT_IN]


def current_origin() -> str:
    """The origin of a registration made now without naming one."""
    return _ORIGINS[-1]


@contextlib.contextmanager
def declaring(origin: str) -> Iterator[None]:
    """Registrations inside the block (a plug-in's import) come from ``origin``."""
    _ORIGINS.append(origin)
    try:
        yield
    finally:
        _ORIGINS.pop()
