"""One page per run: each study's headline figure, table and numbers beside the paper's claim.

    md_path, html_path = write_report("runs/20260101-120000-default")

reads ``run.json`` (written by :func:`actadd.runner.run_notebooks`) and each study's
``<results_dir>/headline.json`` with its PNGs and CSVs, and writes ``report.md`` (figures
linked relatively) and ``report.html`` (self-contained: figures embedded as base64) into the
run folder. A failed (or interrupted) study is shown as such with its error; the others still report.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from actadd.io import atomic_write
from actadd.studies.harness import paper
from actadd.studies.harness.claims import claims_table, load_claims
from actadd.studies.harness.formatting import markdown_table, pairs, plain

MAX_TABLE_ROWS = 15


@dataclass
class StudyReport:
    """What the report shows for one notebook of a run."""

    notebook: str
    status: str
    wall_time_s: float | None
    error: str | None
    parameters: dict[str, Any]
    headline: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    figure: Path | None = None
    table_name: str | None = None
    table: pd.DataFrame | None = None
    table_rows: int = 0  # rows in the CSV (the report shows at most MAX_TABLE_ROWS)
    executed: str | None = None
    results_dir: Path | None = None
    claims: dict[str, Any] | None = None  # claims.json: the study's pre-stated claims and verdicts
    prose: str | None = None  # what_it_shows.md: prose rendered from the run's numbers

    @property
    def claim(self) -> str | None:
        return paper.SUMMARIES.get(self.notebook)

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


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[StudyReport]]:
    """``run.json`` and one :class:`StudyReport` per notebook in it, in run order."""
    run_dir = Path(run_dir)
    run_file = run_dir / "run.json"
    if not run_file.is_file():
        raise ValueError(f"{run_dir} has no run.json: give a run folder made by `python -m actadd run`")
    run = json.loads(run_file.read_text())
    if not isinstance(run, dict) or not isinstance(run.get("notebooks"), list):
        raise ValueError(f"{run_file} has no 'notebooks' list: not a run.json from actadd.runner")
    return run, [_study(entry, run_dir) for entry in run["notebooks"]]


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir``; returns their paths."""
    run_dir = Path(run_dir).resolve()
    run, studies = load_run(run_dir)
    md_path = atomic_write(run_dir / "report.md", lambda tmp: tmp.write_text(render_markdown(run, studies, run_dir)))
    html_path = atomic_write(run_dir / "report.html", lambda tmp: tmp.write_text(render_html(run, studies, run_dir)))
    return md_path, html_path


def _study(entry: dict[str, Any], run_dir: Path) -> StudyReport:
    results_dir = Path(entry.get("results_dir") or run_dir / entry["notebook"])
    if not results_dir.is_absolute():
        results_dir = run_dir / results_dir
    if not results_dir.is_dir() and (run_dir / entry["notebook"]).is_dir():
        results_dir = run_dir / entry["notebook"]  # a run folder that was moved or copied
    study = StudyReport(
        notebook=entry["notebook"],
        status=entry.get("status", "unknown"),
        wall_time_s=entry.get("wall_time_s"),
        error=entry.get("error"),
        parameters=dict(entry.get("parameters") or {}),
        executed=entry.get("executed"),
    )
    study.results_dir = results_dir
    if (results_dir / "claims.json").is_file():
        study.claims = load_claims(results_dir / "claims.json")
    if (results_dir / "what_it_shows.md").is_file():
        study.prose = (results_dir / "what_it_shows.md").read_text()
    headline_file = results_dir / "headline.json"
    if headline_file.is_file():
        record = json.loads(headline_file.read_text())
        study.headline = dict(record.get("headline") or {})
        study.versions = dict(record.get("versions") or {})
        study.parameters = {**study.parameters, **(record.get("parameters") or {})}
    elif study.status == "ok":
        study.status, study.error = "incomplete", f"no headline.json in {results_dir}"
    pngs = sorted(results_dir.glob("*.png"))
    named = study.headline.get("figure")
    if isinstance(named, str) and (results_dir / Path(named).with_suffix(".png").name).is_file():
        study.figure = results_dir / Path(named).with_suffix(".png").name
    elif pngs:
        study.figure = pngs[0]
    csvs = sorted(results_dir.glob("*.csv"))
    named = study.headline.get("table")
    if isinstance(named, str) and (results_dir / Path(named).with_suffix(".csv").name).is_file():
        csvs.insert(0, results_dir / Path(named).with_suffix(".csv").name)
    if csvs:
        table = pd.read_csv(csvs[0])
        study.table_name, study.table_rows, study.table = csvs[0].name, len(table), table.head(MAX_TABLE_ROWS)
    return study


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


def _title(run: dict[str, Any], run_dir: Path) -> str:
    return f"ActAdd run {run_dir.name} (profile {run.get('profile', '?')})"


def _generated() -> str:
    return f"{dt.datetime.now():%Y-%m-%d %H:%M}"


# --- Markdown -------------------------------------------------------------------------------


def render_markdown(run: dict[str, Any], studies: list[StudyReport], run_dir: Path) -> str:
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
            parts.append(f"**Failed:** `{s.error}`" + (f" (executed copy: `{s.executed}`)" if s.executed else ""))
        parts.append(f"**Paper:** {s.claim or '(no corresponding experiment in the paper)'}")
        if s.prose:
            parts.append("**What it shows:**\n\n" + s.prose.strip())
        if s.headline:
            shown = {k: v for k, v in s.headline.items() if k not in ("figure", "table")}
            parts.append("**Measured:**\n\n" + "\n".join(f"- {k}: {plain(v)}" for k, v in shown.items()))
        if s.figure:
            parts.append(f"![{s.figure.stem}]({s.figure.relative_to(run_dir).as_posix()})")
        if s.table is not None:
            more = f" (first {len(s.table)} of {s.table_rows} rows)" if s.table_rows > len(s.table) else ""
            parts.append(f"Table `{s.table_name}`{more}:\n\n{markdown_table(s.table)}")
        parts.append(
            f"Model: {pairs(s.models)}. Data: {pairs(s.data)}. Profile: {s.parameters.get('profile', run.get('profile', '-'))}. "
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
    frames = [
        claims_table([s.claims]).assign(model=str(s.parameters.get("model_name", "-"))) for s in studies if s.claims
    ]
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


def render_html(run: dict[str, Any], studies: list[StudyReport], run_dir: Path) -> str:
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
        if s.table is not None:
            more = f" (first {len(s.table)} of {s.table_rows} rows)" if s.table_rows > len(s.table) else ""
            rows = [[plain(v) for v in row] for row in s.table.itertuples(index=False)]
            out.append(f"<p class='meta'>Table {e(s.table_name or '')}{e(more)}</p>")
            out.append(_html_table([str(c) for c in s.table.columns], rows))
        wall = f"{plain(s.wall_time_s)} s" if s.wall_time_s is not None else "-"
        out.append(
            f"<p class='meta'>Model: {e(pairs(s.models))}. Data: {e(pairs(s.data))}. "
            f"Profile: {e(str(s.parameters.get('profile', run.get('profile', '-'))))}. "
            f"Seed: {e(plain(s.parameters.get('seed', '-')))}. Wall time: {e(wall)}."
            + (f" Versions: {e(pairs(s.versions))}." if s.versions and s.versions != common else "")
            + "</p>"
        )
    out.append("</body></html>")
    return "\n".join(out)
