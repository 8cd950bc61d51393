"""The batch ledger: pure stage transitions, atomic files, the unfinished batch, and requests "in batch"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from components.data.types import DataError
from components.deletion import ledger
from components.deletion.ledger import STAGES, BatchLedger
from components.deletion.store import DataStore, ForgetBatch
from tests.components.deletion.test_store import make_request, place_pending, store  # noqa: F401

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def a_batch(batch_id: str = "batch-1", dataset: str = "toy", minutes: int = 0) -> ForgetBatch:
    return ForgetBatch(
        batch_id=batch_id,
        dataset=dataset,
        created_at=T0 + timedelta(minutes=minutes),
        request_ids=("req-1",),
        requesters=("owner",),
        forget_ids=("toy/train/00001",),
        sha256="0" * 64,
        parent_pool_sha256="1" * 64,
        parent_git_rev="a" * 40,
    )


def test_plan_starts_at_planned_with_the_parent_model() -> None:
    state = ledger.plan(a_batch(), "3", now=T0)

    assert state.stage == "planned"
    assert state.parent_model_version == "3"
    assert [t.stage for t in state.history] == ["planned"]
    assert not state.finished


def test_advance_walks_every_stage_in_order_and_records_facts() -> None:
    # given a planned batch
    state = ledger.plan(a_batch(), "1", now=T0)

    # when every stage is recorded in turn
    for step, stage in enumerate(STAGES[1:], start=1):
        facts = {"data_md5": "abc.dir", "git_rev": "b" * 40} if stage == "snapshotted" else {}
        state = ledger.advance(state, stage, now=T0 + timedelta(seconds=step), **facts)

    # then the batch is finished, with the whole history and the facts kept
    assert state.finished
    assert [t.stage for t in state.history] == list(STAGES)
    assert (state.data_md5, state.git_rev) == ("abc.dir", "b" * 40)
    assert state.reached("verified")


def test_advance_to_a_reached_stage_changes_nothing() -> None:
    state = ledger.advance(ledger.plan(a_batch(), "1", now=T0), "data_deleted", now=T0)

    assert ledger.advance(state, "planned") is state
    assert ledger.advance(state, "data_deleted", data_md5="x") is state


@pytest.mark.parametrize("stage", ["snapshotted", "unlearned", "promoted", "reported"])
def test_advance_never_skips_a_stage(stage: ledger.Stage) -> None:
    with pytest.raises(ValueError, match="cannot be"):
        ledger.advance(ledger.plan(a_batch(), "1"), stage)


def test_advance_refuses_unknown_facts() -> None:
    with pytest.raises(ValueError, match="unknown batch facts: colour"):
        ledger.advance(ledger.plan(a_batch(), "1"), "data_deleted", colour="red")


def test_ledger_round_trips_and_finds_the_unfinished_batch(tmp_path: Path) -> None:
    # given a finished batch and an unfinished one of the same dataset, and one of another dataset
    book = BatchLedger(tmp_path)
    done = ledger.plan(a_batch("batch-done"), "1")
    for stage in STAGES[1:]:
        done = ledger.advance(done, stage)
    book.save(done)
    open_state = book.save(ledger.plan(a_batch("batch-open", minutes=5), "2"))
    book.save(ledger.plan(a_batch("batch-other", dataset="other"), "1"))

    # then the unfinished one is found, as written
    assert book.unfinished("toy") == open_state
    assert book.load("batch-done") == done
    assert [s.batch.batch_id for s in book.states("toy")] == ["batch-done", "batch-open"]
    assert book.path("batch-open") == tmp_path / ".mixunlearn" / "batches" / "batch-open.json"


def test_record_writes_the_new_stage(tmp_path: Path) -> None:
    book = BatchLedger(tmp_path)
    state = book.save(ledger.plan(a_batch(), "1"))

    book.record(state, "data_deleted")

    assert book.load("batch-1").stage == "data_deleted"  # type: ignore[union-attr]


def test_two_unfinished_batches_are_a_data_error(tmp_path: Path) -> None:
    book = BatchLedger(tmp_path)
    book.save(ledger.plan(a_batch("batch-a"), "1"))
    book.save(ledger.plan(a_batch("batch-b", minutes=1), "1"))

    with pytest.raises(DataError, match="several unfinished batches of toy"):
        book.unfinished("toy")


def test_unreadable_ledger_is_a_data_error(tmp_path: Path) -> None:
    book = BatchLedger(tmp_path)
    book.directory.mkdir(parents=True)
    (book.directory / "batch-x.json").write_text("{}")

    with pytest.raises(DataError, match=r"batch ledger .* is unreadable"):
        book.unfinished("toy")


def test_a_request_is_in_batch_until_the_batch_is_reported(store: DataStore, tmp_path: Path) -> None:  # noqa: F811
    # given a pending request whose batch is planned, applied and then finished
    request = place_pending(store, make_request("req-1", ["toy/train/00001"]))
    stored = store.load("toy")
    batch = store.plan_batch(stored, [request])
    book = BatchLedger(tmp_path)
    state = book.save(ledger.plan(batch, "1"))

    # then it is in the batch while planned, and after the data store filed it as processed
    assert book.request_state(store, "req-1") == f"in batch {batch.batch_id}"
    store.apply_batch(stored, batch)
    state = book.record(state, "data_deleted")
    assert store.known_request("req-1")[0] == "processed"  # type: ignore[index]
    assert book.request_state(store, "req-1") == f"in batch {batch.batch_id}"

    # and processed once the batch is reported
    for stage in STAGES[2:]:
        state = book.record(state, stage)
    assert book.request_state(store, "req-1") == "processed"
    assert book.request_state(store, "req-unknown") is None
