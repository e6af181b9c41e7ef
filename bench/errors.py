"""The project's own errors: the CLI turns these into one line and a non-zero exit."""

from __future__ import annotations


class BenchError(Exception):
    """Base class for every error a user can cause and fix (bad input, missing data, ...)."""


class DataError(BenchError):
    """A dataset could not be found, read or validated."""


class StudyError(BenchError):
    """A study file is missing, malformed or inconsistent."""


class VariantError(BenchError):
    """An unknown or malformed variant."""


class TrackingError(BenchError):
    """The MLflow tracking store is unreachable, malformed or unwritable."""
