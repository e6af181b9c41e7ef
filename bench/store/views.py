"""What the links bench prints open in the MLflow UI: a saved view of the experiment page.

The experiment page's URL carries only its search facets (``searchFilter``, ``orderByKey``,
...) and the view mode (``compareRunsMode=CHART``); grouping the runs, the charts and their
sections live in the page's UI state, which a URL cannot hold. MLflow (3.15 and later) keeps
a *saved view* of the page as one experiment tag, ``mlflow.sharedViewState.<id>``, whose
value is an envelope ``{"name", "createdAt", "state"}``, ``state`` being the page's search
facets and UI state as JSON; the page opens it from the URL parameter
``viewStateShareKey=<id>`` and lists it in its "Views" menu. MLflow's UI writes these tags
itself (Views > Save as new view), and ``mlflow demo`` seeds one the same way
(``mlflow/demo/generators/saved_views.py``). Read in MLflow's source,
``mlflow/server/js/src/experiment-tracking/components/experiment-page/``:
``utils/savedViewEnvelope.ts`` (the envelope), ``hooks/useSharedExperimentViewState.ts`` (the
URL parameter; the facets and UI state a view may set), ``models/ExperimentPageUIState.tsx``
(the UI state's fields), ``utils/experimentPage.group-row-utils.ts`` (``groupBy``) and
``../runs-charts/runs-charts.types.ts`` (chart cards and sections).

A view written here shows a parent run's children (a filter on ``mlflow.parentRunId``), not
nested under a collapsed parent row (sorted by a metric: :func:`runs_view`), grouped (one
row, one curve with the min-max band of its runs per group), in the chart view, with the
per-epoch curves in a first section of their own. This module only builds the tag;
:meth:`bench.store.tracker.Tracker.save_view` writes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from bench.store import schema

#: Experiment tag prefix of a saved view (MLflow's EXPERIMENT_PAGE_VIEW_STATE_SHARE_TAG_PREFIX).
TAG_PREFIX = schema.MLFLOW_SAVED_VIEW
#: MLflow keeps experiment tag values up to 20,000 characters (MAX_EXPERIMENT_TAG_VAL_LENGTH).
MAX_VALUE = 20_000

#: How runs are grouped: by a tag or a param (MLflow's RunGroupingMode values).
BY_TAG, BY_PARAM = "tag", "param"

_CURVES = "bench-curves"  # section ids: any unique string does
_MODEL = "bench-model-metrics"
_SYSTEM = "bench-system-metrics"


def tag_key(view_id: str) -> str:
    """The experiment tag that holds the saved view ``view_id``."""
    return f"{TAG_PREFIX}{view_id}"


def children_filter(parent_run_id: str, kind: str | None = None) -> str:
    """An MLflow search filter for a parent run's children (of one ``bench.kind``)."""
    found = f"tags.`{schema.MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'"
    return found + (f" AND tags.`{schema.KIND}` = '{kind}'" if kind else "")


def runs_view(
    name: str,
    search_filter: str,
    group_by: Sequence[tuple[str, str]],
    *,
    best_first: str,
    curves: Sequence[str] = (schema.VAL_ACCURACY, schema.LOSS),
    columns: Sequence[str] = (),
    created_ms: int | None = None,
) -> str:
    """The tag value of a saved view: the runs ``search_filter`` finds, the highest metric
    ``best_first`` first, grouped by ``group_by`` ((mode, key) pairs; a group is where its
    best run ranks, its curve the mean of its runs' with their min-max band), every group
    shown in the charts, ``curves`` as line charts in a first section ("Learning curves");
    the table view shows ``columns`` (metric keys) besides the dataset. MLflow adds a chart
    for every other metric in "Model metrics" and "System metrics" (the latter collapsed).

    Sorted by start time, the page would also fetch the runs' parents and nest the runs
    under them, collapsed (``shouldNestChildrenAndFetchParents`` in MLflow's
    ``utils/experimentPage.fetch-utils.ts``); sorted by a metric it shows just the runs found."""
    state = {
        # search facets
        "searchFilter": search_filter,
        "orderByKey": f"metrics.`{best_first}`",
        "orderByAsc": False,
        # UI state
        "selectedColumns": ["attributes.`Dataset`", *(f"metrics.`{key}`" for key in columns)],
        "groupBy": _group_by(group_by),
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "viewMaximized": False,
        "runListHidden": False,
        **_charts(curves),
    }
    created = int(time.time() * 1000) if created_ms is None else created_ms
    value = json.dumps(
        {
            "name": name,
            "createdAt": created,
            "updatedAt": created,
            "state": json.dumps(state, separators=(",", ":")),
        },
        separators=(",", ":"),
    )
    if len(value) > MAX_VALUE:
        raise ValueError(
            f"saved view {name!r} is {len(value)} characters; MLflow keeps {MAX_VALUE}"
        )
    return value


def _group_by(keys: Sequence[tuple[str, str]]) -> dict[str, object] | None:
    """Runs grouped by ``keys`` ((mode, key) pairs), each group's values their mean (its
    curves drawn with their runs' min and max around it); None: not grouped."""
    if not keys:
        return None
    return {
        "aggregateFunction": "average",
        "groupByKeys": [{"mode": mode, "groupByData": key} for mode, key in keys],
    }


def _charts(curves: Sequence[str]) -> dict[str, object]:
    """The chart view: a first section of ``curves``, one line chart each, in one row."""
    return {
        "isAccordionReordered": True,
        "compareRunSections": [
            _section(_CURVES, "Learning curves", expanded=True, columns=len(curves)),
            _section(_MODEL, "Model metrics", expanded=True),
            _section(_SYSTEM, "System metrics", expanded=False),
        ],
        "compareRunCharts": [_line_chart(key, _CURVES) for key in curves],
        "globalLineChartConfig": {
            "xAxisKey": "step",
            "lineSmoothness": 0,
            "selectedXAxisMetricKey": "",
        },
    }


def _section(
    uuid: str, name: str, *, expanded: bool, columns: int | None = None
) -> dict[str, object]:
    """A chart section (``display``: expanded; ``columns``: charts per row, MLflow's default
    3). MLflow puts each new metric's chart in the section named for its prefix: "Model
    metrics" for ours, "System metrics" for system/."""
    section = {
        "uuid": uuid,
        "name": name,
        "display": expanded,
        "isReordered": True,
        "deleted": False,
        "isGenerated": False,
    }
    return section | ({"columns": columns} if columns else {})


def _line_chart(metric: str, section: str) -> dict[str, object]:
    """A per-step line chart of one metric (MLflow's RunsChartsLineCardConfig, its defaults)."""
    return {
        "uuid": f"bench-{metric}",
        "type": "LINE",
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "runsCountToCompare": 10,
        "metricKey": metric,
        "selectedMetricKeys": [metric],
        "lineSmoothness": 0,
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "range": {},
        "xAxisKey": "step",
        "selectedXAxisMetricKey": "",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": True,
        "useGlobalLineSmoothing": True,
    }
