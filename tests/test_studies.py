"""Study files: every one parses and runs at toy size; malformed ones fail with the file name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import ViewType

from bench.compare import run_comparison
from bench.errors import StudyError
from bench.models import CORE_VARIANTS, get_variant, list_variants
from bench.models.build import build_model
from bench.plan import Plan
from bench.studies import STUDIES_DIR, list_studies, load_study, parse_study, resolve_path
from tests.support import TINY_VALIDATION, artifact_paths, download, study_yaml

# The default study first: its toy run below trains the six core variants; the studies that
# list the same six (best-epoch, seed-000) then train only the first.
STUDY_FILES = sorted(STUDIES_DIR.glob("*.yaml"), key=lambda p: (p.stem != "default", p.stem))

# Seed notebook 000's table: test accuracy, test loss, parameters.
SEED_000 = {
    "vanilla-shallow": (0.8806, 0.5406, 101_770),
    "vanilla-deep": (0.8858, 0.4906, 1_720_330),
    "dropout-shallow": (0.8830, 0.3620, 101_770),
    "dropout-deep": (0.8166, 0.6150, 1_720_330),
    "batchnorm-shallow": (0.8806, 0.3998, 102_282),
    "batchnorm-residual-deep": (0.8855, 0.4341, 1_732_618),
}


def test_the_project_has_studies():
    assert {p.stem for p in STUDY_FILES} >= {"default", "seed-000"}


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: p.stem)
def test_every_study_file_parses(path):
    study = load_study(path)
    assert study.variant_names
    for name in study.variant_names:
        get_variant(name)  # registered
    for name, ref in study.references.items():
        assert name in study.variant_names
        if ref.params is not None:  # the reference architecture is the one we build
            assert build_model(get_variant(name)).count_params() == ref.params, name
    assert study.hparams(seed=3).seed == 3
    assert study.hparams().epochs == study.protocol.epochs


def _toy_variants(path: Path) -> str | None:
    """All of a study's variants, unless earlier study files already ran every one of them
    (default, best-epoch and seed-000 differ only in protocol): then its first is enough."""
    names = load_study(path).variant_names
    earlier = {
        name for p in STUDY_FILES[: STUDY_FILES.index(path)] for name in load_study(p).variant_names
    }
    return names[0] if set(names) <= earlier else None


def test_every_registered_variant_is_in_a_study():
    """So the toy runs below train every variant end to end (tests/test_training.py adds
    the six core ones and any variant outside the studies)."""
    listed = {name for path in STUDY_FILES for name in load_study(path).variant_names}
    assert set(list_variants()) <= listed


#: The default study and seed 000's in the default run; every other study in the ``long`` run.
QUICK_STUDIES = ("default", "seed-000")


@pytest.mark.parametrize(
    "path",
    [
        p if p.stem in QUICK_STUDIES else pytest.param(p, marks=pytest.mark.long)
        for p in STUDY_FILES
    ],
    ids=lambda p: p.stem,
)
def test_every_study_runs_at_toy_size(path, tracking_uri, client, tmp_path):
    """The study's variants, one epoch each, on the tiny data; everything finishes and the
    study's figures, tables, notes and reference numbers land in MLflow."""
    study = load_study(path)
    subset = _toy_variants(path)
    settings = Plan.from_study(
        study, epochs=1, validation_size=TINY_VALIDATION, seeds=1, variants=subset
    )
    assert settings.variants == (tuple(study.variant_names) if subset is None else (subset,))
    result = run_comparison(settings, log_models=False)

    runs = client.search_runs([result.experiment_id], run_view_type=ViewType.ALL)
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "comparison"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert len(parents) == 1 and parents[0].info.run_id == result.parent_run_id
    assert parents[0].info.status == "FINISHED"
    assert result.experiment_name == study.name
    assert sorted(r.data.params["variant"] for r in children) == sorted(settings.variants)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["epochs"] == "1"
        assert child.data.params["task"] == study.task
        assert child.data.tags["bench.status"] in ("ok", "dead")  # one epoch may not be enough
        if child.data.params["variant"] in CORE_VARIANTS:  # seed 000's six learn it in one epoch
            assert child.data.tags["bench.status"] == "ok", child.data.params["variant"]
            # at least twice chance (0.1) after 17 steps of batch 128, dropout-deep's 0.5 included
            assert child.data.metrics["val_accuracy"] > 0.2, child.data.params["variant"]
        assert child.data.metrics["epochs_run"] == 1
        # The notebook's numbers are context (tags), never hyperparameters (params).
        assert not [k for k in child.data.params if k.startswith("ref.")]
        ref = study.references.get(child.data.params["variant"])
        if (
            ref is not None
            and ref.test_accuracy is not None
            and study.task == child.data.params["task"]
        ):
            assert float(child.data.tags["ref.test_accuracy"]) == ref.test_accuracy
        variant = get_variant(child.data.params["variant"])
        paths = artifact_paths(client, child.info.run_id)
        assert {
            "figures/learning_curves.png",
            "figures/test_predictions.png",
            "history.csv",
        } <= paths
        # Every batch-norm layer's parameters, one row per channel (seed 002).
        assert ("batch_norm/parameters.csv" in paths) == variant.has_batch_norm
        if variant.has_batch_norm:
            bn = pd.read_csv(
                download(
                    client, child.info.run_id, "batch_norm/parameters.csv", tmp_path / variant.name
                )
            )
            model = build_model(variant)
            expected = [layer.moving_mean.shape[0] for layer in model.layers if "bn" in layer.name]
            assert bn.groupby("layer", sort=False).size().tolist() == expected
            assert (bn["moving_variance"] > 0).all() and bn["gamma"].notna().all()
            assert {"batch_norm/summary.md", "batch_norm/parameters.png"} <= paths
    assert len(result.table) == len(settings.variants)

    parent = parents[0].info.run_id
    paths = artifact_paths(client, parent)
    assert {
        "comparison.csv",
        "comparison.md",
        "dataset/summary.md",
        "dataset/class_balance.csv",
        "dataset/samples_development.png",
        "dataset/samples_test.png",
    } <= paths
    # Seed 001's figure wherever some family was run at two depths or more.
    depths = {}
    for name in settings.variants:
        depths.setdefault(get_variant(name).family, set()).add(get_variant(name).hidden_layers)
    assert ("figures/accuracy_vs_depth.png" in paths) == any(len(d) > 1 for d in depths.values())
    # The notebook's numbers beside ours, as logged.
    table = pd.read_csv(download(client, parent, "comparison.csv", tmp_path))
    for row in table.itertuples():
        ref = study.references.get(row.variant)
        if ref is not None and ref.test_accuracy is not None:
            assert row.ref_test_accuracy == ref.test_accuracy
            assert row.delta_test_accuracy == pytest.approx(row.test_accuracy - ref.test_accuracy)
        if ref is not None and ref.params is not None:
            assert row.ref_params == ref.params and row.params_match
    markdown = download(client, parent, "comparison.md", tmp_path).read_text()
    assert ("notes.md" in paths) == bool(study.notes)
    for note in study.notes:
        assert note in markdown
    summary = download(client, parent, "dataset/summary.md", tmp_path).read_text()
    assert ("training split's mean and std" in summary) == study.protocol.standardize


