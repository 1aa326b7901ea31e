"""GGUF control vectors (actadd.control_vectors): the layout llama.cpp and repeng read and write,
checked with the gguf package's own reader and writer, and the layer mapping against a hook on
the block output where llama.cpp and repeng add direction.N."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

import actadd
from actadd.scoring import forward_logits
from tests.core.reference import PAIRS, PROMPTS, block, token_ids


def _repeng_export(path, model_hint: str, directions: dict[int, np.ndarray]) -> None:
    """A file as repeng's ControlVector.export_gguf writes it."""
    arch = "controlvector"
    writer = gguf.GGUFWriter(path, arch)
    writer.add_string(f"{arch}.model_hint", model_hint)
    writer.add_uint32(f"{arch}.layer_count", len(directions))
    for layer in directions:
        writer.add_tensor(f"direction.{layer}", directions[layer])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _string(reader: gguf.GGUFReader, key: str) -> str:
    return bytes(reader.get_field(key).parts[-1]).decode()


def test_export_writes_the_control_vector_layout_and_reads_back(gpt2_random, tmp_path):
    model = gpt2_random
    d2 = actadd.mean_difference(model, PAIRS, layer=2, relative_norm=2.0)
    d3 = actadd.mean_difference(model, PAIRS, layer=3, coeff=-1.5, reduce="mean")
    extra = actadd.mean_difference(model, PAIRS[:1], layer=2)
    path = actadd.export_gguf(model, [d3, d2, extra], tmp_path / "wedding.gguf")

    reader = gguf.GGUFReader(path)
    assert _string(reader, "general.architecture") == "controlvector"
    assert _string(reader, "controlvector.model_hint") == "gpt2"
    field = reader.get_field("controlvector.layer_count")
    assert int(field.parts[field.data[0]][0]) == 2
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.2"]  # ActAdd's layer l is direction.(l - 1)
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in tensors.values())
    np.testing.assert_array_equal(tensors["direction.1"].data, (d2.vector + extra.vector).numpy())  # one layer: summed
    np.testing.assert_array_equal(tensors["direction.2"].data, d3.vector.numpy())

    back = actadd.import_gguf(model, path)
    assert [d.layer for d in back] == [2, 3] and all(d.coeff == 1.0 for d in back)
    torch.testing.assert_close(back.vectors[0].vector, d2.vector + extra.vector, atol=0, rtol=0)
    torch.testing.assert_close(back.vectors[1].vector, d3.vector, atol=0, rtol=0)
    assert back.vectors[1].source == actadd.ControlVectorFile(path=str(path), model_hint="gpt2", index=2)
    seqs = [token_ids(model, p) for p in PROMPTS]
    torch.testing.assert_close(
        forward_logits(model, seqs, row_vectors=[back] * 3, positions="all"),
        forward_logits(model, seqs, row_vectors=[d2 + extra + d3] * 3, positions="all"),
    )


def test_a_file_in_repengs_layout_reads_at_the_block_output_repeng_adds_it_to(gpt2_random, tmp_path):
    """repeng's direction.N (read from and added to the output of block N) becomes ActAdd's layer
    N + 1: the logits equal a forward hook adding it to block N's output after the start token.
    direction.3, the last block's output, has no block input to go to and is left out."""
    model = gpt2_random
    g = torch.Generator().manual_seed(0)
    directions = {n: (torch.randn(64, generator=g) * 2).numpy().astype(np.float32) for n in (3, 2, 1)}
    path = tmp_path / "repeng.gguf"
    _repeng_export(path, "gpt2", directions)
    with pytest.warns(UserWarning, match=r"direction\.3 is added at the output of block 3.*left out"):
        steering = actadd.import_gguf(model, path)
    assert [(d.layer, d.source.index) for d in steering] == [(2, 1), (3, 2)]

    def add_to_output(n):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            h = h.clone()
            h[:, 1:] += torch.from_numpy(directions[n])  # one unpadded row: every token but the start token
            return (h, *output[1:]) if isinstance(output, tuple) else h

        return block(model, n).register_forward_hook(hook)

    seq = token_ids(model, PROMPTS[0])
    handles = [add_to_output(1), add_to_output(2)]
    try:
        with torch.no_grad():
            ref = model._module(torch.tensor([seq])).logits[0]
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(
        forward_logits(model, [seq], row_vectors=[steering], positions="all")[0], ref, atol=1e-4, rtol=1e-4
    )


def test_control_vectors_refuse_what_the_layout_cannot_hold(gpt2_random, tmp_path):
    model = gpt2_random
    v = actadd.steering_vector(model, " Love", " Hate", layer=2)
    with pytest.raises(ValueError, match=r"\[k, d_model\] ActAdd vector.*no place for it"):
        actadd.export_gguf(model, v, tmp_path / "actadd.gguf")
    with pytest.raises(ValueError, match=r"at layer 1: .*llama.cpp refuses direction.0"):
        actadd.export_gguf(model, actadd.mean_difference(model, PAIRS, layer=1), tmp_path / "early.gguf")
    assert not list(tmp_path.iterdir())

    narrow = tmp_path / "narrow.gguf"
    _repeng_export(narrow, "llama", {1: np.ones(32, dtype=np.float32)})
    with pytest.raises(ValueError, match=r"direction\.1 has 32 F32 values, but 'gpt2-random' needs 64"):
        actadd.import_gguf(model, narrow)
    other = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(other, "llama")
    writer.add_tensor("token_embd.weight", np.ones((4, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"architecture 'llama', not a control vector"):
        actadd.import_gguf(model, other)
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match=r"cannot read .*bad\.gguf as a GGUF file"):
        actadd.import_gguf(model, tmp_path / "bad.gguf")
    with pytest.raises(ValueError, match="cannot read"):
        actadd.import_gguf(model, tmp_path / "missing.gguf")
