"""Control vectors in llama.cpp itself: a direction exported by ``actadd.export_gguf`` steers
llama.cpp as it steers here, and a file in repeng's layout imported by ``actadd.import_gguf``
steers here as it steers llama.cpp, on the embedded SmolLM2-135M.

llama.cpp runs through llama-cpp-python's low-level binding (its high-level ``Llama`` has no
control-vector loader). The file is read as llama.cpp's own ``--control-vector`` loader reads it
(``common_control_vector_load`` in common/common.cpp, which the binding does not expose): each
``direction.N`` (N >= 1; ``direction.0`` refused) scaled by the strength (1) and summed into an
``n_embd x n_layers`` float buffer at row ``N - 1`` ("starting from layer 1"), then applied
with ``llama_set_adapter_cvec(ctx, data, len, n_embd, 1, n_layers)``, the inclusive layer range
``common_init_from_params`` uses when no ``--control-vector-layer-range`` is given. llama.cpp
then adds row ``N - 1`` to the output of block ``N`` (``l_out``) at every position it evaluates.
One difference from the loader: the buffer here is always all ``n_layers`` rows long, because
``llama_set_adapter_cvec`` leaves the layers past a shorter buffer as the previous vector set
them, and these tests set several vectors on one context.

Both engines get the same token ids (ActAdd's start token first; llama.cpp adds none of its own
for SmolLM2) and give next-token log-probabilities, compared by their largest difference over
the whole vocabulary. Two copies of the same weights run in llama.cpp:

- ``q4_1``, the embedded file as served: transformers dequantises its Q4_1 (and Q8_0) weights
  to float32 here, while llama.cpp's CPU kernels multiply the quantised weights with
  activations quantised to 8 bits, so the engines differ before any steering. The tolerance is
  ``TOLERANCE_FACTOR`` times that unsteered difference, measured in the same run.
- ``f32``, the same weights dequantised once into an F32 GGUF in actadd's cache folder: both
  engines multiply in float32, the unsteered difference is float rounding, and so is the
  tolerance (the same rule). Here the semantics are checked to float rounding.

Where the engines' semantics differ, the tests say so and check it: llama.cpp adds the
direction at every position, the start token included, where ``positions="all"`` leaves the
start token alone (compared here by letting llama.cpp evaluate the start token before the vector
is set, and against a plain-hook reference that steers the start token too); and llama.cpp adds
a ``direction.{n_layers - 1}`` after the last block, which ``import_gguf`` leaves out.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import pytest
import torch
from gguf.quants import dequantize

import actadd
from actadd.embedded import embedded_gguf
from actadd.io import atomic_write, cache_dir
from tests.core.reference import PAIRS, PROMPTS, AddHook, token_ids

# The steered engines may differ by this many times what they differ by unsteered: measured
# here, Q4_1 steering moved the difference by at most about 1.7x, float32 by about 1.4x.
TOLERANCE_FACTOR = 3.0
# Ceilings on the unsteered difference itself (nats), so that a broken engine cannot widen the
# tolerance: Q4_1's 8-bit activations against float32 measured about 0.66, float32 about 4e-5.
MAX_UNSTEERED = {"q4_1": 1.0, "f32": 1e-3}
LAYERS = (3, 15)  # ActAdd's layers: an early block input and a middle one of 30
RELATIVE_NORM = 0.5  # strong enough to move the next token by several nats
# One thread: ggml's threads spin at each barrier, and on two cores shared with torch two threads
# measured 10-30x slower per prompt than one.
THREADS = 1
# Each random direction of the imported file: moves the next token by several nats. Random
# directions of norm 40 and more, off the model's own, widened Q4_1's gap past 3x its unsteered
# one here (float32 stayed at rounding): the Q4_1 rule holds for steering of moderate strength.
IMPORTED_NORM = 20.0


@llama_cpp.llama_log_callback
def _quiet(level, text, user_data):
    """llama.cpp logs every load to stderr; the tests read its numbers instead."""


class Engine:
    """One llama.cpp model and context on the CPU, float32 KV cache, no flash attention."""

    def __init__(self, path: Path, name: str):
        self.name = name  # which copy of the weights: q4_1 or f32
        llama_cpp.llama_log_set(_quiet, ctypes.c_void_p())
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        # llama.cpp repacks Q4_1 weights for AMX where the CPU reports AMX; these machines report
        # it but trap the instructions (SIGILL), so the weights stay in plain CPU buffers.
        model_params.use_extra_bufts = False
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        assert self.model, f"llama.cpp could not load {path}"
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = 64
        params.n_threads = params.n_threads_batch = THREADS
        params.type_k = params.type_v = llama_cpp.GGML_TYPE_F32
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        assert self.ctx, "llama.cpp could not make a context"
        self.n_layers = llama_cpp.llama_model_n_layer(self.model)
        self.n_embd = llama_cpp.llama_model_n_embd(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model))
        self._data = np.zeros(0, dtype=np.float32)

    def set_control_vector(self, data: np.ndarray | None) -> None:
        """Apply ``data`` ([n_layers * n_embd]) to every layer, as --control-vector does; None clears it."""
        if data is None:
            assert llama_cpp.llama_set_adapter_cvec(self.ctx, None, 0, self.n_embd, -1, -1) == 0
            return
        assert data.shape == (self.n_layers * self.n_embd,)
        self._data = np.ascontiguousarray(data, dtype=np.float32)  # llama.cpp copies it; kept for clarity
        pointer = self._data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert llama_cpp.llama_set_adapter_cvec(self.ctx, pointer, self._data.size, self.n_embd, 1, self.n_layers) == 0

    def _decode(self, ids: list[int]) -> None:
        tokens = (llama_cpp.llama_token * len(ids))(*ids)
        assert llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(tokens, len(ids))) == 0

    def next_token_logprobs(self, ids: list[int], data: np.ndarray | None = None, *, steer_start: bool = True):
        """Log-probabilities [vocab] of the token after ``ids``, from an empty KV cache. With
        ``steer_start=False`` the start token is evaluated before the vector is set, so that it
        alone is unsteered, as in ActAdd's ``positions="all"``."""
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        if steer_start or data is None:
            self.set_control_vector(data)
            self._decode(ids)
        else:
            self.set_control_vector(None)
            self._decode(ids[:1])
            self.set_control_vector(data)
            self._decode(ids[1:])
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
        return torch.from_numpy(logits.astype(np.float64)).log_softmax(-1)

    def close(self) -> None:
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def control_vector_buffer(path: Path, n_embd: int, n_layers: int) -> np.ndarray:
    """``common_control_vector_load``'s buffer for one file at strength 1, padded to all layers:
    ``direction.N`` summed into row ``N - 1``; ``direction.0`` refused as llama.cpp refuses it."""
    data = np.zeros((n_layers, n_embd), dtype=np.float32)
    for tensor in gguf.GGUFReader(path).tensors:
        prefix, _, index = tensor.name.partition(".")
        assert prefix == "direction" and index.isdigit(), f"llama.cpp refuses the tensor {tensor.name}"
        assert int(index) != 0, "llama.cpp refuses direction.0"
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32 and tensor.n_elements == n_embd
        data[int(index) - 1] += np.asarray(tensor.data, dtype=np.float32).reshape(-1)
    return data.reshape(-1)


