"""A study notebook's parameters, read from its cell tagged ``parameters`` without running it.

Light on purpose: the runner checks ``-p`` names with it before any kernel or heavy import.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path


def parameter_names(notebook: Path) -> list[str] | None:
    """The names the notebook's cell tagged ``parameters`` assigns, in order (``a, b = 1, 2``
    assigns two; papermill's own reading skips such a line, and one whose comment holds an '=');
    [] when it has no such cell; None when there is no such notebook file."""
    if not notebook.is_file():
        return None
    cells = json.loads(notebook.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) > 1:
        raise ValueError(f"{notebook} has {len(tagged)} cells tagged 'parameters': tag one")
    if not tagged:
        return []
    names: list[str] = []
    for node in ast.parse("".join(tagged[0]["source"])).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            for leaf in target.elts if isinstance(target, ast.Tuple) else [target]:
                if isinstance(leaf, ast.Name) and leaf.id not in names:
                    names.append(leaf.id)
    return names
