"""The package's shape: the core works without the studies' packages, imports point one way,
the public surface is deliberate, and the repository's address is written in one place."""

from __future__ import annotations

import ast
import graphlib
import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import actadd
import actadd.studies
from actadd.studies.pipeline import badges

PACKAGE = Path(actadd.__file__).parent
# What `pip install 'actadd[studies]'` adds; the core must run without any of it.
STUDIES_ONLY = (
    "pandas", "seaborn", "matplotlib", "datasets", "scipy", "sklearn", "statsmodels", "papermill", "gensim",
    "sentence_transformers", "ipywidgets", "nltk", "punkt", "textblob", "vaderSentiment", "profanity_check",
)  # fmt: skip

HIDE_STUDIES_PACKAGES = f"""
import importlib.machinery, sys

HIDDEN = set({STUDIES_ONLY!r})


class NotInstalled(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] in HIDDEN else super().find_spec(name, path, target)


sys.meta_path[:] = [NotInstalled if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)


def test_core_imports_and_steers_without_the_studies_packages(gpt2_tokenizer, tmp_path):
    gpt2_tokenizer.save_pretrained(tmp_path)
    script = HIDE_STUDIES_PACKAGES + textwrap.dedent(f"""
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

        import actadd

        try:
            import pandas
        except ImportError:
            pass
        else:
            raise SystemExit("pandas was not hidden")
        tokenizer = GPT2TokenizerFast.from_pretrained({str(tmp_path)!r})
        config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tokenizer))
        model = actadd.wrap_model(GPT2LMHeadModel(config), tokenizer, name="tiny")
        vector = actadd.steering_vector(model, " Love", " Hate", layer=1, coeff=3.0)
        steered = actadd.generate(model, ["Hello there", "Hi"], vector, max_new_tokens=4, pad_prompts=True, progress=False)
        plain = actadd.generate(model, ["Hello there", "Hi"], max_new_tokens=4, progress=False)
        assert steered != plain, "the vector changed nothing"
        assert len(actadd.logprobs(model, ["Hello there"], vector)[0]) == 2
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in HIDDEN | {{"actadd.studies"}})
        print("loaded:", loaded)
    """)
    result = _run(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded: []" in result.stdout


def _command_line(*args: str) -> str:
    """A script that runs ``python -m actadd ARGS`` and then prints the heavy modules it loaded."""
    return textwrap.dedent(f"""
        import runpy, sys

        sys.argv = ["actadd", *{list(args)!r}]
        try:
            runpy.run_module("actadd", run_name="__main__", alter_sys=True)
        finally:
            print("heavy:", sorted(set(sys.modules) & {{"torch", "nnsight", "transformers", "pandas"}}))
    """)


def test_command_line_without_the_studies_says_what_to_install():
    result = _run(HIDE_STUDIES_PACKAGES + _command_line("run", "01", "--profile", "smoke"))
    assert result.returncode != 0
    assert "pip install 'actadd[studies]'" in result.stderr


def test_import_actadd_loads_torch_only_when_a_name_needs_it():
    script = textwrap.dedent("""
        import sys
        import actadd, actadd.studies, actadd.io, actadd.checks
        print("before:", "torch" in sys.modules, set(dir(actadd)) >= set(actadd.__all__))
        from actadd import SteeringVector
        print("after:", "torch" in sys.modules, SteeringVector is sys.modules["actadd.vectors"].SteeringVector)
    """)
    result = _run(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "before: False True" in result.stdout and "after: True True" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "--profile", "nope"), "argument --profile: invalid choice: 'nope'"),
        ((), "the following arguments are required: command"),
        (("report", "/nonexistent"), "/nonexistent has no run.json"),
        (("vector", "/nonexistent.csv", "--layer", "3", "--out", "v.gguf"), "/nonexistent.csv does not exist"),
    ],
)
def test_usage_errors_come_back_without_importing_torch(args, message):
    """A typo on the command line costs an argparse message, not the ~20 s import of the whole stack."""
    result = _run(_command_line(*args))
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr and "usage: python -m actadd" in result.stderr
    assert "heavy: []" in result.stdout


def test_the_lazy_exports_are_one_table_that_mypy_sees_too():
    """``_EXPORTS`` (what ``__getattr__`` imports), the ``TYPE_CHECKING`` imports (what mypy and
    editors see) and ``__all__`` name the same things, each from the module that defines it."""
    for package in (actadd, actadd.studies):
        tree = ast.parse(Path(package.__file__).read_text())
        typed = {
            alias.name: node.module
            for block in tree.body
            if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
            for node in block.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert typed == package._EXPORTS, package.__name__
        assert set(package.__all__) - {"__version__"} == set(package._EXPORTS), package.__name__
        for name, module in package._EXPORTS.items():
            assert getattr(package, name) is getattr(importlib.import_module(module), name)


def _imports(path: Path) -> set[str]:
    """Every actadd module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _module_graph() -> dict[str, set[str]]:
    modules = {
        ".".join(("actadd", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path
        for path in PACKAGE.rglob("*.py")
    }
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_import_graph_has_no_cycle_and_the_core_never_imports_the_studies():
    graph = _module_graph()
    # A package's __init__ re-exports its modules; the edges that matter run between modules.
    edges = {name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()}
    graphlib.TopologicalSorter(edges).static_order()  # raises CycleError on a cycle
    core = {name: deps for name, deps in graph.items() if not name.startswith("actadd.studies")}
    # `python -m actadd` is the one door from the core to the studies' command line.
    leaks = {name: sorted(d for d in deps if d.startswith("actadd.studies")) for name, deps in core.items()}
    assert {name: deps for name, deps in leaks.items() if deps} == {"actadd.__main__": ["actadd.studies.pipeline.cli"]}


def test_public_surface_is_listed_and_versioned():
    assert actadd.__version__ and actadd.__version__ != "0+unknown"
    assert sorted(actadd.__all__) == sorted(set(actadd.__all__))
    for name in actadd.__all__:
        assert hasattr(actadd, name), name
    for name in ("apply", "tokenize", "steering_vector", "generate", "logprobs", "wrap_model", "load_model"):
        assert name in actadd.__all__


def test_colab_badges_and_install_cells_name_the_repository_of_pyproject():
    assert badges.repository() == badges.read_repository(badges.REPO / "pyproject.toml")
    assert badges.stale_files() == [], "run `python -m actadd badges` to rewrite them"


def test_badges_command_rewrites_a_stale_address(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project.urls]\nRepository = "https://github.com/someone/fork"\n')
    (tmp_path / "notebooks").mkdir()
    stale = (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/actadd/actadd/blob/main/notebooks/00_quickstart.ipynb)\n"
        '%pip install --quiet "actadd[studies,gemma] @ git+https://github.com/actadd/actadd"\n'
    )
    (tmp_path / "notebooks" / "00_quickstart.ipynb").write_text(stale)
    (tmp_path / "README.md").write_text(stale)
    assert len(badges.stale_files(tmp_path)) == 2
    assert len(badges.rewrite(tmp_path)) == 2
    text = (tmp_path / "README.md").read_text()
    assert "github/someone/fork/blob/main/notebooks/00_quickstart.ipynb" in text
    assert "git+https://github.com/someone/fork" in text and "actadd/actadd" not in text
    assert badges.stale_files(tmp_path) == []


# The studies layer's tiers, lowest first: a module imports only from its own tier or lower ones.
TIERS = ("evaluation", "data", "presentation", "lifecycle", "protocol", "sections", "pipeline")


def test_the_studies_tiers_import_one_way():
    graph = _module_graph()

    def tier(name: str) -> int | None:
        parts = name.split(".")
        return TIERS.index(parts[2]) if len(parts) > 2 and parts[1] == "studies" and parts[2] in TIERS else None

    upward = sorted(
        (name, dep)
        for name, deps in graph.items()
        for dep in deps
        if tier(name) is not None and tier(dep) is not None and tier(dep) > tier(name)  # type: ignore[operator]
    )
    assert upward == []
    studies = {p.name for p in (PACKAGE / "studies").iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert studies == set(TIERS), "a new folder of the studies layer needs its place among the tiers"


def _core_names_imported_by_the_studies() -> list[tuple[str, str, str]]:
    """(studies module, core module, name) for every name a studies module imports from the core."""
    found = []
    for path in (PACKAGE / "studies").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and node.module
                and node.module.startswith("actadd")
            ):
                if not node.module.startswith("actadd.studies"):
                    found += [(str(path.relative_to(PACKAGE)), node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(PACKAGE)), a.name, "") for a in node.names
                          if a.name.startswith("actadd.") and not a.name.startswith("actadd.studies")]  # fmt: skip
    return found


