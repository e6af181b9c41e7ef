"""The ``bench`` command: parse options, call one function, print the outcome.

Errors a user can fix (bad options, missing data, a malformed study, an unreachable
store) are printed as one line on stderr with a non-zero exit, never as a traceback
(:mod:`._process`). The run commands' options come from the one table of them
(:mod:`bench.plan.table`, made click options by :mod:`._options`); what they run is a
:class:`~bench.plan.Plan`.
"""

from __future__ import annotations

import logging
import signal

import click

from bench import plugins, stopping
from bench.cli._options import options
from bench.cli._process import BenchGroup, import_tensorflow, setup_logging
from bench.plan import Plan

LAYER = 11  # import layer (docs/development.md#layers): imports only lower layers' units

MARGIN = click.FloatRange(0, 1, min_open=True, max_open=True)


def _quiet_optuna() -> None:
    """bench prints its own progress lines; Optuna's per-trial log lines would repeat them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _empty_is_none(ctx, param, value):
    return None if value == "" else value


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv: also libraries).")
@click.option(
    "--plugin",
    "plugin_modules",
    multiple=True,
    metavar="MODULE",
    help="Load variants and tasks from a module (dotted name or .py file); repeatable. "
    "Installed packages' bench.variants / bench.tasks entry points load always.",
)
@click.version_option(package_name="bench")
def cli(verbose: int, plugin_modules: tuple[str, ...]) -> None:
    """Benchmark regularisation and depth on Fashion-MNIST and MNIST, tracked in MLflow."""
    setup_logging(verbose)
    plugins.load_all(plugin_modules)
    ctx = click.get_current_context()
    # Ctrl-C and SIGTERM are recorded, and the work stops at its next boundary (bench.stopping);
    # when the command ends, the previous handlers are back and a pending stop is raised.
    ctx.with_resource(stopping.handling())
    ctx.obj = {"verbose": verbose}


def _plan(command: str, values: dict[str, object]) -> Plan:
    """The command's plan (bad values, variants or tasks fail before TensorFlow loads)."""
    plan = _quieted(Plan.from_options(command, values))
    import_tensorflow()
    return plan


def _quieted(plan: Plan) -> Plan:
    """``--quiet``: no progress lines (warnings and errors still show)."""
    if plan.value("quiet"):
        logging.getLogger("bench").setLevel(logging.WARNING)  # setup_logging sets it per command
    return plan


def _finish(command: str, outcome, plan: Plan) -> None:
    from bench import present

    if plan.value("json"):
        click.echo(present.as_json(present.comparison_document(outcome, command)))
    else:
        click.echo(present.comparison(outcome))
    for line in present.unhealthy_runs(outcome):
        click.echo(line, err=True)


@cli.command()
@options("compare")
def compare(**values: object) -> None:
    """Train the study's variants side by side; one parent run, one child run each."""
    from bench.compare import run_comparison

    plan = _plan("compare", values)
    if plan.value("tuned"):
        _quiet_optuna()
        from bench.tuning import tuned_plan

        plan = tuned_plan(plan)
    _finish("compare", run_comparison(plan), plan)


@cli.command()
@options("train")
def train(**values: object) -> None:
    """Train one VARIANT with the study's protocol and log it as a single run."""
    from bench.compare import run_comparison

    plan = _plan("train", values)
    _finish("train", run_comparison(plan), plan)


@cli.command()
@options("tune")
def tune(**values: object) -> None:
    """Tune learning rate (and dropout) with Optuna on the validation split; every trial in MLflow.

    The best configuration is then retrained and tested once (a run tagged bench.kind=tuned).
    """
    from bench import present

    with stopping.at_once():  # TensorFlow loads with bench.tuning; nothing is open yet
        from bench.tuning import prepare, tune_plan

    _quiet_optuna()
    # bad data, a bad storage or a study of another variant fails before anything is written
    plan = _quieted(Plan.from_options("tune", values))
    planned = prepare(plan)
    import_tensorflow()
    results = tune_plan(planned)
    click.echo(
        present.as_json(present.tuning_document(results))
        if plan.value("json")
        else present.tuning(results)
    )


