"""The ``bench`` command: parse options, call one function, print the outcome.

Errors a user can fix (bad options, missing data, a malformed study, an unreachable
store) are printed as one line on stderr with a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
from typing import Any

import click

from bench import completion, stopping
from bench.errors import BenchError
from bench.models.spec import MAX_SEED

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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


def _pruner_choice(ctx, param, value):
    from bench.studies import PRUNERS

    if value in (None, ""):
        return None
    if value not in PRUNERS:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(PRUNERS)}")
    return value


def _quiet_optuna() -> None:
    """bench prints its own progress lines; Optuna's per-trial log lines would repeat them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


POSITIVE = _OptionalInt(1)
POSITIVE_FLOAT = _OptionalFloat()
MARGIN = click.FloatRange(0, 1, min_open=True, max_open=True)
EPOCHS = _OptionalInt(1, 100_000)
BATCH_SIZE = _OptionalInt(1, 1 << 20)
SEEDS = _OptionalInt(1, 10_000)
SEED = _OptionalInt(0, MAX_SEED)
TRIALS = _OptionalInt(1, 1_000_000)
WORKERS = _OptionalInt(1, 256)
POPULATION = _OptionalInt(1, 4096)
REPEATS = _OptionalInt(1, 100)
SELECT_SEEDS = _OptionalInt(0, 100)


class BenchGroup(click.Group):
    """Turns every expected error into one line on stderr and an exit code."""

    def main(self, *args, **kwargs):  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.ClickException as exc:
            _error(exc.format_message())
            sys.exit(exc.exit_code)
        except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt into Abort
            interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
            _error("interrupted; open runs were closed as KILLED" if interrupted else "aborted")
            sys.exit(EXIT_INTERRUPTED)
        except BenchError as exc:
            _error(str(exc))
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            _error("interrupted; open runs were closed as KILLED")
            sys.exit(EXIT_INTERRUPTED)
        except (SystemExit, click.exceptions.Exit):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or a failure nobody foresaw: still one line
            if logging.getLogger("bench").isEnabledFor(logging.DEBUG):
                logging.getLogger("bench").exception("unexpected failure")
            text = str(exc).strip().splitlines()
            _error(f"unexpected {type(exc).__name__}: {text[0] if text else ''} (bench -v shows the traceback)")
            sys.exit(EXIT_ERROR)
        sys.exit(rv if isinstance(rv, int) else 0)


def _error(message: str) -> None:
    """The one error line, on stderr, every password in it masked."""
    from bench.store.uri import redact

    lines = redact(message).strip().splitlines() or [""]
    click.echo(f"error: {lines[0]}", err=True)


