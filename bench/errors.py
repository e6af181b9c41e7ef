"""The project's own errors: the CLI turns these into one line and a non-zero exit.

Two kinds matter to a long search (keras-tuner's ``errors.py`` idea): a :class:`FatalError`
stops the whole command, because every next step would fail the same way (the store or
the disk is gone); a :class:`FailedTrialError` fails one trial and the search goes on.
"""

from __future__ import annotations

LAYER = 0  # import layer (docs/development.md#layers): imports only lower layers' units


class BenchError(Exception):
    """Base class for every error a user can cause and fix (bad input, missing data, ...)."""


class FatalError(BenchError):
    """Stops the command: retrying the next trial or run would fail the same way."""


class FailedTrialError(BenchError):
    """Fails the one trial it happened in; the search goes on with the next."""


class OptionError(BenchError):
    """Command-line values that do not go together (a usage error: exit status 2)."""

    exit_code = 2


class DataError(BenchError):
    """A dataset could not be found, read or validated."""


class StudyError(BenchError):
    """A study file is missing, malformed or inconsistent."""


class VariantError(BenchError):
    """An unknown or malformed variant."""


class TrackingError(FatalError):
    """The MLflow tracking store is unreachable, malformed or unwritable."""


class StorageError(FatalError):
    """The Optuna storage URL is malformed or unreachable."""


class NoStudyError(StorageError):
    """The Optuna storage works but holds no study of that name."""
