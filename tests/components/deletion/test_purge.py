"""Purge planning: which older data versions hold forgotten samples, when they are due, which objects go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from components.deletion import purge
from components.deletion.store import ForgetBatch

T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = T1 + timedelta(days=10)
HISTORY = [("r0", "m0.dir"), ("r1", "m1.dir"), ("r2", "m2.dir")]


def batch(batch_id: str, parent_md5: str, created_at: datetime) -> ForgetBatch:
    return ForgetBatch(
        batch_id=batch_id,
        dataset="digits",
        created_at=created_at,
        request_ids=("req",),
        requesters=("owner",),
        forget_ids=("digits/train/00001",),
        sha256="0" * 64,
        parent_pool_sha256="1" * 64,
        parent_data_md5=parent_md5,
    )


BATCHES = [batch("b1", "m0.dir", T1), batch("b2", "m1.dir", T2)]


def test_every_version_before_a_batch_holds_its_samples() -> None:
    found = purge.candidates(HISTORY, BATCHES, current_md5="m2.dir", already_purged=set())

    assert [(c.git_rev, c.batch_ids, c.superseded_at) for c in found] == [
        ("r0", ("b1", "b2"), T1),
        ("r1", ("b2",), T2),
    ]


def test_purged_and_current_versions_are_no_candidates() -> None:
    found = purge.candidates(HISTORY, BATCHES, current_md5="m2.dir", already_purged={"m0.dir"})
    assert [c.git_rev for c in found] == ["r1"]
    assert purge.candidates(HISTORY[:1], [], current_md5="m0.dir", already_purged=set()) == []


def test_retention_counts_from_the_first_forgetting_batch() -> None:
    found = purge.candidates(HISTORY, BATCHES, current_md5="m2.dir", already_purged=set())

    due, waiting = purge.split_due(found, retention_days=30, now=T1 + timedelta(days=31))

    assert [c.git_rev for c in due] == ["r0"]
    assert [c.git_rev for c in waiting] == ["r1"]
    assert waiting[0].due_on(30) == T2 + timedelta(days=30)


def test_only_unreferenced_sample_files_and_the_listing_are_deleted() -> None:
    listing = {
        "digits/pool.npz": "pool-old",
        "digits/test.npz": "test-shared",
        "digits/meta.json": "meta",
        "batches/b0.json": "record",
        "other/pool.npz": "other-pool",
    }

    hashes, files = purge.objects_to_delete(listing, "digits", kept_md5s={"test-shared"}, dir_md5="m0.dir")

    assert files == ["digits/pool.npz"]
    assert hashes == ["pool-old", "m0.dir"]
    assert purge.objects_to_delete(None, "digits", set(), "m0.dir") == ([], [])


def test_an_erasure_is_complete_once_no_kept_version_holds_the_batchs_samples() -> None:
    purged = {"m0.dir": {"batch_ids": ["b1", "b2"], "record": "purge-1.json", "git_rev": "r0"}}

    b1, b2 = purge.erasures(HISTORY, BATCHES, current_md5="m2.dir", purged=purged)

    assert (b1.batch_id, b1.complete, b1.purged_by) == ("b1", True, ("purge-1.json",))
    assert b1.line(30) == (
        "batch b1: erasure complete: no stored data version holds its samples; purged (purges/purge-1.json)"
    )
    assert (b2.batch_id, b2.complete, [c.git_rev for c in b2.held_by]) == ("b2", False, ["r1"])
    assert b2.line(30) == (
        "batch b2: erasure pending: 1 older data version(s) still hold its samples (git r1) until `mixunlearn purge` "
        f"(due {T2 + timedelta(days=30):%Y-%m-%d})"
    )
    assert b2.to_document(30)["held_by"] == ["r1"]
    assert [e.complete for e in purge.erasures(HISTORY, BATCHES, "m2.dir", {})] == [False, False]