class _Redacting(logging.Filter):
    """Masks passwords in every log line (URIs quoted in warnings and library messages)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bench.store.uri import redact

        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def _setup_logging(verbose: int) -> None:
    # TensorFlow's C++ start-up chatter (CUDA probing on CPU-only machines) hides progress.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose > 1 else "3")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose > 1 else "WARNING")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_Redacting())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    logging.getLogger("bench").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("mlflow", "alembic", "absl", "tensorflow", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.ERROR)
    if verbose <= 1:
        from bench import quiet

        quiet.install()  # no third-party line reaches the output, in workers neither (bench.quiet)


def _import_tensorflow(verbose: int) -> None:
    """Import TensorFlow (seconds; nothing is open yet, so a signal meanwhile stops at once)."""
    with stopping.at_once():
        _load_tensorflow(verbose)


def _load_tensorflow(verbose: int) -> None:
    """Import TensorFlow with its C++ start-up logging (CUDA probing, oneDNN notices) muted.

    Those lines go straight to file descriptor 2, bypassing Python's logging; they are
    noise on a CPU-only machine and bury the progress lines. ``-vv`` shows them.
    """
    if verbose > 1:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.constant(0.0)  # the eager context's start-up logs its notices once more
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv: also libraries).")
@click.version_option(package_name="bench")
def cli(verbose: int) -> None:
    """Benchmark regularisation and depth on Fashion-MNIST and MNIST, tracked in MLflow."""
    _setup_logging(verbose)
    ctx = click.get_current_context()
    # Ctrl-C and SIGTERM are recorded, and the work stops at its next boundary (bench.stopping);
    # when the command ends, the previous handlers are back and a pending stop is raised.
    ctx.with_resource(stopping.handling())
    ctx.obj = {"verbose": verbose}


def _common_options(f):
    options = [
        click.option("--study", "study", default=None, callback=_empty_is_none, shell_complete=completion.studies,
                     help="Study file or name in studies/ (default: studies/default.yaml)."),
        click.option("--task", default=None, callback=_empty_is_none, shell_complete=completion.tasks,
                     help="Override the study's task: fashion_mnist or mnist."),
        click.option("--epochs", type=EPOCHS, default=None, help="Override the study's epochs."),
        click.option("--batch-size", type=BATCH_SIZE, default=None, help="Override the study's batch size."),
        click.option("--learning-rate", type=POSITIVE_FLOAT, default=None,
                     help="Override the study's learning rate."),
        click.option("--validation-size", type=POSITIVE, default=None,
                     help="Images held out from the end of the training set (default 10000)."),
        click.option("--limit", type=POSITIVE, default=None,
                     help="Use only the first N training and test images (smoke runs)."),
        click.option("--data-dir", default=None, callback=_empty_is_none, envvar="BENCH_DATA_DIR", show_envvar=True,
                     help="Folder with fashion-mnist/ and mnist/ IDX files."),
        click.option("--tracking-uri", default=None, callback=_empty_is_none, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
                     help="MLflow store [default: sqlite:///mlflow.db]."),
        click.option("--experiment", default=None, callback=_empty_is_none,
                     help="MLflow experiment name [default: the study's name]."),
        click.option("--no-model", is_flag=True, help="Do not log the trained models (saves disk)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(study, variants, task, epochs, batch_size, seeds, learning_rate, validation_size, limit):
    from bench.compare import Settings
    from bench.studies import load_study

    settings = Settings.from_study(
        load_study(study),
        task=task,
        variants=variants,
        epochs=epochs,
        batch_size=batch_size,
        seeds=seeds,
        learning_rate=learning_rate,
        validation_size=validation_size,
        limit=limit,
    )
    ctx = click.get_current_context()
    _import_tensorflow((ctx.obj or {}).get("verbose", 0))
    return settings


def _finish(outcome) -> None:
    from bench import present

    click.echo(present.comparison(outcome))
    for line in present.unhealthy_runs(outcome):
        click.echo(line, err=True)


@cli.command()
@_common_options
@click.option("--variants", default=None, callback=_empty_is_none, shell_complete=completion.variants,
              help="Comma-separated names or globs, e.g. '*-deep,vanilla-*' (default: the study's).")
@click.option("--seeds", type=SEEDS, default=None, help="Seeds per variant (0..N-1).")
@click.option("--tuned", is_flag=True,
              help="Also train each variant with its tuned hyperparameters (from `bench tune`) "
                   "and show default vs tuned side by side.")
@click.option("--storage", default=None, callback=_empty_is_none,
              help="With --tuned: the Optuna storage `bench tune` used [default: $BENCH_OPTUNA_STORAGE, "
                   "else beside the MLflow store].")
@click.option("--study-name", default=None, callback=_empty_is_none,
              help="With --tuned: the Optuna study name `bench tune` used.")
@click.option("--register", is_flag=True,
              help="Register every model as a version of <task>-<variant> in the Model registry "
                   "(the first seed's with the alias 'default' or 'tuned').")
@click.option("--fresh", is_flag=True,
              help="Start a new comparison even where an interrupted one with the same settings "
                   "could be resumed (by default its finished runs are kept and only the rest is trained).")
@click.option("--margin", type=MARGIN, default=None, help="Equivalence margin in test accuracy (0.005 = half "
              "a point; default: the study's equivalence_margin).")
def compare(study, task, epochs, batch_size, learning_rate, validation_size, limit, data_dir,
            tracking_uri, experiment, no_model, variants, seeds, tuned, storage, study_name, register, fresh,
            margin):
    """Train the study's variants side by side; one parent run, one child run each."""
    from dataclasses import replace

    from bench.compare import run_comparison

    settings = _settings(study, variants, task, epochs, batch_size, seeds, learning_rate,
                         validation_size, limit)
    if margin is not None:
        settings = replace(settings, study=settings.study.model_copy(update={"equivalence_margin": margin}))
    if tuned:
        _quiet_optuna()
        from bench.tuning import best_params

        found = best_params(settings.study, list(settings.variants), task=task,
                            storage=storage,
                            study_name=study_name, tracking_uri=tracking_uri)
        settings = replace(settings, tuned=tuple((v, t.params) for v, t in found.items()),
                           tuned_from=tuple((v, t.origin) for v, t in found.items()),
                           tuned_record=tuple((v, t.record) for v, t in found.items()))
    elif storage or study_name:
        raise click.UsageError("--storage and --study-name only apply with --tuned")
    if register and no_model:
        raise click.UsageError("--register needs the models: drop --no-model")
    outcome = run_comparison(
        settings, data_dir=data_dir, tracking_uri=tracking_uri, experiment=experiment,
        log_models=not no_model, register=register, fresh=fresh,
    )
    _finish(outcome)