def one_direction(vector: torch.Tensor, index: int, engine: Engine) -> np.ndarray:
    """A buffer holding ``vector`` as ``direction.{index}`` alone (for a deliberately wrong index)."""
    data = np.zeros((engine.n_layers, engine.n_embd), dtype=np.float32)
    data[index - 1] = vector.float().numpy()
    return data.reshape(-1)


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest difference between two engines' log-probabilities, over prompts and vocabulary."""
    return (a.double() - b.double()).abs().max().item()


def write_f32_copy(source: Path, path: Path) -> None:
    """The same GGUF with every tensor dequantised to F32 (llama.cpp then multiplies in float32)."""
    reader = gguf.GGUFReader(source)

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(tmp, reader.get_field("general.architecture").contents())
        for name, field in reader.fields.items():
            if name.startswith("GGUF.") or name == "general.architecture":
                continue  # the writer writes these itself
            value = 0 if name == "general.file_type" else field.contents()  # 0: all F32
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(name, value, field.types[0], sub_type=sub_type)
        for t in reader.tensors:
            weights = dequantize(t.data, t.tensor_type).astype(np.float32)
            writer.add_tensor(t.name, weights.reshape([int(n) for n in reversed(t.shape)]))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    atomic_write(path, write)


@pytest.fixture(scope="module", params=["q4_1", "f32"])
def engine(request):
    path = embedded_gguf("smollm2-135m")
    if request.param == "f32":
        # Converted once into the cache, beside the embedded model's safetensors copy (540 MB).
        f32 = cache_dir("models") / "smollm2-135m.F32.gguf"
        if not f32.exists():
            write_f32_copy(path, f32)
        path = f32
    engine = Engine(path, request.param)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def ids(smol):
    return [token_ids(smol, p) for p in PROMPTS]


