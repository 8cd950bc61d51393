"""The benchmark harness and ``mixunlearn bench`` end to end on digits with a shrunk config (a few seconds on CPU)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from components.bench import harness
from components.bench.harness import BenchRequest, run_bench
from components.cli import app
from components.config import ConfigError, PipelineConfig, load_config
from components.verification.metrics import ALL_METRICS

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
METHODS = ("original", "retrain", "mixunlearn")
ROW_KEYS = ("method", "seed", *ALL_METRICS, "seconds")
SHRINK = ["train.recipes.digits.epochs=2", "base.device=cpu"]

Checker = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class FirstRun:
    config: PipelineConfig
    cache_dir: Path
    out_dir: Path
    rows: list[dict[str, Any]]


def _request(config: PipelineConfig, methods: tuple[str, ...] = METHODS, scenario: str = "class:0") -> BenchRequest:
    return BenchRequest(dataset="digits", scenario=scenario, methods=methods, seeds=(0,), config=config)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """One shrunk class-0 benchmark; its cache is shared by the later tests so they need no training."""
    root = tmp_path_factory.mktemp("bench")
    cache_dir = root / "cache"
    config = load_config(REPO_PARAMS, [*SHRINK, f"bench.cache_dir={cache_dir}"])
    rows = run_bench(_request(config), root / "out")
    return FirstRun(config=config, cache_dir=cache_dir, out_dir=root / "out", rows=rows)


def test_run_bench_rows_hold_every_metric(first_run: FirstRun) -> None:
    rows = first_run.rows
    assert [row["method"] for row in rows] == list(METHODS)
    for row in rows:
        assert set(row) == set(ROW_KEYS)
        assert row["seed"] == 0
        for metric in ALL_METRICS:
            value = row[metric]
            assert value is not None, metric  # class-level: every metric applies
            assert 0.0 <= value <= 100.0, (metric, value)
    by_method = {row["method"]: row for row in rows}
    assert by_method["original"]["seconds"] == 0.0
    assert by_method["retrain"]["seconds"] > 0
    assert by_method["mixunlearn"]["seconds"] > 0


def test_retrain_never_saw_the_forgotten_class(first_run: FirstRun) -> None:
    retrain = next(row for row in first_run.rows if row["method"] == "retrain")
    assert retrain["train_f"] == 0.0
    assert retrain["ua"] == 100.0


def test_run_bench_writes_the_forget_manifest(first_run: FirstRun) -> None:
    manifest = json.loads((first_run.out_dir / "manifests" / "forget-seed0.json").read_text())
    assert manifest  # the manifest's own format is tested with the scenarios


def test_second_run_reuses_the_cached_models(first_run: FirstRun, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: both reference models are on disk, and training would now fail
    assert len(list(first_run.cache_dir.glob("original-*.pt"))) == 1
    assert len(list(first_run.cache_dir.glob("retrain-*.pt"))) == 1

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr("components.stages.context.train_classifier", no_training)
    # when
    rows = run_bench(_request(first_run.config))
    # then: the same reference models, so the same training time and the same metrics
    before = {row["method"]: row for row in first_run.rows}
    after = {row["method"]: row for row in rows}
    assert after["retrain"]["seconds"] == before["retrain"]["seconds"]
    for method in ("original", "retrain"):
        for metric in ALL_METRICS:
            assert after[method][metric] == before[method][metric], (method, metric)


def test_unknown_method_fails_before_any_data_or_training(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # given
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("work started before the method names were checked")

    monkeypatch.setattr(harness, "load_dataset", forbidden)
    monkeypatch.setattr("components.stages.context.train_classifier", forbidden)
    config = load_config(REPO_PARAMS, [*SHRINK, f"bench.cache_dir={tmp_path}"])
    # when / then
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_bench(_request(config, methods=("original", "nope")))


def _cli_args(first_run: FirstRun, out: Path, *extra: str) -> list[str]:
    overrides = [item for text in [*SHRINK, f"bench.cache_dir={first_run.cache_dir}"] for item in ("--set", text)]
    return ["bench", "--params", str(REPO_PARAMS), "--out", str(out), *overrides, *extra]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def test_cli_bench_writes_results_that_follow_the_contract(
    first_run: FirstRun, tmp_path: Path, check_results: Checker
) -> None:
    # when
    args = _cli_args(first_run, tmp_path, "--dataset", "digits", "--scenario", "class:0")
    result = CliRunner().invoke(app, [*args, "--methods", ",".join(METHODS), "--seeds", "0"])
    # then
    assert result.exit_code == 0, result.output
    checked = check_results(tmp_path / "results.json", "--methods", ",".join(METHODS))
    assert checked.returncode == 0, checked.stdout
    document = json.loads((tmp_path / "results.json").read_text())
    assert (document["dataset"], document["scenario"]) == ("digits", "class:0")
    assert [row["method"] for row in document["rows"]] == list(METHODS)
    assert (tmp_path / "results.md").read_text().count("| mixunlearn |") == 1
    assert (tmp_path / "results.png").stat().st_size > 0
    assert "wrote" in result.stdout


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--dataset", "no_such_data", "unknown dataset 'no_such_data'"), ("--scenario", "bogus:1", "bogus:1")],
)
def test_cli_bench_user_errors_exit_2_with_one_line(
    first_run: FirstRun, tmp_path: Path, option: str, value: str, message: str
) -> None:
    # given
    args = _cli_args(first_run, tmp_path / "out", "--methods", "original", "--seeds", "0", option, value)
    # when
    result = CliRunner().invoke(app, args)
    # then
    assert result.exit_code == 2, result.output
    assert message in _one_error_line(result.stderr)
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "original,nope"], "unknown method 'nope'"),
        (["--seeds", "0,x"], "--seeds must be a comma-separated list of integers"),
        (["--seeds", "0,101"], "include tuning seed(s) [101]"),
        (["--set", "data.val_fraction=0.7"], "invalid parameter data.val_fraction"),
    ],
)
def test_cli_bench_other_user_errors_exit_2(
    first_run: FirstRun, tmp_path: Path, extra: list[str], message: str
) -> None:
    # when
    result = CliRunner().invoke(app, _cli_args(first_run, tmp_path, *extra))
    # then
    assert result.exit_code == 2, result.output
    assert message in _one_error_line(result.stderr)


def test_cli_bench_help_shows_the_examples() -> None:
    # when
    result = CliRunner().invoke(app, ["bench", "--help"])
    # then
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # undo the help formatter's line wrapping
    assert "Examples:" in text
    assert "mixunlearn bench --dataset digits --scenario class:0 --methods retrain,mixunlearn --seeds 0,1,2" in text
    assert "--set train.recipes.default.epochs=5" in text


def test_invalid_method_settings_fail_when_the_config_loads(tmp_path: Path) -> None:
    # when / then: the bad key is named before any data is read or model trained (the bench never starts)
    with pytest.raises(ConfigError, match=r"unlearn\.kinds\.class\.mixunlearn\.bogus"):
        load_config(REPO_PARAMS, [*SHRINK, f"bench.cache_dir={tmp_path}", "unlearn.defaults.mixunlearn.bogus=1"])


def test_cli_bench_names_an_invalid_method_setting(first_run: FirstRun, tmp_path: Path) -> None:
    # when
    args = _cli_args(first_run, tmp_path, "--methods", "mixunlearn", "--set", "unlearn.defaults.mixunlearn.bogus=1")
    result = CliRunner().invoke(app, args)
    # then
    assert result.exit_code == 2, result.output
    assert "bogus" in _one_error_line(result.stderr)
