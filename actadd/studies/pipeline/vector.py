"""``python -m actadd vector``: a mean-difference direction from a file of contrast pairs, written
as safetensors (``DirectionVector.save``) or as a GGUF control vector (``actadd.export_gguf``).

The pairs file and the arguments are checked before the model loads, so a typo costs no torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("positive", "negative")
# The file suffixes each output format is chosen by, when no --format is given.
FORMATS = {".safetensors": "safetensors", ".gguf": "gguf"}
# A GGUF control vector has no slot for ActAdd's layers 0 and 1 (see actadd.export_gguf).
FIRST_GGUF_LAYER = 2


@dataclass(frozen=True)
class Request:
    """A checked ``vector`` command: what to read, where to read it, what to write."""

    pairs: list[tuple[str, str]]
    layers: list[int | float]
    out: Path
    output_format: str  # 'safetensors' or 'gguf'


def layer_value(text: str) -> int | float:
    """A layer as the API takes it: a block index (negative from the end) or a fraction in [0, 1)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"a layer is a block index (e.g. 14, or -1 for the last block) or a fraction of the depth in [0, 1), "
            f"got {text!r}"
        )
    return value


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(positive, negative) texts from JSON lines (one object a line with ``positive`` and
    ``negative`` strings; blank lines skipped) or CSV (a header row with ``positive`` and
    ``negative`` columns), by the file's suffix (``.jsonl``/``.json``, ``.csv``)."""
    if not path.is_file():
        raise ValueError(f"pairs file {path} does not exist: give a .jsonl or .csv file of positive/negative texts")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        pairs = _json_lines(path)
    elif suffix == ".csv":
        pairs = _csv(path)
    else:
        raise ValueError(
            f"pairs file {path} has suffix {path.suffix!r}: give JSON lines (.jsonl) or CSV (.csv) with "
            "'positive' and 'negative' texts"
        )
    if not pairs:
        raise ValueError(f"pairs file {path} holds no pairs: give at least one positive/negative pair")
    return pairs


def _json_lines(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}, line {number} is not JSON ({err.msg}): each line is one object such as "
                '{"positive": "...", "negative": "..."}'
            ) from err
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number} is a JSON {type(row).__name__}, not an object with {_fields()}")
        pairs.append(_pair(row, f"{path}, line {number}"))
    return pairs


def _csv(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in FIELDS if c not in columns]
        if missing:
            raise ValueError(
                f"{path} has no {' or '.join(repr(c) for c in missing)} column (its header: "
                f"{', '.join(repr(c) for c in columns) or 'none'}): give a header row with {_fields()}"
            )
        # The header is line 1, so the first data row is line 2 (for rows without embedded newlines).
        return [_pair(row, f"{path}, row {number}") for number, row in enumerate(reader, start=2)]


def _pair(row: dict, where: str) -> tuple[str, str]:
    missing = [field for field in FIELDS if field not in row or row[field] is None]
    if missing:
        raise ValueError(f"{where} has no {' or '.join(repr(m) for m in missing)}: each pair needs {_fields()}")
    texts = tuple(row[field] for field in FIELDS)
    bad = next((t for t in texts if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise ValueError(f"{where} has {bad!r} where a non-empty text belongs: each pair needs two texts")
    return texts[0], texts[1]


def _fields() -> str:
    return " and ".join(repr(f) for f in FIELDS)


def check(args: argparse.Namespace) -> Request:
    """Everything about the command that can be checked without the model."""
    out = Path(args.out)
    output_format = args.format or FORMATS.get(out.suffix.lower())
    if output_format is None:
        raise ValueError(
            f"cannot tell the format of {out} from its suffix {out.suffix!r}: name it .safetensors or .gguf, or give "
            "--format"
        )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.relative_norm is not None and not 0 <= args.relative_norm < math.inf:
        raise ValueError(f"--relative-norm must be a finite number >= 0, got {args.relative_norm}")
    if args.coeff is not None and not math.isfinite(args.coeff):
        raise ValueError(f"--coeff must be a finite number, got {args.coeff}")
    layers = list(args.layer)
    if len(set(layers)) < len(layers):
        raise ValueError(f"--layer names a layer twice ({', '.join(map(str, layers))}): give each layer once")
    if output_format == "safetensors" and len(layers) > 1:
        raise ValueError(
            f"a safetensors file holds one direction (DirectionVector.save), but {len(layers)} layers were given: "
            "give one --layer, or write a .gguf control vector, which holds one direction per layer"
        )
    early = [layer for layer in layers if isinstance(layer, int) and 0 <= layer < FIRST_GGUF_LAYER]
    if output_format == "gguf" and early:
        raise ValueError(
            f"layer {early[0]} has no slot in a GGUF control vector (ActAdd's layer l is its direction.(l - 1), and "
            f"llama.cpp refuses direction.0): give layers from {FIRST_GGUF_LAYER} on"
        )
    return Request(pairs=read_pairs(Path(args.pairs)), layers=layers, out=out, output_format=output_format)


def run(args: argparse.Namespace) -> str:
    """Build the direction(s) and write them; returns what was written, for the user. Bad
    arguments raise ValueError, those about the files before the model loads."""
    request = check(args)
    import actadd  # only now: torch, transformers and nnsight load with the model

    model = actadd.load_model(args.model) if args.model else actadd.load_model()
    directions = [
        actadd.mean_difference(
            model,
            request.pairs,
            layer=layer,
            coeff=args.coeff,
            relative_norm=args.relative_norm,
            reduce=args.reduce,
            batch_size=args.batch_size,
        )
        for layer in request.layers
    ]
    resolved = [d.layer for d in directions]
    if len(set(resolved)) < len(resolved):
        raise ValueError(
            f"--layer {' '.join(map(str, request.layers))} name the same block twice ({resolved}): give each once"
        )
    if request.output_format == "gguf":
        path = actadd.export_gguf(model, directions, request.out)
    else:
        path = directions[0].save(request.out)
    described = "; ".join(
        f"layer {d.layer}: coeff {d.coeff:.4g}, relative norm {d.relative_norm:.4g}" for d in directions
    )
    return f"wrote {path} ({request.output_format}): mean difference of {len(request.pairs)} pairs, {described}"
