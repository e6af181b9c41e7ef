"""Every key bench writes into an MLflow store and reads back: one name per key.

Writers (tracking, comparison, tuning, artifacts) and readers (the report, ``compare
--tuned``, stale-run cleanup) import these constants, so they agree by construction, not by
convention (MLflow's own ``mlflow/utils/mlflow_tags.py`` idea). A leaf module: it imports
nothing of bench, and any layer may import it.
"""

from __future__ import annotations

from collections.abc import Mapping

LAYER = 0  # import layer (docs/development.md#layers): imports only lower layers' units

# --------------------------------------------------------------------------- run kinds
#: Tag that says what a run is; its values below.
KIND = "bench.kind"
KIND_COMPARISON = "comparison"  # parent of a comparison's training runs
KIND_TRAIN = "train"  # one variant, one seed, default hyperparameters
KIND_TUNED = "tuned"  # one variant trained with tuned hyperparameters
KIND_STUDY = "study"  # parent of one Optuna study's trials
KIND_TRIAL = "trial"  # one Optuna trial
KIND_BENCHMARK = "benchmark"  # benchmarks/train_speed.py
KIND_SELECTION = "selection"  # a tuning candidate re-trained on another seed, scored on validation
TRAINING_KINDS = (KIND_TRAIN, KIND_TUNED)  # runs that train and test a model
TRAINED_KINDS = (
    KIND_TRAIN,
    KIND_TUNED,
    KIND_TRIAL,
    KIND_SELECTION,
)  # runs that train (system metrics while they do)
PARENT_KINDS = (KIND_COMPARISON, KIND_STUDY)  # runs a report can be built from
COMPARISON_KINDS = (KIND_COMPARISON, KIND_TRAIN, KIND_TUNED)  # what a comparison makes

SETTING_DEFAULT = "default"
SETTING_TUNED = "tuned"

# --------------------------------------------------------------------------- MLflow's tags
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"
MLFLOW_NOTE = "mlflow.note.content"  # a run's or experiment's description
MLFLOW_EXPERIMENT_KIND = "mlflow.experimentKind"
MAX_TAG_VALUE = 5000  # bench cuts a tag's value to this many characters (MLflow keeps 8000)
MLFLOW_SAVED_VIEW = "mlflow.sharedViewState."  # experiment tag: + id, a saved view of the Runs page
EXPERIMENT_KIND_VALUE = "custom_model_development"

# --------------------------------------------------------------------------- bench's tags
TAG_PREFIX = "bench."  # every tag below starts with it
OWNER = "bench.owner"  # host:pid:start of the process that runs it (bench.store.owner)
STATUS = "bench.status"  # ok / dead / diverged (bench.training)
STATUS_MESSAGE = "bench.status_message"
ERROR = "bench.error"  # why a run ended FAILED or KILLED
DEVICE = "bench.device"
MODEL_URI = "bench.model_uri"
REPORT_ERROR = "bench.report_error"
PRUNE_REASON = "bench.prune_reason"
VARIANT_TAG = "bench.variant"
SEED_TAG = "bench.seed"
# A compare --tuned run whose setting is the default's: the run it repeats, not retrained.
SAME_AS = "bench.same_as"
RUN_ID_TAG = "bench.run_id"  # a registered model version: the run that trained it
STUDY_TAG = "bench.study"
TASK_TAG = "bench.task"
UNHEALTHY_RUNS = "bench.unhealthy_runs"
COMPARISON_KEY = "bench.comparison_key"  # a comparison's fingerprint (bench.store.resume)
GIT_COMMIT = "bench.git_commit"  # the commit, "-dirty" when tracked files had changed
MLFLOW_DATA_CONTEXT = "mlflow.data.context"  # a dataset input's role: training, validation or test
DATA_CONTEXTS = {
    "train": "training",
    "validation": "validation",
    "test": "test",
}  # split -> context
MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"  # the commit alone: the UI shows this one
GIT_DIRTY = "bench.git_dirty"  # "true" when tracked files differed from the commit
VERSION_PREFIX = "bench.version."  # + python, tensorflow, keras, mlflow, optuna, numpy
HOST_PREFIX = "bench.host."  # + platform, cpus
HOST_PLATFORM = HOST_PREFIX + "platform"
HOST_CPUS = HOST_PREFIX + "cpus"
HOST_CPU = HOST_PREFIX + "cpu"  # the CPU model
HOST_MEMORY = HOST_PREFIX + "memory"
COMMAND = "bench.command"  # the command line that made a parent run (redacted like every tag)
ENVIRONMENT_PREFIXES = (
    VERSION_PREFIX,
    HOST_PREFIX,
    DEVICE,
    GIT_COMMIT,
    COMMAND,
)  # what a report lists