@cli.command()
@click.argument("variant", shell_complete=completion.variants)
@_common_options
@click.option("--seed", type=SEED, default=None, help="Random seed (default 0).")
def train(variant, study, task, epochs, batch_size, learning_rate, validation_size, limit, data_dir,
          tracking_uri, experiment, no_model, seed):
    """Train one VARIANT with the study's protocol and log it as a single run."""
    from bench.compare import run_comparison

    settings = _settings(study, variant, task, epochs, batch_size, 1, learning_rate,
                         validation_size, limit)
    if seed is not None:
        from dataclasses import replace

        settings = replace(settings, seeds=(seed,))
    outcome = run_comparison(
        settings, data_dir=data_dir, tracking_uri=tracking_uri, experiment=experiment,
        log_models=not no_model,
    )
    _finish(outcome)


@cli.command()
@click.option("--study", default=None, callback=_empty_is_none, shell_complete=completion.studies,
              help="Study file or name (its search_space and tuning sections are used).")
@click.option("--task", default=None, callback=_empty_is_none, shell_complete=completion.tasks, help="Override the study's task.")
@click.option("--variants", default=None, callback=_empty_is_none, shell_complete=completion.variants,
              help="Comma-separated names or globs; one Optuna study each (default: the study's).")
@click.option("--trials", type=TRIALS, default=None,
              help="Finished (complete or pruned) trials the study should hold IN TOTAL. Re-running "
                   "resumes: a study with 30 finished trials and --trials 50 runs 20 more. "
                   "Default: the study file's tuning.trials (50).")
@click.option("--epochs", type=EPOCHS, default=None, help="Epochs per trial.")
@click.option("--workers", type=WORKERS, default=1, show_default=True,
              help="Worker processes on this machine sharing the study.")
@click.option("--population", type=POPULATION, default=None,
              help="Trials each worker trains at once, as one compiled population (1: one at a time) "
                   "[default: 4 on a CPU, 32 on a GPU; fewer where memory is short].")
@click.option("--storage", default=None, callback=_empty_is_none, envvar="BENCH_OPTUNA_STORAGE", show_envvar=True,
              help="Optuna storage URL: journal:///path/f.journal, sqlite:///f.db, postgresql://... "
                   "[default: optuna.journal beside the MLflow store].")
@click.option("--study-name", default=None, callback=_empty_is_none,
              help="Optuna study name [default: <study>-<task>-<variant>].")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="TPE sampler seed (repeat r uses seed + r x 1,000,003).")
@click.option("--repeats", type=REPEATS, default=None,
              help="Independent tuning studies per variant, sampler seeds apart [default: the study's tuning.repeats].")
@click.option("--select-top", type=REPEATS, default=None,
              help="Best distinct trials over all repeats re-evaluated on more seeds [default: tuning.select_top].")
@click.option("--select-seeds", type=SELECT_SEEDS, default=None,
              help="Training seeds each re-evaluated trial gets; the best mean validation accuracy is the tuned "
                   "setting (0: the best single trial) [default: tuning.select_seeds].")
@click.option("--pruner", default=None, callback=_pruner_choice,
              help="median, successive-halving, hyperband or none [default: the study's tuning.pruner].")
@click.option("--timeout", type=POSITIVE_FLOAT, default=None,
              help="Stop starting new trials after this many seconds.")
@click.option("--validation-size", type=POSITIVE, default=None, help="Held-out training images.")
@click.option("--limit", type=POSITIVE, default=None, help="Use only the first N images (smoke runs).")
@click.option("--data-dir", default=None, callback=_empty_is_none, envvar="BENCH_DATA_DIR", show_envvar=True,
              help="Folder with fashion-mnist/ and mnist/ IDX files.")
@click.option("--tracking-uri", default=None, callback=_empty_is_none, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="MLflow store [default: sqlite:///mlflow.db].")
@click.option("--experiment", default=None, callback=_empty_is_none,
              help="MLflow experiment [default: <study>-tuning].")
