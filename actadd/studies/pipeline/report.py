"""One page per run: each study's headline figure, table and numbers beside the paper's claim.

    md_path, html_path = write_report("runs/20260101-120000-default")

reads the run's :class:`~actadd.studies.lifecycle.record.RunLog` and each study's
:class:`~actadd.studies.lifecycle.record.StudyRecord` (with its PNGs and CSVs), and writes ``report.md`` (figures
linked relatively) and ``report.html`` (self-contained: figures embedded as base64) into the
run folder. A failed (or interrupted) study is shown as such with its error; the others still report.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from actadd.io import atomic_write
from actadd.studies.lifecycle.record import CLAIMS, NotebookRun, RunLog, StudyRecord
from actadd.studies.presentation.formatting import markdown_table, pairs, plain

MAX_TABLE_ROWS = 15


@dataclass
class StudyReport:
    """What the report shows for one notebook of a run: the runner's account of it and the
    record its study left (None when it wrote none)."""

    run: NotebookRun
    folder: Path
    record: StudyRecord | None
    executed: Path

    @property
    def notebook(self) -> str:
        return self.run.notebook

    @property
    def status(self) -> str:
        if self.run.status == "ok" and (self.record is None or not self.record.finished):
            return "incomplete"
        return self.run.status

    @property
    def error(self) -> str | None:
        if self.status == "incomplete":
            return f"no headline.json in {self.folder}"
        return self.run.error

    @property
    def wall_time_s(self) -> float | None:
        return self.run.wall_time_s

    @property
    def parameters(self) -> dict[str, Any]:
        return {**self.run.parameters, **(self.record.parameters if self.record else {})}

    @property
    def headline(self) -> dict[str, Any]:
        return self.record.headline if self.record else {}

    @property
    def versions(self) -> dict[str, str]:
        return self.record.versions if self.record else {}

    @property
    def prose(self) -> str | None:
        return self.record.prose if self.record else None

    @property
    def claim(self) -> str | None:
        """What the paper reports for this study (None when the paper has no such experiment)."""
        return (self.record.paper or None) if self.record else None

    @property
    def figure(self) -> Path | None:
        """The study's headline figure: the one its headline names, else its first."""
        names = self.record.figures if self.record else []
        named = self.headline.get("figure")
        if isinstance(named, str) and f"{Path(named).stem}.png" in names:
            return self.folder / f"{Path(named).stem}.png"
        return self.folder / names[0] if names else None

    @property
    def table_file(self) -> Path | None:
        """The study's headline table: the one its headline names, else its first."""
        names = self.record.tables if self.record else []
        named = self.headline.get("table")
        if isinstance(named, str) and f"{Path(named).stem}.csv" in names:
            return self.folder / f"{Path(named).stem}.csv"
        return self.folder / names[0] if names else None

    @property
    def models(self) -> dict[str, Any]:
        """Model parameters: ``model_name`` first, then any ``*_name``/``*_judge`` (judges, scorers)."""
        names = sorted(
            (k for k, v in self.parameters.items() if k.endswith(("_name", "_judge")) and v is not None),
            key=lambda k: k != "model_name",
        )
        return {k: self.parameters[k] for k in names}

    @property
    def data(self) -> dict[str, Any]:
        """Dataset source parameters (``"offline"`` or a hub id)."""
        return {k: v for k, v in self.parameters.items() if k.endswith("source")}


def load_run(run_dir: str | Path) -> tuple[RunLog, list[StudyReport]]:
    """The run's :class:`RunLog` and one :class:`StudyReport` per notebook in it, in run order."""
    run_dir = Path(run_dir)
    log = RunLog.load(run_dir)
    reports = []
    for entry in log.notebooks:
        folder = log.folder(run_dir, entry)
        if not folder.is_dir() and (run_dir / entry.notebook).is_dir():
            folder = run_dir / entry.notebook  # a run folder that was moved or copied
        record = StudyRecord.load(folder) if (folder / CLAIMS).is_file() else None
        reports.append(StudyReport(entry, folder, record, log.executed(run_dir, entry)))
    return log, reports


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir``; returns their paths."""
    run_dir = Path(run_dir).resolve()
    log, studies = load_run(run_dir)
    md_path = atomic_write(run_dir / "report.md", lambda tmp: tmp.write_text(render_markdown(log, studies, run_dir)))
    html_path = atomic_write(run_dir / "report.html", lambda tmp: tmp.write_text(render_html(log, studies, run_dir)))
    return md_path, html_path


def _table(study: StudyReport) -> tuple[pd.DataFrame, int] | None:
    """The first rows of the study's headline table, and how many rows it has."""
    if study.table_file is None:
        return None
    table = pd.read_csv(study.table_file)
    return table.head(MAX_TABLE_ROWS), len(table)


