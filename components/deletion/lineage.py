"""The lineage tags of a deletion batch, built in one place for the registry, the report and ``dvc repro``."""

from __future__ import annotations

from components.deletion.store import ForgetBatch


def batch_lineage(batch: ForgetBatch, **recorded: str | None) -> dict[str, str]:
    """What the batch itself records (requests, requesters, manifest hash, parent data version) plus ``recorded``
    facts of the run (data md5, git revision, parent model version, reference, config hash...); ``None`` values
    are left out, so a stage that does not know a fact never writes an empty tag for it."""
    tags = {
        "forget_batch_id": batch.batch_id,
        "forget_manifest_sha256": batch.sha256,
        "forget_request_ids": ",".join(batch.request_ids),
        "forget_requesters": ",".join(batch.requesters),
        "parent_data_md5": batch.parent_data_md5,
        "parent_git_rev": batch.parent_git_rev,
        **recorded,
    }
    return {key: str(value) for key, value in tags.items() if value is not None}
