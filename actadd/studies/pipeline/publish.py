"""The README's results, generated from a measured run so that prose cannot drift from numbers.

``python -m actadd report RUN_DIR --readme`` (``make study`` does it) copies each successful
study's ``claims.json``, ``headline.json`` and ``what_it_shows.md`` into the committed snapshot
``results/<profile>/<model>/<study>/`` (a failed study keeps its earlier snapshot), copies the
main model's figures into ``figures/``, then rewrites the README between
``<!-- results:start -->`` and ``<!-- results:end -->`` (and, for a run over several models,
``<!-- replication:start -->`` ... ``end``) from the snapshot alone. Where Chromium is
installed, the run's ``report.html`` is rendered to ``docs/report-screenshot.png``. Nothing
else writes into ``figures/`` or ``docs/``: a run that is not published leaves them alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from actadd.io import atomic_write, save_json
from actadd.models import DEFAULT_MODEL
from actadd.studies.evaluation.stats import Estimate
from actadd.studies.harness.claims import Criterion, claims_table
from actadd.studies.harness.formatting import interval, markdown_table
from actadd.studies.harness.judges import accuracy_estimate
from actadd.studies.harness.study import JudgeReport
from actadd.studies.pipeline import REPO, screenshots
from actadd.studies.pipeline.report import load_run

RESULTS = REPO / "results"
README = REPO / "README.md"
FIGURES = REPO / "figures"
SCREENSHOT = REPO / "docs" / "report-screenshot.png"
SNAPSHOT_FILES = ("claims.json", "headline.json", "what_it_shows.md")
MARKERS = {"results": ("<!-- results:start -->", "<!-- results:end -->"),
           "replication": ("<!-- replication:start -->", "<!-- replication:end -->")}  # fmt: skip


def snapshot(run_dir: str | Path, root: Path = RESULTS) -> list[Path]:
    """Copy the run's successful studies into ``root/<profile>/<model>/<study>/``; returns the
    study folders written. A study that failed or did not finish leaves its old snapshot alone."""
    run_dir = Path(run_dir).resolve()
    run, studies = load_run(run_dir)
    written = []
    for study in studies:
        source = study.results_dir or run_dir / study.notebook
        if study.status != "ok" or not (source / "headline.json").is_file():
            continue
        model = str(study.parameters.get("model_name") or "unknown-model")
        profile = str(study.parameters.get("profile") or run.get("profile") or "default")
        dest = root / profile / model / study.notebook
        dest.mkdir(parents=True, exist_ok=True)
        for name in SNAPSHOT_FILES:
            if (source / name).is_file():
                _copy(source / name, dest / name)
        save_json({"run": run_dir.name, "profile": profile, "wall_time_s": study.wall_time_s}, dest / "run.json")
        written.append(dest)
    return written


def copy_figures(run_dir: str | Path, figures: Path = FIGURES, *, main: str = DEFAULT_MODEL) -> list[Path]:
    """Copy the PNGs of the run's successful studies of ``main`` into ``figures``; returns the
    files written. Other models' figures stay in their run folders (the README shows ``main``'s)."""
    _, studies = load_run(run_dir)
    written = []
    for study in studies:
        if study.status != "ok" or study.results_dir is None or study.parameters.get("model_name") != main:
            continue
        for png in sorted(study.results_dir.glob("*.png")):
            _copy(png, figures / png.name)
            written.append(figures / png.name)
    return written


def _copy(source: Path, dest: Path) -> None:
    atomic_write(dest, lambda tmp: shutil.copyfile(source, tmp))


def _studies(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / "claims.json").is_file()) if folder.is_dir() else []


def results_section(root: Path = RESULTS, *, profile: str, model: str) -> str:
    """The README's results: one claims table for every study of the snapshot, and what each cost."""
    folder = root / profile / model
    studies = _studies(folder)
    if not studies:
        raise ValueError(
            f"{folder} holds no study snapshot: run `make study` (or python -m actadd report RUN --readme)"
        )
    table = claims_table([json.loads((s / "claims.json").read_text()) for s in studies])
    notes: list[str] = []
    table["verdict"] = [_footnoted(v, n, notes) for v, n in zip(table["verdict"], table["note"], strict=True)]
    runs = {s.name: json.loads((s / "run.json").read_text()) for s in studies}
    costs = cost_table(folder, runs)
    total = sum(r["wall_time_s"] for r in runs.values())
    judged = scorers_table([json.loads((s / "headline.json").read_text()) for s in studies])
    judges = [
        "Who judged the comparisons (accuracy with Wilson 95% CIs; agreement of the two scorers on the same "
        "evaluated continuations):",
        markdown_table(judged),
    ] if len(judged) else []  # fmt: skip
    return "\n\n".join(
        [
            f"Model `{model}`, profile `{profile}`; generated by `python -m actadd report RUN --readme` from "
            f"`results/{profile}/{model}/`.",
            markdown_table(
                table[["study", "claim", "the paper", "measured [95% CI]", "half-width", "criterion", "verdict"]]
            ),
            *([_notes(notes)] if notes else []),
            *judges,
            f"What each study cost on this 2-core CPU ({total / 60:.0f} min for the studies in all):",
            markdown_table(costs),
        ]
    )


