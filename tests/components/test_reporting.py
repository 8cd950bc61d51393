"""Benchmark summary over seeds and the written outputs (results.json against the contract checker, .md, .png)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from components.reporting import (
    ROW_METRICS,
    markdown_table,
    mean_std,
    ranking_table,
    results_document,
    summarise,
    upgrade_asr,
    write_results,
)

Checker = Callable[..., subprocess.CompletedProcess[str]]


def _row(method: str, seed: int, **values: float | None) -> dict[str, Any]:
    base: dict[str, Any] = {"method": method, "seed": seed, "test_r": None, "test_f": None}
    return {**base, **values}


# 2 methods x 2 seeds, data-level (Test_r / Test_f do not apply).
ROWS = [
    _row("retrain", 0, train_r=90, train_f=70, test=80, asr=60, ua=30, ra=90, ta=80, mia_efficacy=40, seconds=10),
    _row("mixunlearn", 0, train_r=88, train_f=80, test=78, asr=50, ua=20, ra=88, ta=78, mia_efficacy=30, seconds=1),
    _row("retrain", 1, train_r=92, train_f=72, test=84, asr=62, ua=28, ra=92, ta=84, mia_efficacy=44, seconds=14),
    _row("mixunlearn", 1, train_r=86, train_f=76, test=80, asr=54, ua=24, ra=86, ta=80, mia_efficacy=34, seconds=2),
]


def _by_method(summary: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["method"]: entry for entry in summary}


def test_mean_std_is_population_std_and_skips_none() -> None:
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert mean_std([2.0, None, 4.0]) == (3.0, 1.0)
    assert mean_std([None, None]) == (None, None)
    assert mean_std([]) == (None, None)


def test_summarise_means_and_stds() -> None:
    # when
    summary = summarise(ROWS)
    # then
    assert [entry["method"] for entry in summary] == ["retrain", "mixunlearn"]  # first-seen order
    retrain, mix = _by_method(summary)["retrain"], _by_method(summary)["mixunlearn"]
    assert retrain["n_seeds"] == mix["n_seeds"] == 2
    expected_retrain = {"train_r": (91, 1), "train_f": (71, 1), "test": (82, 2), "asr": (61, 1), "seconds": (12, 2)}
    expected_mix = {"train_r": (87, 1), "train_f": (78, 2), "test": (79, 1), "asr": (52, 2), "seconds": (1.5, 0.5)}
    for entry, expected in ((retrain, expected_retrain), (mix, expected_mix)):
        for metric, (mean, std) in expected.items():
            assert entry[f"{metric}_mean"] == pytest.approx(mean)
            assert entry[f"{metric}_std"] == pytest.approx(std)
    assert mix["mia_efficacy_mean"] == pytest.approx(32)
    assert mix["ua_mean"] == pytest.approx(22)


def test_summarise_gaps_and_time_ratio() -> None:
    # when
    entries = _by_method(summarise(ROWS))
    # then: Retrain is its own reference
    assert entries["retrain"]["gap_laf"] == 0.0
    assert entries["retrain"]["gap_salun"] == 0.0
    assert entries["retrain"]["seconds_ratio_to_retrain"] == pytest.approx(1.0)
    # LAF gap over Train_r, Train_f, Test (no Test_r at data level), ASR: (4 + 7 + 3 + 9) / 4
    assert entries["mixunlearn"]["gap_laf"] == pytest.approx(5.75)
    # SalUn gap over UA, RA, TA, MIA-Efficacy of the means: (7 + 4 + 3 + 10) / 4
    assert entries["mixunlearn"]["gap_salun"] == pytest.approx(6.0)
    assert entries["mixunlearn"]["seconds_ratio_to_retrain"] == pytest.approx(1.5 / 12)


def test_summarise_reports_none_for_metrics_that_do_not_apply() -> None:
    # when
    summary = summarise(ROWS)
    # then
    for entry in summary:
        for metric in ("test_r", "test_f"):
            assert entry[f"{metric}_mean"] is None
            assert entry[f"{metric}_std"] is None
        assert set(entry) >= {f"{m}{suffix}" for m in ROW_METRICS for suffix in ("_mean", "_std")}


def test_summarise_without_retrain_has_no_gaps() -> None:
    # when
    summary = summarise([row for row in ROWS if row["method"] != "retrain"])
    # then
    assert summary[0]["gap_laf"] is None
    assert summary[0]["gap_salun"] is None
    assert summary[0]["seconds_ratio_to_retrain"] is None


def test_summarise_zero_retrain_time_gives_no_ratio() -> None:
    # given
    rows = [{**row, "seconds": 0.0} if row["method"] == "retrain" else row for row in ROWS]
    # when / then
    assert _by_method(summarise(rows))["mixunlearn"]["seconds_ratio_to_retrain"] is None


def test_markdown_and_ranking_tables() -> None:
    # given
    document = results_document("digits", "data:0.4:5-9", ROWS)
    # when
    table, ranking = markdown_table(document), ranking_table(document)
    # then
    assert "### digits · data:0.4:5-9" in table
    assert "Test_r" not in table  # no method has it
    assert "| mixunlearn | 2 | 87.00 ± 1.00 [91.00]" in table
    assert "| 1 | mixunlearn (5.75) | mixunlearn (6.00) |" in ranking
    assert "retrain" not in ranking


def test_write_results_outputs_follow_the_contract(tmp_path: Path, check_results: Checker) -> None:
    # given
    document = results_document("digits", "data:0.4:5-9", ROWS, {"seeds": [0, 1]})
    # when
    paths = write_results(document, tmp_path / "out")
    # then
    assert paths == {name: tmp_path / "out" / f"results.{name}" for name in ("json", "md", "png")}
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(document))
    checked = check_results(paths["json"], "--methods", "retrain,mixunlearn")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("ok: 4 rows, 2 methods")
    markdown = paths["md"].read_text()
    assert "| retrain |" in markdown
    assert "| mixunlearn |" in markdown
    assert "Ranking by gap to Retrain" in markdown
    png = paths["png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 1000
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_contract_checker_rejects_a_broken_document(tmp_path: Path, check_results: Checker) -> None:
    # given: a row without seconds (the checker must be able to fail for the test above to mean anything)
    rows = [{k: v for k, v in row.items() if k != "seconds"} if i == 0 else row for i, row in enumerate(ROWS)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({**results_document("digits", "x", ROWS), "rows": rows}))
    # when
    checked = check_results(path)
    # then
    assert checked.returncode == 1
    assert "rows[0]: missing 'seconds'" in checked.stdout


def test_a_document_from_before_the_laf_code_asr_is_shown_in_todays_terms() -> None:
    # given a results document written before asr_protocol existed: its asr was the balanced attack
    old = results_document("digits", "random:0.1", ROWS)
    old.pop("asr_protocol")
    # when
    upgraded = upgrade_asr(old)
    # then: the old value is asr_balanced, asr is unmeasured, and Gap LAF spans the three accuracy terms
    assert [row["asr_balanced"] for row in upgraded["rows"]] == [row["asr"] for row in ROWS]
    assert all(row["asr"] is None for row in upgraded["rows"])
    mix = _by_method(upgraded["summary"])["mixunlearn"]
    assert mix["asr_mean"] is None
    assert mix["asr_balanced_mean"] == pytest.approx(52)
    assert mix["gap_laf"] == pytest.approx((4 + 7 + 3) / 3)
    assert "ASR bal." in markdown_table(upgraded)
    assert "LAF-code ASR was not measured" in upgraded["note"]
    assert "asr_protocol" not in old  # the input is left as it was


def test_a_current_document_is_not_changed_by_the_upgrade() -> None:
    document = results_document("digits", "random:0.1", ROWS)
    assert upgrade_asr(document) == document
