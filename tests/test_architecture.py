"""The package's shape: imports point one way, each library has one home, nothing grows huge.

The imports are read from the source (module-level and function-level alike), so a cycle
hidden inside a function fails here just as one at the top of a file does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bench"

#: Third-party libraries with exactly one home in bench (plus the CLI, which sets Optuna's
#: verbosity).
HOMES = {"mlflow": ("bench.store",), "optuna": ("bench.tuning", "bench.cli")}

MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 500, 250, 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _declared_layer(path: Path) -> int | None:
    """The module's top-level ``LAYER = n``, if it has one."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["LAYER"]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, int) and value >= 0, f"{path}: LAYER = {value!r}"
            return value
    return None


#: The layer units, read from the package: a package whose ``__init__.py`` says ``LAYER = n``,
#: or a module that says it at its top level (its own unit then, as ``bench.store.schema`` is
#: inside ``bench.store``). Any other module belongs to the nearest package around it that
#: says it. A module may import its own unit (a cycle there fails the cycle test) and any unit
#: on a lower layer, never one on its own layer or above.
UNITS: dict[str, int] = {
    module: layer
    for module, path in MODULES.items()
    if (layer := _declared_layer(path)) is not None
}


def _resolve(name: str) -> str:
    """``bench.x.y`` if it is a module, else the longest module prefix (``from bench.x
    import y``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str) -> set[str]:
    """Every name ``module`` imports, at any depth of the file."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            found.add(base)
            found |= {
                f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES
            }
    return found


def _graph() -> dict[str, set[str]]:
    return {
        m: {_resolve(n) for n in _imports(m) if n.split(".")[0] == "bench"} - {m} for m in MODULES
    }


def _unit(module: str) -> str:
    """The layer unit: the module itself where it declares a layer, else the nearest package
    around it that does."""
    while module not in UNITS:
        if "." not in module:
            raise LookupError(f"no LAYER declared for {module} or any package around it")
        module = module.rsplit(".", 1)[0]
    return module


def _layer(module: str) -> int:
    return UNITS[_unit(module)]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_reader_sees_function_level_imports_and_packages():
    assert "bench.compare" in _graph()["bench.cli"]  # imported inside `bench compare`
    assert "bench.models.registry" in _graph()["bench.models.zoo"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_bench_modules():
    assert _cycles(_graph()) == []


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)  # raises LookupError for a module no layer covers


def _tabulated(name: str) -> str:
    """The module a name in the docs' layer table means: ``cli/`` is ``bench.cli``,
    ``store/schema.py`` ``bench.store.schema``, ``bench/__init__.py`` ``bench``."""
    if name == "bench/__init__.py":
        return "bench"
    return "bench." + name.removesuffix("/").removesuffix(".py").replace("/", ".")


def test_the_layers_are_read_from_the_package():
    """The units declare the layers docs/development.md tabulates, the schema below its store."""
    import re

    text = (PACKAGE.parent / "docs" / "development.md").read_text(encoding="utf-8")
    tabulated = {
        _tabulated(name): int(layer)
        for layer, units in re.findall(r"^\| (\d+) \| (.+) \|$", text, flags=re.MULTILINE)
        for name in re.findall(r"`([^`]+)`", units)
    }
    assert tabulated == UNITS
    assert UNITS["bench.store.schema"] < UNITS["bench.store"]
    assert _unit("bench.quiet") == "bench" and _unit("bench.tuning.worker") == "bench.tuning"


def test_imports_only_point_down():
    upward = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in _graph().items()
        for t in sorted(targets)
        if _unit(t) != _unit(m) and _layer(t) >= _layer(m)
    ]
    assert upward == []


def test_the_store_imports_nothing_above_it():
    outside = {
        f"{m} -> {t}"
        for m, targets in _graph().items()
        if m.startswith("bench.store")
        for t in targets
        if not (t.startswith("bench.store") or t == "bench.errors")
    }
    assert outside == set()


def test_the_model_registry_is_a_leaf_the_zoo_registers_into():
    graph = _graph()
    assert graph["bench.models.registry"] <= {
        "bench.errors",
        "bench.models.spec",
        "bench.declaring",
    }
    assert "bench.models.registry" in graph["bench.models.zoo"]
    assert "bench.models.zoo" in graph["bench.models"]  # importing the package registers the zoo


@pytest.mark.parametrize("library", sorted(HOMES))
def test_each_library_has_one_home(library):
    importers = {m for m in MODULES if any(n.split(".")[0] == library for n in _imports(m))}
    assert importers and all(m.startswith(HOMES[library]) for m in importers), sorted(importers)


def test_no_god_modules_classes_or_functions():
    too_big = []
    for module, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"module {module}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            size = node.end_lineno - node.lineno + 1
            limit, what = (
                (MAX_CLASS_LINES, "class")
                if isinstance(node, ast.ClassDef)
                else (MAX_FUNCTION_LINES, "function")
            )
            if size > limit:
                too_big.append(f"{what} {module}.{node.name}: {size} lines")
    assert too_big == []


def test_no_command_imports_a_sibling_command():
    """``compare`` and ``tuning`` both record their runs through the run service below them."""
    commands = ("bench.compare", "bench.tuning")
    crossing = [
        f"{m} -> {t}"
        for m, targets in _graph().items()
        for t in targets
        for mine, other in (commands, commands[::-1])
        if _unit(m) == mine and _unit(t) == other
    ]
    assert crossing == []