def test_the_studies_use_the_cores_public_names_only():
    """A studies module imports from the core only what ``actadd.__all__`` or the core module's
    own ``__all__`` lists: the studies are a user of the package like any other."""
    private = []
    for where, module, name in _core_names_imported_by_the_studies():
        public = importlib.import_module(module).__dict__.get("__all__")
        if module.split(".")[-1].startswith("_") or public is None or (name and name not in public):
            private.append(f"{where}: {module}.{name}")
    assert private == []


# Modules that read JSON that is not a run's: the packaged corpora, a classifier's config inside
# its weights file, a notebook's cells, the judges' own cache of measured accuracies, and the
# pairs file of `python -m actadd vector`.
JSON_READERS = {"studies/lifecycle/record.py", "studies/data/corpora.py", "studies/evaluation/toxicity.py",
                "studies/lifecycle/parameters.py", "studies/protocol/judges.py",
                "studies/pipeline/vector.py"}  # fmt: skip


def test_no_module_but_the_record_type_reads_a_runs_json():
    readers = set()
    for path in (PACKAGE / "studies").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "json":
                if node.attr in ("load", "loads"):
                    readers.add(str(path.relative_to(PACKAGE)))
    assert readers <= JSON_READERS
    for name in JSON_READERS - {"studies/lifecycle/record.py"}:
        text = (PACKAGE / name).read_text()
        assert not any(f in text for f in ("claims.json", "headline.json", "run.json")), name
