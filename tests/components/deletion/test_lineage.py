"""The lineage tags of a batch: built once, no empty values."""

from __future__ import annotations

from datetime import UTC, datetime

from components.deletion.lineage import batch_lineage
from components.deletion.store import ForgetBatch

BATCH = ForgetBatch(
    batch_id="batch-1",
    dataset="digits",
    created_at=datetime(2026, 11, 28, tzinfo=UTC),
    request_ids=("r1", "r2"),
    requesters=("alice", "bob"),
    forget_ids=("digits/train/00001",),
    sha256="f" * 64,
    parent_pool_sha256="p" * 64,
    parent_data_md5="md5-before",
    parent_git_rev=None,
)


def test_batch_lineage_records_the_batch_and_the_run_facts() -> None:
    tags = batch_lineage(BATCH, data_md5="md5-after", parent_model_version="3", reference_run_id=None)
    assert tags == {
        "forget_batch_id": "batch-1",
        "forget_manifest_sha256": "f" * 64,
        "forget_request_ids": "r1,r2",
        "forget_requesters": "alice,bob",
        "parent_data_md5": "md5-before",
        "data_md5": "md5-after",
        "parent_model_version": "3",
    }
