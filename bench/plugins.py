"""Plug-ins: variants and tasks from other Python code, registered with where they came from.

Two ways in (pytest's and timm's plug-in ideas, with the standard library's entry points):

* an installed package declares entry points in the groups ``bench.variants`` and
  ``bench.tasks``; each names a module, a callable or a value;
* ``bench --plugin MODULE`` (a dotted module name, or a path to a ``.py`` file; repeatable)
  loads a local one. The modules are remembered in ``$BENCH_PLUGINS`` (``os.pathsep``
  separated), so processes bench spawns (tuning workers) load them too.

What a plug-in gives is registered under the origin ``plug-in <where>``: a
:class:`~bench.models.Variant`, a variant declared as a mapping (the study-file form,
:func:`bench.models.declare_variant`), a :class:`~bench.data.Task`, or an iterable of
these, or a callable returning one. A module gives what its ``variants`` and ``tasks``
attributes hold, and/or calls :func:`bench.models.register` /
:func:`bench.data.register_task` as it is imported. A
plug-in that fails to load is one error naming it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

from bench import declaring
from bench.errors import BenchError

LAYER = 3  # import layer (docs/development.md#layers): imports only lower layers' units

ENV = "BENCH_PLUGINS"
GROUPS = ("bench.variants", "bench.tasks")
_loaded: set[str] = set()


class PluginError(BenchError):
    """A plug-in could not be loaded or gave something bench cannot register."""


def load_all(modules: Sequence[str] = ()) -> None:
    """The installed entry points, the modules in ``$BENCH_PLUGINS`` and ``modules`` (added
    to ``$BENCH_PLUGINS``); each loaded once per process."""
    named = [m for m in os.environ.get(ENV, "").split(os.pathsep) if m]
    named += [m for m in modules if m not in named]
    for group in GROUPS:
        for entry in importlib.metadata.entry_points(group=group):
            _once(
                f"{group}:{entry.name}",
                f"plug-in {entry.value} ({group})",
                lambda e=entry: e.load(),
            )
    for module in named:
        _once(module, f"plug-in {module}", lambda m=module: _import(m))
    if named:  # all loaded: processes this one starts load them too
        os.environ[ENV] = os.pathsep.join(named)


def _once(key: str, origin: str, load) -> None:
    if key in _loaded:
        return
    with declaring.declaring(origin):
        try:
            register_given(load(), origin)
        except PluginError:
            raise
        except BenchError as exc:
            raise PluginError(f"{origin}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a plug-in's own failure, shown in one line
            raise PluginError(f"{origin} failed to load: {type(exc).__name__}: {exc}") from None
    _loaded.add(key)


def _import(spec: str) -> ModuleType:
    """A dotted module name, or a ``.py`` file (imported under its stem)."""
    path = Path(spec).expanduser()
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise PluginError(f"plug-in file {spec} does not exist")
        name = f"bench_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    return importlib.import_module(spec)


def register_given(given: object, origin: str) -> None:
    """Register what a plug-in gave (see the module docstring); a module registered itself."""
    from bench.data import Task, register_task
    from bench.models import Variant, declare_variant, register

    if given is None:
        return
    if isinstance(given, ModuleType):  # registered as it was imported, and/or lists them
        for listed in (getattr(given, "variants", None), getattr(given, "tasks", None)):
            if not isinstance(listed, ModuleType):
                register_given(listed, origin)
    elif isinstance(given, Variant):
        register(given, origin=origin)
    elif isinstance(given, Task):
        register_task(given)
    elif isinstance(given, Mapping):
        register(declare_variant(given), origin=origin)
    elif callable(given):
        register_given(given(), origin)
    elif isinstance(given, Iterable) and not isinstance(given, str | bytes):
        for item in given:
            register_given(item, origin)
    else:
        raise PluginError(
            f"{origin} gave {type(given).__name__}, not a variant, a task or a list of them"
        )
