"""``python -m actadd vector``: a pairs file in, a direction out, equal to the API's own
``mean_difference``; every bad file or argument refused with a usage error, before the model loads."""

from __future__ import annotations

import csv
import json
import re

import gguf
import pytest
import torch

import actadd
from actadd.studies.pipeline.cli import main
from tests.core.reference import PAIRS


@pytest.fixture(scope="module")
def gpt2_folder(gpt2_random, gpt2_tokenizer, tmp_path_factory):
    """The random GPT-2 saved as a local folder, for ``--model`` to load as a user's would be."""
    folder = tmp_path_factory.mktemp("gpt2-random")
    gpt2_random._module.save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    return folder


def _jsonl(path, pairs) -> str:
    lines = [json.dumps({"positive": p, "negative": n, "note": "extra fields are ignored"}) for p, n in pairs]
    path.write_text("\n".join(lines[:1] + [""] + lines[1:]) + "\n")  # a blank line is skipped
    return str(path)


def _csv(path, pairs, header=("negative", "positive")) -> str:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([(n, p) for p, n in pairs])  # columns in any order
    return str(path)


def test_a_jsonl_file_gives_the_apis_direction_in_safetensors(gpt2_random, gpt2_folder, tmp_path, capsys):
    out = tmp_path / "wedding.safetensors"
    args = ["vector", _jsonl(tmp_path / "pairs.jsonl", PAIRS), "--model", str(gpt2_folder), "--layer", "2"]
    assert main([*args, "--relative-norm", "0.5", "--reduce", "mean", "--out", str(out)]) == 0
    saved = actadd.DirectionVector.load(out)
    expected = actadd.mean_difference(gpt2_random, PAIRS, layer=2, relative_norm=0.5, reduce="mean")
    torch.testing.assert_close(saved.vector, expected.vector, rtol=1e-5, atol=1e-6)
    assert (saved.layer, saved.model_name, saved.source.pairs) == (2, str(gpt2_folder), expected.source.pairs)
    assert saved.relative_norm == pytest.approx(0.5) and saved.source.reduce == "mean"
    assert f"wrote {out} (safetensors): mean difference of 3 pairs, layer 2:" in capsys.readouterr().out


def test_a_csv_file_gives_a_gguf_control_vector_at_every_layer_asked(gpt2_random, gpt2_folder, tmp_path):
    out = tmp_path / "wedding.gguf"
    pairs = _csv(tmp_path / "pairs.csv", PAIRS)
    assert (
        main(["vector", pairs, "--model", str(gpt2_folder), "--layer", "2", "-1", "--coeff", "3", "--out", str(out)])
        == 0
    )
    tensors = {t.name: t.data for t in gguf.GGUFReader(out).tensors}
    assert sorted(tensors) == ["direction.1", "direction.2"]  # layers 2 and 3 (-1: the last of 4 blocks)
    for layer in (2, 3):
        expected = actadd.mean_difference(gpt2_random, PAIRS, layer=layer, coeff=3.0)
        torch.testing.assert_close(
            torch.tensor(tensors[f"direction.{layer - 1}"].copy()), expected.vector, rtol=1e-5, atol=1e-6
        )

    # --format overrides the suffix; a fraction of the depth is a layer too (0.5 of 4 blocks: 2).
    other = tmp_path / "wedding.bin"
    assert (
        main(["vector", pairs, "--model", str(gpt2_folder), "--layer", "0.5", "--format", "gguf", "--out", str(other)])
        == 0
    )
    assert [t.name for t in gguf.GGUFReader(other).tensors] == ["direction.1"]


