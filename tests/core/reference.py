"""An independent reference for ActAdd: plain torch hooks on the transformers module, with no
nnsight and no actadd internals. The core's tests compare the nnsight path against it."""

from __future__ import annotations

import torch

import actadd

PROMPTS = ["I went up to my friend and said", "Hello there, my friend", "The weather today is very nice and I think we"]


def token_ids(model, text: str) -> list[int]:
    """Start token, then the text's tokens, straight from the tokenizer."""
    return [actadd.model_info(model).start_token_id, *model.tokenizer(text, add_special_tokens=False).input_ids]


def block(model, layer: int) -> torch.nn.Module:
    hf = model._module
    return hf.transformer.h[layer] if hasattr(hf, "transformer") else hf.model.layers[layer]


def resid_pre(model, ids: list[list[int]], layer: int) -> torch.Tensor:
    captured = {}

    def hook(module, args, kwargs):
        captured["h"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    handle = block(model, layer).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model._module(torch.tensor(ids))
    finally:
        handle.remove()
    return captured["h"]


def reference_vector(model, p_plus: str, p_minus: str, layer: int, coeff: float) -> torch.Tensor:
    space = model.tokenizer(" ", add_special_tokens=False).input_ids[0]
    a, b = token_ids(model, p_plus), token_ids(model, p_minus)
    k = max(len(a), len(b))
    a, b = a + [space] * (k - len(a)), b + [space] * (k - len(b))
    h = resid_pre(model, [a, b], layer)
    return coeff * (h[0] - h[1])


class AddHook:
    """Adds ``vector`` [k, d] at positions ``offset .. offset + k - 1`` of a single-row forward."""

    def __init__(self, model, layer: int, vector: torch.Tensor, offset: int = 0, prompt_pass_only: bool = True):
        self.vector, self.offset, self.prompt_pass_only = vector, offset, prompt_pass_only
        self.handle = block(model, layer).register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        if self.prompt_pass_only and h.shape[1] == 1:
            return None  # a decode step with the KV cache
        h = h.clone()
        h[:, self.offset : self.offset + self.vector.shape[0]] += self.vector
        if args:
            return (h, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": h}


def reference_logits(model, text: str, hooks: list[tuple[int, torch.Tensor, int]]) -> torch.Tensor:
    added = [AddHook(model, layer, vec, offset) for layer, vec, offset in hooks]
    try:
        with torch.no_grad():
            return model._module(torch.tensor([token_ids(model, text)])).logits[0]
    finally:
        for a in added:
            a.handle.remove()


def reference_greedy(model, prompt: str, layer: int, vector: torch.Tensor, n: int) -> list[int]:
    """Greedy decoding with a KV cache, steering the prompt pass only, no frequency penalty."""
    hook = AddHook(model, layer, vector)
    try:
        with torch.no_grad():
            ids = torch.tensor([token_ids(model, prompt)])
            out = model._module.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                do_sample=False,
                pad_token_id=actadd.model_info(model).pad_token_id,
                eos_token_id=None,
            )
    finally:
        hook.handle.remove()
    return out[0, ids.shape[1] :].tolist()