def _common_versions(studies: list[StudyReport]) -> dict[str, str]:
    for study in studies:
        if study.versions:
            return study.versions
    return {}


def _summary_rows(studies: list[StudyReport]) -> list[list[str]]:
    return [
        [
            s.notebook,
            s.status,
            plain(s.wall_time_s) + " s" if s.wall_time_s is not None else "-",
            pairs(s.models),
            pairs(s.data),
            plain(s.parameters.get("seed", "-")),
        ]
        for s in studies
    ]


SUMMARY_HEADER = ["study", "status", "wall time", "model", "data", "seed"]


def _title(run: RunLog, run_dir: Path) -> str:
    return f"ActAdd run {run_dir.name} (profile {run.profile})"


def _generated() -> str:
    return f"{dt.datetime.now():%Y-%m-%d %H:%M}"


# --- Markdown -------------------------------------------------------------------------------


def render_markdown(run: RunLog, studies: list[StudyReport], run_dir: Path) -> str:
    """The report as Markdown; figures are linked relative to ``run_dir``."""
    ok = sum(s.status == "ok" for s in studies)
    common = _common_versions(studies)  # stated once at the top; a study repeats only different ones
    parts = [
        f"# {_title(run, run_dir)}",
        f"{ok} of {len(studies)} studies ok. Generated {_generated()}. Versions: {pairs(common)}.",
        markdown_table(_summary_rows(studies), SUMMARY_HEADER),
    ]
    claims = _claims_frame(studies)
    if claims is not None:
        parts += ["## Claims", markdown_table(claims)]
    for s in studies:
        parts.append(f"## {s.notebook}: {s.status}")
        if s.error:
            parts.append(f"**Failed:** `{s.error}` (executed copy: `{s.executed}`)")
        parts.append(f"**Paper:** {s.claim or '(no corresponding experiment in the paper)'}")
        if s.prose:
            parts.append("**What it shows:**\n\n" + s.prose.strip())
        if s.headline:
            shown = {k: v for k, v in s.headline.items() if k not in ("figure", "table")}
            parts.append("**Measured:**\n\n" + "\n".join(f"- {k}: {plain(v)}" for k, v in shown.items()))
        if s.figure:
            parts.append(f"![{s.figure.stem}]({s.figure.relative_to(run_dir).as_posix()})")
        if (headline_table := _table(s)) is not None:
            table, rows = headline_table
            more = f" (first {len(table)} of {rows} rows)" if rows > len(table) else ""
            parts.append(f"Table `{s.table_file.name if s.table_file else ''}`{more}:\n\n{markdown_table(table)}")
        parts.append(
            f"Model: {pairs(s.models)}. Data: {pairs(s.data)}. Profile: {s.parameters.get('profile', run.profile)}. "
            f"Seed: {plain(s.parameters.get('seed', '-'))}. Wall time: "
            + (f"{plain(s.wall_time_s)} s." if s.wall_time_s is not None else "-.")
            + (f" Versions: {pairs(s.versions)}." if s.versions and s.versions != common else "")
        )
    return "\n\n".join(parts) + "\n"


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.ok { color: #176b1d; font-weight: 600; } .failed, .incomplete, .interrupted { color: #b00020; font-weight: 600; }
.error { background: #fdecee; border-left: 4px solid #b00020; padding: 0.5em 1em; font-family: monospace; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; }
.claim { background: #f3f6fb; border-left: 4px solid #4a6fa5; padding: 0.5em 1em; }
.measured { background: #f4faf4; border-left: 4px solid #3b8c3b; padding: 0.5em 1em; }
.meta { color: #555; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #eee; }
.wide { overflow-x: auto; }  /* a table wider than the page scrolls instead of overflowing */
"""


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h, quote=False)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c, quote=False)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _claims_frame(studies: list[StudyReport]) -> pd.DataFrame | None:
    """Every study's claims; with a ``model`` column when the run covers several models."""
    frames = [s.record.table().assign(model=str(s.parameters.get("model_name", "-"))) for s in studies if s.record]
    if not frames:
        return None
    columns = ["study", "claim", "the paper", "measured [95% CI]", "verdict", "note"]
    table = pd.concat(frames, ignore_index=True)
    return table[["model", *columns]] if table["model"].nunique() > 1 else table[columns]


def _markdown_html(text: str) -> str:
    """The little Markdown the rendered prose uses (bullets, bold, code) as HTML."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    escaped = re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)
    items = re.split(r"\n(?=- )", escaped.strip())
    if all(item.startswith("- ") for item in items):
        return "<ul>" + "".join(f"<li>{item[2:]}</li>" for item in items) + "</ul>"
    head, *rest = items
    return f"<p>{head}</p>" + ("<ul>" + "".join(f"<li>{i[2:]}</li>" for i in rest) + "</ul>" if rest else "")


def render_html(run: RunLog, studies: list[StudyReport], run_dir: Path) -> str:
    """The report as one self-contained HTML page (figures embedded as base64 PNG)."""

    def e(text: str) -> str:
        return html.escape(text, quote=False)  # text nodes; the only attributes hold study names

    ok = sum(s.status == "ok" for s in studies)
    common = _common_versions(studies)
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(_title(run, run_dir))}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(_title(run, run_dir))}</h1>",
        f"<p>{ok} of {len(studies)} studies ok. Generated {_generated()}.</p>",
        f"<p class='meta'>Versions: {e(pairs(common))}</p>",
        _html_table(SUMMARY_HEADER, _summary_rows(studies)),
    ]
    claims = _claims_frame(studies)
    if claims is not None:
        out += ["<h2>Claims</h2>", _html_table([str(c) for c in claims.columns], claims.astype(str).values.tolist())]
    for s in studies:
        out.append(f"<h2 id='{e(s.notebook)}'>{e(s.notebook)}: <span class='{e(s.status)}'>{e(s.status)}</span></h2>")
        if s.error:
            out.append(f"<div class='error'>{e(s.error)}</div>")
        measured = {k: v for k, v in s.headline.items() if k not in ("figure", "table")}
        items = "".join(f"<li><b>{e(k)}</b>: {e(plain(v))}</li>" for k, v in measured.items())
        out.append(
            "<div class='pair'>"
            f"<div class='measured'><b>Measured</b><ul>{items or '<li>-</li>'}</ul></div>"
            f"<div class='claim'><b>Paper</b><p>{e(s.claim or '(no corresponding experiment in the paper)')}</p></div>"
            "</div>"
        )
        if s.prose:
            out.append(f"<div class='measured'><b>What it shows</b>{_markdown_html(s.prose)}</div>")
        if s.figure:
            out.append(_img(s.figure))
        if (shown := _table(s)) is not None:
            table, n_rows = shown
            more = f" (first {len(table)} of {n_rows} rows)" if n_rows > len(table) else ""
            rows = [[plain(v) for v in row] for row in table.itertuples(index=False)]
            out.append(f"<p class='meta'>Table {e(s.table_file.name if s.table_file else '')}{e(more)}</p>")
            out.append(_html_table([str(c) for c in table.columns], rows))
        wall = f"{plain(s.wall_time_s)} s" if s.wall_time_s is not None else "-"
        out.append(
            f"<p class='meta'>Model: {e(pairs(s.models))}. Data: {e(pairs(s.data))}. "
            f"Profile: {e(str(s.parameters.get('profile', run.profile)))}. "
            f"Seed: {e(plain(s.parameters.get('seed', '-')))}. Wall time: {e(wall)}."
            + (f" Versions: {e(pairs(s.versions))}." if s.versions and s.versions != common else "")
            + "</p>"
        )
    out.append("</body></html>")
    return "\n".join(out)