# The phases a study times (Study.timed), in the order the cost table shows them.
PHASES = ("vectors", "generation", "scoring", "judging", "timing")


def cost_table(folder: Path, runs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """What each study of a snapshot cost: the notebook's wall time (the runner's), and the
    minutes it spent in each phase it timed (``phases_s`` of its ``headline.json``); the rest is
    loading models and data, statistics and figures."""
    rows = []
    for name, run in runs.items():
        phases = json.loads((folder / name / "headline.json").read_text()).get("phases_s", {})
        row = {"study": name, "wall time": f"{run['wall_time_s'] / 60:.1f} min"}
        row |= {phase: f"{phases[phase] / 60:.1f} min" if phase in phases else "-" for phase in PHASES}
        rows.append({**row, "run": run["run"]})
    table = pd.DataFrame(rows)
    return table[[c for c in table.columns if c not in PHASES or (table[c] != "-").any()]]


def scorers_table(headlines: list[dict[str, Any]]) -> pd.DataFrame:
    """The scorer behind each comparison study's verdicts, its measured accuracy, and how far a
    second scorer agrees with it, from the :class:`~actadd.studies.harness.study.JudgeReport`
    of each study's ``headline.json`` (studies without one are skipped)."""
    rows = []
    for record in headlines:
        stored = record.get("records", {}).get(JudgeReport.KEY)
        if stored is None:
            continue
        judged = JudgeReport.from_dict(stored)
        accuracy = "not measured here (a packaged classifier)"
        if judged.accuracy:
            measured = pd.DataFrame(judged.accuracy)
            estimates = {
                label: accuracy_estimate(measured, judged.scorer, data)
                for data, label in (("tweets", "held-out tweets"), ("pang_lee", "Pang-Lee sentences"))
            }
            accuracy = "; ".join(f"{interval(e, 'percent')} on {e.n} {label}" for label, e in estimates.items())
        a = judged.agreement
        rows.append({
            "study": record.get("study", ""), "scorer": judged.scorer, "accuracy [95% CI]": accuracy,
            "second scorer": judged.second,
            "agreement": f"kappa {a.kappa:.2f}, same label on {100 * a.agreement:.0f}%, Spearman {a.spearman:.2f} "
                         f"({a.n} continuations)",
        })  # fmt: skip
    return pd.DataFrame(rows)


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
    names = [{s.name for s in _studies(root / profile / model)} for model in models]
    common = set.intersection(*names)
    if not common:
        raise ValueError(f"the models {models} have no study in common under {root / profile}: run `make replicate`")
    total = 0.0
    notes: list[str] = []
    for model in models:
        studies = [s for s in _studies(root / profile / model) if s.name in common]
        for study in studies:
            for claim in json.loads((study / "claims.json").read_text())["claims"]:
                key = (
                    study.name,
                    claim["statement"] + ("" if claim.get("arm", "paper") == "paper" else f" ({claim['arm']})"),
                )
                papers[key] = claim["paper"]
                estimate = None if claim["estimate"] is None else Estimate.from_dict(claim["estimate"])
                verdict = "not measured" if estimate is None else Criterion(**claim["criterion"]).verdict(estimate)
                verdicts.setdefault(key, {})[model] = verdict
                note = "; ".join(f"{model}: {part}" for part in claim.get("note", "").split("; ") if part)
                cells.setdefault(key, {})[model] = (
                    f"{interval(estimate, claim.get('unit', 'number'))}: {_footnoted(verdict, note, notes)}"
                )
        runs = [json.loads((s / "run.json").read_text()) for s in studies]
        wall = sum(r["wall_time_s"] for r in runs)
        total += wall
        costs.append(
            {"model": model, "studies": ", ".join(s.name[:2] for s in studies), "wall time": f"{wall / 60:.0f} min",
             "run": ", ".join(sorted({r["run"] for r in runs}))}
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
            f"being the other model); {total / 60:.0f} min in all:",
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
    """Rewrite the README's results (``main``, the model of `make study`) and, when the snapshot
    holds more than one model for ``profile``, its replication table over all of them."""
    present = sorted(p.name for p in (root / profile).iterdir() if _studies(p)) if (root / profile).is_dir() else []
    if main not in present:
        raise ValueError(f"{root / profile} has no snapshot of {main!r} (models: {present}): run `make study`")
    text = replace_section(readme.read_text(), "results", results_section(root, profile=profile, model=main))
    if len(present) > 1:
        models = [main, *(m for m in present if m != main)]
        text = replace_section(text, "replication", replication_section(root, profile=profile, models=models))
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
