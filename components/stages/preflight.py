"""Decide, before any heavy service starts (Prefect server, Great Expectations, DVC), that a run has nothing to do.

A run is idle when the dataset is materialised, no request for it is pending, no batch is unfinished, ``data/`` is
exactly its committed DVC version, and the champion serves this training pool. The flow would then only re-validate
and re-snapshot unchanged data and reuse the champion, so the CLI answers at once instead. Any doubt (no DVC record,
a cache without the version's listing, an unreadable registry) means "not idle": the flow runs and decides.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from components.config import PipelineConfig
from components.data.types import DataError
from components.deletion import policy
from components.deletion.ledger import BatchLedger
from components.deletion.store import DataStore
from components.hashing import file_md5


def committed_listing(root: Path, data_dir: str = "data") -> dict[str, str] | None:
    """``{relpath: md5}`` of the data version ``<data_dir>.dvc`` records, read from DVC's local cache (DVC 3 layout:
    ``.dvc/cache/files/md5/ab/cdef....dir``); None when either is missing or unreadable."""
    try:
        outs = yaml.safe_load((root / f"{data_dir}.dvc").read_text())["outs"]
        dir_md5 = str(outs[0]["md5"])
        if not dir_md5.endswith(".dir"):
            return None
        listing_path = root / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
        entries = json.loads(listing_path.read_text())
        return {str(entry["relpath"]): str(entry["md5"]) for entry in entries}
    except (OSError, KeyError, IndexError, TypeError, ValueError, yaml.YAMLError):
        return None


def matches_committed(root: Path, data_dir: str = "data") -> bool:
    """Whether every file under ``data_dir`` equals the committed DVC version (same paths, same md5)."""
    listing = committed_listing(root, data_dir)
    if listing is None:
        return False
    directory = root / data_dir
    present = {path.relative_to(directory).as_posix(): path for path in directory.rglob("*") if path.is_file()}
    if set(present) != set(listing):
        return False
    return all(file_md5(present[relpath]) == md5 for relpath, md5 in listing.items())


def idle_message(config: PipelineConfig, root: Path) -> str | None:
    """The run's one-line "nothing pending" answer when it is idle (module docstring), else None."""
    store = DataStore(root / "data")
    dataset = config.base.dataset
    if not store.is_materialised(dataset) or store.pending(dataset) or not matches_committed(root):
        return None
    try:
        if BatchLedger(root).unfinished(dataset) is not None:  # an interrupted batch is resumed by the flow
            return None
    except DataError:  # an unreadable ledger: the flow runs and reports it
        return None
    # the MLflow SDK is imported only once the cheap checks passed
    from components.adapters.services import open_tracking
    from components.adapters.tracking import TrackingError

    name, alias = config.pipeline.registered_model.format(dataset=dataset), config.pipeline.alias
    try:
        tracking = open_tracking(config, root, create=False)
        if tracking is None:
            return None
        champion = tracking.get_alias(name, alias)
        tags = tracking.version_tags(name, champion.version) if champion is not None else {}
    except TrackingError:  # registry trouble: the flow runs and reports it properly
        return None
    stored = store.load(dataset)
    if champion is None or not policy.serves_pool(tags, policy.pool_fingerprint(stored)):
        return None
    return (
        f"nothing pending: {name}@{alias} (version {champion.version}) serves data {tags.get('data_md5', '?')}; "
        "data/ matches its committed DVC version, so no service was started"
    )
