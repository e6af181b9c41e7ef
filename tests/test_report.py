"""Seed statistics in MLflow and ``bench report``: built from the store alone, identical when
rebuilt, and rendered by a real browser (Debian's headless Chromium)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from bench.cli import cli
from bench.results.report import build
from bench.store.reader import StoredComparison, StoredRun
from tests.services import chromium
from tests.support import artifact_paths, download, write_toy_study

VARIANTS = ("vanilla-shallow", "dropout-shallow", "batchnorm-shallow")
SEEDS = 2


@dataclass(frozen=True)
class Compared:
    uri: str
    workdir: Path
    parent_id: str
    output: str

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def children(self):
        parent = self.client.get_run(self.parent_id)
        return self.client.search_runs(
            [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{self.parent_id}'"
        )


@pytest.fixture(scope="module")
def compared(module_store) -> Compared:
    """Three variants x two seeds, one epoch, through the CLI as a user runs it."""
    path = write_toy_study(
        module_store.workdir, "seeded", variants=VARIANTS, epochs=1, learning_rate=0.001
    )
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--study",
            str(path),
            "--seeds",
            str(SEEDS),
            "--no-model",
            "--tracking-uri",
            module_store.uri,
        ],
    )
    assert result.exit_code == 0, result.output
    parent_id = re.search(r"^parent run: ([0-9a-f]{32})$", result.stdout, re.MULTILINE).group(1)
    return Compared(module_store.uri, module_store.workdir, parent_id, result.output)


def test_terminal_shows_means_intervals_and_the_ranking(compared):
    out = compared.output
    assert (
        "test acc mean ± std" in out
        and "95% CI" in out
        and "vs best (paired t, Bonferroni, 5%)" in out
    )
    assert "ranking (default):" in out and "Friedman test over 2 seeds" in out
    for v in VARIANTS:
        assert re.search(rf"^\| {re.escape(v)} +\| 2 ", out, re.MULTILINE), v


def _table(compared: Compared, path: str, dst: Path) -> pd.DataFrame:
    """An MLflow table artifact (``log_table``'s JSON, which the UI parses: no NaN in it)."""
    text = Path(download(compared.client, compared.parent_id, path, dst)).read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{path} holds {c}: not JSON"))
    return pd.DataFrame(data["data"], columns=data["columns"])


def test_parent_logs_aggregates_that_match_the_children(compared, tmp_path):
    parent = compared.client.get_run(compared.parent_id)
    by_variant: dict[str, list[float]] = {}
    for child in compared.children():
        by_variant.setdefault(child.data.params["variant"], []).append(
            child.data.metrics["test_accuracy"]
        )
    assert sorted(by_variant) == sorted(VARIANTS)
    # The aggregates are MLflow tables (and CSVs), not one metric per variant and statistic.
    summary = _table(compared, "summary.json", tmp_path / "s")
    assert len(summary) == len(VARIANTS)  # logged once, never appended to
    rows = summary.set_index("variant")
    for variant, values in by_variant.items():
        assert len(values) == SEEDS
        r = rows.loc[variant]
        assert r["test_accuracy_mean"] == pytest.approx(np.mean(values))
        if np.std(values) > 0:
            assert r["test_accuracy_std"] == pytest.approx(np.std(values, ddof=1))
            assert r["test_accuracy_ci95_low"] < np.mean(values) < r["test_accuracy_ci95_high"]
    logged = json.loads(parent.data.tags["mlflow.loggedArtifacts"])
    assert {"path": "summary.json", "type": "table"} in logged
    ranking = _table(compared, "ranking.json", tmp_path / "r")
    assert sorted(ranking["variant"]) == sorted(VARIANTS)
    assert set(parent.data.metrics) == {"best_test_accuracy", "friedman_p", "iman_davenport_p"}
    # The run page's description leads with the results: every variant, its mean and interval.
    note = parent.data.tags["mlflow.note.content"]
    assert "Results:" in note and "Friedman test over 2 seeds" in note
    for variant, values in by_variant.items():
        row = rf"^\| {re.escape(variant)} +\| +2 +\| +{np.mean(values):.4f}"
        assert re.search(row, note, re.MULTILINE), note


def test_parent_artifacts_for_seeds(compared, tmp_path):
    paths = artifact_paths(compared.client, compared.parent_id)
    assert {
        "summary.csv",
        "summary.md",
        "ranking.csv",
        "ranking_pvalues.csv",
        "figures/ranking.png",
        "figures/curves_shallow.png",
        "report/report.html",
        "report/report.md",
    } <= paths
    assert any(p.startswith("report/report_files/confusion_") for p in paths)
    summary = pd.read_csv(download(compared.client, compared.parent_id, "summary.csv", tmp_path))
    assert summary["variant"].tolist() == list(VARIANTS)
    assert summary["seeds"].tolist() == [SEEDS] * 3
    ranking = pd.read_csv(download(compared.client, compared.parent_id, "ranking.csv", tmp_path))
    assert sorted(ranking["variant"]) == sorted(VARIANTS)
    assert ranking["mean_rank"].between(1, 3).all()
    pvalues = pd.read_csv(
        download(compared.client, compared.parent_id, "ranking_pvalues.csv", tmp_path), index_col=0
    )
    assert list(pvalues.index) == list(pvalues.columns)
    assert np.allclose(pvalues.to_numpy(), pvalues.to_numpy().T)


def _rebuild(compared, out: Path, *args: str) -> Path:
    result = CliRunner().invoke(
        cli, ["report", "--tracking-uri", compared.uri, "--out", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    return folder


def test_bench_report_rebuilds_the_logged_report_from_the_store(compared, tmp_path):
    logged = Path(download(compared.client, compared.parent_id, "report", tmp_path / "logged"))
    rebuilt = _rebuild(compared, tmp_path / "out", "--run-id", compared.parent_id)
    assert (rebuilt / "report.md").read_text() == (logged / "report.md").read_text()
    assert sorted(p.name for p in (rebuilt / "report_files").iterdir()) == sorted(
        p.name for p in (logged / "report_files").iterdir()
    )
    # --experiment finds the same (newest) comparison
    again = _rebuild(compared, tmp_path / "by-experiment", "--experiment", "seeded")
    assert (again / "report.md").read_text() == (rebuilt / "report.md").read_text()


def test_report_contents_come_from_the_store(compared, tmp_path):
    folder = _rebuild(compared, tmp_path / "out", "--run-id", compared.parent_id)
    md = (folder / "report.md").read_text()
    for heading in (
        "## Protocol",
        "## Results over seeds",
        "## Ranking",
        "## Every run",
        "## Learning curves",
        "## Confusion matrices",
        "## Environment",
    ):
        assert heading in md
    for child in compared.children():
        assert child.info.run_name in md
        assert f"{child.data.metrics['test_accuracy']:.4f}" in md
    parent = compared.client.get_run(compared.parent_id)
    assert parent.data.tags["bench.version.tensorflow"] in md
    # every pair's Bonferroni-adjusted p-value, as logged in ranking_pvalues.csv, diagonal blank
    logged = pd.read_csv(
        download(compared.client, compared.parent_id, "ranking_pvalues.csv", tmp_path / "p"),
        index_col=0,
    )
    pairs = md.split(
        "**Every pair (default): paired t-test p-values, Bonferroni-adjusted over all pairs**", 1
    )[1]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in pairs.split("\n\n", 2)[1].splitlines()[2:]
    }
    assert set(rows) == set(VARIANTS)
    header = [c.strip() for c in pairs.split("\n\n", 2)[1].splitlines()[0].split("|")[2:-1]]
    for a, cells in rows.items():
        for b, cell in zip(header, cells, strict=True):
            p = logged.loc[a, b]
            assert cell == ("" if a == b else f"{p:.3g}" if 0 < p < 1e-3 else f"{p:.4f}"), (a, b)
    for image in re.findall(r"\]\((report_files/[^)]+)\)", md):
        assert (folder / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_markdown_report_for_a_repository_is_small_and_flat(compared, tmp_path):
    """``--format markdown --flat``: report.md and its PNGs right in --out, no HTML with
    embedded images, the same Markdown as the logged report."""
    out = tmp_path / "results" / "seeded"
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--tracking-uri",
            compared.uri,
            "--out",
            str(out),
            "--experiment",
            "seeded",
            "--format",
            "markdown",
            "--flat",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "report_files"]
    logged = Path(download(compared.client, compared.parent_id, "report", tmp_path / "logged"))
    assert (out / "report.md").read_text() == (logged / "report.md").read_text()
    assert "base64" not in (out / "report.md").read_text()
    for image in re.findall(r"\]\((report_files/[^)]+)\)", (out / "report.md").read_text()):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flat_refuses_several_runs(compared, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "report",
            "--tracking-uri",
            compared.uri,
            "--out",
            str(tmp_path),
            "--flat",
            "--run-id",
            compared.parent_id,
            "--run-id",
            compared.parent_id,
        ],
    )
    assert result.exit_code == 2 and "--flat writes one report" in result.output


_CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.dataset.images = imgs.length;
  document.body.dataset.broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.dataset.tables = document.querySelectorAll('table').length;
});
</script></body>"""


def _render(html_path: Path, tmp_path: Path) -> dict[str, int]:
    """Load the page in headless Chromium; count images, broken images and tables."""
    page = tmp_path / f"checked-{html_path.name}"
    page.write_text(html_path.read_text().replace("</body>", _CHECK), encoding="utf-8")
    out = subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    body = re.search(r"<body([^>]*)>", out).group(1)
    return {k: int(v) for k, v in re.findall(r'data-(\w+)="(\d+)"', body)}


def test_report_renders_in_a_real_browser(compared, tmp_path):
    folder = _rebuild(compared, tmp_path / "out", "--run-id", compared.parent_id)
    md = (folder / "report.md").read_text()
    seen = _render(folder / "report.html", tmp_path)
    assert seen["images"] == md.count("](report_files/") >= 5
    assert seen["broken"] == 0
    assert seen["tables"] == md.count("\n|:") >= 5
    # The check itself can fail: a broken image is counted.
    broken = tmp_path / "broken.html"
    broken.write_text(
        (folder / "report.html")
        .read_text()
        .replace("</body>", "<img src='data:image/png;base64,AAAA'></body>")
    )
    assert _render(broken, tmp_path)["broken"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "name the runs (--run-id) or the experiment (--experiment)"),
        (["--experiment", "nope"], "no experiment 'nope'"),
        (["--run-id", "0" * 32], "Run with id=00000000000000000000000000000000 not found"),
    ],
)
def test_report_bad_input_is_one_line(compared, tmp_path, args, message):
    result = CliRunner().invoke(
        cli, ["report", "--tracking-uri", compared.uri, "--out", str(tmp_path), *args]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")


def test_report_on_a_missing_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    result = CliRunner().invoke(cli, ["report", "--tracking-uri", uri, "--experiment", "x"])
    assert result.exit_code != 0 and "no MLflow store at" in result.output
    assert not (tmp_path / "none.db").exists()


# ------------------------------------------------------------------- verdicts, power and contrasts

BANNED = ("no difference", "not significantly different", "no significant difference", "Holm")


def test_the_parent_logs_the_margin_the_factors_and_every_pairs_verdict(compared, tmp_path):
    parent = compared.client.get_run(compared.parent_id)
    assert parent.data.params["protocol.equivalence_margin"] == "0.005"
    assert (
        parent.data.params["protocol.factors"] == "{}"
    )  # three families at one depth: no crossed design
    assert 0 <= parent.data.metrics["iman_davenport_p"] <= 1
    pairs = pd.read_csv(download(compared.client, compared.parent_id, "pairs.csv", tmp_path))
    assert len(pairs) == 3 and set(pairs["a"]) | set(pairs["b"]) == set(VARIANTS)
    assert set(pairs["verdict"]) <= {
        "better",
        "worse",
        "equivalent",
        "inconclusive",
        "identical scores",
    }
    md = Path(
        download(compared.client, compared.parent_id, "report/report.md", tmp_path / "r")
    ).read_text()
    assert "## How the verdicts are made" in md and "±0.005 test accuracy (0.5 points)" in md
    assert "**Every pair (default): A − B over the seeds where both runs are healthy**" in md
    assert (
        "Mean ranks (default); bars join variants whose paired t-tests (Bonferroni) do not "
        "separate them" in md
    )
    assert not any(phrase in md for phrase in BANNED)
    assert not any(phrase in compared.output for phrase in BANNED)


def test_bench_report_judges_by_another_margin_when_asked(compared, tmp_path):
    folder = _rebuild(
        compared, tmp_path / "out", "--run-id", compared.parent_id, "--margin", "0.02"
    )
    md = (folder / "report.md").read_text()
    assert "±0.02 test accuracy (2 points)" in md and "TOST p (±0.02)" in md and "±0.005" not in md
    result = CliRunner().invoke(
        cli, ["report", "--tracking-uri", compared.uri, "--out", str(tmp_path), "--margin", "5"]
    )
    assert result.exit_code == 2 and "--margin" in result.output


FAMILIES, DEPTHS = ("vanilla", "dropout", "batchnorm"), ("shallow", "deep")


def _factorial_store(factors: str | None, seeds: int = 6) -> StoredComparison:
    """A comparison of a 3 x 2 design as a store would return it: deep is a point better, the
    families alike; vanilla-deep diverged on seed 1."""
    rng = np.random.default_rng(7)
    children = []
    for family in FAMILIES:
        for depth in DEPTHS:
            for seed in range(seeds):
                name = f"{family}-{depth}"
                diverged = name == "vanilla-deep" and seed == 1
                acc = 0.88 + (0.01 if depth == "deep" else 0) + 0.002 * seed + rng.normal(0, 0.0008)
                curve = [0.5, 0.8]
                children.append(
                    StoredRun(
                        run_id=f"{name}-{seed}",
                        name=f"{name}/s{seed}",
                        kind="train",
                        status="FINISHED",
                        start_time=0,
                        params={
                            "variant": name,
                            "setting": "default",
                            "seed": str(seed),
                            "params": "1000",
                            "variant.family": family,
                            "variant.group": depth,
                        },
                        metrics={}
                        if diverged
                        else {"test_accuracy": acc, "test_loss": 1 - acc, "train_seconds": 1.0},
                        tags={"bench.status": "diverged" if diverged else "ok"},
                        histories={
                            k: curve
                            for k in (
                                "loss",
                                "accuracy",
                                "val_loss",
                                "val_accuracy",
                                "epoch_seconds",
                            )
                        },
                    )
                )
    params = {"protocol.study": "factorial", "protocol.equivalence_margin": "0.005"}
    if factors is not None:
        params["protocol.factors"] = factors
    parent = StoredRun(
        run_id="p" * 32,
        name="compare-factorial",
        kind="comparison",
        status="FINISHED",
        start_time=0,
        params=params,
        metrics={},
        tags={},
    )
    return StoredComparison("sqlite://", "factorial", parent, children, lambda *args: None)


def test_a_factorial_report_has_the_contrasts_beside_the_pairs():
    logged = (
        '{"family":'
        + str({f: [f"{f}-{d}" for d in DEPTHS] for f in FAMILIES}).replace("'", '"')
        + ',"depth":'
        + str({d: [f"{f}-{d}" for f in FAMILIES] for d in DEPTHS}).replace("'", '"')
        + "}"
    )
    md = build(_factorial_store(logged)).markdown()
    section = md.split("## Factorial contrasts (default)", 1)[1].split("\n## ", 1)[0]
    assert (
        "Factors (default): family: vanilla, dropout, batchnorm; depth: shallow, deep." in section
    )
    assert "Over 5 seeds with a healthy run in every cell (1 dropped)." in section
    assert "**Planned contrasts (default): Bonferroni within each term**" in section
    rows = {
        line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]]
        for line in section.splitlines()
        if line.startswith("| depth ") or line.startswith("| family ")
    }
    assert rows["deep - shallow"][0] == "5" and rows["deep - shallow"][5] == "better"
    assert {
        rows[c][5] for c in ("dropout - vanilla", "batchnorm - vanilla", "batchnorm - dropout")
    } <= {"equivalent", "inconclusive"}
    assert "(deep - shallow) at dropout - at vanilla" in section
    assert "**Repeated-measures ANOVA (default), seed as subject (statsmodels AnovaRM)**" in section
    assert "| family × depth |" in section
    assert (
        "**Every pair (default): A − B over the seeds where both runs are healthy**" in md
    )  # beside, not instead
    assert "| excluded" in md and "1 diverged" in md
    assert not any(phrase in md for phrase in BANNED)


def test_a_comparison_logged_before_factors_were_derives_them_from_its_runs():
    md = build(_factorial_store(None)).markdown()
    assert "Factors (default): family: vanilla, dropout, batchnorm; group: shallow, deep." in md
    assert (
        "## Factorial contrasts" not in build(_factorial_store("{}")).markdown()
    )  # logged as none: none


def test_compare_margin_overrides_the_studys_and_the_report_judges_by_it(module_store, tmp_path):
    path = write_toy_study(
        module_store.workdir, "margined", variants=VARIANTS[:2], epochs=1, learning_rate=0.001
    )
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--study",
            str(path),
            "--seeds",
            "2",
            "--no-model",
            "--margin",
            "0.02",
            "--tracking-uri",
            module_store.uri,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "margin ±0.02" in " ".join(result.stdout.split())
    parent_id = re.search(r"^parent run: ([0-9a-f]{32})$", result.stdout, re.MULTILINE).group(1)
    client = MlflowClient(module_store.uri)
    assert client.get_run(parent_id).data.params["protocol.equivalence_margin"] == "0.02"
    md = Path(download(client, parent_id, "report/report.md", tmp_path)).read_text()
    assert "±0.02 test accuracy (2 points)" in md
    assert (
        pd.read_csv(download(client, parent_id, "pairs.csv", tmp_path / "p"))["verdict"]
        .notna()
        .all()
    )


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "[click](javascript:alert(1))",
    "a|b",
    "two\nlines",
]


def test_report_markdown_shows_hostile_text_and_never_runs_or_links_it():
    """Names, notes and descriptions come from anyone who can log to the store (issue 27, I):
    in report.md they are shown, never run as HTML, never a link, never a broken table."""
    import pandas as pd

    from bench.results.report import Report, Section

    frame = pd.DataFrame({"variant": HOSTILE, "value": [1.0] * len(HOSTILE)})
    report = Report(
        HOSTILE[0],
        HOSTILE[3],
        [
            Section(
                HOSTILE[1],
                text=HOSTILE,
                tables=[(HOSTILE[2], frame)],
                images=[(HOSTILE[4], "x.png")],
            )
        ],
        {"x.png": b""},
    )
    text = report.markdown()
    for raw in ("<script", "<img", "<svg", "](javascript"):
        assert raw not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(HOSTILE) and all(
        line.count(" | ") == 1 for line in rows[2:]
    )  # one cell divider
    assert "a\\|b" in text
    html = report.html()
    for raw in ("<script", "<img src=x", "<svg"):
        assert raw not in html