@cli.command()
@click.option(
    "--run-id",
    "run_ids",
    multiple=True,
    help="Parent run (comparison or tuning study); repeatable.",
)
@click.option(
    "--experiment",
    default=None,
    callback=_empty_is_none,
    help="Report on this experiment's newest comparison or tuning run.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="reports",
    show_default=True,
    help="Folder for the reports (one subfolder per run).",
)
@click.option(
    "--tracking-uri",
    default=None,
    callback=_empty_is_none,
    envvar="MLFLOW_TRACKING_URI",
    show_envvar=True,
    help="MLflow store [default: sqlite:///mlflow.db].",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["both", "html", "markdown"]),
    default="both",
    show_default=True,
    help="html: one self-contained file (figures embedded); markdown: report.md with its figures "
    "as PNG files beside it (small, for a repository).",
)
@click.option(
    "--flat", is_flag=True, help="Write into --out itself, not a subfolder per run (one run only)."
)
@click.option(
    "--margin",
    type=MARGIN,
    default=None,
    help="Equivalence margin in test accuracy to judge by "
    "(default: the one the comparison logged, else 0.005).",
)
@click.option(
    "--published",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Rebuild every report of DIR/manifest.yaml (e.g. results) from the runs shipped in it.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the reports written as one JSON document."
)
def report(run_ids, experiment, out, tracking_uri, formats, flat, margin, published, as_json):
    """Build an HTML and a Markdown report from what the MLflow store holds."""
    from bench import present
    from bench.results.published import rebuild, write_reports

    if published:  # results/: every report of its manifest, from the runs shipped beside them
        written = [{"files": {"markdown": str(path)}} for path in rebuild(published, margin=margin)]
        lines = [w["files"]["markdown"] for w in written]
    else:
        if flat and len(run_ids) > 1:
            raise click.UsageError(
                "--flat writes one report: name one --run-id (or an --experiment)"
            )
        kinds = ("html", "markdown") if formats == "both" else (formats,)
        written = [
            {"run": name, "run_id": run_id, "files": {k: str(p) for k, p in files.items()}}
            for name, run_id, files in write_reports(
                tracking_uri, experiment, run_ids, out, kinds, flat=flat, margin=margin
            )
        ]
        lines = [f"{w['run']} ({w['run_id']}): " + "  ".join(w["files"].values()) for w in written]
    if as_json:
        click.echo(present.as_json({"reports": written}))
    for line in [] if as_json else lines:
        click.echo(line)


@cli.command(name="list")
@click.argument("pattern", default="*")
@click.option("--studies", "show_studies", is_flag=True, help="List the study files instead.")
@click.option("--tasks", "show_tasks", is_flag=True, help="List the tasks (datasets) instead.")
@click.option("--study", default=None, help="Also the variants and task this study file declares.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of columns.")
def list_cmd(pattern, show_studies, show_tasks, study, as_json):
    """List registered variants matching PATTERN (globs, comma-separated) and where each was
    declared, or the studies, or the tasks."""
    from bench import present

    if study is not None:
        from bench.studies import load_study

        load_study(study)  # registers what it declares
    if as_json:
        from bench.models import list_variants

        names = [] if show_studies or show_tasks else list_variants(pattern)
        click.echo(
            present.as_json(present.list_document(names, studies=show_studies, tasks=show_tasks))
        )
    elif show_studies:
        click.echo(present.study_list())
    elif show_tasks:
        click.echo(present.task_list())
    else:
        from bench.models import list_variants

        click.echo(present.variant_list(list_variants(pattern)))


def main() -> None:
    # Until bench.stopping takes over, and once the command has ended, Ctrl-C ends the process
    # at once (no traceback, no "Exception ignored" during the interpreter's shutdown).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    cli(prog_name="bench")


if __name__ == "__main__":
    main()
