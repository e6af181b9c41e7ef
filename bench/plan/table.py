"""The command-line values of ``compare``, ``train`` and ``tune``, declared once.

Each :class:`Option` row says its name, its value type, its help and default, where the
environment supplies it and whether ``mlflow run`` passes it; :data:`COMMANDS` lists each
command's rows in the order ``--help`` shows them. The click options (:mod:`bench.console`),
the ``MLproject`` entry points (:mod:`bench.plan.mlproject`) and the :class:`~bench.plan.Plan`
the command runs all read this table, so the three stay in step (a test checks the
``MLproject`` file against it). A row whose name is a hyperparameter field
(:class:`bench.models.HParams`) overrides that hyperparameter: adding a searchable
hyperparameter to the command line is one row here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.errors import OptionError
from bench.models.spec import MAX_SEED
from bench.studies import PRUNERS


@dataclass(frozen=True)
class Integer:
    """An integer in [low, high]."""

    low: int = 1
    high: int = 2**31 - 1


@dataclass(frozen=True)
class Number:
    """A finite number > 0."""


@dataclass(frozen=True)
class Fraction:
    """A number strictly between 0 and 1."""


@dataclass(frozen=True)
class Text:
    """Any text; ``complete`` names the shell completion (studies, tasks, variants)."""

    complete: str | None = None


@dataclass(frozen=True)
class Flag:
    """On when given."""


@dataclass(frozen=True)
class OneOf:
    """One of ``choices``, given as text (an unknown one is an error naming them)."""

    choices: tuple[str, ...]


Kind = Integer | Number | Fraction | Text | Flag | OneOf


@dataclass(frozen=True)
class Option:
    """One command-line value. ``name`` is its key in a plan; ``flag`` (default: the name)
    is its ``--flag`` and its ``MLproject`` parameter. ``by_command`` changes any field for
    one command (its help, say)."""

    name: str
    kind: Kind
    help: str = ""
    default: object = None
    show_default: bool = False
    envvar: str | None = None
    flag: str = ""
    positional: bool = False  # an argument, not an --option
    short: str = ""  # a one-letter form ("-q"), besides --flag
    mlproject: bool = True  # an `mlflow run` parameter
    mlproject_default: str = ""  # its MLproject default ("": the study's value)
    requires: tuple[str, str] | None = None  # (another option, the error when it is missing)
    excludes: tuple[str, str] | None = None  # (another option, the error when both are given)
    by_command: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @property
    def parameter(self) -> str:
        """Its MLproject parameter (and the Python name click gives it)."""
        return self.flag or self.name

    @property
    def option(self) -> str:
        return f"--{self.parameter.replace('_', '-')}"

    @property
    def options(self) -> tuple[str, ...]:
        """Every form click accepts (the short one first)."""
        return (self.short, self.option) if self.short else (self.option,)

    def on(self, command: str) -> Option:
        """This row as ``command`` shows it."""
        return dataclasses.replace(self, **self.by_command.get(command, {}), by_command={})


POSITIVE = Integer(1)
EPOCHS = Integer(1, 100_000)
STUDY_HELP = "Study file or name in studies/ (default: studies/default.yaml)."
TUNED_ONLY = "--storage and --study-name only apply with --tuned"
STORE_HELP = "MLflow store [default: sqlite:///mlflow.db]."
DATA_HELP = "Folder with fashion-mnist/ and mnist/ IDX files."
TUNE = "tune"

#: Every value the run commands take, once.
OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("variant", Text("variants"), positional=True, mlproject_default="vanilla-shallow"),
        Option(
            "study",
            Text("studies"),
            STUDY_HELP,
            mlproject_default="default",
            by_command={
                TUNE: {
                    "help": "Study file or name (its search_space and tuning sections are used)."
                }
            },
        ),
        Option(
            "task",
            Text("tasks"),
            "Override the study's task: fashion_mnist or mnist.",
            by_command={TUNE: {"help": "Override the study's task."}},
        ),
        Option(
            "variants",
            Text("variants"),
            "Comma-separated names or globs, e.g. '*-deep,vanilla-*' (default: the study's).",
            by_command={
                TUNE: {
                    "help": "Comma-separated names or globs; one Optuna study each "
                    "(default: the study's)."
                }
            },
        ),
        Option(
            "trials",
            Integer(1, 1_000_000),
            "Finished (complete or pruned) trials the study should hold IN TOTAL. Re-running "
            "resumes: a study with 30 finished trials and --trials 50 runs 20 more. "
            "Default: the study file's tuning.trials (50).",
        ),
        Option(
            "epochs",
            EPOCHS,
            "Override the study's epochs.",
            by_command={TUNE: {"help": "Epochs per trial."}},
        ),
        Option("batch_size", Integer(1, 1 << 20), "Override the study's batch size."),
        Option("learning_rate", Number(), "Override the study's learning rate."),
        Option(
            "workers",
            Integer(1, 256),
            "Worker processes on this machine sharing the study.",
            default=1,
            show_default=True,
            mlproject_default="1",
        ),
        Option(
            "population",
            Integer(1, 4096),
            "Trials each worker trains at once, as one compiled population (1: one at a time) "
            "[default: 4 on a CPU, 32 on a GPU; fewer where memory is short].",
        ),
        Option(
            "storage",
            Text(),
            "With --tuned: the Optuna storage `bench tune` used [default: "
            "$BENCH_OPTUNA_STORAGE, else beside the MLflow store].",
            mlproject=False,
            requires=("tuned", TUNED_ONLY),
            by_command={
                TUNE: {
                    "envvar": "BENCH_OPTUNA_STORAGE",
                    "mlproject": True,
                    "requires": None,
                    "help": "Optuna storage URL: journal:///path/f.journal, sqlite:///f.db, "
                    "postgresql://... [default: optuna.journal beside the MLflow store].",
                }
            },
        ),
        Option(
            "study_name",
            Text(),
            "With --tuned: the Optuna study name `bench tune` used.",
            mlproject=False,
            requires=("tuned", TUNED_ONLY),
            by_command={
                TUNE: {
                    "mlproject": True,
                    "requires": None,
                    "help": "Optuna study name [default: <study>-<task>-<variant>].",
                }
            },
        ),
        Option("seed", Integer(0, MAX_SEED), "Random seed (default 0)."),
        Option(
            "sampler_seed",
            Integer(0, MAX_SEED),
            "TPE sampler seed (repeat r uses seed + r x 1,000,003).",
            flag="seed",
            default=0,
            show_default=True,
            mlproject_default="0",
        ),
        Option(
            "repeats",
            Integer(1, 100),
            "Independent tuning studies per variant, sampler seeds apart "
            "[default: the study's tuning.repeats].",
        ),
        Option(
            "select_top",
            Integer(1, 100),
            "Best distinct trials over all repeats re-evaluated on more "
            "seeds [default: tuning.select_top].",
        ),
        Option(
            "select_seeds",
            Integer(0, 100),
            "Training seeds each re-evaluated trial gets; the best mean validation accuracy is "
            "the tuned setting (0: the best single trial) [default: tuning.select_seeds].",
        ),
        Option(
            "pruner",
            OneOf(PRUNERS),
            "median, successive-halving, hyperband or none [default: the study's tuning.pruner].",
        ),
        Option("timeout", Number(), "Stop starting new trials after this many seconds."),
        Option(
            "validation_size",
            POSITIVE,
            "Images held out from the end of the training set (default: the study's, 10000; "
            "with a --limit it does not fit in, a sixth of the limit).",
            by_command={TUNE: {"help": "Held-out training images."}},
        ),
        Option(
            "limit",
            POSITIVE,
            "Use only the first N training and test images (smoke runs).",
            by_command={TUNE: {"help": "Use only the first N images (smoke runs)."}},
        ),
        Option("data_dir", Text(), DATA_HELP, envvar="BENCH_DATA_DIR"),
        Option("tracking_uri", Text(), STORE_HELP, envvar="MLFLOW_TRACKING_URI", mlproject=False),
        Option(
            "experiment",
            Text(),
            "MLflow experiment name [default: the study's name].",
            by_command={TUNE: {"help": "MLflow experiment [default: <study>-tuning]."}},
            envvar="MLFLOW_EXPERIMENT_NAME",  # --experiment, then the variable, then the study
        ),
        Option(
            "no_model",
            Flag(),
            "Do not log the trained models (saves disk).",
            mlproject=False,
            by_command={
                TUNE: {"help": "Do not log (or register) the retrained tuned model (saves disk)."}
            },
        ),
        Option("seeds", Integer(1, 10_000), "Seeds per variant (0..N-1)."),
        Option(
            "tuned",
            Flag(),
            "Also train each variant with its tuned hyperparameters (from `bench tune`) "
            "and show default vs tuned side by side.",
            mlproject=False,
        ),
        Option(
            "register",
            Flag(),
            "Register every model as a version of <task>-<variant> in the Model "
            "registry (the first seed's with the alias 'default' or 'tuned').",
            mlproject=False,
            excludes=("no_model", "--register needs the models: drop --no-model"),
        ),
        Option(
            "fresh",
            Flag(),
            "Start a new comparison even where an interrupted one with the same settings could "
            "be resumed (by default its finished runs are kept and only the rest is trained).",
            mlproject=False,
        ),
        Option(
            "json",
            Flag(),
            "Print one JSON document on stdout (run ids, experiment, URL, the table's rows) "
            "instead of the table; progress stays on stderr.",
            mlproject=False,
        ),
        Option(
            "quiet",
            Flag(),
            "No progress lines: only the result (and warnings and errors) is printed.",
            short="-q",
            mlproject=False,
        ),
        Option(
            "margin",
            Fraction(),
            "Equivalence margin in test accuracy (0.005 = half a point; default: "
            "the study's equivalence_margin).",
            mlproject=False,
        ),
    )
}

#: Data and store values every run command takes last, in this order.
_DATA_AND_STORE = ("validation_size", "limit", "data_dir", "tracking_uri", "experiment", "no_model")
#: What the run commands print: every one takes these last.
_OUTPUT = ("json", "quiet")
_COMMON = (
    "study",
    "task",
    "epochs",
    "batch_size",
    "learning_rate",
    *_DATA_AND_STORE,
)
#: Each run command's values, in the order its --help lists them.
COMMANDS: dict[str, tuple[str, ...]] = {
    "compare": (
        *_COMMON,
        "variants",
        "seeds",
        "tuned",
        "storage",
        "study_name",
        "register",
        "fresh",
        "margin",
        *_OUTPUT,
    ),
    "train": ("variant", *_COMMON, "seed", *_OUTPUT),
    TUNE: (
        "study",
        "task",
        "variants",
        "trials",
        "epochs",
        "workers",
        "population",
        "storage",
        "study_name",
        "sampler_seed",
        "repeats",
        "select_top",
        "select_seeds",
        "pruner",
        "timeout",
        *_DATA_AND_STORE,
        *_OUTPUT,
    ),
}
#: Values a command fixes instead of taking them: `train` runs one seed.
FIXED: dict[str, dict[str, object]] = {"train": {"seeds": 1}}


def options(command: str) -> list[Option]:
    """``command``'s rows, as it shows them."""
    return [OPTIONS[name].on(command) for name in COMMANDS[command]]


def given(command: str, values: Mapping[str, object]) -> dict[str, object]:
    """The values ``command`` was given (an empty text, an unset flag: not given), checked
    against each other, with the values the command fixes."""
    rows = {row.name: row for row in options(command)}
    out = {k: v for k, v in values.items() if v is not None and v != "" and v is not False}
    for name in out:
        row = rows[name]
        if row.requires and row.requires[0] not in out:
            raise OptionError(row.requires[1])
        if row.excludes and row.excludes[0] in out:
            raise OptionError(row.excludes[1])
    return {**out, **FIXED.get(command, {})}