def test_commands_train_through_the_run_service():
    """Only the run service calls the training entry points (the trial loop drives slots)."""
    entry = {"train", "train_population"}
    callers = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            imported = (
                isinstance(node, ast.ImportFrom)
                and node.module in {"bench.training", "bench.population"}
                and any(alias.name in entry for alias in node.names)
            )
            called = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in entry
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"training", "population"}
            )
            if imported or called:
                callers.add(module)
    assert {_unit(m) for m in callers} <= {"bench.runs", "bench.training"}, sorted(callers)


def test_one_trial_loop():
    """One class in ``bench.tuning`` runs trials (has a ``loop``): a solo trial is a
    population of one, not a second loop."""
    loops = [
        f"{module}.{node.name}"
        for module, path in MODULES.items()
        if _unit(module) == "bench.tuning"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(isinstance(f, ast.FunctionDef) and f.name == "loop" for f in node.body)
    ]
    assert loops == ["bench.tuning.worker.Worker"]


def test_results_are_values():
    """A training result is frozen: whoever needs another derives it (dataclasses.replace)."""
    import dataclasses

    from bench.models import HParams
    from bench.result import TrainResult

    result = TrainResult(variant="v", hparams=HParams(), params=1, history={}, train_seconds=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.run_id = "r"  # type: ignore[misc]
    assert (
        dataclasses.replace(result, run_id="r").model is result.model
    )  # the model holder is shared


def test_no_private_optuna_attributes():
    private = ("._storage", "._trial_id", "._study_id", "._backend")
    hits = [
        f"{m}: {attr}"
        for m, path in MODULES.items()
        for attr in private
        if attr in path.read_text(encoding="utf-8")
    ]
    assert hits == []


def test_store_keys_are_written_through_the_schema():
    """No module but the schema spells a bench/MLflow/Optuna tag key as a string literal."""
    prefixes = ("bench.", "mlflow.", "optuna.")
    literals = []
    for module, path in MODULES.items():
        if module == "bench.store.schema":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text.startswith(prefixes) and " " not in text and not _is_module_path(text):
                    literals.append(f"{module}: {text!r}")
    assert literals == []


def _is_module_path(text: str) -> bool:
    """``bench.progress`` (a logger), ``optuna.visualization...``, the plug-ins' entry-point
    groups: names, not store keys."""
    if text in {"bench.progress", "optuna.journal", "bench.variants", "bench.tasks"}:
        return True
    return text.split(".")[0] in {"optuna", "mlflow"} and _importable(text)


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def test_hparams_fields_are_the_schemas_hyperparameter_keys():
    import dataclasses

    from bench.models import HParams
    from bench.store import schema

    assert tuple(f.name for f in dataclasses.fields(HParams)) == schema.HPARAMS
    # logged: the original fields always, a recipe's where set and for its optimizer
    assert set(HParams().as_params()) <= set(schema.HPARAMS)
    every = HParams(
        optimizer="sgd",
        learning_rate=0.1,
        dropout=0.2,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        label_smoothing=0.1,
        schedule="cosine",
        warmup_epochs=1,
    )
    assert set(every.as_params()) == set(schema.HPARAMS) - {"beta_2"}  # Adam's, not SGD's


def _dataclass_fields(tree: ast.AST):
    """(class, field name, annotation) of every annotated class attribute in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    yield node.name, item.target.id, ast.unparse(item.annotation)


def test_one_settings_type():
    """What a command runs is one :class:`bench.plan.Plan`: no other class holds a study (the
    study after the command line's values), and none is a second settings type."""
    holders = [
        f"{module}.{cls}.{name}"
        for module, path in MODULES.items()
        if _unit(module) != "bench.plan"
        for cls, name, annotation in _dataclass_fields(ast.parse(path.read_text(encoding="utf-8")))
        if annotation in {"Study", "studies.Study"}
    ]
    assert holders == []
    settings = [
        f"{module}.{node.name}"
        for module, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and (node.name.endswith("Settings") or node.name == "Resolved")
    ]
    assert settings == []


def test_the_run_commands_take_their_options_from_the_one_table():
    """``compare``, ``train`` and ``tune`` are decorated with the table's options and nothing
    else; no module outside the CLI declares a click option."""
    import click

    from bench.cli import cli
    from bench.plan import COMMANDS, OPTIONS

    for command, names in COMMANDS.items():
        params = [p.name for p in cli.commands[command].params if p.name != "help"]
        assert params == list(names), command
        assert {o for n in names if not OPTIONS[n].positional for o in OPTIONS[n].options} == {
            o for p in cli.commands[command].params if isinstance(p, click.Option) for o in p.opts
        } - {"-h", "--help"}
    declared = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in COMMANDS:
                extra = [
                    ast.unparse(d)
                    for d in node.decorator_list
                    if "click." in ast.unparse(d) or "option(" in ast.unparse(d)
                ]
                declared += [f"{module}.{node.name}: {d}" for d in extra]
            elif (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in {"click.option", "click.argument"}
                and _unit(module) != "bench.cli"
            ):
                declared.append(f"{module}: {ast.unparse(node)[:60]}")
    assert declared == []


def test_mlproject_is_written_from_the_option_table():
    """The MLproject entry points are the run commands, their parameters the table's rows that
    ``mlflow run`` passes (rewrite it with ``python -m bench.plan.mlproject > MLproject``)."""
    import yaml

    from bench.plan import COMMANDS, options
    from bench.plan.mlproject import entry_points, render

    text = (PACKAGE.parent / "MLproject").read_text(encoding="utf-8")
    assert text == render()
    points = yaml.safe_load(text)["entry_points"]
    assert points == entry_points()
    for command in COMMANDS:
        rows = [row for row in options(command) if row.mlproject]
        assert list(points[command]["parameters"]) == [row.parameter for row in rows]
        for row in rows:
            assert f"{{{row.parameter}}}" in points[command]["command"]
