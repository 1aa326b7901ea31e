"""The README's results, generated from a measured run so that prose cannot drift from numbers.

``python -m actadd report RUN_DIR --readme`` (``make study`` does it) writes each successful
study's record (:class:`~actadd.studies.lifecycle.record.StudyRecord`: claims, headline, prose,
provenance) and its executed notebook into the committed snapshot
``results/<profile>/<model>/<study>/`` (a failed study keeps its earlier snapshot), copies the
main model's figures into ``figures/``, then rewrites the README between its markers from the
snapshot alone: ``<!-- notebooks:start -->`` (every published notebook, linked),
``<!-- results:start -->`` and, for a snapshot of several models, ``<!-- replication:start -->``.
Where Chromium is installed, the run's ``report.html`` is rendered to
``docs/report-screenshot.png``. Nothing else writes into ``figures/`` or ``docs/``: a run that is
not published leaves them alone.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd

from actadd.io import atomic_write
from actadd.models import DEFAULT_MODEL
from actadd.studies.lifecycle.record import CLAIMS, Provenance, StudyRecord, study_folders
from actadd.studies.pipeline import REPO, screenshots
from actadd.studies.pipeline.report import load_run
from actadd.studies.presentation.formatting import interval, markdown_table

RESULTS = REPO / "results"
README = REPO / "README.md"
FIGURES = REPO / "figures"
SCREENSHOT = REPO / "docs" / "report-screenshot.png"
MARKERS = {"notebooks": ("<!-- notebooks:start -->", "<!-- notebooks:end -->"),
           "errata": ("<!-- errata:start -->", "<!-- errata:end -->"),
           "results": ("<!-- results:start -->", "<!-- results:end -->"),
           "replication": ("<!-- replication:start -->", "<!-- replication:end -->"),
           "bench": ("<!-- bench:start -->", "<!-- bench:end -->")}  # fmt: skip


def snapshot(run_dir: str | Path, root: Path = RESULTS) -> list[Path]:
    """Write the run's successful studies into ``root/<profile>/<model>/<study>/``: each record,
    its provenance, and its executed notebook (paths of this machine made relative to the
    repository); returns the study folders written. A study that failed or did not finish
    leaves its old snapshot alone."""
    run_dir = Path(run_dir).resolve()
    log, studies = load_run(run_dir)
    written = []
    for study in studies:
        if study.status != "ok" or study.record is None:
            continue
        model = str(study.parameters.get("model_name") or "unknown-model")
        profile = str(study.parameters.get("profile") or log.profile)
        dest = root / profile / model / study.notebook
        previous = StudyRecord.load(dest) if (dest / CLAIMS).is_file() else None
        record = study.record.published(Provenance(run_dir.name, profile, study.wall_time_s), previous)
        record.save(dest)
        if study.executed.is_file():
            _write_notebook(study.executed, dest / f"{study.notebook}.ipynb")
        written.append(dest)
    return written


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _write_notebook(executed: Path, dest: Path) -> None:
    """The executed notebook, with this machine's paths made relative to the repository (the
    injected ``results_dir`` and papermill's record of its input and output), and without the
    progress bars' widget state: no static page renders it, and it outweighed the figures."""
    notebook = nbformat.reads(executed.read_text().replace(f"{REPO.resolve().as_posix()}/", ""), as_version=4)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)  # its text/plain stays
    atomic_write(dest, lambda tmp: tmp.write_text(nbformat.writes(notebook)))


def copy_figures(run_dir: str | Path, figures: Path = FIGURES, *, main: str = DEFAULT_MODEL) -> list[Path]:
    """Copy the PNGs of the run's successful studies of ``main`` into ``figures``; returns the
    files written. Other models' figures stay in their run folders (the README shows ``main``'s)."""
    _, studies = load_run(run_dir)
    written = []
    for study in studies:
        if study.status != "ok" or study.record is None or study.parameters.get("model_name") != main:
            continue
        for name in study.record.figures:
            written.append(_copy(study.folder / name, figures / name))
    return written


def _copy(source: Path, dest: Path) -> Path:
    return atomic_write(dest, lambda tmp: tmp.write_bytes(source.read_bytes()))


def _records(folder: Path) -> list[StudyRecord]:
    return [StudyRecord.load(f) for f in study_folders(folder)]


