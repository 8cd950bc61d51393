"""The idle check before any service starts: data/ against its committed DVC listing, pending requests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from components.config import PipelineConfig
from components.stages import preflight


def commit_listing(root: Path) -> None:
    """Write data.dvc and its cache listing as DVC 3 does for the files now under data/."""
    data = root / "data"
    entries = sorted(
        (
            {"md5": hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest(), "relpath": rel}
            for path in data.rglob("*")
            if path.is_file()
            for rel in [path.relative_to(data).as_posix()]
        ),
        key=lambda entry: entry["relpath"],
    )
    listing = json.dumps(entries).encode()
    dir_md5 = hashlib.md5(listing, usedforsecurity=False).hexdigest() + ".dir"
    cache = root / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2]
    cache.mkdir(parents=True, exist_ok=True)
    (cache / dir_md5[2:]).write_bytes(listing)
    (root / "data.dvc").write_text(f"outs:\n- md5: {dir_md5}\n  path: data\n")


def project(tmp_path: Path) -> Path:
    (tmp_path / "data" / "digits").mkdir(parents=True)
    (tmp_path / "data" / "digits" / "pool.npz").write_bytes(b"pool")
    (tmp_path / "data" / "digits" / "meta.json").write_text("{}")
    commit_listing(tmp_path)
    return tmp_path


def test_data_equal_to_its_committed_version_matches(tmp_path: Path) -> None:
    assert preflight.matches_committed(project(tmp_path))


def test_a_changed_file_does_not_match(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "data" / "digits" / "pool.npz").write_bytes(b"changed")
    assert not preflight.matches_committed(root)


def test_an_added_or_removed_file_does_not_match(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "data" / "requests").mkdir()
    (root / "data" / "requests" / "new.json").write_text("{}")
    assert not preflight.matches_committed(root)
    (root / "data" / "requests" / "new.json").unlink()
    assert preflight.matches_committed(root)
    (root / "data" / "digits" / "meta.json").unlink()
    assert not preflight.matches_committed(root)


def test_a_missing_record_or_cache_listing_is_not_idle(tmp_path: Path) -> None:
    root = project(tmp_path)
    listing = next((root / ".dvc" / "cache").rglob("*.dir"))
    listing.unlink()
    assert preflight.committed_listing(root) is None
    assert not preflight.matches_committed(root)
    (root / "data.dvc").unlink()
    assert not preflight.matches_committed(root)


def test_an_unmaterialised_dataset_is_never_idle(tmp_path: Path) -> None:
    assert preflight.idle_message(PipelineConfig(), project(tmp_path)) is None  # no val/test: not materialised
