"""Shell completion of the values bench knows: variant, study and task names.

Click calls these while a shell completes a command line (``_BENCH_COMPLETE=bash_source
bench``, see docs/usage.md); they import nothing heavy, so completion stays instant.
"""

from __future__ import annotations

from click.shell_completion import CompletionItem

LAYER = 10  # import layer (docs/development.md#layers): imports only lower layers' units


def variants(ctx, param, incomplete: str) -> list[CompletionItem]:
    """Registered variant names; in a comma-separated list, the last item is completed."""
    from bench.models import list_variants  # the package registers every variant

    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    return [CompletionItem(prefix + name) for name in list_variants("*") if name.startswith(last)]


def studies(ctx, param, incomplete: str) -> list[CompletionItem]:
    """Study names from ``studies/`` (a path to a YAML file is completed by the shell)."""
    from bench.studies import list_studies

    names = [path.stem for path in list_studies() if path.stem.startswith(incomplete)]
    return [CompletionItem(name) for name in names] or [CompletionItem(incomplete, type="file")]


def tasks(ctx, param, incomplete: str) -> list[CompletionItem]:
    from bench.data import TASKS

    return [CompletionItem(name) for name in TASKS if name.startswith(incomplete)]