def results_section(root: Path = RESULTS, *, profile: str, model: str) -> str:
    """The README's results: one claims table for every study of the snapshot, who judged, and
    what each study cost."""
    folder = root / profile / model
    records = _records(folder)
    if not records:
        raise ValueError(
            f"{folder} holds no study snapshot: run `make study` (or python -m actadd report RUN --readme)"
        )
    table = pd.concat([r.table() for r in records], ignore_index=True)
    notes: list[str] = []
    table["verdict"] = [_footnoted(v, n, notes) for v, n in zip(table["verdict"], table["note"], strict=True)]
    judged = scorers_table(records)
    judges = [
        "Who judged the comparisons (accuracy with Wilson 95% CIs; agreement of the two scorers on the same "
        "evaluated continuations):",
        markdown_table(judged),
    ] if len(judged) else []  # fmt: skip
    total = sum(_notebook_time(r) for r in records)
    return "\n\n".join(
        [
            f"Model `{model}`, profile `{profile}`; generated by `python -m actadd report RUN --readme` from "
            f"`results/{profile}/{model}/`.",
            markdown_table(
                table[["study", "claim", "the paper", "measured [95% CI]", "half-width", "criterion", "verdict"]]
            ),
            *([_notes(notes)] if notes else []),
            *judges,
            f"What each study cost on {_machine(records)} ({total / 60:.0f} min for the studies in all), and its "
            "peak resident memory:",
            markdown_table(cost_table(records)),
        ]
    )


# The phases a study times (Study.timed), in the order the cost table shows them.
PHASES = ("vectors", "generation", "scoring", "judging", "timing")


def _notebook_time(record: StudyRecord) -> float:
    """The notebook's wall time as the runner measured it (the study's own when it has no provenance)."""
    measured = record.provenance.notebook_wall_time_s if record.provenance else None
    return float(measured if measured is not None else record.wall_time_s or 0.0)


def cost_table(records: list[StudyRecord]) -> pd.DataFrame:
    """What each study of a snapshot cost: the notebook's wall time (the runner's), the minutes
    it spent in each phase it timed (the rest is loading models and data, statistics and
    figures), its peak resident memory, the run it came from, and the CPU it ran on when the
    studies did not all run on one (:func:`_machine` names that one)."""
    rows = []
    for record in records:
        row = {"study": record.study, "wall time": f"{_notebook_time(record) / 60:.1f} min"}
        row |= {p: f"{record.phases_s[p] / 60:.1f} min" if p in record.phases_s else "-" for p in PHASES}
        memory = "-" if record.peak_memory_gb is None else f"{record.peak_memory_gb:.1f} GB"
        rows.append({**row, "peak memory": memory, "run": record.provenance.run if record.provenance else "-",
                     "CPU": record.versions.get("cpu", "not recorded")})  # fmt: skip
    table = pd.DataFrame(rows)
    shown = [c for c in table.columns if c not in PHASES or (table[c] != "-").any()]
    return table[[c for c in shown if c != "CPU" or table[c].nunique() > 1]]


def _machine(records: list[StudyRecord]) -> str:
    """The CPU the studies ran on, as the cost table's heading names it."""
    cpus = {r.versions.get("cpu") for r in records}
    return f"this 2-core CPU ({cpus.pop()})" if len(cpus) == 1 and None not in cpus else "this 2-core CPU"


def scorers_table(records: list[StudyRecord]) -> pd.DataFrame:
    """The scorer behind each comparison study's verdicts, its measured accuracy, and how far a
    second scorer agrees with it (studies that name no judge are skipped)."""
    rows = [
        {"study": r.study, "scorer": j.scorer, "accuracy [95% CI]": j.accuracy, "second scorer": j.second,
         "agreement": j.agreement}
        for r in records if (j := r.judged_by) is not None
    ]  # fmt: skip
    return pd.DataFrame(rows)


def notebooks_section(root: Path = RESULTS, *, profile: str, models: list[str]) -> str:
    """The README's notebook table: each study's question, and its executed notebook as published
    for each model (outputs and figures inline)."""
    questions = _questions()
    published = {m: {r.name for r in study_folders(root / profile / m) if (r / f"{r.name}.ipynb").is_file()}
                 for m in models}  # fmt: skip
    rows = []
    for name, question in questions.items():
        links = {
            m: f"[{m}](results/{profile}/{m}/{name}/{name}.ipynb)" if name in published[m] else "-" for m in models
        }
        rows.append({"notebook": f"[`{name}`](notebooks/{name}.ipynb)", "question": question, **links})
    header = (f"Each study's source is in `notebooks/` (without outputs); its executed copy, as published with the "
              f"results of profile `{profile}`, shows the claims table, the figures, sample completions and what it "
              "shows:")  # fmt: skip
    return f"{header}\n\n{markdown_table(pd.DataFrame(rows))}"


