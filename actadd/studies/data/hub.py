"""The paper's datasets on the Hugging Face hub, by id: from the local Hugging Face cache when it
holds a copy, else downloaded where the hub is reachable, else refused at once naming the offline
default.

The local copy is the hub cache's snapshot of the dataset repository
(``$HF_HUB_CACHE/datasets--<org>--<name>/snapshots/<commit>/``, its revision named in ``refs/``):
the card (``README.md``, whose ``configs:`` YAML maps configs and splits to data files) and the
data files, as an online ``load_dataset`` or ``hf download --repo-type dataset`` leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import huggingface_hub
from huggingface_hub.errors import LocalEntryNotFoundError
from tqdm.auto import tqdm

from actadd.io import hub_unreachable

OFFLINE = "offline"
# Either switches datasets to its own cache; both mean: do not try the network.
OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True)
class HubSource:
    """The paper's dataset on the Hugging Face hub."""

    path: str
    config: str | None
    split: str
    streaming: bool = False  # OpenWebText is ~40 GB: sample from a stream instead
    # A branch other than main, e.g. "refs/convert/parquet": the hub's own Parquet conversion of a
    # dataset whose main branch only loads through a script, which datasets >= 4 no longer runs.
    revision: str | None = None
    data_dir: str | None = None  # the config's folder on that branch (the conversion has no card)


def check_source(source: str, hub: dict[str, HubSource], loader: str) -> None:
    if source != OFFLINE and source not in hub:
        raise ValueError(
            f"unknown source {source!r} for {loader}(); use {OFFLINE!r} (packaged, works offline) "
            f"or a hub id: {', '.join(sorted(hub))}"
        )


def load_hub(source: str, hub: HubSource, loader: str, n: int | None = None, seed: int = 0) -> datasets.Dataset:
    """Load the paper's dataset (streamed ones: ``n`` rows of a seeded shuffle), from the local
    Hugging Face cache first, failing within seconds when it is neither cached nor reachable."""
    if hub.streaming and n is None:
        raise ValueError(f"{source} is streamed; pass n= (how many documents to sample)")
    data = _open(source, hub, loader)
    if hub.streaming:
        rows = list(tqdm(data.shuffle(seed=seed, buffer_size=10_000).take(n), total=n, desc=source))
        return datasets.Dataset.from_list(rows)
    return data


def _open(source: str, hub: HubSource, loader: str) -> datasets.Dataset | datasets.IterableDataset:
    snapshot = cached_snapshot(hub)
    if snapshot is not None:
        try:
            return _load(snapshot, hub)
        except (FileNotFoundError, ValueError) as error:
            # e.g. a snapshot holding only the card: a streamed load downloads no data files
            missing = f"its cached copy {snapshot} does not load ({type(error).__name__}: {_first_line(error)})"
    else:
        missing = f"it is not in the Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE})"
    why = hub_unreachable(OFFLINE_FLAGS)
    if why is not None:
        raise RuntimeError(
            f"cannot load {source!r}: {missing}, and it cannot be downloaded ({why}); "
            f"{loader}(source={OFFLINE!r}) is the packaged offline default"
        )
    return _load(hub.path, hub, revision=hub.revision)


def cached_snapshot(hub: HubSource) -> str | None:
    """The hub cache's snapshot folder of ``hub``'s repository at its revision, or None (no network)."""
    try:
        return huggingface_hub.snapshot_download(
            hub.path, repo_type="dataset", revision=hub.revision, local_files_only=True
        )
    except LocalEntryNotFoundError:  # not cached, or a snapshot the cached file listing shows incomplete
        return None


def _load(path: str, hub: HubSource, revision: str | None = None) -> datasets.Dataset | datasets.IterableDataset:
    return datasets.load_dataset(
        path, hub.config, data_dir=hub.data_dir, split=hub.split, streaming=hub.streaming, revision=revision
    )


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]
