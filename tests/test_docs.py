"""The README stays short, starts with the two commands CI runs, and its links and the docs'
links resolve."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

MAIN_JOB = ".venv/bin/bench compare --data-dir ../shared/data"
TEST_COMMAND = (
    ".ci/system-packages && python3 -m venv .venv && .venv/bin/pip install -e '.[test]' "
    "&& BENCH_REAL_DATA_DIR=../shared/data .venv/bin/python -m pytest"
)

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans removed."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but '-' dropped, spaces to '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor in a Markdown file; repeated headings get -1, -2, ... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text().splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not heading:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    links = []
    for line in prose_lines(page.read_text()):
        links += [target for target in LINK.findall(line) if not EXTERNAL.match(target)]
    return links


def first_bash_block(text: str) -> str:
    block = re.search(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block, "the README has no bash block"
    return block.group(1)


def test_readme_is_at_most_220_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_starts_with_the_main_job_and_the_test_command():
    commands = first_bash_block(README.read_text())
    assert MAIN_JOB in commands
    assert TEST_COMMAND in commands


def test_ci_runs_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    runs = [line for line in ci if line.startswith(".ci/system-packages")]
    assert runs, ".ci/run does not run .ci/system-packages"
    # CI only quietens pip; otherwise it is the README's command word for word.
    assert [re.sub(r"(pip install) -q\b", r"\1", line).strip() for line in runs] == [TEST_COMMAND]


def test_docs_pages_exist_and_the_readme_links_every_one():
    docs = {page.name for page in PAGES if page.parent.name == "docs"}
    assert docs, "docs/ holds no pages"
    linked = {
        Path(link.split("#")[0]).name for link in relative_links(README) if link.startswith("docs/")
    }
    assert docs <= linked, f"not linked from README.md: {sorted(docs - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_points_at_an_existing_file_and_heading(page):
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {target.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_slugs_follow_githubs_rules():
    assert slug("Speed (measured: `benchmarks/`)") == "speed-measured-benchmarks"
    assert slug("The seed notebooks' numbers beside ours (measured)") == (
        "the-seed-notebooks-numbers-beside-ours-measured"
    )
    assert slug("Seeds, statistics and reports") == "seeds-statistics-and-reports"


def test_every_number_in_the_readmes_results_is_in_a_published_report():
    """The README's Results section quotes results/; nothing there is typed by hand."""
    text = README.read_text()
    section = text.split("\n## Results\n", 1)[1].split("\n## ", 1)[0]
    reports = "\n".join(p.read_text() for p in sorted((ROOT / "results").rglob("report.md")))
    numbers = set(re.findall(r"\b\d\.\d{4}\b", section))
    assert numbers, "the Results section quotes no scores"
    missing = sorted(n for n in numbers if n not in reports)
    assert not missing, f"in README.md's Results but in no results/**/report.md: {missing}"
    for run in re.findall(r"parent run ([0-9a-f]{8})", section):
        assert f"({run}" in reports, f"parent run {run} is not one of results/'s reports"
