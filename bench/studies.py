"""Study files (``studies/*.yaml``): task, variants, protocol, reference numbers.

A study is data. It is parsed with a safe YAML loader and validated strictly (unknown
keys and wrong types are errors), so a typo never silently changes an experiment.
:class:`bench.plan.Plan` applies command-line values to a study, the same way for
``compare``, ``train`` and ``tune``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bench import stats
from bench.data import DEFAULT_VALIDATION_SIZE, FORMATS, FileSource, Task, get_task, register_task
from bench.errors import BenchError, StudyError
from bench.models import OPTIMIZERS, HParams, declare_variant, get_variant, list_variants, register
from bench.models.schedule import SCHEDULES
from bench.models.space import FloatRange, SearchSpace  # noqa: F401  (the study's search_space)
from bench.store import schema

LAYER = 3  # import layer (docs/development.md#layers): imports only lower layers' units


def _builtin_studies() -> Path:
    """The built-in study files: ``bench/study_files/`` in an installed wheel (setup.py maps
    ``studies/`` there), else the source checkout's ``studies/`` (editable installs)."""
    package = Path(__file__).resolve().parent
    packaged = package / "study_files"
    return packaged if packaged.is_dir() else package.parent / "studies"


STUDIES_DIR = _builtin_studies()
DEFAULT_STUDY = "default"
#: Optuna pruners a study (or ``bench tune --pruner``) may name; bench.tuning builds them.
PRUNERS = ("median", "successive-halving", "hyperband", "none")
Optimizer = Literal[OPTIMIZERS]  # type: ignore[valid-type]
Schedule = Literal[SCHEDULES]  # type: ignore[valid-type]
Pruner = Literal[PRUNERS]  # type: ignore[valid-type]


class _Strict(BaseModel):
    # inf and NaN are never a setting; pydantic would accept them in any float field. Strict
    # types: `epochs: true` or `epochs: "1"` is an error, not 1 (an int is still a float).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class Protocol(_Strict):
    epochs: int = Field(20, gt=0, le=100_000)
    batch_size: int = Field(128, gt=0, le=1 << 20)
    optimizer: Optimizer = "adam"
    learning_rate: float | None = Field(None, gt=0)
    dropout: float | None = Field(None, ge=0, lt=1)
    seeds: int = Field(1, gt=0, le=10_000)
    validation_size: int = Field(DEFAULT_VALIDATION_SIZE, gt=0, le=2**31 - 1)
    # Standardise pixels with the training split's mean and std (seed 003) instead of /255.
    standardize: bool = False
    # Test, log and score the weights of the best validation epoch instead of the last one's.
    restore_best: bool = False
    weight_decay: float | None = Field(None, ge=0)  # None: the optimizer's Keras default
    momentum: float | None = Field(None, ge=0, lt=1)  # sgd
    nesterov: bool = False  # sgd
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    schedule: Schedule = "constant"  # the learning rate's: bench.models.schedule
    warmup_epochs: int = Field(0, ge=0, le=100_000)


class Override(_Strict):
    """Per-variant changes to the protocol (a notebook that trained its models differently)."""

    epochs: int | None = Field(None, gt=0, le=100_000)
    batch_size: int | None = Field(None, gt=0, le=1 << 20)
    optimizer: Optimizer | None = None
    learning_rate: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    momentum: float | None = Field(None, ge=0, lt=1)
    nesterov: bool | None = None
    label_smoothing: float | None = Field(None, ge=0, lt=1)
    schedule: Schedule | None = None
    warmup_epochs: int | None = Field(None, ge=0, le=100_000)


class Reference(_Strict):
    test_accuracy: float | None = Field(None, ge=0, le=1)
    test_loss: float | None = Field(None, ge=0)
    params: int | None = Field(None, gt=0)


class Tuning(_Strict):
    trials: int = Field(50, gt=0, le=1_000_000)
    epochs: int | None = Field(None, gt=0, le=100_000)  # None: the protocol's epochs
    # successive halving: the best accuracy per epoch trained in benchmarks/pruners.py
    pruner: Pruner = "successive-halving"
    # The epoch at which the pruner first judges a trial (successive halving's and Hyperband's
    # min_resource; the median pruner warms up this many and judges from the next), at most the
    # study's epochs. Why 3, measured: docs/tuning.md (tuning.min_epochs).
    min_epochs: int = Field(3, gt=0, le=100_000)
    # Independent tuning runs per variant (sampler seeds): how much the winner moves between
    # them is the tuning's own noise, reported beside each tuned-vs-default effect.
    repeats: int = Field(1, gt=0, le=100)
    # After the repeats, the best `select_top` distinct trials over all of them (and the
    # default setting) are trained again on `select_seeds` training seeds each and the best
    # mean validation accuracy is chosen; 0: the best single trial is chosen (one seed).
    select_top: int = Field(3, gt=0, le=100)
    select_seeds: int = Field(0, ge=0, le=100)


