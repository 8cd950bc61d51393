"""Deletion policy as plain functions (no Prefect): batch planning with rejections and first-come deferral, model
reuse, the reference key and the promotion decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from components.deletion import policy
from components.deletion.admission import AdmissionLimits
from components.deletion.store import DataStore, StoredDataset
from components.verification.certification import Certification, CheckResult
from components.verification.gates import GateCheck, Verdict
from tests.components.deletion.test_store import (
    NAME,
    make_request,
    pool_ids_of_class,
    register_toy_datasets,
    request_document,
    toy_bundle,
)

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def stored(tmp_path: Path) -> tuple[DataStore, StoredDataset]:
    store = DataStore(tmp_path / "data")
    store.materialise(toy_bundle(), 0.2, 0)
    return store, store.load(toy_bundle().name)


def test_batch_limit_is_the_floor_of_the_fraction() -> None:
    assert policy.batch_limit(0.5, 25) == 12
    assert policy.batch_limit(1.0, 25) == 25


def test_plan_batch_takes_every_valid_request_and_rejects_the_bad_one(
    stored: tuple[DataStore, StoredDataset],
) -> None:
    # given two valid requests and one naming an unknown ID
    store, current = stored
    pool = current.pool.ids.tolist()
    pending = [
        make_request("a", pool[:2]),
        make_request("b", ["toy/train/99999"]),
        make_request("c", pool[2:4]),
    ]
    # when
    plan = policy.plan_batch(store, current, pending, 0.5, "md5-before", "rev-before", now=NOW)
    # then
    assert plan.batch is not None
    assert plan.batch.request_ids == ("a", "c")
    assert set(plan.batch.forget_ids) == set(pool[:4])
    assert (plan.batch.parent_data_md5, plan.batch.parent_git_rev) == ("md5-before", "rev-before")
    assert [rejection.request.request_id for rejection in plan.rejected] == ["b"]
    assert any("expect_column_values_to_be_in_set" in reason for reason in plan.rejected[0].reasons)
    assert plan.deferred == ()


def test_requests_valid_alone_but_over_the_limit_together_are_deferred_first_come_first_served(
    stored: tuple[DataStore, StoredDataset],
) -> None:
    # given: a limit of 6 samples; three requests of 4, 4 and 2 samples
    store, current = stored
    pool = current.pool.ids.tolist()
    limit = policy.batch_limit(0.25, len(pool))
    pending = [make_request("first", pool[:4]), make_request("second", pool[4:8]), make_request("third", pool[8:10])]
    assert 4 <= limit < 8
    # when
    plan = policy.plan_batch(store, current, pending, 0.25, now=NOW)
    # then: the first and (fitting) third join; the second waits for the next batch; nothing is rejected
    assert plan.batch is not None
    assert plan.batch.request_ids == ("first", "third")
    assert len(plan.batch.forget_ids) <= limit
    assert [request.request_id for request in plan.deferred] == ["second"]
    assert plan.rejected == ()


def test_plan_batch_without_a_valid_request_plans_nothing(stored: tuple[DataStore, StoredDataset]) -> None:
    store, current = stored
    plan = policy.plan_batch(store, current, [make_request("bad", ["nope"])], 0.5, now=NOW)
    assert plan.batch is None
    assert len(plan.rejected) == 1


def test_plan_batch_keeps_each_requests_validation_under_gx_outputs(
    stored: tuple[DataStore, StoredDataset], tmp_path: Path
) -> None:
    store, current = stored
    good = make_request("good", current.pool.ids[:2].tolist())
    plan = policy.plan_batch(store, current, [good, make_request("bad", ["nope"])], 0.5, now=NOW, gx_outputs=tmp_path)
    # the request contract's result of each request is kept under its request ID, failed or not
    kept = {path.relative_to(tmp_path / "validations" / "forget_request").parts[0]: path for path in
            (tmp_path / "validations" / "forget_request").rglob("*.json")}  # fmt: skip
    assert set(kept) == {"good", "bad"}
    assert json.loads(kept["bad"].read_text())["success"] is False
    assert plan.rejected[0].reasons[0].startswith("expect_column_values_to_be_in_set(id")
    assert (tmp_path / "data_docs" / "index.html").is_file()


def test_a_whole_class_request_is_a_class_level_batch(stored: tuple[DataStore, StoredDataset]) -> None:
    store, current = stored
    plan = policy.plan_batch(store, current, [make_request("cls", pool_ids_of_class(current, 1))], 0.5, now=NOW)
    assert plan.batch is not None
    assert plan.batch.forgotten_classes == (1,)


def test_serves_pool_compares_the_pool_fingerprint(stored: tuple[DataStore, StoredDataset]) -> None:
    _, current = stored
    fingerprint = policy.pool_fingerprint(current)
    assert policy.serves_pool({"pool_sha256": fingerprint}, fingerprint)
    assert not policy.serves_pool({"pool_sha256": "other"}, fingerprint)
    assert not policy.serves_pool({}, fingerprint)


def test_reference_key_holds_the_pool_and_every_recipe_tag() -> None:
    tags = {tag: f"{tag}-value" for tag in policy.REFERENCE_TAGS}
    key = policy.reference_key("abc", tags)
    assert key == {"pool_sha256": "abc", **tags}


def test_reference_key_refuses_a_partial_set_of_recipe_tags() -> None:
    tags = {tag: "x" for tag in policy.REFERENCE_TAGS if tag != "training_code_sha256"}
    with pytest.raises(ValueError, match="missing training_code_sha256"):
        policy.reference_key("abc", tags)


@pytest.mark.parametrize(("passed", "source"), [(True, "unlearned"), (False, "retrain")])
def test_decide_promotion_follows_the_verdict(passed: bool, source: str) -> None:
    verdict = Verdict(checks=(GateCheck("gap_laf", 1.0 if passed else 9.0, 5.0, passed),))
    decision = policy.decide_promotion(verdict)
    assert decision.source == source
    assert decision.verdict == ("pass" if passed else "fail")


def test_a_batch_of_exactly_one_whole_class_is_that_class_scenario() -> None:
    assert policy.tuned_scenario((3,), np.array([3, 3, 3])) == "class:3"


@pytest.mark.parametrize(
    ("forgotten", "labels"),
    [((), np.array([1, 2])), ((3,), np.array([3, 1])), ((1, 2), np.array([1, 2]))],
)
def test_other_batches_have_no_tuned_scenario(forgotten: tuple[int, ...], labels: np.ndarray) -> None:
    assert policy.tuned_scenario(forgotten, labels) is None


# -- the promotion decision by verify mode -----------------------------------------------------------------------


def check(name: str, passed: bool, value: float = 1.0) -> CheckResult:
    return CheckResult(name, value, value - 1.0, value + 1.0, 5.0, passed, "")


def certification(candidate_passes: bool, control_passes: bool = False) -> Certification:
    """A candidate passing or failing ``membership``; a control that fails it (measurable) unless told otherwise."""
    return Certification(
        candidate_checks=(check("membership", candidate_passes), check("utility_drop", True)),
        control_checks=(
            check("membership", control_passes, 0.5 if control_passes else 20.0),
            check("utility_drop", True),
        ),
        candidate_attack_auc=0.5,
        control_attack_auc=0.7,
    )


def gates(passed: bool) -> Verdict:
    return Verdict(checks=(GateCheck("gap_laf", 1.0 if passed else 9.0, 5.0, passed),))


@pytest.mark.parametrize(
    ("mode", "certified", "gates_pass", "source"),
    [
        ("certify", True, None, "unlearned"),
        ("certify", False, None, "retrain"),
        ("reference", None, True, "unlearned"),
        ("reference", None, False, "retrain"),
        ("both", True, True, "unlearned"),
        ("both", True, False, "retrain"),
        ("both", False, True, "retrain"),
        ("both", False, False, "retrain"),
    ],
)
def test_decide_promotes_the_unlearned_model_only_when_every_check_of_the_mode_passes(
    mode: policy.VerifyMode, certified: bool | None, gates_pass: bool | None, source: str
) -> None:
    cert = None if certified is None else certification(certified)
    verdict = None if gates_pass is None else gates(gates_pass)
    decision = policy.decide(mode, cert, verdict)
    assert decision.source == source
    assert decision.verdict == ("pass" if source == "unlearned" else "fail")
    line = policy.verdict_line(mode, cert, verdict)
    assert line.startswith("PASS" if source == "unlearned" else "FAIL")


def test_certify_mode_ignores_a_verdict_it_did_not_ask_for() -> None:
    # a failed reference verdict does not overrule a certification in certify mode
    assert policy.decide("certify", certification(True), gates(False)).source == "unlearned"


def test_reasons_name_what_failed() -> None:
    decision = policy.decide("both", certification(False), gates(False))
    assert "certification failed: FAIL" in decision.reason
    assert "gap_laf = 9.00 exceeds 5.00" in decision.reason


def test_a_no_op_that_passes_where_the_control_passes_is_certified_as_not_measurable() -> None:
    # given a candidate equal to a control that passes every check (the checks have no power at this size)
    cert = certification(True, control_passes=True)
    cert = Certification(cert.control_checks, cert.control_checks, 0.5, 0.5)
    # then it is promoted, and the line says the batch was not measurable
    assert policy.decide("certify", cert, None).source == "unlearned"
    assert policy.verdict_line("certify", cert, None).startswith("PASS: not measurable")


@pytest.mark.parametrize(
    ("mode", "cert", "verdict"),
    [("certify", None, None), ("both", None, "gates"), ("both", "cert", None), ("reference", "cert", None)],
)
def test_decide_refuses_a_mode_without_its_evidence(
    mode: policy.VerifyMode, cert: str | None, verdict: str | None
) -> None:
    with pytest.raises(ValueError, match="needs"):
        policy.decide(mode, certification(True) if cert else None, gates(True) if verdict else None)


def test_needs_reference_only_for_a_failed_certification_in_certify_mode() -> None:
    assert not policy.needs_reference("certify", certification(True))
    assert policy.needs_reference("certify", certification(False))
    assert policy.needs_reference("reference", None)
    assert policy.needs_reference("both", certification(True))


def test_two_admitted_requests_over_the_limit_together_never_deadlock(
    stored: tuple[DataStore, StoredDataset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a batch limit of floor(0.25 * 24) = 6 and two requests of 4 samples, each admitted at submit
    register_toy_datasets(monkeypatch)
    store, current = stored
    pool = current.pool.ids.tolist()
    limits = AdmissionLimits(max_batch_fraction=0.25)
    for request_id, ids in (("first", pool[:4]), ("second", pool[4:8])):
        path = tmp_path / f"{request_id}.json"
        path.write_text(json.dumps(request_document(request_id, ids)))
        _, added = store.submit(path, limits, now=NOW)
        assert added

    # when the first batch is planned and applied, then it takes the first request and defers the second
    first = policy.plan_batch(store, current, store.pending(NAME), 0.25, now=NOW)
    assert first.batch is not None
    assert first.batch.request_ids == ("first",)
    assert [r.request_id for r in first.deferred] == ["second"]
    current = store.apply_batch(current, first.batch)

    # and the next batch (limit floor(0.25 * 20) = 5) takes the second; nothing is left pending or rejected
    second = policy.plan_batch(store, current, store.pending(NAME), 0.25, now=NOW + timedelta(hours=1))
    assert second.batch is not None
    assert second.batch.request_ids == ("second",)
    assert (second.deferred, second.rejected) == ((), ())
    store.apply_batch(current, second.batch)
    assert store.pending(NAME) == []


@pytest.mark.parametrize("method", sorted(policy.REFERENCE_ROWS))
def test_a_serving_method_named_like_a_reference_row_gets_its_own_candidate_row(method: str) -> None:
    # the batch tables hold the candidate beside the original and Retrain rows: no name may stand for two models
    row = policy.candidate_row(method)
    assert row not in policy.REFERENCE_ROWS
    assert row.startswith(method)


def test_an_unlearning_method_is_its_own_candidate_row() -> None:
    assert policy.candidate_row("mixunlearn_agnostic") == "mixunlearn_agnostic"