# --------------------------------------------------------------------------- Optuna's, in MLflow
OPTUNA_STATE = "optuna.state"  # tag on a trial's run: COMPLETE / PRUNED / FAIL
OPTUNA_STUDY = "optuna.study"  # tag and param: the Optuna study's name
OPTUNA_STORAGE = "optuna.storage"  # param of a study's parent run (password masked)
BEST_PREFIX = "best."  # tags of a study's parent run: the best trial's parameters

# --------------------------------------------------------------------------- params
PARAMS = "params"  # the model's parameter count
TASK = "task"
STUDY = "study"
SETTING = "setting"
SEED = "seed"
TRIAL_NUMBER = "trial_number"
BEST_TRIAL = "best_trial"
TUNED_FROM = (
    "tuned_from"  # a compare --tuned run: "<Optuna study> trial <n>" its hyperparameters are
)
SPLIT_PREFIX = "split."  # + train, validation, test: images per split
PROTOCOL_PREFIX = "protocol."  # a comparison's settings (kept apart from `mlflow run`'s params)
TUNING_PREFIX = "tuning."  # a study's settings, likewise
BASE_PREFIX = "base."  # (under tuning.) the hyperparameters trials start from
OVERRIDE_PREFIX = "override."  # (under protocol.) a study's per-variant overrides
# A comparison's protocol (under protocol.), besides the hyperparameter keys below.
VARIANTS = "variants"
SEEDS = "seeds"
VALIDATION_SIZE = "validation_size"
PREPROCESSING = "preprocessing"
DATA_SOURCE = "data_source"
LIMIT = "limit"
EQUIVALENCE_MARGIN = "equivalence_margin"  # the smallest effect of interest (bench.stats)
POSTHOC = "posthoc"  # the ranking's pairwise test (bench.stats.POSTHOC_TESTS)
FACTORS = "factors"  # JSON: factor -> level -> variants; "{}": none
# A study's settings (under tuning.), besides study, storage, variant, task and epochs.
TRIALS = "trials"
SAMPLER = "sampler"
SAMPLER_SEED = "sampler.seed"
PRUNER = "pruner"
PRUNER_MIN_EPOCHS = "pruner.min_epochs"
OBJECTIVE_DEFINITION = "objective"
SEARCH_SPACE = "search_space"
REPEAT = "repeat"  # which of the variant's independent tuning repeats (0-based)
REPEATS = "repeats"
SELECT_TOP = "select.top"  # candidates re-evaluated after the repeats
SELECT_SEEDS = "select.seeds"  # training seeds each candidate is re-evaluated on
CANDIDATE = "candidate"  # a selection run's candidate: "<Optuna study>#<trial>"
# A compare --tuned run's tuning record (params, beside tuned_from): what the choice cost
# and how much it moved between tuning repeats.
TUNING_RECORD_PREFIX = "tuning_record."

# The variant's structure (bench.models.spec.Variant.structure_params).
VARIANT = "variant"
VARIANT_FAMILY = "variant.family"
VARIANT_GROUP = "variant.group"
VARIANT_LAYERS = "variant.layers"
VARIANT_WIDTHS = "variant.widths"
VARIANT_DROPOUT_SITES = "variant.dropout_sites"
VARIANT_BATCH_NORM = "variant.batch_norm"
VARIANT_RESIDUAL = "variant.residual"
VARIANT_INITIALIZER = "variant.kernel_initializer"
VARIANT_SUMMARY = "variant.summary"

# The hyperparameters (bench.models.spec.HParams, one param per field).
OPTIMIZER = "optimizer"
LEARNING_RATE = "learning_rate"
DROPOUT = "dropout"
BATCH_SIZE = "batch_size"
EPOCHS = "epochs"
RESTORE_BEST = "restore_best"  # the best validation epoch's weights are the model's
BETA_2 = "beta_2"  # Adam's second-moment decay
WEIGHT_DECAY = "weight_decay"  # decoupled (AdamW's; Keras' weight_decay for any optimizer)
MOMENTUM = "momentum"  # SGD's
NESTEROV = "nesterov"  # SGD's
LABEL_SMOOTHING = "label_smoothing"  # Keras' CategoricalCrossentropy(label_smoothing=...)
SCHEDULE = "schedule"  # the learning-rate schedule: constant, cosine, step
WARMUP_EPOCHS = "warmup_epochs"  # its linear warm-up
HPARAMS = (
    OPTIMIZER,
    LEARNING_RATE,
    DROPOUT,
    BATCH_SIZE,
    EPOCHS,
    SEED,
    RESTORE_BEST,
    BETA_2,
    WEIGHT_DECAY,
    MOMENTUM,
    NESTEROV,
    LABEL_SMOOTHING,
    SCHEDULE,
    WARMUP_EPOCHS,
)
#: What a search space may vary, in the order tuning samples them.
TUNABLE = (
    LEARNING_RATE,
    DROPOUT,
    BATCH_SIZE,
    OPTIMIZER,
    BETA_2,
    WEIGHT_DECAY,
    MOMENTUM,
    NESTEROV,
    LABEL_SMOOTHING,
    SCHEDULE,
    WARMUP_EPOCHS,
)

