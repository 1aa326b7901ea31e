"""Loading and wrapping models (actadd.models): what ActAdd knows of each architecture, offline
failures that come at once, and nothing written onto the transformers model."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

import actadd
from actadd.models import ARCHITECTURES


def test_unknown_model_name_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="'smollm2-135m', 'gemma3-270m'"):
        actadd.load_model("gpt2-xl-not-a-model")
    with pytest.raises(ValueError, match="non-empty string"):
        actadd.load_model("")


def test_model_info_per_architecture(smol, gpt2_random):
    s, g = actadd.model_info(smol), actadd.model_info(gpt2_random)
    assert (s.n_layers, s.d_model, s.blocks_path) == (30, 576, "model.layers")
    assert smol.tokenizer.convert_ids_to_tokens(s.start_token_id) == "<|endoftext|>"
    assert (g.n_layers, g.d_model, g.blocks_path) == (4, 64, "transformer.h")
    assert g.start_token_id == 50256 and gpt2_random.tokenizer.decode([g.space_token_id]) == " "


def test_a_hub_id_offline_fails_at_once_without_download_retries(monkeypatch):
    from actadd import models

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    asked = []

    def from_pretrained(name, **kwargs):
        asked.append(kwargs)
        if kwargs.get("local_files_only"):
            raise OSError(f"{name} is not in the local cache")
        raise AssertionError("a download was attempted while the hub is unreachable")

    monkeypatch.setattr(models.AutoConfig, "from_pretrained", from_pretrained)
    with pytest.raises(ValueError, match=r"'gpt2'.*cannot be downloaded \(the hub \(127\.0\.0\.1\) is unreachable"):
        actadd.load_model("gpt2")
    assert asked == [{"local_files_only": True}]


def test_wrap_model_keeps_what_it_knows_off_the_transformers_config(gpt2_tokenizer, tmp_path):
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(gpt2_tokenizer))
    hf_model = GPT2LMHeadModel(config)
    model = actadd.wrap_model(hf_model, gpt2_tokenizer, name="mine", start_token="!", blocks_path="transformer.h")
    info = actadd.model_info(model)
    assert (info.name, info.blocks_path, info.max_positions) == ("mine", "transformer.h", 64)
    assert gpt2_tokenizer.convert_ids_to_tokens(info.start_token_id) == "!"
    assert actadd.encode(model, "Hi")[0] == info.start_token_id
    hf_model.save_pretrained(tmp_path)
    assert "actadd" not in (tmp_path / "config.json").read_text()
    assert not [k for k in vars(hf_model.config) if "actadd" in k]
    with pytest.raises(ValueError, match="blocks_path 'transformer.wte' is not a ModuleList"):
        actadd.wrap_model(hf_model, gpt2_tokenizer, blocks_path="transformer.wte")
    with pytest.raises(ValueError, match="start token '<nope>' is not a token"):
        actadd.wrap_model(hf_model, gpt2_tokenizer, start_token="<nope>")


@pytest.mark.slow
def test_smollm2_stops_at_its_separator_and_its_end_token(smol):
    info = actadd.model_info(smol)
    tokens = smol.tokenizer.convert_ids_to_tokens(list(info.stop_token_ids))
    assert set(tokens) == {"<|im_end|>", "<|endoftext|>"} and info.start_token_id in info.stop_token_ids


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_each_architecture_row_names_its_blocks_and_context_field(model_type, gpt2_tokenizer):
    """A tiny random model of each family in the table: its row's blocks path is the ModuleList
    of its decoder blocks, its context field holds the context length, and a vector is read there."""
    arch = ARCHITECTURES[model_type]
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                 intermediate_size=64, ffn_dim=64, word_embed_proj_dim=32, head_dim=16,
                 vocab_size=len(gpt2_tokenizer), max_position_embeddings=96)  # fmt: skip
    torch.manual_seed(0)
    hf_model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **sizes))
    model = actadd.wrap_model(hf_model, gpt2_tokenizer, name=f"tiny-{model_type}")
    info = actadd.model_info(model)
    layers = hf_model.get_submodule(arch.blocks)
    assert isinstance(layers, torch.nn.ModuleList) and len(layers) == info.n_layers == 2
    assert info.blocks_path == arch.blocks and info.max_positions == getattr(hf_model.config, arch.context) == 96
    expected_start = arch.start_token or gpt2_tokenizer.bos_token
    assert gpt2_tokenizer.convert_ids_to_tokens(info.start_token_id) == expected_start
    v = actadd.steering_vector(model, " Love", " Hate", layer=1, coeff=2.0)
    assert v.vector.shape == (len(actadd.encode(model, " Love")), 32) and v.vector[1:].abs().max() > 0


def test_an_architecture_the_table_does_not_know_is_found_by_shape(gpt2_tokenizer):
    """A family outside the table: blocks found as the ModuleList with one entry per layer, the
    start token the tokenizer's BOS, the context from max_position_embeddings."""
    config = AutoConfig.for_model("phi3", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=2, intermediate_size=64, vocab_size=len(gpt2_tokenizer),
                                  max_position_embeddings=80, pad_token_id=0)  # fmt: skip
    assert config.model_type not in ARCHITECTURES
    model = actadd.wrap_model(AutoModelForCausalLM.from_config(config), gpt2_tokenizer, name="tiny-phi3")
    info = actadd.model_info(model)
    assert (info.blocks_path, info.max_positions, info.start_token_id) == (
        "model.layers",
        80,
        gpt2_tokenizer.bos_token_id,
    )


def test_a_dtype_by_name_loads_the_model_in_it_and_steers_there(gpt2_random, tmp_path):
    """``dtype="bfloat16"`` (a papermill parameter is a string) loads the weights in bfloat16;
    a vector read there steers there, and c = 0 leaves generation as unsteered."""
    gpt2_random._module.save_pretrained(tmp_path)
    gpt2_random.tokenizer.save_pretrained(tmp_path)
    model = actadd.load_model(str(tmp_path), dtype="bfloat16")
    assert {p.dtype for p in model._module.parameters()} == {torch.bfloat16}
    vector = actadd.steering_vector(model, " love", " hate", layer=1, coeff=0.0)
    prompts = ["I think that", "The weather"]
    unsteered = actadd.generate(model, prompts, max_new_tokens=5, seed=3, progress=False)
    assert actadd.generate(model, prompts, vector, max_new_tokens=5, seed=3, progress=False) == unsteered
    with pytest.raises(ValueError, match="'float32', 'bfloat16', 'float16'.*got 'bf16'"):
        actadd.load_model(str(tmp_path), dtype="bf16")
