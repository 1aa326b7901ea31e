"""The paper's datasets on the Hugging Face hub, loaded by id where the hub is reachable, refused at once where it is not."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
from tqdm.auto import tqdm

from actadd.io import hub_unreachable

OFFLINE = "offline"


@dataclass(frozen=True)
class HubSource:
    """The paper's dataset on the Hugging Face hub."""

    path: str
    config: str | None
    split: str
    streaming: bool = False  # OpenWebText is ~40 GB: sample from a stream instead


def check_source(source: str, hub: dict[str, HubSource], loader: str) -> None:
    if source != OFFLINE and source not in hub:
        raise ValueError(
            f"unknown source {source!r} for {loader}(); use {OFFLINE!r} (packaged, works offline) "
            f"or a hub id: {', '.join(sorted(hub))}"
        )


def load_hub(source: str, hub: HubSource, loader: str, n: int | None = None, seed: int = 0) -> datasets.Dataset:
    """Load the paper's dataset (streamed ones: ``n`` rows of a seeded shuffle), failing fast when offline."""
    _require_hub(source, loader)
    if hub.streaming:
        stream = datasets.load_dataset(hub.path, hub.config, split=hub.split, streaming=True)
        if n is None:
            raise ValueError(f"{source} is streamed; pass n= (how many documents to sample)")
        rows = list(tqdm(stream.shuffle(seed=seed, buffer_size=10_000).take(n), total=n, desc=source))
        return datasets.Dataset.from_list(rows)
    return datasets.load_dataset(hub.path, hub.config, split=hub.split)


def _require_hub(source: str, loader: str) -> None:
    """Raise at once, naming the offline default, when the hub is switched off or unreachable."""
    why = hub_unreachable(("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if why is not None:
        raise RuntimeError(
            f"cannot load {source!r}: {why}; {loader}(source={OFFLINE!r}) is the packaged offline default"
        )