@pytest.fixture(scope="module")
def unsteered(smol):
    return actadd.next_token_logprobs(smol, PROMPTS)


@pytest.fixture(scope="module")
def tolerance(engine, ids, unsteered):
    """``TOLERANCE_FACTOR`` times the engines' unsteered difference, and llama.cpp's unsteered log-probs."""
    theirs = torch.stack([engine.next_token_logprobs(s) for s in ids])
    measured = gap(theirs, unsteered)
    print(f"{engine.name}: unsteered difference {measured:.3g}, tolerance {TOLERANCE_FACTOR * measured:.3g}")
    assert measured <= MAX_UNSTEERED[engine.name]
    return TOLERANCE_FACTOR * measured, theirs


@dataclass(frozen=True)
class Here:
    """ActAdd's side at one layer: the direction, and the next-token log-probs it gives with
    ``positions="all"`` and with the start token steered too (a plain hook)."""

    direction: actadd.DirectionVector
    all_positions: torch.Tensor
    start_too: torch.Tensor


@pytest.fixture(scope="module")
def here(smol, ids):
    """``here(layer)``, computed once for both engines."""
    cache: dict[int, Here] = {}

    def at(layer: int) -> Here:
        if layer not in cache:
            direction = actadd.mean_difference(smol, PAIRS, layer=layer, relative_norm=RELATIVE_NORM)
            cache[layer] = Here(
                direction,
                actadd.next_token_logprobs(smol, PROMPTS, direction, positions="all"),
                start_token_too(smol, ids, layer, direction.vector),
            )
        return cache[layer]

    return at


def start_token_too(model, ids: list[list[int]], layer: int, vector: torch.Tensor) -> torch.Tensor:
    """Next-token log-probs with ``vector`` added at the input of block ``layer`` at every
    position, the start token included (llama.cpp's semantics), by a plain torch hook."""
    out = []
    for seq in ids:
        hook = AddHook(model, layer, vector.expand(len(seq), -1).clone())
        try:
            with torch.no_grad():
                out.append(model._module(torch.tensor([seq])).logits[0, -1].double().log_softmax(-1))
        finally:
            hook.handle.remove()
    return torch.stack(out)


@pytest.mark.parametrize("layer", LAYERS)
def test_an_exported_direction_steers_llama_cpp_as_it_steers_here(
    engine, smol, ids, unsteered, tolerance, here, layer, tmp_path
):
    tol, theirs_unsteered = tolerance
    ours = here(layer)
    path = actadd.export_gguf(smol, ours.direction, tmp_path / "wedding.gguf")
    data = control_vector_buffer(path, engine.n_embd, engine.n_layers)

    # ActAdd's positions="all": llama.cpp with the vector set after the start token.
    theirs = torch.stack([engine.next_token_logprobs(s, data, steer_start=False) for s in ids])
    shift = gap(theirs - theirs_unsteered, ours.all_positions - unsteered)
    print(f"{engine.name} layer {layer}: steered {gap(theirs, ours.all_positions):.3g}, shift {shift:.3g}")
    assert gap(ours.all_positions, unsteered) > 2.0  # it steers: the comparison is not of two unsteered models
    assert gap(theirs, ours.all_positions) <= tol
    assert shift <= tol  # the steering's own effect, engine by engine

    # As llama.cpp serves it, the start token is steered too: a plain hook that does the same agrees.
    served = torch.stack([engine.next_token_logprobs(s, data) for s in ids])
    start = gap(served, ours.all_positions)
    print(
        f"{engine.name} layer {layer}: start token steered {gap(served, ours.start_too):.3g}, against 'all' {start:.3g}"
    )
    assert gap(served, ours.start_too) <= tol
    if engine.name == "f32":  # where the tolerance is float rounding, the start token's row is far outside it
        assert start > 100 * tol


