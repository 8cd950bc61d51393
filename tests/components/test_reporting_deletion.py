"""The deletion report (components/reporting.py): verdict table, serving model, metrics beside Retrain, lineage.

(The benchmark side of the same module is tested in test_reporting.py.)
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from components.deletion.store import ForgetBatch
from components.reporting import DeletionOutcome, verdict_table
from components.reporting import render_deletion_report as render_markdown
from components.reporting import write_deletion_report as write_report
from components.verification.gates import GateConfig, evaluate_gates

MODEL, ALIAS = "mixunlearn-digits", "champion"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

RETRAIN = {
    "train_r": 93.25,
    "train_f": 91.5,
    "test": 92.75,
    "test_r": None,
    "test_f": None,
    "asr": 54.5,
    "ua": 8.5,
    "ra": 93.25,
    "ta": 92.75,
    "mia_efficacy": 23.5,
}
UNLEARNED = {**RETRAIN, "train_f": 93.5, "ua": 6.5, "asr": 52.5, "mia_efficacy": 25.5}
ORIGINAL = {**RETRAIN, "train_f": 98.5, "ua": 1.5, "mia_efficacy": 18.75}
LINEAGE = {
    "data_md5": "0123456789abcdef0123456789abcdef.dir",
    "git_rev": "f" * 40,
    "forget_batch_id": "batch-20261127T080000-deadbeef",
    "forget_manifest_sha256": "ab" * 32,
    "parent_model_version": "1",
}


def make_batch() -> ForgetBatch:
    return ForgetBatch(
        batch_id="batch-20261127T080000-deadbeef",
        dataset="digits",
        created_at=datetime(2026, 11, 27, 8, tzinfo=UTC),
        request_ids=("req-1", "req-2"),
        requesters=("alice", "bob"),
        forget_ids=("digits/train/00001", "digits/train/00002", "digits/train/00003"),
        removed_elsewhere=("digits/test/00007",),
        forgotten_classes=(),
        sha256="ab" * 32,
        parent_pool_sha256="cd" * 32,
    )


def make_outcome(config: GateConfig | None = None, previous: str | None = "1") -> DeletionOutcome:
    verdict = evaluate_gates(UNLEARNED, RETRAIN, config or GateConfig())
    return DeletionOutcome(
        batch=make_batch(),
        verdict=verdict,
        promoted_source="unlearned" if verdict.passed else "retrain",
        promoted_version="2",
        previous_version=previous,
        metrics={"mixunlearn": UNLEARNED, "retrain": RETRAIN, "original": ORIGINAL},
        seconds={"mixunlearn": 0.5, "retrain": 2.0, "original": 0.0},
        lineage=LINEAGE,
    )


def test_render_markdown_heads_with_the_batch_and_its_requests() -> None:
    text = render_markdown(make_outcome(), MODEL, ALIAS)

    assert text.startswith("# Deletion report: batch-20261127T080000-deadbeef\n")
    assert "- Dataset: digits; requests: req-1, req-2 (requesters: alice, bob)" in text
    assert "Forgotten training samples: 3; other samples deleted: 1; whole classes removed: none" in text
    assert f"- Manifest sha256: `{'ab' * 32}`" in text


def test_render_markdown_shows_a_passing_verdict_table_and_the_promoted_version() -> None:
    # given an outcome whose gates all pass
    outcome = make_outcome()
    assert outcome.verdict.passed

    # when it is rendered
    text = render_markdown(outcome, MODEL, ALIAS)

    # then the verdict heads a table with one row per gate, and the serving model is named
    assert "## Verdict: PASS: every gate holds" in text
    assert "| Gate | Value | Limit | Result |" in text
    for gate in ("gap_laf", "gap_salun", "test_drop", "forget_excess", "mia_gap"):
        assert f"| {gate} | " in text
    assert "| forget_excess | 2.00 | 5.00 | pass |" in text
    assert "FAIL" not in text
    assert "**mixunlearn-digits@champion → version 2** (unlearned model; previously version 1)" in text


def test_render_markdown_marks_failing_gates() -> None:
    # given limits the unlearned model breaks
    outcome = make_outcome(GateConfig(max_forget_excess=1.0, max_gap_laf=0.5))

    # when rendered
    text = render_markdown(outcome, MODEL, ALIAS)

    # then the verdict line says FAIL, each broken gate's row says FAIL, and the retrain model serves
    assert "## Verdict: FAIL: " in text
    assert "| forget_excess | 2.00 | 1.00 | FAIL |" in text
    assert "| gap_laf | 1.00 | 0.50 | FAIL |" in text
    assert "| mia_gap | 2.00 | 30.00 | pass |" in text
    assert "(retrain model; previously version 1)" in text


def test_render_markdown_without_a_previous_version_says_none() -> None:
    text = render_markdown(make_outcome(previous=None), MODEL, ALIAS)

    assert "previously version none" in text


def test_render_markdown_lists_every_lineage_key() -> None:
    text = render_markdown(make_outcome(), MODEL, ALIAS)

    lineage = text.split("## Lineage\n", 1)[1]
    for key, value in LINEAGE.items():
        assert f"- `{key}`: {value}" in lineage
    keys = [line.split("`")[1] for line in lineage.splitlines() if line.startswith("- `")]
    assert keys == sorted(LINEAGE)


def test_render_markdown_metrics_table_has_each_model_beside_retrain() -> None:
    text = render_markdown(make_outcome(), MODEL, ALIAS)

    metrics = text.split("## Metrics\n", 1)[1].split("## Lineage", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in metrics.splitlines() if line.startswith("| ")}
    assert {"mixunlearn", "retrain", "original"} <= set(rows)
    # the unlearned model's Train_f next to Retrain's value in brackets, and MIA-Efficacy likewise
    assert "93.50 [91.50]" in rows["mixunlearn"]
    assert "25.50 [23.50]" in rows["mixunlearn"]
    assert "98.50 [91.50]" in rows["original"]
    assert "[" not in rows["retrain"].split("|", 3)[3]  # Retrain's own row has no bracketed reference
    # one measurement per model: no seed column and no spread
    assert "Seeds" not in metrics
    assert "±" not in metrics
    assert "![metrics](metrics.png)" in text


def test_verdict_table_shows_a_dash_for_a_gate_that_could_not_be_computed() -> None:
    verdict = evaluate_gates({k: v for k, v in UNLEARNED.items() if k != "mia_efficacy"}, RETRAIN, GateConfig())

    assert "| mia_gap | – | 30.00 | FAIL |" in verdict_table(verdict)


def test_write_report_writes_the_markdown_and_a_non_empty_png(tmp_path: Path) -> None:
    # given an outcome
    outcome = make_outcome()

    # when the report is written into a new folder
    paths = write_report(outcome, tmp_path / "reports" / "batch", MODEL, ALIAS)

    # then report.md is the rendered markdown and metrics.png is a real PNG
    assert paths == {"md": tmp_path / "reports/batch/report.md", "png": tmp_path / "reports/batch/metrics.png"}
    assert paths["md"].read_text() == render_markdown(outcome, MODEL, ALIAS)
    png = paths["png"].read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 1000


@pytest.mark.parametrize("source", ["unlearned", "retrain"])
def test_render_markdown_names_the_source_of_the_promoted_model(source: str) -> None:
    outcome = make_outcome()
    outcome = DeletionOutcome(**{**outcome.__dict__, "promoted_source": source})

    assert f"({source} model; previously version 1)" in render_markdown(outcome, MODEL, ALIAS)


# -- certify mode: no reference, a Certification section -----------------------------------------------------------


def certified_outcome() -> DeletionOutcome:
    from components.verification.certification import Certification, CheckResult

    def check(name: str, value: float, passed: bool) -> CheckResult:
        return CheckResult(name, value, value - 3.0, value + 3.0, 5.0, passed, f"{name} counts")

    certification = Certification(
        candidate_checks=(check("membership", 1.0, True), check("utility_drop", 0.5, True)),
        control_checks=(check("membership", 20.0, False), check("utility_drop", 0.0, True)),
        candidate_attack_auc=0.51,
        control_attack_auc=0.83,
    )
    return DeletionOutcome(
        batch=make_batch(),
        verdict=None,
        promoted_source="unlearned",
        promoted_version="2",
        previous_version="1",
        metrics={"mixunlearn": UNLEARNED, "original": ORIGINAL},
        seconds={"mixunlearn": 0.5, "original": 0.0},
        lineage=LINEAGE,
        certification=certification.to_document(),
        mode="certify",
    )


def test_certify_report_has_the_certification_section_with_both_models() -> None:
    text = render_markdown(certified_outcome(), MODEL, ALIAS)
    assert "## Verdict: PASS: certified" in text
    assert "No retrain-from-scratch reference compared (verify mode certify)." in text
    section = text.split("## Certification\n\n", 1)[1]
    assert section.startswith("PASS: certified")
    assert "| membership | 1.0 [-2.0, 4.0] | pass | 20.0 [17.0, 23.0] | FAIL | 5.0 |" in section
    assert "| utility_drop | 0.5 [-2.5, 3.5] | pass | 0.0 [-3.0, 3.0] | pass | 5.0 |" in section
    assert "`membership` (control): membership counts" in section


def test_certify_report_is_written_without_a_retrain_row(tmp_path: Path) -> None:
    paths = write_report(certified_outcome(), tmp_path, MODEL, ALIAS)
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)
    assert "| retrain |" not in paths["md"].read_text()


def test_the_report_links_the_data_docs_pages_of_the_batchs_validations(tmp_path: Path) -> None:
    # given: the batch's request validated by its checkpoint under the project's artifacts/gx
    from components.adapters.expectations import docs_index, latest_validations, validate_forget_request

    outputs = tmp_path / "artifacts" / "gx"
    known = [f"digits/train/{i:05d}" for i in range(10)]
    validate_forget_request(known[1:4], known, [], 0.5, 10, outputs=outputs, run_name="req-1")
    found = latest_validations(outputs, [("requests", "req-1"), ("requests", "req-2")])
    outcome = replace(
        make_outcome(),
        validations=[{**vars(v), "contract": v.contract} for v in found],
        data_docs=docs_index(outputs),
    )
    # when: the report is written under artifacts/reports/<batch>
    out_dir = tmp_path / "artifacts" / "reports" / "batch"
    text = write_report(outcome, out_dir, MODEL, ALIAS)["md"].read_text()
    # then: one row per validation found, its links relative to the report and resolving to the kept files
    section = text.split("## Data contracts (Great Expectations)", 1)[1].split("## Lineage", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| request_contract")]
    assert len(rows) == 1
    assert "| req-1 |" in rows[0]
    assert "| pass |" in rows[0]
    links = re.findall(r"\]\(([^)]+)\)", section)
    assert len(links) == 3  # index, page, JSON
    assert all(not link.startswith("/") and (out_dir / link).resolve().is_file() for link in links)
    assert (out_dir / links[1]).resolve() == found[0].docs_page
    assert (out_dir / links[2]).resolve() == found[0].result_file


def test_a_report_without_validations_has_no_data_contracts_section() -> None:
    assert "Data contracts" not in render_markdown(make_outcome(), MODEL, ALIAS)


MONITOR_STOP = {
    "steps": 105.0,
    "budget_steps": 304.0,
    "monitor_checks": 5.0,
    "monitor_value": -0.4,
    "monitor_forgotten": 1.0,
    "monitor_stopped_step": 105.0,
    "guard_baseline": 91.0,
    "guard_accuracy": 90.5,
    "guard_backoffs": 0.0,
    "guard_checks": 6.0,
    "guard_stopped": 0.0,
}


def test_the_report_says_how_many_steps_of_the_budget_ran_and_why_the_loop_stopped() -> None:
    unlearning = {"method": "mixunlearn", "seconds": 21.4, "history": MONITOR_STOP}
    text = render_markdown(replace(make_outcome(), unlearning=unlearning), MODEL, ALIAS)
    section = text.split("## Unlearning\n\n", 1)[1].split("\n## ", 1)[0]
    assert "105 unlearner steps of a budget of 304" in section
    assert "stopped the loop at step 105" in section
    assert "-0.4 points from held-out accuracy" in section
    assert "0 back-off(s)" in section


def test_a_monitor_that_never_fired_says_the_whole_budget_ran() -> None:
    history = {**MONITOR_STOP, "steps": 304.0, "monitor_forgotten": 0.0, "monitor_value": 2.5}
    unlearning = {"method": "mixunlearn", "seconds": 60.0, "history": history}
    text = render_markdown(replace(make_outcome(), unlearning=unlearning), MODEL, ALIAS)
    assert "did not find the batch forgotten within the budget" in text


def test_a_class_level_monitor_reports_forget_accuracy() -> None:
    history = {**MONITOR_STOP, "monitor_class_level": 1.0, "monitor_value": 0.8}
    unlearning = {"method": "mixunlearn", "seconds": 9.9, "history": history}
    text = render_markdown(replace(make_outcome(), unlearning=unlearning), MODEL, ALIAS)
    assert "forget accuracy 0.8 %" in text


def test_without_the_unlearning_run_the_report_has_no_unlearning_section() -> None:
    assert "## Unlearning" not in render_markdown(make_outcome(), MODEL, ALIAS)
