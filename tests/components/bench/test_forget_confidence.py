"""The forget-set confidence bench (``components.bench.forget_confidence``): its summary, its inputs, one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.bench.forget_confidence import confidence_summary, main, parse_point
from components.verification.predictions import Predictions

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
SHRINK = ["train.recipes.digits.epochs=2", "base.device=cpu"]


def test_confidence_summary_of_one_hot_and_uniform_outputs() -> None:
    # given
    labels = np.arange(4) % 10
    one_hot = Predictions(probs=np.eye(10)[labels], labels=labels)
    uniform = Predictions(probs=np.full((4, 10), 0.1), labels=labels)
    # then: certain outputs are all confident, uniform ones none
    assert confidence_summary(one_hot) == {"mean_top_probability": 1.0, "confident_share": 100.0}
    assert confidence_summary(uniform)["confident_share"] == 0.0
    assert confidence_summary(uniform)["mean_top_probability"] == pytest.approx(0.1)


def test_parse_point_reads_a_method_and_its_settings() -> None:
    import components.unlearning  # noqa: F401

    assert parse_point('mixunlearn:{"omega": 4.0}') == ("mixunlearn", {"omega": 4.0})
    assert parse_point("mixunlearn_no_mix") == ("mixunlearn_no_mix", {})
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        parse_point("nope:{}")
    with pytest.raises(ValueError, match="JSON object"):
        parse_point("mixunlearn:[1]")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--seeds", "0", "--point", "mixunlearn"], "reporting seed"),
        ([], "at least one --point"),
        (["--point", "nope"], "unknown method"),
    ],
)
def test_bad_inputs_stop_with_one_line_and_exit_2(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # when
    common = ["--dataset", "digits", "--scenario", "class:0", "--params", str(REPO_PARAMS), "--out", str(tmp_path)]
    code = main([*common, *arguments])
    # then
    error = capsys.readouterr().err
    assert code == 2
    assert message in error
    assert error.count("\n") == 1
    assert not (tmp_path / "results.json").exists()


def test_a_run_puts_retrain_first_with_no_gap_to_itself(tmp_path: Path) -> None:
    # when
    overrides = [item for text in [*SHRINK, f"bench.cache_dir={tmp_path / 'cache'}"] for item in ("--set", text)]
    common = ["--dataset", "digits", "--scenario", "class:0", "--seeds", "100", "--params", str(REPO_PARAMS)]
    code = main([*common, "--point", 'mixunlearn:{"steps": 3}', "--out", str(tmp_path / "out"), *overrides])
    # then
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert code == 0
    assert [row["method"] for row in rows] == ["retrain", "mixunlearn"]
    assert rows[0]["validation_gap"] == 0.0
    for row in rows:
        assert 0.0 <= row["confident_share"] <= 100.0
        assert 0.0 < row["mean_top_probability"] <= 1.0