@pytest.mark.parametrize("name", ["seed-000", "default"])
def test_seed_000_references(name):
    study = load_study(name)
    assert set(study.references) == set(SEED_000)
    for variant, (acc, loss, params) in SEED_000.items():
        ref = study.references[variant]
        assert (ref.test_accuracy, ref.test_loss, ref.params) == (acc, loss, params), variant


def test_seed_000_protocol():
    study = load_study("seed-000")
    assert study.task == "fashion_mnist"
    assert study.variant_names == list(SEED_000)
    p = study.protocol
    assert (p.epochs, p.batch_size, p.optimizer, p.learning_rate, p.seeds, p.validation_size) == (
        50,
        32,
        "adam",
        0.001,
        1,
        10_000,
    )


def test_default_study_is_found_without_a_name():
    assert resolve_path(None) == STUDIES_DIR / "default.yaml"
    assert load_study(None).name == load_study("default").name == "core-fashion-mnist"


def test_a_study_in_the_working_folder_is_found_by_name(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "mine.yaml").write_text(study_yaml("mine"), encoding="utf-8")
    assert load_study("mine").name == "mine"
    assert "mine" in {p.stem for p in list_studies()}


def test_an_unknown_study_name_lists_the_known_ones():
    with pytest.raises(StudyError, match=r"no study named 'nope'; known: .*default.*seed-000"):
        load_study("nope")