# The notebook's reported numbers beside ours (a training run's params).
REF_PREFIX = "ref."
REF_TEST_ACCURACY = REF_PREFIX + "test_accuracy"
REF_TEST_LOSS = REF_PREFIX + "test_loss"
REF_PARAMS = REF_PREFIX + "params"

# --------------------------------------------------------------------------- metrics
# Per epoch (step = 0-based epoch): a training run's learning curves.
LOSS = "loss"
ACCURACY = "accuracy"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
EPOCH_SECONDS = "epoch_seconds"
HISTORY = (LOSS, ACCURACY, VAL_LOSS, VAL_ACCURACY, EPOCH_SECONDS)

# Once per training run.
TEST_ACCURACY = "test_accuracy"
TEST_LOSS = "test_loss"
BEST_VAL_ACCURACY = "best_val_accuracy"  # also a study's best trial's objective
BEST_EPOCH = "best_epoch"  # 0-based
FINAL_VAL_ACCURACY = "final_val_accuracy"
TRAIN_SECONDS = "train_seconds"
EPOCHS_RUN = "epochs_run"
OBJECTIVE = "objective"  # a trial's value for Optuna

# On parent runs.
BEST_TEST_ACCURACY = "best_test_accuracy"  # comparison: best healthy run
TRIALS_PREFIX = "trials."  # study: + complete, pruned, failed, total
BEST_TRIAL_METRIC = "best_trial"
TUNED_TEST_ACCURACY = "tuned_test_accuracy"
FRIEDMAN_P = "friedman_p"  # + _<setting> for settings other than default
IMAN_DAVENPORT_P = "iman_davenport_p"  # likewise: the omnibus test's F-corrected p-value
# A comparison's per-variant aggregates and rankings are tables (summary.csv, ranking.csv and
# their MLflow tables below, the run's description), not metrics: the parent's metrics are a
# few scalars, none of them named after a run or variant (MLflow reads "/" as a chart section).
SUMMARY_TABLE = "summary.json"  # per variant and setting, over seeds (MLflow's log_table)
RANKING_TABLE = "ranking.json"  # + _<setting> before .json for settings other than default


# --------------------------------------------------------------------------- artifacts read back
CONFUSION_FIGURE = "figures/confusion_matrix.png"  # a training run's; the report shows the best
OPTUNA_FIGURES = (
    "optimization_history",
    "param_importances",
    "parallel_coordinate",
    "intermediate_values",
)
OPTUNA_HTML = "optuna/figures.html"  # the study's interactive figures, one page
OPTUNA_HTML_FIGURES = (
    "optimization_history",
    "param_importances",
    "parallel_coordinate",
    "contour",
    "slice",
    "edf",
    "intermediate_values",
)
REPORT_FOLDER = "report"  # a parent run's report, built from the store


def optuna_figure(name: str) -> str:
    """Where a study's parent run keeps Optuna's figure ``name`` (one of OPTUNA_FIGURES)."""
    return f"figures/{name}.png"


def split_params(sizes: Mapping[str, int]) -> dict[str, int]:
    """A run's split sizes as params: ``split.train``, ``split.validation``, ``split.test``."""
    return {f"{SPLIT_PREFIX}{k}": v for k, v in sizes.items()}


def display_key(variant: str, setting: str) -> str:
    """How a variant under a setting is named in tables, metrics and figures."""
    return variant if setting == SETTING_DEFAULT else f"{variant}/{setting}"


# --------------------------------------------------------------------------- in Optuna's storage
# Trial system attrs: who runs it, when it last beat, why another worker failed it.
TRIAL_WORKER = "bench:worker"
TRIAL_HEARTBEAT = "bench:heartbeat"
TRIAL_FAIL_REASON = "bench:fail_reason"
# Trial user attrs: the trial's MLflow run, and why it failed or was pruned.
TRIAL_RUN_ID = "mlflow_run_id"
TRIAL_DEFAULT = "bench_default"  # user attr of the enqueued trial 0: the study's untuned setting
TRIAL_REASON = "reason"
# Study user attrs: its parent MLflow run, what it tunes, its retrained best.
STUDY_PARENT_RUN_ID = "mlflow_parent_run_id"
STUDY_TASK = "task"
STUDY_VARIANT = "variant"
STUDY_TUNED_RUN_ID = "tuned_run_id"
STUDY_TUNED_TEST_ACCURACY = "tuned_test_accuracy"
STUDY_SETTINGS = "bench:settings"  # what its trials were trained under (bench.tuning.identity)
STUDY_SETTINGS_KEY = "bench:settings_key"  # their fingerprint
STUDY_CPU_SECONDS = "bench:cpu_seconds"  # CPU time every bench process spent on the study
# Repeat 0's study: the selection over every repeat's top trials (bench.tuning.selection).
STUDY_SELECTION = "bench:selection"
# Study system attr: the trial number whose best settings were retrained already.
STUDY_RETRAINED = "bench:retrained"