@pytest.mark.parametrize("layer", LAYERS)
def test_a_direction_one_block_off_is_outside_the_tolerance(engine, ids, tolerance, here, layer):
    """The check is sharp: the same direction written one index early or late (an exporter that
    numbered llama.cpp's layers from 0, or wrote ActAdd's layer as the file's index) fails it."""
    tol, _ = tolerance
    ours = here(layer)
    for index in (layer - 2, layer):  # the right one is layer - 1
        data = one_direction(ours.direction.vector, index, engine)
        theirs = torch.stack([engine.next_token_logprobs(s, data, steer_start=False) for s in ids])
        print(
            f"{engine.name} layer {layer} as direction.{index}: {gap(theirs, ours.all_positions):.3g} (tolerance {tol:.3g})"
        )
        assert gap(theirs, ours.all_positions) > 1.5 * tol


def _repeng_file(path: Path, directions: dict[int, np.ndarray]) -> Path:
    """A control vector as repeng's ``ControlVector.export_gguf`` writes one, with the gguf package."""
    writer = gguf.GGUFWriter(path, "controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    writer.add_uint32("controlvector.layer_count", len(directions))
    for index, vector in directions.items():
        writer.add_tensor(f"direction.{index}", vector)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_file_in_repengs_layout_steers_here_as_it_steers_llama_cpp(engine, smol, ids, unsteered, tolerance, tmp_path):
    """import_gguf reads direction.N into ActAdd's layer N + 1; the file's direction after the last
    block, which llama.cpp adds before the final norm and ActAdd cannot, is left out with a
    warning: a hook on the final norm's input puts it back for the comparison."""
    tol, theirs_unsteered = tolerance
    generator = torch.Generator().manual_seed(0)
    last = engine.n_layers - 1
    directions = {}
    for index in (5, 12, last):
        vector = torch.randn(engine.n_embd, generator=generator, dtype=torch.float64)
        directions[index] = (IMPORTED_NORM * vector / vector.norm()).numpy().astype(np.float32)
    path = _repeng_file(tmp_path / "repeng.gguf", directions)
    with pytest.warns(UserWarning, match=rf"direction\.{last} is added at the output of block {last}.*left out"):
        imported = actadd.import_gguf(smol, path)
    assert [d.layer for d in imported] == [6, 13]

    data = control_vector_buffer(path, engine.n_embd, engine.n_layers)
    theirs = torch.stack([engine.next_token_logprobs(s, data, steer_start=False) for s in ids])
    after_last = torch.from_numpy(directions[last])

    def add_after_last_block(module, args):
        h = args[0].clone()
        h[:, 1:] += after_last  # right-padded rows: every token but the start token (padding is never read)
        return (h, *args[1:])

    handle = smol._module.model.norm.register_forward_pre_hook(add_after_last_block)
    try:
        ours = actadd.next_token_logprobs(smol, PROMPTS, imported, positions="all")
    finally:
        handle.remove()
    without_last = actadd.next_token_logprobs(smol, PROMPTS, imported, positions="all")
    print(f"{engine.name} imported: {gap(theirs, ours):.3g}; without the last block's {gap(theirs, without_last):.3g}")
    assert gap(ours, unsteered) > 2.0
    assert gap(theirs, ours) <= tol
    assert gap(theirs - theirs_unsteered, ours - unsteered) <= tol
    if engine.name == "f32":  # the direction after the last block is far outside the float32 tolerance
        assert gap(theirs, without_last) > 100 * tol
