"""The bench modules run with ``python -m``: merging per-seed results.json files and rendering docs/benchmarks.md."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from components.reporting import markdown_table, ranking_table, results_document
from components.verification.metrics import ALL_METRICS

METHODS = ("retrain", "mixunlearn")

Checker = Callable[..., subprocess.CompletedProcess[str]]


def load_script(name: str) -> ModuleType:
    """The bench module ``components.bench.<name>``."""
    return importlib.import_module(f"components.bench.{name}")


@pytest.fixture(scope="module")
def merge_results() -> ModuleType:
    return load_script("merge_results")


@pytest.fixture(scope="module")
def run_matrix() -> ModuleType:
    return load_script("matrix")


def row(method: str, seed: int, level: float) -> dict[str, Any]:
    return {
        "method": method,
        "seed": seed,
        **dict.fromkeys(ALL_METRICS, level),
        "seconds": 10.0 if method == "retrain" else 1.0,
    }


def per_seed_document(seed: int, scenario: str = "class:0") -> dict[str, Any]:
    rows = [row("retrain", seed, 50.0 + seed), row("mixunlearn", seed, 60.0 + 2 * seed)]
    extra = {
        "methods": list(METHODS),
        "seeds": [seed],
        "command": f"mixunlearn bench --seeds {seed}",
        "machine": "x86_64 test-cpu",
        "peak_rss_mb": 100.0 + seed,
    }
    return results_document("digits", scenario, rows, extra)


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def run_main(module: ModuleType, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["merge_results.py", *args])
    module.main()


def test_merge_two_seeds_into_one_document_that_follows_the_contract(
    merge_results: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, check_results: Checker
) -> None:
    # given one results.json per seed, in reverse seed order
    second = write(tmp_path / "seed1.json", per_seed_document(1))
    first = write(tmp_path / "seed0.json", per_seed_document(0))
    # when
    run_main(merge_results, monkeypatch, str(tmp_path / "merged"), str(second), str(first), "--note", "two runs")
    # then
    merged_path = tmp_path / "merged" / "results.json"
    checked = check_results(merged_path, "--methods", ",".join(METHODS))
    assert checked.returncode == 0, checked.stdout
    merged = json.loads(merged_path.read_text())
    assert (merged["dataset"], merged["scenario"]) == ("digits", "class:0")
    assert [(r["method"], r["seed"]) for r in merged["rows"]] == [
        ("retrain", 0),
        ("mixunlearn", 0),
        ("retrain", 1),
        ("mixunlearn", 1),
    ]
    summary = {entry["method"]: entry for entry in merged["summary"]}
    assert {entry["n_seeds"] for entry in summary.values()} == {2}
    assert summary["mixunlearn"]["train_r_mean"] == pytest.approx(61.0)
    assert summary["mixunlearn"]["train_r_std"] == pytest.approx(1.0)
    assert summary["mixunlearn"]["gap_laf"] == pytest.approx(10.5)
    assert merged["seeds"] == [0, 1]
    assert merged["note"] == "two runs"
    assert merged["peak_rss_mb"] == 101.0
    assert merged["command"] == "mixunlearn bench --seeds 1 ; mixunlearn bench --seeds 0"
    assert (tmp_path / "merged" / "results.md").read_text().count("| mixunlearn | 2 |") == 1
    assert (tmp_path / "merged" / "results.png").stat().st_size > 0


def test_merge_refuses_mixed_scenarios(
    merge_results: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given two documents of different scenarios
    first = write(tmp_path / "class.json", per_seed_document(0, "class:0"))
    second = write(tmp_path / "data.json", per_seed_document(1, "data:0.4:5-9"))
    # when
    with pytest.raises(SystemExit) as exited:
        run_main(merge_results, monkeypatch, str(tmp_path / "merged"), str(first), str(second))
    # then: a non-zero exit status naming the mix, and nothing written
    assert exited.value.code not in (0, None)
    assert "mix datasets/scenarios" in str(exited.value.code)
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_to_average_two_asr_scorings(
    merge_results: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # given one seed scored before the LAF-code ASR (no asr_protocol) and one after
    old = per_seed_document(0)
    old.pop("asr_protocol")
    first, second = write(tmp_path / "old.json", old), write(tmp_path / "new.json", per_seed_document(1))
    # when
    with pytest.raises(SystemExit) as exited:
        run_main(merge_results, monkeypatch, str(tmp_path / "merged"), str(first), str(second))
    # then
    assert "mix ASR scorings" in str(exited.value.code)
    assert not (tmp_path / "merged").exists()


@pytest.mark.slow  # a fresh interpreter importing torch (~3.5 s); the merge logic is tested in-process above
def test_merge_script_exits_non_zero_from_the_command_line(tmp_path: Path) -> None:
    # given
    first = write(tmp_path / "class.json", per_seed_document(0, "class:0"))
    second = write(tmp_path / "random.json", per_seed_document(1, "random:0.1"))
    # when
    completed = subprocess.run(
        [sys.executable, "-m", "components.bench.merge_results", str(tmp_path / "merged"), str(first), str(second)],
        capture_output=True,
        text=True,
        check=False,
    )
    # then
    assert completed.returncode != 0
    assert "error: inputs mix datasets/scenarios" in completed.stderr


def test_render_includes_table_ranking_command_and_machine(run_matrix: ModuleType) -> None:
    # given a hand-made cell document as run_cell leaves it
    document = results_document(
        "digits",
        "class:0",
        [row("retrain", 0, 50.0), row("mixunlearn", 0, 60.0)],
        {
            "command": "mixunlearn bench --dataset digits --scenario class:0",
            "machine": "x86_64 test-cpu",
            "cell_wall_seconds": 12.4,
            "cell_peak_rss_mb": 456.2,
            "note": "merged from two machines",
        },
    )
    # when
    text = run_matrix.render({"core": [document]})
    # then
    assert text.startswith("# Benchmarks\n")
    assert "## Matrix `core`" in text
    assert markdown_table(document) in text
    assert "Ranking by gap to Retrain:\n\n" + ranking_table(document) in text
    assert "| 1 | mixunlearn (10.00) | mixunlearn (10.00) |" in text
    assert "Note: merged from two machines" in text
    assert "Command: `mixunlearn bench --dataset digits --scenario class:0`" in text
    assert "Machine: x86_64 test-cpu; cell wall time 12 s with 1 job(s); peak RSS 456 MB" in text


def test_render_tolerates_a_cell_without_provenance(run_matrix: ModuleType) -> None:
    # given a document with no command, machine or timings (e.g. merged by hand)
    document = results_document("digits", "random:0.1", [row("retrain", 0, 50.0), row("mixunlearn", 0, 55.0)])
    # when
    text = run_matrix.render({"comparison": [document]})
    # then
    assert "## Matrix `comparison`" in text
    assert "Command: `?`" in text
    assert "Machine: ?; cell wall time 0 s with 1 job(s); peak RSS 0 MB" in text
    assert "Note:" not in text


@pytest.fixture(scope="module")
def tune_all() -> ModuleType:
    return load_script("tune_all")


def test_tuning_slices_cover_every_method_once_per_scenario(tune_all: ModuleType) -> None:
    # given
    methods = ["mixunlearn", "lmix", "ft", "ga", "rl"]
    # when
    work = tune_all.slices(methods, ("class:0", "random:0.1"), 2)
    # then: two slices per scenario, interleaved, together exactly the methods
    assert [scenario for scenario, _ in work] == ["class:0", "class:0", "random:0.1", "random:0.1"]
    assert work[0][1] == ["mixunlearn", "ft", "rl"]
    for scenario in ("class:0", "random:0.1"):
        covered = sorted(name for s, names in work if s == scenario for name in names)
        assert covered == sorted(methods)


def test_tuning_slices_never_hold_an_empty_method_list(tune_all: ModuleType) -> None:
    assert tune_all.slices(["mixunlearn"], ("class:0",), 3) == [("class:0", ["mixunlearn"])]


def test_tuning_merge_keeps_other_scenarios_and_datasets(tune_all: ModuleType) -> None:
    # given winners already stored for another dataset and scenario
    current = {"digits": {"class:0": {"ft": {"lr": 0.1}}}, "fashion_mnist": {"class:0": {"rl": {"lr": 1.0}}}}
    slices = [
        {"fashion_mnist": {"random:0.1": {"ft": {"lr": 0.2}}}},
        {"fashion_mnist": {"random:0.1": {"rl": {"lr": 0.3}}}},
    ]
    # when
    merged = tune_all.merge(slices, current)
    # then
    assert merged["digits"] == {"class:0": {"ft": {"lr": 0.1}}}
    assert merged["fashion_mnist"]["class:0"] == {"rl": {"lr": 1.0}}
    assert merged["fashion_mnist"]["random:0.1"] == {"ft": {"lr": 0.2}, "rl": {"lr": 0.3}}


def test_tuning_report_states_grid_size_edges_and_collapse(tune_all: ModuleType) -> None:
    # given two methods' tuning entries, one of which collapsed at every point
    entries = [
        {
            "scenario": "class:0",
            "method": "scrub",
            "grid_size": 9,
            "seeds": [100, 101, 102],
            "selected": {"lr": 5e-4},
            "validation_gap": 3.5,
            "edge_keys": [],
            "collapsed_points": 0,
            "all_collapsed": False,
        },
        {
            "scenario": "class:0",
            "method": "ga",
            "grid_size": 12,
            "seeds": [100, 101, 102],
            "selected": {"lr": 1e-6},
            "validation_gap": 30.0,
            "edge_keys": ["lr"],
            "collapsed_points": 12,
            "all_collapsed": True,
        },
    ]
    # when
    table = tune_all.report_table(entries)
    # then: one row each, sorted by method, with size, seeds, edge keys and the collapse stated
    rows = table.splitlines()[2:]
    assert rows[0].startswith("| class:0 | ga | 12 | 100,101,102 |")
    assert "| lr | **all 12 collapsed** |" in rows[0]
    assert rows[1].startswith("| class:0 | scrub | 9 |")
    assert rows[1].endswith("| – | 0/9 |")


def test_tuning_report_counts_points_past_the_edge(tune_all: ModuleType) -> None:
    entry = {
        "scenario": "class:0",
        "method": "ft",
        "grid_size": 9,
        "points_past_the_edge": 2,
        "seeds": [100],
        "selected": {"lr": 1e-2},
        "validation_gap": 1.0,
        "edge_keys": [],
        "collapsed_points": 1,
        "all_collapsed": False,
    }
    row = tune_all.report_table([entry]).splitlines()[2]
    assert row.startswith("| class:0 | ft | 9 (+2) |")
    assert row.endswith("| – | 1/11 |")


def test_merging_winners_keeps_tuned_yaml_comments_and_the_pipeline_kinds(tune_all: ModuleType) -> None:
    # given a tuned.yaml with a hand-written, commented per-kind entry and an old scenario winner
    text = (
        "# header\n"
        "digits:\n"
        "  sample:  # chosen by certify_grid\n"
        "    mixunlearn:\n"
        "      lr: 1.0e-04  # why\n"
        "  class:0:\n"
        "    ft: {lr: 0.1}\n"
        "    old_method: {lr: 0.5}\n"
    )
    winners = [{"digits": {"class:0": {"ft": {"lr": 0.01, "wd": 3e-05}}}}]
    # when every method of class:0 was tuned afresh
    merged = tune_all.merge_into_selected(text, winners, "digits", ("class:0",))
    # then: class:0 holds the new winners only; the kind entry and every comment stay
    assert yaml.safe_load(merged)["digits"] == {
        "sample": {"mixunlearn": {"lr": 0.0001}},
        "class:0": {"ft": {"lr": 0.01, "wd": 3e-05}},  # a float to PyYAML too, not the string "3e-05"
    }
    for comment in ("# header", "# chosen by certify_grid", "# why"):
        assert comment in merged
    # and a partial tuning (named methods) keeps the other winners
    partial = tune_all.merge_into_selected(text, winners, "digits", ())
    assert yaml.safe_load(partial)["digits"]["class:0"] == {"ft": {"lr": 0.01, "wd": 3e-05}, "old_method": {"lr": 0.5}}


def test_every_matrix_names_registered_methods_only() -> None:
    import components.unlearning  # noqa: F401  (registers every method)
    from components.bench.matrix import MATRICES
    from components.unlearning.base import get_method

    for name, spec in MATRICES.items():
        if spec["methods"] != "all":
            for method in spec["methods"].split(","):
                assert get_method(method).name == method, name
    assert "mixunlearn_laf_schedule" in MATRICES["faithfulness"]["methods"].split(",")


def test_render_adds_the_forget_confidence_table_when_it_was_run(
    run_matrix: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: one forget-confidence result under a results folder of our own
    cell = tmp_path / "forget-confidence" / "fashion_mnist-class_0"
    cell.mkdir(parents=True)
    metrics = {"train_r": 99.0, "train_f": 0.0, "test_r": 93.0, "asr": 40.0, "mia_efficacy": 100.0}
    row = {"method": "retrain", "settings": {}, **metrics, "validation_gap": 0.0}
    row |= {"mean_top_probability": 0.9, "confident_share": 75.0, "seed": 101, "seconds": 1.0}
    document = {"dataset": "fashion_mnist", "scenario": "class:0", "seeds": [101], "command": "CMD", "wall_seconds": 3}
    (cell / "results.json").write_text(json.dumps({**document, "rows": [row]}))
    monkeypatch.setattr(run_matrix, "RESULTS", tmp_path)
    # when
    text = "\n".join(run_matrix.confidence_sections())
    # then
    assert "### fashion_mnist · class:0 · seed(s) [101]" in text
    assert "| retrain | `{}` | 99.00 | 0.00 | 93.00 | 40.00 | 0.900 | 75.0 | 0.00 |" in text
    assert "Command: `CMD`" in text


def test_render_has_no_forget_confidence_section_without_results(
    run_matrix: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_matrix, "RESULTS", tmp_path)
    assert run_matrix.confidence_sections() == []