def _questions() -> dict[str, str]:
    """Each notebook's question: the first sentence after its "**Question.**"."""
    out = {}
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = " ".join(nbformat.read(path, as_version=4).cells[0].source.split())
        question = text.split("**Question.**", 1)[1].strip() if "**Question.**" in text else ""
        out[path.stem] = question.split("? ", 1)[0].rstrip("?") + "?" if "?" in question else question
    return out


def errata_section(root: Path = RESULTS, *, profile: str, models: list[str]) -> str:
    """The claims withdrawn after they were declared and run: each with its last published value on
    every model (from the snapshot that measured it) and the reason, so nothing is changed quietly."""
    rows = []
    for model in models:
        for record in _records(root / profile / model):
            for w in record.withdrawn:
                last = w.last
                value = (
                    "not published" if last is None else f"{interval(last.estimate, last.claim.unit)}: {last.verdict}"
                )
                rows.append({"study": record.study, "claim": f"`{w.id}`",
                             "as declared": "-" if last is None else last.claim.statement, "model": model,
                             "last published value": value, "run": w.run or "-", "why it was withdrawn": w.reason})  # fmt: skip
    if not rows:
        return "No claim has been withdrawn."
    return markdown_table(pd.DataFrame(rows))


def replication_section(root: Path = RESULTS, *, profile: str, models: list[str]) -> str:
    """Every claim on every model (claim | the paper | one column per model: measured [95% CI]
    and verdict), a paragraph on what replicates, rendered from those verdicts, and what each
    model's studies cost."""
    if len(models) < 2:
        raise ValueError(f"a replication table needs at least two models, got {models}")
    cells: dict[tuple[str, str], dict[str, str]] = {}
    verdicts: dict[tuple[str, str], dict[str, str]] = {}
    papers: dict[tuple[str, str], str] = {}
    costs = []
    # Only the studies every model has: the main model's extra studies (06) are not replications.
    by_model = {model: _records(root / profile / model) for model in models}
    common = set.intersection(*({r.study for r in records} for records in by_model.values()))
    if not common:
        raise ValueError(f"the models {models} have no study in common under {root / profile}: run `make replicate`")
    total = 0.0
    notes: list[str] = []
    for model in models:
        records = [r for r in by_model[model] if r.study in common]
        for record in records:
            for result in record.claims:
                claim = result.claim
                key = (record.study, claim.statement + ("" if claim.arm == "paper" else f" ({claim.arm})"))
                papers[key] = claim.paper
                verdict = result.verdict
                verdicts.setdefault(key, {})[model] = verdict
                note = "; ".join(f"{model}: {part}" for part in result.note.split("; ") if part)
                cells.setdefault(key, {})[model] = (
                    f"{interval(result.estimate, claim.unit)}: {_footnoted(verdict, note, notes)}"
                )
        wall = sum(_notebook_time(r) for r in records)
        total += wall
        memory = max((r.peak_memory_gb or 0.0) for r in records)
        costs.append(
            {"model": model, "studies": ", ".join(r.study[:2] for r in records), "wall time": f"{wall / 60:.0f} min",
             "peak memory": f"{memory:.1f} GB" if memory else "-",
             "run": ", ".join(sorted({r.provenance.run for r in records if r.provenance}))}
        )  # fmt: skip
    rows = [{"study": k[0], "claim": k[1], "the paper": papers[k], **{m: cells[k].get(m, "-") for m in models}}
            for k in cells]  # fmt: skip
    shared = {key: v for key, v in verdicts.items() if all(m in v for m in models)}
    return "\n\n".join(
        [
            markdown_table(pd.DataFrame(rows)),
            *([_notes(notes)] if notes else []),
            replication_summary(shared, models),
            f"What the studies cost per model on this 2-core CPU (notebook wall times, the fluency judge "
            f"being the other model; peak memory of the largest study); {total / 60:.0f} min in all:",
            markdown_table(pd.DataFrame(costs)),
        ]
    )