class DatasetSource(_Strict):
    """A dataset file a study declares (:class:`bench.data.FileSource`); ``path`` is relative
    to the study file."""

    format: Literal[FORMATS]  # type: ignore[valid-type]
    path: str = Field(min_length=1)
    label: str = Field("label", min_length=1)  # csv / parquet: the label column
    test_size: int | None = Field(None, gt=0)  # the last rows are the test split (one-split data)


class DeclaredTask(_Strict):
    """``task: {name, source, validation_size, class_names}``: a dataset declared in the
    study file instead of one registered in the package."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    source: DatasetSource
    validation_size: int | None = Field(None, gt=0, le=2**31 - 1)
    class_names: list[str] | None = Field(None, min_length=2)
    origin: str = ""  # the study file (set when it is read)

    def as_task(self) -> Task:
        src = self.source
        return Task(
            name=self.name,
            class_names=tuple(self.class_names or ()),
            input_shape=None,
            source=FileSource(src.format, Path(src.path), src.label, src.test_size),
            origin=self.origin or "a study file",
        )

    def register(self) -> None:
        register_task(self.as_task())


class Study(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    task: str
    dataset: DeclaredTask | None = None  # the task, where the study file declares it
    variants: list[str] = Field(min_length=1)
    # The variants this file declares (mappings in `variants:`), as written: registered when
    # the file is read, and again in a worker process that gets the study pickled.
    declared_variants: list[dict] = []
    declared_origin: str = ""  # "study file <path>", shown by bench list
    protocol: Protocol = Protocol()
    reference_source: str = ""
    references: dict[str, Reference] = {}
    # Where our protocol departs from the notebook's, and why: shown in every report.
    notes: list[str] = []
    overrides: dict[str, Override] = {}
    search_space: SearchSpace = SearchSpace()
    tuning: Tuning = Tuning()
    # The smallest difference in test accuracy that matters (0.005: half a point): within it
    # a pair can be shown equivalent, and the report says how many seeds would resolve it.
    equivalence_margin: float = Field(stats.DEFAULT_MARGIN, gt=0, lt=1)
    # factor -> level -> variants, e.g. {depth: {shallow: [...], deep: [...]}}; not given:
    # the variants' family x group where that is a complete crossed design.
    factors: dict[str, dict[str, list[str]]] | None = None
    # The ranking's pairwise test, by name from the registry (bench.stats.POSTHOC_TESTS):
    # "ttest" (the verdicts' own paired t-tests) or "wilcoxon" (signed-rank, for many seeds).
    posthoc: str = "ttest"

    @model_validator(mode="before")
    @classmethod
    def _declared_task(cls, raw: object, info: ValidationInfo) -> object:
        """``task:`` given as a mapping declares the dataset: its path resolved against the
        study file's folder, the task registered (before the name is checked), its
        validation size the protocol's."""
        if not isinstance(raw, dict) or not isinstance(raw.get("task"), dict):
            return raw
        base = Path((info.context or {}).get("base", "."))
        declared = DeclaredTask.model_validate(
            {**raw["task"], "origin": str((info.context or {}).get("source", ""))}
        )
        path = Path(declared.source.path).expanduser()
        source = declared.source.model_copy(
            update={"path": str(path if path.is_absolute() else base / path)}
        )
        declared = declared.model_copy(update={"source": source})
        declared.register()
        out = {**raw, "task": declared.name, "dataset": declared}
        if declared.validation_size is not None:
            protocol = dict(raw.get("protocol") or {})
            if "validation_size" in protocol:
                raise ValueError("validation_size is given twice (task and protocol): keep one")
            out["protocol"] = {**protocol, "validation_size": declared.validation_size}
        return out

    @model_validator(mode="before")
    @classmethod
    def _declared_variants(cls, raw: object, info: ValidationInfo) -> object:
        """``variants:`` entries given as mappings declare variants (:mod:`bench.models.declare`):
        each is checked and registered under its name, which takes its place in the list."""
        if not isinstance(raw, dict) or not isinstance(raw.get("variants"), list):
            return raw
        origin = f"study file {(info.context or {}).get('source') or raw.get('name', '?')}"
        names, declared = [], []
        for i, entry in enumerate(raw["variants"]):
            if isinstance(entry, dict):
                try:
                    register(declare_variant(entry), origin=origin)
                except BenchError as exc:
                    raise ValueError(f"variants[{i}]: {exc}") from None
                names.append(entry["name"])
                declared.append(entry)
            else:
                names.append(entry)
        if not declared:
            return raw
        return {**raw, "variants": names, "declared_variants": declared, "declared_origin": origin}

    def __setstate__(
        self, state
    ) -> None:  # a worker process gets the study pickled: register its task there too
        super().__setstate__(state)
        if self.dataset is not None:
            self.dataset.register()
        for entry in self.declared_variants:
            register(declare_variant(entry), origin=self.declared_origin)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        return get_task(value).name

    @model_validator(mode="after")
    def _known_variants(self) -> Study:
        names = list_variants(self.variants)
        for what, keys in (("references", self.references), ("overrides", self.overrides)):
            unknown = sorted(set(keys) - set(names))
            if unknown:
                raise ValueError(f"{what} for variants not in the study: {', '.join(unknown)}")
        if self.factors is not None:
            stats.check_factors(self.factors, names)
        if self.posthoc not in stats.POSTHOC_TESTS:
            raise ValueError(
                f"posthoc: unknown test {self.posthoc!r}; known: {', '.join(stats.POSTHOC_TESTS)}"
            )
        return self

    def analysis(self, variants: Sequence[str]) -> stats.Analysis:
        """The margin and the factors over ``variants``: declared, else the variants' family x
        group where that is a complete crossed design (else none)."""
        if self.factors is not None:
            factors = stats.restrict(self.factors, variants)
        else:
            factors = stats.derive_factors(
                (v, get_variant(v).family, get_variant(v).group) for v in variants
            )
        return stats.Analysis(self.equivalence_margin, factors, posthoc=self.posthoc)

    def analysis_params(self, variants: Sequence[str]) -> dict[str, object]:
        """:meth:`analysis` as a comparison's protocol params (factors as JSON, "{}": none),
        which reports read back."""
        a = self.analysis(variants)
        return {
            schema.EQUIVALENCE_MARGIN: a.margin,
            schema.FACTORS: stats.dumps_factors(a.factors),
            schema.POSTHOC: a.posthoc,
        }

    @property
    def variant_names(self) -> list[str]:
        return list_variants(self.variants)

    def hparams(self, seed: int = 0, variant: str | None = None) -> HParams:
        """The protocol's hyperparameters, with ``variant``'s overrides applied."""
        p = self.protocol
        hp = HParams(
            optimizer=p.optimizer,
            learning_rate=p.learning_rate,
            dropout=p.dropout,
            batch_size=p.batch_size,
            epochs=p.epochs,
            seed=seed,
            restore_best=p.restore_best,
            weight_decay=p.weight_decay,
            momentum=p.momentum,
            nesterov=p.nesterov,
            label_smoothing=p.label_smoothing,
            schedule=p.schedule,
            warmup_epochs=p.warmup_epochs,
        )
        if variant is not None and variant in self.overrides:
            hp = hp.replace(**self.overrides[variant].model_dump())
        return hp


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])  # none: the message says where
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def resolve_path(study: str | Path | None) -> Path:
    """A path, or a name looked up in ``./studies`` and the project's ``studies/``."""
    if study is None:
        study = DEFAULT_STUDY
    path = Path(study).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise StudyError(f"study file {path} does not exist")
        return path
    for folder in (Path.cwd() / "studies", STUDIES_DIR):
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{study}{suffix}"
            if candidate.is_file():
                return candidate
    known = sorted(p.stem for p in STUDIES_DIR.glob("*.yaml")) if STUDIES_DIR.is_dir() else []
    raise StudyError(f"no study named {str(study)!r}; known: {', '.join(known) or 'none'}")


