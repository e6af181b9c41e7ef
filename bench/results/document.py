"""A report as a document: titled sections of paragraphs, tables and images, written as one
self-contained HTML file (images embedded as data URIs, one file to mail or archive) and a
Markdown twin (images in ``report_files/`` beside it)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.results import table as tables


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)  # (caption, frame)
    images: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name)


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]
    images: dict[str, bytes]  # file name -> PNG bytes

    def markdown(self) -> str:
        """The report as Markdown; every text from the store or a study file is made inert
        (:func:`bench.results.table.md_text`), as the HTML escapes it."""
        md, para = tables.md_text, tables.md_paragraph
        out = [f"# {md(self.title)}", "", para(self.subtitle), ""]
        for s in self.sections:
            out += [f"## {md(s.title)}", ""]
            for p in s.text:
                out += [para(p), ""]
            for caption, frame in s.tables:
                if caption:
                    out += [f"**{md(caption)}**", ""]
                out += [
                    tables.md_cells(rounded(frame)).to_markdown(index=False, disable_numparse=True),
                    "",
                ]
            for caption, name in s.images:
                out += [f"![{md(caption).replace(']', '')}](report_files/{name})", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [
            f"<h1>{html.escape(self.title)}</h1>",
            f"<p class='sub'>{html.escape(self.subtitle)}</p>",
        ]
        toc = "".join(
            f"<li><a href='#s{i}'>{html.escape(s.title)}</a></li>"
            for i, s in enumerate(self.sections)
        )
        body.append(f"<nav><ol>{toc}</ol></nav>")
        for i, s in enumerate(self.sections):
            body.append(f"<section id='s{i}'><h2>{html.escape(s.title)}</h2>")
            body += [f"<p>{html.escape(p)}</p>" for p in s.text]
            for caption, frame in s.tables:
                cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
                table = rounded(frame).to_html(
                    index=False, na_rep="", border=0, classes="data", escape=True
                )
                body.append(
                    "<div class='scroll'>" + table.replace("<thead>", f"{cap}<thead>", 1) + "</div>"
                )
            for caption, name in s.images:
                data = base64.b64encode(self.images[name]).decode("ascii")
                body.append(
                    f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
            body.append("</section>")
        return _HTML.format(title=html.escape(self.title), body="\n".join(body))

    def write(self, out: Path, formats: tuple[str, ...] = ("html", "markdown")) -> dict[str, Path]:
        """``report.html`` (figures embedded) and/or ``report.md`` (figures in
        ``report_files/``)."""
        try:
            return self._write(out, formats)
        except OSError as exc:
            raise BenchError(f"cannot write the report into {out}: {exc.strerror or exc}") from None

    def _write(self, out: Path, formats: tuple[str, ...]) -> dict[str, Path]:
        out.mkdir(parents=True, exist_ok=True)
        paths = {"html": out / "report.html", "markdown": out / "report.md"}
        if "markdown" in formats:
            files = out / "report_files"
            files.mkdir(exist_ok=True)
            for name, png in self.images.items():
                (files / name).write_bytes(png)
            paths["markdown"].write_text(self.markdown(), encoding="utf-8")
        if "html" in formats:
            paths["html"].write_text(self.html(), encoding="utf-8")
        return {k: v for k, v in paths.items() if k in formats}


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; max-width: 1200px; margin: 2em auto; \
padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} .sub {{ color: #666; margin-top: 0; }}
table.data {{ border-collapse: collapse; margin: 0.8em 0 1.5em; font-size: 12.5px; }}
table.data th, table.data td {{ padding: 3px 8px; border-bottom: 1px solid #ddd; \
text-align: right; }}
table.data th {{ background: #f3f3f3; }} table.data td {{ white-space: nowrap; }}
table.data td:first-child, table.data td:nth-child(2) {{ text-align: left; }} \
.scroll {{ overflow-x: auto; }}
caption {{ text-align: left; font-weight: 600; padding: 4px 0; }}
figure {{ margin: 1em 0; }} figure img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 12px; }} nav ol {{ columns: 2; }}
</style></head><body>
{body}
</body></html>
"""


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text: floats to 4 decimals (small p-values in 3 significant digits)."""

    def cell(v: object) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        if isinstance(v, float):
            return f"{v:.3g}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"
        return str(v)

    return frame.map(cell)
