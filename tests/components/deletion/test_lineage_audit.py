"""The lineage audit's logic on hand-built registry tags, batch records and data versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from components.data.types import ids_sha256
from components.deletion.lineage import batch_lineage
from components.deletion.lineage_audit import (
    Sources,
    VersionFacts,
    audit_chain,
    first_honouring,
    request_honoured,
    sample_honoured,
    walk,
)
from components.deletion.lineage_report import audit_document, render
from components.deletion.store import ForgetBatch

FORGET = ("digits/train/00001", "digits/train/00002")
POOL_BEFORE, POOL_AFTER = "p" * 64, "q" * 64
BATCH = ForgetBatch(
    batch_id="batch-1",
    dataset="digits",
    created_at=datetime(2026, 11, 28, 10, tzinfo=UTC),
    request_ids=("r1", "r2"),
    requesters=("alice", "bob"),
    forget_ids=FORGET,
    removed_elsewhere=("digits/test/00009",),
    sha256=ids_sha256(FORGET),
    parent_pool_sha256=POOL_BEFORE,
    parent_data_md5="md5-0.dir",
    parent_git_rev="rev0",
)
DATA_DVC = {"rev0": "md5-0.dir", "rev1": "md5-1.dir"}  # what data.dvc records at each git revision


def registry() -> dict[str, VersionFacts]:
    original = {"source": "original", "data_md5": "md5-0.dir", "git_rev": "rev0", "pool_sha256": POOL_BEFORE}
    unlearned = {
        **batch_lineage(
            BATCH,
            data_md5="md5-1.dir",
            git_rev="rev1",
            pool_sha256=POOL_AFTER,
            parent_model_version="1",
            pipeline_run_id="run-2",
            promoted_by="deletion-batch",
        ),
        "source": "unlearned",
        "verdict": "pass",
    }
    return {
        "1": VersionFacts("1", original, datetime(2026, 11, 28, 9, tzinfo=UTC)),
        "2": VersionFacts("2", unlearned, datetime(2026, 11, 28, 11, tzinfo=UTC)),
    }


def sources(
    versions: Mapping[str, VersionFacts] | None = None,
    records: Mapping[str, str] | None = None,
    pools: Mapping[str, str] | None = None,
) -> Sources:
    versions = registry() if versions is None else versions
    records = {BATCH.batch_id: BATCH.model_dump_json()} if records is None else records
    return Sources(
        version=versions.get,
        batch_record=records.get,
        md5_at=DATA_DVC.get,
        run_metrics=lambda run_id: {"cert_certified": 1.0, "cert_control_attack_auc": 0.5, "rte_seconds": 2.5},
        pool_sha256_at=(pools or {"rev0": POOL_BEFORE, "rev1": POOL_AFTER}).__getitem__,
    )


def with_tags(facts: VersionFacts, **tags: str) -> VersionFacts:
    return VersionFacts(facts.version, {**facts.tags, **tags}, facts.created_at)


def test_an_intact_chain_passes_every_check_oldest_first() -> None:
    result = audit_chain("m@champion", "2", sources(), deep=True)

    assert result.ok
    assert [link.version for link in result.links] == ["1", "2"]
    # parents 2, batch record 1, parent pool 1, data versions 1 + 2, pools 2
    assert result.checks == 9
    assert result.metrics["2"] == {"cert_certified": 1.0, "cert_control_attack_auc": 0.5, "rte_seconds": 2.5}
    assert render(result).splitlines()[-1] == "OK: 9 recorded facts re-checked, all match"


def test_the_document_lists_requests_requesters_and_key_metrics() -> None:
    document = audit_document(audit_chain("m@champion", "2", sources()))

    second = document["chain"][1]
    assert second["batch"]["request_ids"] == ["r1", "r2"]
    assert second["batch"]["requesters"] == ["alice", "bob"]
    assert second["batch"]["forget_samples"] == 2
    assert second["metrics"] == {"cert_certified": 1.0, "rte_seconds": 2.5}  # the control's metrics left out
    assert second["promoted_by"] == "deletion-batch"
    assert document["chain"][0]["promoted_by"] == "deletion-batch"  # the default for versions without the tag
    assert second["retrain_audit"] == {}
    assert document["ok"] is True


def test_a_tampered_batch_record_is_named() -> None:
    tampered = BATCH.model_copy(update={"forget_ids": FORGET[:1]}).model_dump_json()

    result = audit_chain("m@champion", "2", sources(records={"batch-1": tampered}))

    assert not result.ok
    assert {problem.check for problem in result.problems} == {"manifest"}
    assert all(problem.version == "2" for problem in result.problems)
    assert "batch batch-1: its forget IDs hash to" in result.problems[0].message
    assert "FAIL: 2 recorded facts missing or not matching" in render(result)


def test_a_manifest_tag_that_does_not_match_the_record_is_named() -> None:
    versions = registry()
    versions["2"] = with_tags(versions["2"], forget_manifest_sha256="0" * 64)

    result = audit_chain("m@champion", "2", sources(versions=versions))

    assert [problem.message.split(":")[0] for problem in result.problems] == ["batch batch-1"]
    assert "manifest sha256 tag 000000000000" in result.problems[0].message


def test_request_tags_that_differ_from_the_record_are_named() -> None:
    versions = registry()
    versions["2"] = with_tags(versions["2"], forget_request_ids="r1", forget_requesters="alice")

    messages = [problem.message for problem in audit_chain("m", "2", sources(versions=versions)).problems]

    assert len(messages) == 2
    assert "honours requests r1,r2" in messages[0]
    assert "requesters alice,bob" in messages[1]


def test_a_missing_or_unreadable_batch_record_is_named() -> None:
    missing = audit_chain("m", "2", sources(records={}))
    unreadable = audit_chain("m", "2", sources(records={"batch-1": "{"}))

    assert missing.problems[0].message == "batch batch-1: batch record data/batches/batch-1.json is missing"
    assert unreadable.problems[0].check == "batch-record"
    assert "is unreadable" in unreadable.problems[0].message


def test_a_missing_parent_stops_the_chain_and_is_named() -> None:
    versions = registry()
    del versions["1"]

    result = audit_chain("m", "2", sources(versions=versions))

    assert [link.version for link in result.links] == ["2"]
    assert [(p.version, p.check, p.message) for p in result.problems] == [
        ("2", "parent", "names parent version 1, which is not in the registry")
    ]


def test_a_parent_loop_is_reported_not_followed() -> None:
    versions = registry()
    versions["1"] = with_tags(versions["1"], parent_model_version="2")

    links, problems = walk("2", versions.get)

    assert [link.version for link in links] == ["1", "2"]
    assert problems[0].message == "the parent_model_version tags loop back to version 2"


def test_a_data_version_that_does_not_match_data_dvc_is_named() -> None:
    versions = registry()
    versions["2"] = with_tags(versions["2"], data_md5="md5-9.dir")
    versions["1"] = with_tags(versions["1"], git_rev="gone")

    problems = audit_chain("m", "2", sources(versions=versions)).problems

    assert [(p.version, p.check) for p in problems] == [("1", "data-version"), ("2", "data-version")]
    assert "git revision gone (git_rev) has no data.dvc" in problems[0].message
    assert "data.dvc at rev1 (git_rev) records md5 md5-1.dir, the tag data_md5 says md5-9.dir" in problems[1].message


def test_a_batch_planned_on_another_pool_than_the_parent_serves_is_named() -> None:
    versions = registry()
    versions["1"] = with_tags(versions["1"], pool_sha256="x" * 64)

    problems = audit_chain("m", "2", sources(versions=versions)).problems

    assert [p.check for p in problems] == ["parent-pool"]
    assert "but parent version 1 serves pool xxxxxxxxxxxx" in problems[0].message


def test_the_deep_check_compares_each_pool_fingerprint() -> None:
    shallow = audit_chain("m", "2", sources(pools={"rev0": POOL_BEFORE, "rev1": "z" * 64}))
    deep = audit_chain("m", "2", sources(pools={"rev0": POOL_BEFORE, "rev1": "z" * 64}), deep=True)

    assert shallow.ok
    assert [(p.version, p.check) for p in deep.problems] == [("2", "pool")]


def test_an_unreadable_pool_is_a_problem_not_a_crash() -> None:
    def unreadable(rev: str) -> str:
        raise RuntimeError(f"cannot read data/digits/pool.npz at {rev}")

    base = sources()
    broken = Sources(base.version, base.batch_record, base.md5_at, base.run_metrics, unreadable)

    problems = audit_chain("m", "2", broken, deep=True).problems

    assert len(problems) == 2
    assert "cannot be read" in problems[0].message


def test_a_purged_data_version_is_a_note_of_the_deep_check_not_a_problem() -> None:
    def unreadable(rev: str) -> str:
        raise RuntimeError(f"data version {rev} was purged")

    base = sources()
    purged = {"rev0": "data version rev0 was purged on 2026-12-30 (purges/purge-1.json)"}
    after_purge = Sources(base.version, base.batch_record, base.md5_at, base.run_metrics, unreadable, purged.get)
    erasure = ({"batch_id": "batch-1", "complete": True, "line": "batch batch-1: erasure complete: ..."},)

    result = replace(audit_chain("m@champion", "2", after_purge, deep=True), erasure=erasure)

    assert [(n.version, n.check) for n in result.notes] == [("1", "pool")]
    assert [(p.version, p.check) for p in result.problems] == [("2", "pool")]  # rev1 was not purged: a problem
    assert result.checks == audit_chain("m@champion", "2", base, deep=True).checks - 1  # the note is no check
    text = render(result)
    assert "  note           pool not re-read: data version rev0 was purged on 2026-12-30" in text
    assert "erasure of the forgotten samples from the stored data versions:\n  batch batch-1: erasure complete" in text
    assert audit_document(result)["erasure"] == [dict(erasure[0])]


# -- when a request or sample is honoured --------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["r1", "r2"])
def test_a_processed_request_is_honoured_since_the_version_naming_its_batch(request_id: str) -> None:
    links = list(registry().values())

    answer = request_honoured(request_id, "processed", [BATCH], links, "m@champion")

    assert (answer.status, answer.batch, answer.version, answer.ok) == ("honoured", "batch-1", "2", True)
    assert "m@champion honours it since version 2" in answer.detail


def test_a_model_trained_from_scratch_after_the_batch_honours_it() -> None:
    retrained = VersionFacts("5", {"source": "retrain"}, datetime(2026, 11, 29, tzinfo=UTC))
    too_early = VersionFacts("4", {"source": "original"}, datetime(2026, 11, 27, tzinfo=UTC))

    assert first_honouring([too_early, retrained], BATCH) == retrained
    assert first_honouring([too_early], BATCH) is None


def test_a_batch_the_serving_chain_does_not_honour_is_a_failure() -> None:
    answer = request_honoured("r1", "processed", [BATCH], [registry()["1"]], "m@champion")

    assert answer.status == "not-served"
    assert not answer.ok


@pytest.mark.parametrize(
    ("state", "status"),
    [("pending", "pending"), ("rejected", "rejected"), ("unknown", "unknown"), ("processed", "not-served")],
)
def test_a_request_no_batch_names_is_pending_rejected_or_unknown(state: str, status: str) -> None:
    answer = request_honoured("r9", state, [BATCH], list(registry().values()), "m", reasons=["ID not in pool"])

    assert answer.status == status
    assert answer.version is None
    assert answer.reasons == (("ID not in pool",) if state == "rejected" else ())


def test_samples_are_forgotten_since_their_batch_or_still_in_the_pool() -> None:
    links = list(registry().values())

    forgotten = sample_honoured(FORGET[1], [BATCH], links, "m", in_pool=False)
    elsewhere = sample_honoured("digits/test/00009", [BATCH], links, "m", in_pool=False)
    kept = sample_honoured("digits/train/00003", [BATCH], links, "m", in_pool=True)
    unknown = sample_honoured("digits/train/99999", [BATCH], links, "m", in_pool=False)

    assert (forgotten.status, forgotten.version) == ("honoured", "2")
    assert elsewhere.status == "honoured"
    assert "never a training sample" in elsewhere.detail
    assert kept.status == "in-pool"
    assert "still in the training pool" in kept.detail
    assert unknown.status == "not-in-pool"
