"""Command line: ``python -m actadd run ...`` executes the study notebooks; ``bench`` times
ActAdd; ``report`` rewrites a run's report; ``badges`` writes the repository's address into the
notebooks' Colab badges; ``fetch`` packs the npm corpora into the cache; ``vector`` builds a
mean-difference direction from a pairs file and writes it as safetensors or a GGUF control vector."""

from __future__ import annotations

import argparse
from pathlib import Path

from actadd.studies.pipeline import PROFILES
from actadd.studies.pipeline.vector import FORMATS, layer_value

# This module imports nothing heavy at the top: each command imports what it needs (torch,
# pandas, papermill) in its own branch, so a usage error comes back before any of it loads.

INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT (128 + 2)


def thread_counts(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``: the torch CPU thread counts to run the whole bench at, in turn."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"threads must be positive ints separated by commas, e.g. 1,2; got {text!r}")
    return list(dict.fromkeys(counts))


def seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def run_folder(text: str) -> Path:
    """A run folder made by ``python -m actadd run``: it has ``run.json``."""
    if not (Path(text) / "run.json").is_file():
        raise argparse.ArgumentTypeError(f"{text} has no run.json: give a run folder made by `python -m actadd run`")
    return Path(text)


def parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line and each command's own parser (for its usage errors); building them
    imports nothing beyond argparse."""
    top = argparse.ArgumentParser(prog="python -m actadd", description=__doc__)
    subcommands = top.add_subparsers(dest="command", required=True)
    run = subcommands.add_parser("run", help="execute study notebooks with papermill into a run folder")
    run.add_argument("notebooks", nargs="*", help="paths, stems or numbers (e.g. 01); default: all, in order")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a parameter of every notebook's parameters cell (VALUE is a Python literal: 8.0, 'text', [1, 2])",
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
        help="afterwards, snapshot the successful studies into results/, copy the main model's figures into "
        "figures/ and regenerate the README's results",
    )
    run.add_argument(
        "--heartbeat",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="print the running notebook's cell and time so far this often (default: 60)",
    )
    bench = subcommands.add_parser(
        "bench", help="time ActAdd against the plain model; print a table and write JSON per thread count"
    )
    bench.add_argument("--quick", action="store_true", help="seconds-long smoke run on a tiny random GPT-2")
    bench.add_argument(
        "--threads",
        type=thread_counts,
        help="torch CPU thread counts, each a full run in turn (default: 1, then torch's default count)",
    )
    bench.add_argument("--out", help="run folder (default: runs/bench-<time>)")
    bench.add_argument(
        "--publish", action="store_true",
        help="afterwards, save the last thread count's record as results/bench.json and render the README's bench section",
    )  # fmt: skip
    report = subcommands.add_parser("report", help="(re)write report.md and report.html for a run folder")
    report.add_argument("run_dir", type=run_folder, help="a run folder made by `python -m actadd run` (has run.json)")
    report.add_argument(
        "--readme",
        action="store_true",
        help="also snapshot it into results/, copy its figures into figures/ and regenerate the README's results",
    )
    badge = subcommands.add_parser(
        "badges", help="write pyproject's repository address into every Colab badge and install line"
    )
    badge.add_argument("--check", action="store_true", help="only list the files that disagree (exit 1 if any)")
    fetch = subcommands.add_parser("fetch", help="pack the npm corpora into the cache (skipped without npm)")
    fetch.add_argument("--build", action="store_true", help="also build every offline pool and report its size")
    vector = subcommands.add_parser(
        "vector",
        help="build a mean-difference direction from a pairs file; write it as safetensors or a GGUF control vector",
    )
    vector.add_argument(
        "pairs", help="JSON lines (.jsonl) with 'positive' and 'negative' fields, or CSV (.csv) with those columns"
    )
    vector.add_argument(
        "--layer",
        type=layer_value,
        nargs="+",
        required=True,
        metavar="LAYER",
        help="block index(es) whose input the direction is read at and added to (negative from the end), or a "
        "fraction of the depth in [0, 1); several only for a .gguf file",
    )
    vector.add_argument("--out", required=True, help="the file to write: .safetensors or .gguf (or say --format)")
    vector.add_argument(
        "--format", choices=sorted(set(FORMATS.values())), help="the output format (default: by suffix)"
    )
    vector.add_argument("--model", help="embedded name, hub id or local folder (default: the embedded SmolLM2-135M)")
    vector.add_argument(
        "--reduce",
        choices=("last", "mean"),
        default="last",
        help="read each text at its last token (CAA's, the default) or average over its tokens",
    )
    strength = vector.add_mutually_exclusive_group()
    strength.add_argument("--coeff", type=float, help="scale the plain mean difference by this (default: 1)")
    strength.add_argument(
        "--relative-norm",
        type=float,
        help="instead of --coeff: the direction's norm over the texts' mean residual norm at that layer",
    )
    vector.add_argument("--batch-size", type=int, default=16, help="texts per forward pass (default: 16)")
    return top, {"run": run, "bench": bench, "report": report, "badges": badge, "fetch": fetch, "vector": vector}


def main(argv: list[str] | None = None) -> int:
    top, commands = parsers()
    args = top.parse_args(argv)
    if args.command == "fetch":
        import pandas as pd

        from actadd.studies import data
        from actadd.studies.data.prompts import build_all

        tarballs = data.fetch()
        print(f"{len(tarballs)} npm corpora in the cache" + ("" if tarballs else " (npm not found: PyPI sources only)"))
        if args.build:
            with pd.option_context("display.max_colwidth", None, "display.width", 200):
                print(build_all().to_string(index=False))
        return 0
    if args.command == "badges":
        from actadd.studies.pipeline import badges

        changed = badges.stale_files() if args.check else badges.rewrite()
        for path in changed:
            print(f"{'stale' if args.check else 'rewrote'}: {path}")
        return 1 if args.check and changed else 0
    if args.command == "bench":
        from actadd.studies.pipeline.bench import main as run_bench_command

        return run_bench_command(args)
    if args.command == "vector":
        from actadd.studies.pipeline.vector import run as build_vector

        try:
            print(build_vector(args))
        except ValueError as err:
            commands["vector"].error(str(err))
        return 0
    if args.command == "report":
        from actadd.studies.pipeline.report import write_report

        try:
            md_path, html_path = write_report(args.run_dir)
            readme = _publish(args.run_dir) if args.readme else None
        except ValueError as err:
            commands["report"].error(str(err))
        print(f"report: {html_path}\n        {md_path}" + (f"\nREADME results: {readme}" if readme else ""))
        return 0
    return _run(commands["run"], args)


def _run(usage: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from actadd.studies.pipeline.runner import (
        check_parameters,
        default_run_folder,
        find_notebooks,
        parse_value,
        run_notebooks,
    )

    try:
        # The replication covers the studies of the paper's claims; overhead is timed once.
        names = args.notebooks or (["00", "01", "02", "03", "04", "05"] if args.models else [])
        notebooks = find_notebooks(names)
        parameters = {name: parse_value(value) for name, value in args.parameter}
        check_parameters(notebooks, parameters, args.profile)  # a typo is refused before anything runs
    except ValueError as err:
        usage.error(str(err))
    out = Path(args.out or default_run_folder(args.profile)).resolve()
    runs = run_notebooks(
        notebooks,
        profile=args.profile,
        parameters=parameters,
        out=out,
        models=args.models,
        colab=args.colab,
        heartbeat_s=args.heartbeat,
    )
    # Only Ctrl-C ends a run early (a failed notebook does not stop the others), whether it
    # stopped a notebook or came as one ended.
    jobs = len(notebooks) * (len(args.models) if args.models else 1)
    if len(runs) < jobs or any(r.status == "interrupted" for r in runs):
        if args.publish:
            print("not published: the run was interrupted (python -m actadd report RUN --readme publishes it)")
        return INTERRUPTED
    if args.publish and any(r.status == "ok" for r in runs):
        print(f"README results: {_publish(out)}")
    return 1 if any(r.status == "failed" for r in runs) else 0


def _publish(run_dir: Path) -> Path:
    from actadd.studies.pipeline.publish import publish

    return publish(run_dir)