def load_study(study: str | Path | None = None) -> Study:
    path = resolve_path(study)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"cannot read study file {path}: {exc}") from None
    return parse_study(text, source=str(path))


#: Nesting deeper than any study needs (a study is three levels deep) is refused before
#: parsing: PyYAML recurses per level and a few hundred levels overflow Python's stack.
MAX_DEPTH = 20


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last),
    and reading YAML 1.2 floats: ``1e-3`` is a number, as a reader expects (YAML 1.1, and
    so PyYAML, wants ``1.0e-3`` and reads ``1e-3`` as text, which strict types refuse)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(
                node
            )  # merge keys (<<: *anchor) first, as PyYAML's own loader does
        seen = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a key must be a name, not a {type(key).__name__}",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _depth(text: str) -> int:
    """The deepest nesting of flow brackets or of block indentation in ``text``."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    indents = {len(line) - len(line.lstrip(" ")) for line in text.splitlines() if line.strip()}
    return max(deepest, len(indents))


def parse_study(text: str, *, source: str = "<study>") -> Study:
    if _depth(text) > MAX_DEPTH:
        raise StudyError(
            f"{source}: nested more than {MAX_DEPTH} levels deep; a study is a few keys deep"
        )
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise StudyError(f"{source}: nested too deeply to read") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise StudyError(
            f"{source}:{where} malformed YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(raw, dict):
        raise StudyError(
            f"{source}: a study file must be a mapping of keys (name, task, variants, ...)"
        )
    try:
        return Study.model_validate(raw, context={"base": Path(source).parent, "source": source})
    except ValidationError as exc:
        raise StudyError(f"{source}: {_format_validation_error(exc)}") from None
    except BenchError as exc:
        raise StudyError(f"{source}: {exc}") from None


def list_studies() -> list[Path]:
    folders = [Path.cwd() / "studies", STUDIES_DIR]
    seen: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                seen.setdefault(path.stem, path)
    return list(seen.values())
