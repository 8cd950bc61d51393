"""Admission control at submit: every refusal is one ``DataError`` line naming the file and the field, and nothing
is written under ``data/requests``; the same request again is "already known", a changed one a conflict.

The toy dataset of ``test_store`` (24 pool, 6 validation and 6 test samples) is materialised and registered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from components.data.types import DataError
from components.deletion import admission
from components.deletion.admission import AdmissionLimits
from components.deletion.store import DataStore, ForgetRequest
from tests.components.deletion.test_store import (
    NAME,
    ids_of,
    make_request,
    place_pending,
    register_toy_datasets,
    request_document,
    toy_bundle,
)

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
LIMITS = AdmissionLimits()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataStore:
    """A store with the toy dataset registered and materialised."""
    register_toy_datasets(monkeypatch)
    data = DataStore(tmp_path / "data")
    data.materialise(toy_bundle(), 0.2, 0)
    return data


@pytest.fixture
def request_file(tmp_path: Path) -> Callable[..., Path]:
    """``request_file(**changes)``: a valid toy request (two pool IDs) with ``changes`` applied; ``None`` drops."""

    def write(request_id: str = "req-1", **changes: Any) -> Path:
        document = request_document(request_id, ["toy/train/00000", "toy/train/00001"])
        for key, value in changes.items():
            if value is None:
                del document[key]
            else:
                document[key] = value
        path = tmp_path / "incoming" / f"{request_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document))
        return path

    return write


def requests_written(store: DataStore) -> list[str]:
    folder = store.root / "requests"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def refusal(store: DataStore, path: Path, limits: AdmissionLimits = LIMITS) -> str:
    """Submit ``path``, expecting a refusal; returns the message after checking it is one line naming the file
    and that nothing was written under data/requests."""
    before = requests_written(store)
    with pytest.raises(DataError) as caught:
        store.submit(path, limits, now=NOW)
    message = str(caught.value)
    assert "\n" not in message
    assert "\r" not in message
    assert str(path) in message
    assert requests_written(store) == before
    return message


# -- the accepted case -------------------------------------------------------------------------------------------


def test_a_valid_request_is_admitted_and_queued(store: DataStore, request_file: Callable[..., Path]) -> None:
    # given a valid request naming a pool, a validation and a test sample
    current = store.load(NAME)
    ids = [ids_of(current.pool)[0], ids_of(current.val)[0], ids_of(current.test)[0]]
    # by a requester with non-ASCII letters, at a time with an offset (2 minutes before NOW)
    path = request_file(ids=ids, requester="Zoë Müller-Smith", requested_at="2026-11-28T09:58:00+01:00")

    # when it is submitted, then it is queued
    request, added = store.submit(path, LIMITS, now=NOW)
    assert added is True
    assert requests_written(store) == ["pending/req-1.json"]
    assert store.pending(NAME) == [request]


def test_a_time_within_the_clock_skew_is_admitted(store: DataStore, request_file: Callable[..., Path]) -> None:
    path = request_file(requested_at=(NOW + timedelta(minutes=4)).isoformat())
    _, added = store.submit(path, LIMITS, now=NOW)
    assert added is True


def test_before_materialisation_only_the_form_of_the_ids_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request_file: Callable[..., Path]
) -> None:
    # given a registered dataset that is not materialised yet
    register_toy_datasets(monkeypatch)
    store = DataStore(tmp_path / "empty-data")

    # when a request names a well-formed ID that no data holds, then it is queued
    _, added = store.submit(request_file(ids=["toy/train/99999"]), LIMITS, now=NOW)
    assert added is True

    # and a malformed ID is still refused
    assert "ids: 1 not of the form" in refusal(store, request_file("req-2", ids=["toy/train/x"]))


# -- the file ----------------------------------------------------------------------------------------------------


def test_a_directory_is_refused(store: DataStore, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.json"
    folder.mkdir()
    assert "is a directory" in refusal(store, folder)


def test_an_unreadable_file_is_refused(
    store: DataStore, request_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = request_file()
    real_open = Path.open

    def denied(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    assert "cannot be read: Permission denied" in refusal(store, path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_reading_it(store: DataStore, tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    assert "is not a regular file" in refusal(store, pipe)


def test_non_utf8_bytes_are_refused(store: DataStore, tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps(request_document("req-1", ["toy/train/00000"])).encode()[:-1] + b' "\xe9"}')
    assert "not UTF-8 text" in refusal(store, path)


def test_non_json_is_refused(store: DataStore, tmp_path: Path) -> None:
    path = tmp_path / "yaml.json"
    path.write_text("request_id: req-1\n")
    assert "Invalid JSON" in refusal(store, path)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    store: DataStore, request_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = request_file()
    size = path.stat().st_size
    real_open = Path.open

    def never_for_path(self: Path, *args: Any, **kwargs: Any) -> Any:
        assert self != path, "an oversized request file must not be opened"
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", never_for_path)
    message = refusal(store, path, AdmissionLimits(max_file_bytes=size - 1))
    assert f"file of {size} bytes, more than the limit of {size - 1}" in message


def test_the_default_size_limit_is_16_mib() -> None:
    assert AdmissionLimits().max_file_bytes == 16 * 2**20


# -- dataset and IDs ---------------------------------------------------------------------------------------------


def test_an_unknown_dataset_is_refused(store: DataStore, request_file: Callable[..., Path]) -> None:
    message = refusal(store, request_file(dataset="../toy", ids=["toy/train/00000"]))
    assert "dataset: unknown dataset '../toy'; known datasets:" in message
    assert "digits" in message


@pytest.mark.parametrize(
    "bad_id",
    [
        "../toy/train/00001",
        "toy/train/00001/..",
        "toy/../train/00001",
        "toy/train/0000\n1",
        "toy/train/00001\x00",
        "toy\\train\\00001",
        "toy/val/00001",
        "toy/train/12",
        "/toy/train/00001",
        "toy/train/\u0660\u0660\u0660\u0660\u0661",  # Arabic-Indic digits
    ],
    ids=[
        "parent-prefix",
        "parent-suffix",
        "parent-inside",
        "newline",
        "nul",
        "backslashes",
        "unknown-split",
        "short-index",
        "absolute",
        "non-ascii-digits",
    ],
)
def test_a_malformed_id_is_refused(store: DataStore, request_file: Callable[..., Path], bad_id: str) -> None:
    message = refusal(store, request_file(ids=["toy/train/00000", bad_id]))
    assert "ids: 1 not of the form <dataset>/<train|test>/<digits>" in message
    assert ascii(bad_id) in message


def test_an_id_of_another_dataset_is_refused(store: DataStore, request_file: Callable[..., Path]) -> None:
    message = refusal(store, request_file(ids=["toy/train/00000", "digits/train/00001"]))
    assert "ids: 1 of another dataset than 'toy': 'digits/train/00001'" in message


def test_an_id_not_in_the_current_data_is_refused(store: DataStore, request_file: Callable[..., Path]) -> None:
    message = refusal(store, request_file(ids=["toy/train/00000", "toy/train/99999"]))
    assert "ids: 1 not in the current toy data: 'toy/train/99999'" in message


def test_an_id_forgotten_by_an_earlier_batch_is_refused_naming_the_batch(
    store: DataStore, request_file: Callable[..., Path]
) -> None:
    # given a batch that forgot one pool sample
    current = store.load(NAME)
    gone = ids_of(current.pool)[0]
    batch = store.plan_batch(current, [make_request("earlier", [gone])], now=NOW - timedelta(days=1))
    store.apply_batch(current, batch)

    # when a new request names it again, then the refusal names the batch
    message = refusal(store, request_file("req-2", ids=[gone, ids_of(current.pool)[1]]))
    assert f"ids: 1 already forgotten by batch {batch.batch_id}: {gone!r}" in message


def test_more_ids_than_max_ids_are_refused(store: DataStore, request_file: Callable[..., Path]) -> None:
    path = request_file(ids=ids_of(store.load(NAME).pool)[:3])
    assert "ids: 3 IDs, more than the limit of 2" in refusal(store, path, AdmissionLimits(max_ids=2))


def test_more_ids_than_the_batch_limit_of_the_pool_are_refused(
    store: DataStore, request_file: Callable[..., Path]
) -> None:
    # given a pool of 24 and a batch limit of floor(0.1 * 24) = 2
    path = request_file(ids=ids_of(store.load(NAME).pool)[:3])
    assert "ids: 3 IDs, more than the limit of 2" in refusal(store, path, AdmissionLimits(max_batch_fraction=0.1))


def test_the_id_cap_uses_the_batch_limit_only_when_the_pool_is_known() -> None:
    limits = AdmissionLimits(max_ids=100, max_batch_fraction=0.5)
    assert admission.id_cap(limits, None) == 100
    assert admission.id_cap(limits, 24) == 12
    assert admission.id_cap(limits, 1000) == 100
    assert admission.id_cap(AdmissionLimits(), 24) == 1_000_000


# -- time, requester, reason -------------------------------------------------------------------------------------


def test_a_naive_time_is_refused(store: DataStore, request_file: Callable[..., Path]) -> None:
    message = refusal(store, request_file(requested_at="2026-11-27T08:00:00"))
    assert "requested_at: 2026-11-27T08:00:00 has no time zone" in message


def test_a_time_in_the_future_beyond_the_clock_skew_is_refused(
    store: DataStore, request_file: Callable[..., Path]
) -> None:
    message = refusal(store, request_file(requested_at=(NOW + timedelta(minutes=6)).isoformat()))
    assert "requested_at: 2026-11-28T09:06:00+00:00 is in the future" in message


@pytest.mark.parametrize(
    ("requester", "expected"),
    [
        ("data-owner\n0042", "requester: control characters or line breaks are not allowed"),
        ("owner\x1b[31m", "requester: control characters or line breaks are not allowed"),
        ("owner; rm -rf /", "requester: character(s) '/', ';' not allowed"),
        ("$(whoami)", "requester: character(s) '$', '(', ')' not allowed"),
        ("`id`", "requester: character(s) '`' not allowed"),
        ("a|b", "requester: character(s) '|' not allowed"),
        ("   ", "requester: empty"),
        ("x" * 201, "requester: 201 characters, more than the limit of 200"),
    ],
    ids=["newline", "escape", "semicolon", "subshell", "backtick", "pipe", "blank", "too-long"],
)
def test_a_bad_requester_is_refused(
    store: DataStore, request_file: Callable[..., Path], requester: str, expected: str
) -> None:
    assert expected in refusal(store, request_file(requester=requester))


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("GDPR\nArt. 17", "reason: control characters or line breaks are not allowed (found '\\n')"),
        ("tab\there", "reason: control characters or line breaks are not allowed"),
        ("\u2028", "reason: empty"),
        ("y" * 2001, "reason: 2001 characters, more than the limit of 2000"),
    ],
    ids=["newline", "tab", "blank", "too-long"],
)
def test_a_bad_reason_is_refused(
    store: DataStore, request_file: Callable[..., Path], reason: str, expected: str
) -> None:
    assert expected in refusal(store, request_file(reason=reason))


def test_a_reason_of_2000_printable_characters_and_punctuation_is_admitted(
    store: DataStore, request_file: Callable[..., Path]
) -> None:
    reason = ("Art. 17(1)(b) GDPR; consent withdrawn — «all» samples & $data! " * 40)[:2000]
    _, added = store.submit(request_file(reason=reason), LIMITS, now=NOW)
    assert added is True


def test_every_reason_is_listed_on_the_one_line(store: DataStore, request_file: Callable[..., Path]) -> None:
    message = refusal(
        store, request_file(requester="a;b", reason="x\ny", requested_at="2026-11-27T08:00:00", ids=["toy/x"])
    )
    for field in ("requested_at:", "requester:", "reason:", "ids:"):
        assert field in message


# -- re-submission -----------------------------------------------------------------------------------------------


def test_the_same_request_again_is_already_known(store: DataStore, request_file: Callable[..., Path]) -> None:
    path = request_file()
    store.submit(path, LIMITS, now=NOW)

    request, added = store.submit(path, LIMITS, now=NOW)

    assert added is False
    assert requests_written(store) == ["pending/req-1.json"]
    assert ForgetRequest.load(store.pending_dir / "req-1.json") == request


@pytest.mark.parametrize("state", ["pending", "processed", "rejected"])
def test_a_known_request_id_with_different_content_is_a_conflict(
    store: DataStore, request_file: Callable[..., Path], state: str
) -> None:
    # given request req-1 recorded as pending, processed or rejected
    current = store.load(NAME)
    request, _ = store.submit(request_file(), LIMITS, now=NOW)
    if state == "processed":
        store.apply_batch(current, store.plan_batch(current, [request], now=NOW))
    elif state == "rejected":
        store.reject(request, ["some reason"])
    before = {p: p.read_bytes() for p in (store.root / "requests").rglob("*.json")}

    # when a different request with the same ID is submitted
    message = refusal(store, request_file(ids=["toy/train/00002"]))

    # then it is a conflict naming the state, and the recorded request is unchanged
    assert f"request_id: req-1 is already {state} with different content" in message
    assert {p: p.read_bytes() for p in (store.root / "requests").rglob("*.json")} == before


@pytest.mark.parametrize("state", ["processed", "rejected"])
def test_the_same_request_again_after_its_batch_is_already_known(
    store: DataStore, request_file: Callable[..., Path], state: str
) -> None:
    # given req-1 honoured by a batch (its IDs are forgotten now) or rejected
    current = store.load(NAME)
    path = request_file()
    request, _ = store.submit(path, LIMITS, now=NOW)
    if state == "processed":
        store.apply_batch(current, store.plan_batch(current, [request], now=NOW))
    else:
        store.reject(request, ["some reason"])

    # when the same file is submitted again, then it is known, not refused, and not queued again
    _, added = store.submit(path, LIMITS, now=NOW)
    assert added is False
    assert store.pending(NAME) == []


def test_check_submission_writes_nothing(store: DataStore, request_file: Callable[..., Path]) -> None:
    request, new = store.check_submission(request_file(), LIMITS, now=NOW)
    assert (request.request_id, new) == ("req-1", True)
    assert requests_written(store) == []


# -- hand-placed requests ----------------------------------------------------------------------------------------


def test_pending_sorts_a_hand_placed_naive_time_as_utc(store: DataStore) -> None:
    # given an admitted request and one placed in pending by hand with a naive time, an hour earlier
    place_pending(store, make_request("aware", ["toy/train/00000"], requested_at="2026-11-27T09:00:00+00:00"))
    place_pending(store, make_request("naive", ["toy/train/00001"], requested_at="2026-11-27T08:00:00"))

    # when the pending requests are listed, then there is no TypeError and the naive one counts as UTC
    assert [r.request_id for r in store.pending(NAME)] == ["naive", "aware"]


# -- the pure checks ---------------------------------------------------------------------------------------------


def test_the_pure_checks_return_no_reason_for_a_valid_request() -> None:
    assert admission.dataset_problems("toy", {"toy"}) == []
    assert admission.time_problems(NOW - timedelta(days=1), NOW, 300) == []
    assert admission.text_problems("data.owner+0042@example.org", "GDPR Art. 17", LIMITS) == []
    ids = ["toy/train/00001", "toy/test/00002"]
    assert admission.id_problems("toy", ids, 10, set(ids)) == []
