"""An independent reference for ActAdd: plain torch hooks on the transformers module, with no
nnsight and no actadd internals. The core's tests compare the nnsight path against it."""

from __future__ import annotations

import torch

import actadd

PROMPTS = ["I went up to my friend and said", "Hello there, my friend", "The weather today is very nice and I think we"]
# (positive, negative) texts for mean-difference directions
PAIRS = [
    (" I love weddings and brides", " I love the weather"),
    (" The bride wore white", " The car was red and fast"),
    (" wedding", " tax"),
]


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
        return greedy(model, token_ids(model, prompt), n, stop=False)
    finally:
        hook.handle.remove()


def greedy(model, ids: list[int], n: int, *, stop: bool = True) -> list[int]:
    """transformers' own greedy decoding with the KV cache, of one unpadded row, under whatever
    hooks are registered; stops at the model's stop tokens (as actadd.generate does) if ``stop``."""
    with torch.no_grad():
        prompt = torch.tensor([ids])
        out = model._module.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=actadd.model_info(model).pad_token_id,
            eos_token_id=list(actadd.model_info(model).stop_token_ids) if stop else None,
        )
    return out[0, prompt.shape[1] :].tolist()


class DirectionHook:
    """Adds ``vector`` [d] at the input of block ``layer`` in every forward (the prompt pass and
    each decode step), wherever that forward's attention mask says a row's real tokens are,
    except each row's first (its start token). A context manager."""

    def __init__(self, model, layer: int, vector: torch.Tensor):
        self.vector = vector
        self.mask: torch.Tensor | None = None
        self.seen: list[int] = []  # how many positions each forward steered
        self.handles = [
            model._module.register_forward_pre_hook(self.read_mask, with_kwargs=True),
            block(model, layer).register_forward_pre_hook(self.add, with_kwargs=True),
        ]

    def read_mask(self, module, args, kwargs):
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        mask = kwargs.get("attention_mask")
        if mask is None:  # transformers leaves out the mask of an unpadded row, decode steps included
            ones = torch.ones_like(ids)
            mask = ones if self.mask is None else torch.cat([self.mask, ones], dim=1)
        self.mask = mask

    def add(self, module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        steer = self.mask.bool().clone()
        for i, row in enumerate(self.mask.bool()):
            first = int(row.nonzero()[0])  # the row's start token, after any left padding
            steer[i, : first + 1] = False
        steer = steer[:, steer.shape[1] - h.shape[1] :]  # with the KV cache: the new positions only
        self.seen.append(int(steer.sum()))
        h = h + steer[..., None] * self.vector
        if args:
            return (h, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": h}

    def __enter__(self) -> DirectionHook:
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