def replication_summary(verdicts: dict[tuple[str, str], dict[str, str]], models: list[str]) -> str:
    """What replicates, in words, from the verdicts of the claims measured on every model: the
    same verdict everywhere, opposite verdicts (holds on one, does not hold on another), and
    unresolved on at least one model."""
    same, opposite, open_ = [], [], []
    for (study, claim), by_model in verdicts.items():
        name = f"{study[:2]}: {claim}"
        found = {by_model[m] for m in models}
        if found <= {"holds"} or found <= {"does not hold"}:
            same.append(f"{name} ({found.pop()})")
        elif {"holds", "does not hold"} <= found:
            opposite.append(name + " (" + ", ".join(f"{m}: {by_model[m]}" for m in models) + ")")
        else:
            open_.append(name + " (" + ", ".join(f"{m}: {by_model[m]}" for m in models) + ")")

    def listed(items: list[str]) -> str:
        return "; ".join(items) if items else "none"

    return "\n".join(
        [
            f"Of the {len(verdicts)} claims measured on every model ({', '.join(models)}):",
            f"- **Same verdict on every model ({len(same)}).** {listed(same)}.",
            f"- **Opposite verdicts ({len(opposite)}).** {listed(opposite)}.",
            f"- **Unresolved on at least one model ({len(open_)}).** {listed(open_)}.",
        ]
    )


def _footnoted(verdict: str, note: str, notes: list[str]) -> str:
    """``verdict`` marked with the numbers of its note's parts (``"; "``-separated), each part
    numbered once in ``notes`` (appended to) however many claims share it."""
    marks = []
    for part in (p for p in note.split("; ") if p):
        if part not in notes:
            notes.append(part)
        marks.append(str(notes.index(part) + 1))
    return f"{verdict} [{', '.join(marks)}]" if marks else verdict


def _notes(notes: list[str]) -> str:
    return "\n".join(f"- [{i}] {note}" for i, note in enumerate(notes, 1))


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the part between ``name``'s markers replaced by ``body``."""
    start, end = MARKERS[name]
    if start not in text or end not in text:
        raise ValueError(f"the README has no {start} ... {end} markers to write the {name} between")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def section(text: str, name: str) -> str:
    """What stands between ``name``'s markers in ``text``."""
    start, end = MARKERS[name]
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def write_readme(readme: Path = README, root: Path = RESULTS, *, profile: str, main: str = DEFAULT_MODEL) -> Path:
    """Rewrite the README's notebook table and results (``main``, the model of `make study`) and
    its replication table over every model the snapshot holds for ``profile`` (with one model, a
    sentence saying so: a table of another protocol's run must not stay behind)."""
    present = (
        sorted(p.name for p in (root / profile).iterdir() if study_folders(p)) if (root / profile).is_dir() else []
    )
    if main not in present:
        raise ValueError(f"{root / profile} has no snapshot of {main!r} (models: {present}): run `make study`")
    models = [main, *(m for m in present if m != main)]
    text = replace_section(readme.read_text(), "results", results_section(root, profile=profile, model=main))
    text = replace_section(text, "notebooks", notebooks_section(root, profile=profile, models=models))
    text = replace_section(text, "errata", errata_section(root, profile=profile, models=models))
    replication = (replication_section(root, profile=profile, models=models) if len(present) > 1 else
                   f"No second model is published for profile `{profile}`: `make replicate` runs studies 00-05 on "
                   "each embedded model and writes the table here.")  # fmt: skip
    text = replace_section(text, "replication", replication)
    return atomic_write(readme, lambda tmp: tmp.write_text(text))


def publish(
    run_dir: str | Path,
    readme: Path = README,
    root: Path = RESULTS,
    *,
    main: str = DEFAULT_MODEL,
    figures: Path = FIGURES,
    screenshot: Path | None = SCREENSHOT,
) -> Path:
    """Snapshot a run, copy ``main``'s figures into ``figures`` and regenerate the README from
    the whole snapshot (a run of another model adds to the replication table and leaves the
    main results and figures alone); then, where Chromium is installed and ``screenshot`` is
    given, render the run's ``report.html`` to it. Returns the README's path."""
    written = snapshot(run_dir, root)
    if not written:
        raise ValueError(f"{run_dir} has no successful study to publish")
    copy_figures(run_dir, figures, main=main)
    profile = written[0].parent.parent.name
    path = write_readme(readme, root, profile=profile, main=main)
    report = Path(run_dir) / "report.html"
    if screenshot is not None and report.is_file():
        reason = screenshots.missing()
        try:
            if not reason:
                print(f"report screenshot: {screenshots.page_screenshot(report, screenshot)}")
        except Exception as err:  # the README and results are written: a browser failure must not undo that
            reason = f"{type(err).__name__}: {err}"
        if reason:
            print(f"report screenshot not taken ({reason}); {screenshot} is unchanged")
    return path