def test_a_missing_study_file(tmp_path):
    with pytest.raises(StudyError, match="does not exist"):
        load_study(tmp_path / "absent.yaml")


BROKEN = {
    "malformed-yaml": ("name: toy\nvariants: [vanilla-shallow\n", "malformed YAML"),
    "tab-indented": ("name: toy\nprotocol:\n\tepochs: 1\n", "malformed YAML"),
    "not-a-mapping": ("- vanilla-shallow\n- vanilla-deep\n", "must be a mapping"),
    "empty-file": ("", "must be a mapping"),
    "unknown-key": (study_yaml("toy") + "epochz: 3\n", "epochz: Extra inputs are not permitted"),
    "unknown-protocol-key": (
        study_yaml("toy").replace("protocol:\n", "protocol:\n  epoch: 3\n"),
        "protocol.epoch",
    ),
    "wrong-type": (study_yaml("toy").replace("epochs: 1", 'epochs: "ten"'), "protocol.epochs"),
    "zero-epochs": (study_yaml("toy").replace("epochs: 1", "epochs: 0"), "protocol.epochs"),
    "dropout-1": (study_yaml("toy", dropout=1.0), "protocol.dropout"),
    "unknown-optimizer": (study_yaml("toy", optimizer="adagrad"), "protocol.optimizer"),
    "unknown-variant": (study_yaml("toy", variants=["vanila-deep"]), "did you mean vanilla-deep"),
    "no-variants": (study_yaml("toy", variants=[]), "variants"),
    "unknown-task": (study_yaml("toy", task="cifar10"), "unknown task 'cifar10'"),
    "missing-task": ("name: toy\nvariants: [vanilla-shallow]\n", "task: Field required"),
    "bad-name": (study_yaml("toy").replace("name: toy", "name: ../escape"), "name"),
    "reference-for-another-variant": (
        study_yaml(
            "toy", variants=["vanilla-shallow"], references={"vanilla-deep": {"test_accuracy": 0.9}}
        ),
        "references for variants not in the study: vanilla-deep",
    ),
    "reference-accuracy-above-1": (
        study_yaml(
            "toy",
            variants=["vanilla-shallow"],
            references={"vanilla-shallow": {"test_accuracy": 88.06}},
        ),
        "references.vanilla-shallow.test_accuracy",
    ),
    "margin-0": (study_yaml("toy") + "equivalence_margin: 0\n", "equivalence_margin"),
    "margin-in-points": (study_yaml("toy") + "equivalence_margin: 1.5\n", "equivalence_margin"),
    "unknown-posthoc": (study_yaml("toy") + "posthoc: nemenyi\n", "unknown test 'nemenyi'"),
    # Strict types (issue 27, J): no bool or text where a number goes.
    "epochs-true": (
        study_yaml("toy").replace("epochs: 1", "epochs: true"),
        "protocol.epochs: Input should be a valid integer",
    ),
    "epochs-quoted": (
        study_yaml("toy").replace("epochs: 1", 'epochs: "1"'),
        "protocol.epochs: Input should be a valid integer",
    ),
    "batch-size-choice-true": (
        study_yaml("toy") + "search_space: {batch_size: {choices: [true, 64]}}\n",
        "search_space.batch_size.choices.0",
    ),
    # Malformed keys (issue 27, N): one line naming the file, not an internal error.
    "list-key": (study_yaml("toy") + "[a, b]: 1\n", "a key must be a name, not a list"),
    "map-key": (study_yaml("toy") + "? {a: 1}\n: 2\n", "a key must be a name, not a dict"),
    "factor-of-another-variant": (
        study_yaml("toy") + "factors: {bn: {plain: [vanilla-shallow], bn: [vanilla-deep]}}\n",
        "level 'bn' names variants not in the study: vanilla-deep",
    ),
    "factor-with-one-level": (
        study_yaml("toy") + "factors: {bn: {plain: [vanilla-shallow, batchnorm-shallow]}}\n",
        "needs 2 or more levels",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_malformed_studies_name_the_file(case, tmp_path):
    text, expected = BROKEN[case]
    path = tmp_path / f"broken-{case}.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message  # one line for the CLI


def test_a_study_declares_its_margin_and_factors_and_logs_them_for_the_report():
    from bench import stats

    text = study_yaml(
        "toy",
        variants=[
            "vanilla-shallow",
            "vanilla-deep",
            "batchnorm-shallow",
            "batchnorm-residual-deep",
        ],
    )
    declared = parse_study(
        text + "equivalence_margin: 0.01\nfactors:\n  depth:\n"
        "    shallow: [vanilla-shallow, batchnorm-shallow]\n"
        "    deep: [vanilla-deep, batchnorm-residual-deep]\n"
    )
    params = declared.analysis_params(declared.variant_names)
    assert params["equivalence_margin"] == 0.01 and params["posthoc"] == "ttest"
    assert (
        parse_study(text + "posthoc: wilcoxon\n").analysis_params(["vanilla-shallow"])["posthoc"]
        == "wilcoxon"
    )
    assert stats.loads_factors(params["factors"]) == {
        "depth": {
            "shallow": ["vanilla-shallow", "batchnorm-shallow"],
            "deep": ["vanilla-deep", "batchnorm-residual-deep"],
        }
    }
    assert declared.analysis(
        ["vanilla-shallow", "vanilla-deep"]
    ).factors == {  # a comparison of some variants
        "depth": {"shallow": ["vanilla-shallow"], "deep": ["vanilla-deep"]}
    }
    assert (
        declared.analysis(["vanilla-shallow", "batchnorm-shallow"]).factors is None
    )  # one level left
    derived = parse_study(text)  # no factors declared: family x group, a complete 2 x 2
    assert derived.equivalence_margin == 0.005
    assert list(derived.analysis(derived.variant_names).factors) == ["family", "group"]
    assert derived.analysis_params(["vanilla-shallow", "batchnorm-shallow"])["factors"] == "{}"


def test_parse_study_names_its_source():
    with pytest.raises(StudyError, match=r"^inline\.yaml: "):
        parse_study("[1, 2]", source="inline.yaml")


def test_settings_override_only_what_is_given(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(study_yaml("toy", learning_rate=0.01, seeds=3), encoding="utf-8")
    study = load_study(path)
    plain = Plan.from_study(study)
    assert plain.hparams.learning_rate == 0.01 and plain.hparams.epochs == 1
    assert plain.seeds == (0, 1, 2)
    assert plain.validation_size == TINY_VALIDATION
    changed = Plan.from_study(
        study, epochs=4, batch_size=64, learning_rate=0.5, seeds=1, task="mnist"
    )
    assert (changed.hparams.epochs, changed.hparams.batch_size, changed.hparams.learning_rate) == (
        4,
        64,
        0.5,
    )
    assert changed.seeds == (0,) and changed.task == "mnist"
    assert Path(path).is_file()


def test_yaml_merge_keys_and_yaml_1_2_floats_are_read_as_a_reader_expects():
    """A valid merge key (<<: *anchor) is not malformed (issue 27, N), and 1e-3 is a number
    (YAML 1.2; PyYAML alone reads it as text, which strict types would refuse)."""
    study = parse_study(
        "name: toy\ntask: fashion_mnist\nvariants: [vanilla-shallow]\n"
        "search_space: {learning_rate: &lr {low: 1e-5, high: 1e-2, log: true}}\n"
        "protocol:\n  <<: {epochs: 2, learning_rate: 1e-3}\n  batch_size: 64\n"
    )
    assert (
        study.protocol.epochs == 2
        and study.protocol.learning_rate == 0.001
        and study.protocol.batch_size == 64
    )
    assert study.search_space.learning_rate.low == 1e-5
