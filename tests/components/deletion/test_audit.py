"""The Retrain audit's policy: the chain, what a from-scratch model is, idempotency and the audit-due count."""

from __future__ import annotations

import pytest

from components.deletion import audit
from components.verification.gates import GateCheck, Verdict

POOL = "a" * 64


def registry(*versions: dict[str, str]) -> dict[str, dict[str, str]]:
    """Versions 1..n with the given tags; each version after the first names its predecessor as parent."""
    tags = {}
    for number, extra in enumerate(versions, start=1):
        parent = {"parent_model_version": str(number - 1)} if number > 1 else {}
        tags[str(number)] = {**parent, **extra}
    return tags


def links_of(tags: dict[str, dict[str, str]], version: str) -> list[audit.ChainLink]:
    return audit.chain(version, lambda v: tags[v])


def test_chain_runs_from_the_original_to_the_version_asked_for() -> None:
    tags = registry({"source": "original"}, {"source": "unlearned"}, {"source": "unlearned"})
    assert [link.version for link in links_of(tags, "3")] == ["1", "2", "3"]
    assert [link.version for link in links_of(tags, "2")] == ["1", "2"]


def test_a_parent_loop_is_reported_not_followed_forever() -> None:
    tags = {"1": {"source": "unlearned", "parent_model_version": "2"}, "2": {"parent_model_version": "1"}}
    with pytest.raises(ValueError, match="loop back"):
        audit.chain("2", lambda v: tags[v])


def test_batches_are_counted_from_the_last_model_trained_from_scratch() -> None:
    tags = registry(
        {"source": "original"},
        {"source": "unlearned"},
        {"source": "retrain"},
        {"source": "unlearned"},
        {"source": "unlearned"},
    )
    links = links_of(tags, "5")
    assert audit.last_from_scratch(links).version == "3"
    assert audit.batches_since_scratch(links) == 2
    assert audit.batches_since_scratch(links[:3]) == 0


def test_a_chain_without_a_from_scratch_model_is_an_error() -> None:
    links = [audit.ChainLink("7", {"source": "unlearned"})]
    with pytest.raises(ValueError, match="no model trained from scratch"):
        audit.last_from_scratch(links)


def test_audit_is_due_after_k_unaudited_unlearned_batches() -> None:
    tags = registry({"source": "original"}, {"source": "unlearned"}, {"source": "unlearned"})
    links = links_of(tags, "3")
    assert audit.needs_audit(links, 2)
    assert not audit.needs_audit(links, 3)
    assert not audit.needs_audit(links, 0)  # schedule only
    tags["2"]["audit_verdict"] = "pass"  # an audit resets the count
    assert not audit.needs_audit(links_of(tags, "3"), 2)
    assert audit.needs_audit(links_of(tags, "3"), 1)


def test_a_version_is_audited_once_per_retained_pool() -> None:
    record = audit.exact_record(audit.ChainLink("1", {"source": "original"}), POOL, "2026-12-02T00:00:00+00:00")
    tags = record.tags()
    assert audit.already_audited(tags, POOL)
    assert not audit.already_audited(tags, "b" * 64)
    assert not audit.already_audited({}, POOL)
    assert set(tags) == set(audit.AUDIT_TAGS)
    assert all(isinstance(value, str) for value in tags.values())


def test_a_compared_record_carries_the_gates_outcome() -> None:
    failing = Verdict((GateCheck("gap_laf", 7.5, 5.0, False), GateCheck("test_drop", 0.1, 3.0, True)))
    link = audit.ChainLink("4", {"source": "unlearned"})
    record = audit.compared_record(link, POOL, failing, 7.5, 3, "t", "ref/2", "run")
    assert record.outcome == "fail"
    assert record.detail.startswith("FAIL")
    assert record.tags()["audit_gap_laf"] == "7.5000"
    passing = Verdict((GateCheck("gap_laf", 1.0, 5.0, True),))
    assert audit.compared_record(link, POOL, passing, 1.0, 3, "t", "ref/2", None).outcome == "pass"


def test_history_rows_name_every_version_and_its_audit() -> None:
    tags = registry({"source": "original"}, {"source": "unlearned", "forget_batch_id": "b1", "verdict": "pass"})
    rows = audit.history(links_of(tags, "2"))
    assert [(row["version"], row["source"], row["batch"], row["audit"]) for row in rows] == [
        ("1", "original", "–", "not audited"),
        ("2", "unlearned", "b1", "not audited"),
    ]


def test_a_purged_scratch_version_is_one_line_naming_the_purge() -> None:
    scratch = audit.ChainLink("1", {"source": "original", "git_rev": "a" * 40})
    served = audit.ChainLink("3", {"source": "unlearned", "parent_model_version": "2"})

    line = audit.purged_line(served, scratch, {"purged_at": "2026-12-30T10:00:00+00:00", "record": "purge-1.json"})

    assert line.startswith(
        "not audited: version 3 cannot be compared with Retrain: the samples forgotten since version 1 (original) "
        f"were in data version {'a' * 12}, purged on 2026-12-30 (purges/purge-1.json)"
    )
    assert len(line.splitlines()) == 1
