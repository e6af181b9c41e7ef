"""What a tuning study is, so that a rerun resumes only the study it would have made.

A study's trials are comparable only when they were trained the same way: same epochs, data
(limit, validation size, preprocessing), search space, pruner and starting hyperparameters.
The first session records these settings on the study (a user attribute, as comparisons
carry their fingerprint in ``bench.comparison_key``); a later ``bench tune`` on the same
study name under other settings is refused before anything is written, saying which
settings differ, instead of mixing trials and retraining the best across them.
"""

from __future__ import annotations

import json

from bench.errors import StorageError
from bench.store import schema
from bench.store.resume import fingerprint
from bench.store.uri import redact


def study_settings(s) -> dict[str, object]:
    """The settings that decide what a trial of ``s`` (a TuneSettings) scores."""
    base = {k: v for k, v in s.base.as_params().items() if k != schema.SEED}
    return {
        schema.EPOCHS: s.epochs,
        schema.LIMIT: s.limit,
        schema.VALIDATION_SIZE: s.validation_size,
        schema.PREPROCESSING: "standardize" if s.study.protocol.standardize else "scale",
        schema.SEARCH_SPACE: s.study.search_space.model_dump(mode="json", exclude_none=True),
        schema.PRUNER: s.pruner,
        schema.PRUNER_MIN_EPOCHS: s.min_epochs,
        schema.BASE_PREFIX.rstrip("."): base,
    }


def record(study, s) -> None:
    """Record ``s``'s settings on a study that holds none yet (a new one, or one made
    before studies carried them) with their fingerprint."""
    if schema.STUDY_SETTINGS not in study.user_attrs:
        settings = study_settings(s)
        study.set_user_attr(schema.STUDY_SETTINGS, settings)
        study.set_user_attr(schema.STUDY_SETTINGS_KEY, fingerprint(settings))


def check_resumable(s, storage) -> None:
    """Refuse to resume study ``s.study_name`` under settings other than those it recorded."""
    try:
        study_id = storage.get_study_id_from_name(s.study_name)
    except KeyError:
        return  # a new study
    held = storage.get_study_user_attrs(study_id).get(schema.STUDY_SETTINGS)
    if not isinstance(held, dict):
        return  # made before studies recorded their settings
    wanted = json.loads(json.dumps(study_settings(s)))  # as the storage holds it (JSON)
    differ = [k for k in sorted(set(held) | set(wanted)) if held.get(k) != wanted.get(k)]
    if differ:
        shown = ", ".join(_change(k, held.get(k), wanted.get(k)) for k in differ)
        raise StorageError(
            f"Optuna study {s.study_name!r} in {redact(s.storage)} was tuned under other settings "
            f"({shown}); resuming it would mix their trials: run with its settings, or name a new "
            "study with --study-name"
        )


def _change(key: str, held: object, wanted: object) -> str:
    if isinstance(held, dict) or isinstance(wanted, dict):
        return f"{key} differs"
    before, after = ("none" if v is None else v for v in (held, wanted))
    return f"{key} {before} -> {after}"
