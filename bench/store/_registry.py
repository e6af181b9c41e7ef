"""Registered versions of runs that did not finish (a private helper of the store package).

A model is registered while its run is still open (the version's tags and description are
the run's scores), so a stop, a crash or a failure after the registration would leave a
version pointing at a run that ended KILLED or FAILED, or that a resumed comparison then
deletes. Every place that ends a run other than FINISHED, or deletes one, drops its versions
here: no registry version points at an unfinished or deleted run. An alias on a dropped
version goes with it (MLflow deletes it); the rerun that trains the run again registers
and points it anew.
"""

from __future__ import annotations

import logging

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


def drop_versions(client: MlflowClient, run_id: str) -> list[str]:
    """Delete every registered model version made from ``run_id``; returns ``name/version``
    of each (none where the store has no registry)."""
    try:
        versions = client.search_model_versions(f"run_id = '{run_id}'")
    except MlflowException:
        return []
    dropped = []
    for version in versions:
        client.delete_model_version(version.name, version.version)
        dropped.append(f"{version.name}/{version.version}")
    if dropped:
        log.info("unregistered %s: its run %s did not finish", ", ".join(dropped), run_id)
    return dropped
