"""The run commands' click options, generated from the one table of them
(:data:`bench.plan.table.OPTIONS`): this module decides how a row looks to click, never
which options there are."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from bench import completion
from bench.plan import table


class _OptionalInt(click.ParamType):
    """An integer in [minimum, maximum]; an empty string means "not given" (MLproject
    parameters need that)."""

    name = "integer"

    def __init__(self, minimum: int = 1, maximum: int = 2**31 - 1) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param, ctx):
        if value is None or value == "":
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer", param, ctx)
        if number < self.minimum:
            self.fail(f"{number} is not >= {self.minimum}", param, ctx)
        if number > self.maximum:
            self.fail(f"{number} is more than {self.maximum:,}", param, ctx)
        return number


class _OptionalFloat(click.ParamType):
    """A finite number > 0; an empty string means "not given"."""

    name = "float"

    def convert(self, value: Any, param, ctx):
        if value is None or value == "":
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not number > 0:
            self.fail(f"{number} is not > 0", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _empty_is_none(ctx, param, value):
    return None if value == "" else value


def _one_of(choices: tuple[str, ...]):
    def check(ctx, param, value):
        if value in (None, ""):
            return None
        if value not in choices:
            raise click.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def _settings(row: table.Option) -> dict[str, Any]:
    """What click needs to know of ``row``'s value."""
    kind = row.kind
    if isinstance(kind, table.Flag):
        return {"is_flag": True}
    if isinstance(kind, table.Integer):
        return {"type": _OptionalInt(kind.low, kind.high)}
    if isinstance(kind, table.Number):
        return {"type": _OptionalFloat()}
    if isinstance(kind, table.Fraction):
        return {"type": click.FloatRange(0, 1, min_open=True, max_open=True)}
    if isinstance(kind, table.OneOf):
        return {"callback": _one_of(kind.choices)}
    complete = getattr(completion, kind.complete) if kind.complete else None
    return {"callback": _empty_is_none, **({"shell_complete": complete} if complete else {})}


def _decorator(row: table.Option) -> Callable:
    settings = _settings(row)
    if row.positional:
        return click.argument(
            row.name, **{k: v for k, v in settings.items() if k == "shell_complete"}
        )
    if row.envvar:
        settings.update(envvar=row.envvar, show_envvar=True)
    if row.show_default:
        settings["show_default"] = True
    if not isinstance(row.kind, table.Flag):
        settings["default"] = row.default
    return click.option(*row.options, row.name, help=row.help, **settings)


def options(command: str) -> Callable:
    """Decorate ``command`` with its options, in the table's order."""

    def decorate(f: Callable) -> Callable:
        for row in reversed(table.options(command)):
            f = _decorator(row)(f)
        return f

    return decorate