@click.option("--no-model", is_flag=True, help="Do not log (or register) the retrained tuned model (saves disk).")
def tune(study, task, variants, trials, epochs, workers, population, storage, study_name, seed, repeats, select_top,
         select_seeds, pruner, timeout, validation_size, limit, data_dir, tracking_uri, experiment, no_model):
    """Tune learning rate (and dropout) with Optuna on the validation split; every trial in MLflow.

    The best configuration is then retrained and tested once (a run tagged bench.kind=tuned).
    """
    from bench import present
    from bench.models import list_variants
    from bench.studies import load_study

    with stopping.at_once():  # TensorFlow loads with bench.tuning; nothing is open yet
        from bench.tuning import check, plan, tune_variant

    _quiet_optuna()
    loaded = load_study(study)
    names = list_variants(variants) if variants else loaded.variant_names
    settings = plan(
        loaded, variants=names, task=task, trials=trials, epochs=epochs, storage=storage,
        study_name=study_name, seed=seed, pruner=pruner, timeout=timeout, data_dir=data_dir,
        tracking_uri=tracking_uri, experiment=experiment, validation_size=validation_size, limit=limit,
        population=population, repeats=repeats, select_top=select_top, select_seeds=select_seeds,
        log_model=not no_model,
    )
    for one in settings:
        check(one)  # bad data, a bad storage or a study of another variant fails before anything is written
    _import_tensorflow((click.get_current_context().obj or {}).get("verbose", 0))
    by_variant: dict[str, list] = {}
    for one in settings:
        by_variant.setdefault(one.variant, []).append(one)
    click.echo(present.tuning([tune_variant(repeats, workers=workers) for repeats in by_variant.values()]))


@cli.command()
@click.option("--run-id", "run_ids", multiple=True, help="Parent run (comparison or tuning study); repeatable.")
@click.option("--experiment", default=None, callback=_empty_is_none,
              help="Report on this experiment's newest comparison or tuning run.")
@click.option("--out", type=click.Path(file_okay=False), default="reports", show_default=True,
              help="Folder for the reports (one subfolder per run).")
@click.option("--tracking-uri", default=None, callback=_empty_is_none, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
              help="MLflow store [default: sqlite:///mlflow.db].")
@click.option("--format", "formats", type=click.Choice(["both", "html", "markdown"]), default="both", show_default=True,
              help="html: one self-contained file (figures embedded); markdown: report.md with its figures "
                   "as PNG files beside it (small, for a repository).")
@click.option("--flat", is_flag=True, help="Write into --out itself, not a subfolder per run (one run only).")
@click.option("--margin", type=MARGIN, default=None, help="Equivalence margin in test accuracy to judge by "
              "(default: the one the comparison logged, else 0.005).")
@click.option("--published", type=click.Path(file_okay=False, exists=True), default=None,
              help="Rebuild every report of DIR/manifest.yaml (e.g. results) from the runs shipped in it.")
def report(run_ids, experiment, out, tracking_uri, formats, flat, margin, published):
    """Build an HTML and a Markdown report from what the MLflow store holds."""
    from bench.results.published import rebuild, write_reports

    if published:  # results/: every report of its manifest, from the runs shipped beside them
        for path in rebuild(published, margin=margin):
            click.echo(str(path))
        return
    if flat and len(run_ids) > 1:
        raise click.UsageError("--flat writes one report: name one --run-id (or an --experiment)")
    kinds = ("html", "markdown") if formats == "both" else (formats,)
    for line in write_reports(tracking_uri, experiment, run_ids, out, kinds, flat=flat, margin=margin):
        click.echo(line)

@cli.command(name="list")
@click.argument("pattern", default="*")
@click.option("--studies", "show_studies", is_flag=True, help="List the study files instead.")
def list_cmd(pattern, show_studies):
    """List registered variants matching PATTERN (globs, comma-separated), or the studies."""
    if show_studies:
        from bench.studies import list_studies, load_study

        paths = list_studies()
        width = max((len(p.stem) for p in paths), default=0) + 1
        for path in paths:
            try:
                s = load_study(path)
                count = f"{len(s.variant_names)} variant{'s' if len(s.variant_names) != 1 else ''}"
                click.echo(f"{path.stem:<{width}} {s.task:<14} {count:<11} {s.description.strip()[:70]}")
            except BenchError as exc:
                click.echo(f"{path.stem:<{width}} INVALID: {exc}")
        return
    from bench import present
    from bench.models import get_variant, list_variants

    names = list_variants(pattern)  # bad patterns fail before TensorFlow loads
    _import_tensorflow((click.get_current_context().obj or {}).get("verbose", 0))
    from bench.models.build import build_model

    rows = []
    for name in names:
        v = get_variant(name)
        rows.append((name, v.family, v.group, f"{build_model(v).count_params():,}", v.summary()))
    click.echo(present.variant_list(rows))


def main() -> None:
    # Until bench.stopping takes over, and once the command has ended, Ctrl-C ends the process
    # at once (no traceback, no "Exception ignored" during the interpreter's shutdown).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    cli(prog_name="bench")


if __name__ == "__main__":
    main()