@pytest.mark.parametrize(
    ("content", "suffix", "args", "message"),
    [
        ('{"positive": "a"}\n', ".jsonl", (), r"line 1 has no 'negative': each pair needs 'positive' and 'negative'"),
        ('{"positive": "a", "negative": 3}\n', ".jsonl", (), r"line 1 has 3 where a non-empty text belongs"),
        ('{"positive": "a", "negative": "b"}\nnot json\n', ".jsonl", (), r"line 2 is not JSON"),
        ('["a", "b"]\n', ".jsonl", (), r"line 1 is a JSON list, not an object"),
        ("pos,negative\na,b\n", ".csv", (), r"has no 'positive' column \(its header: 'pos', 'negative'\)"),
        ("positive,negative\na,\n", ".csv", (), r"row 2 has '' where a non-empty text belongs"),
        ("", ".csv", (), r"has no 'positive' or 'negative' column \(its header: none\)"),
        ("positive,negative\n", ".csv", (), r"holds no pairs"),
        ("\n\n", ".jsonl", (), r"holds no pairs"),
        ("a\tb\n", ".tsv", (), r"has suffix '.tsv': give JSON lines \(.jsonl\) or CSV \(.csv\)"),
        (
            "positive,negative\na,b\n",
            ".csv",
            ("--out", "v.txt"),
            r"cannot tell the format of .*v\.txt.*\.safetensors or \.gguf",
        ),
        ("positive,negative\na,b\n", ".csv", ("--layer", "3", "5"), r"safetensors file holds one direction.*2 layers"),
        ("positive,negative\na,b\n", ".csv", ("--layer", "3", "3", "--out", "v.gguf"), r"names a layer twice"),
        (
            "positive,negative\na,b\n",
            ".csv",
            ("--layer", "1", "--out", "v.gguf"),
            r"layer 1 has no slot.*refuses direction\.0",
        ),
        ("positive,negative\na,b\n", ".csv", ("--batch-size", "0"), r"--batch-size must be at least 1, got 0"),
        (
            "positive,negative\na,b\n",
            ".csv",
            ("--relative-norm", "-1"),
            r"--relative-norm must be a finite number >= 0",
        ),
        ("positive,negative\na,b\n", ".csv", ("--coeff", "nan"), r"--coeff must be a finite number, got nan"),
    ],
)
def test_bad_files_and_arguments_are_usage_errors_before_the_model_loads(
    content, suffix, args, message, tmp_path, monkeypatch, capsys
):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(actadd, "load_model", no_model)
    monkeypatch.chdir(tmp_path)
    pairs = tmp_path / f"pairs{suffix}"
    pairs.write_text(content)
    argv = ["vector", str(pairs), *args]
    argv += [] if "--layer" in args else ["--layer", "3"]
    argv += [] if "--out" in args else ["--out", "v.safetensors"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m actadd vector" in err
    assert re.search(message, err), err
    assert not list(tmp_path.glob("v.*"))


def test_argument_types_and_a_missing_file_are_refused(tmp_path, capsys):
    for argv, message in [
        (["vector", "p.csv", "--layer", "1.5", "--out", "v.gguf"], "a layer is a block index"),
        (["vector", "p.csv", "--layer", "mid", "--out", "v.gguf"], "got 'mid'"),
        (
            ["vector", "p.csv", "--layer", "3", "--out", "v.gguf", "--coeff", "2", "--relative-norm", "1"],
            "not allowed with",
        ),
        (["vector", str(tmp_path / "none.csv"), "--layer", "3", "--out", "v.gguf"], "none.csv does not exist"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_what_only_the_model_knows_is_a_usage_error_too(gpt2_folder, tmp_path, capsys):
    """A layer past the model's blocks, or two layers naming one block, are found once it loads."""
    pairs = _csv(tmp_path / "pairs.csv", PAIRS)
    for layers, message in [
        (["4"], r"layer must be in \[-4, 3\]"),
        (["3", "-1"], r"name the same block twice \(\[3, 3\]\)"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["vector", pairs, "--model", str(gpt2_folder), "--layer", *layers, "--out", str(tmp_path / "v.gguf")])
        assert exc.value.code == 2
        assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "v.gguf").exists()
