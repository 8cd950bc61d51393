"""Validation-only hyper-parameter selection (``components.bench.tuning``) and ``mixunlearn tune``.

The digits runs use a shrunk config (2 training epochs, MixUnlearn 1 epoch) and share one model cache, so the
original model is trained once and each scenario's retrain reference once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from components.bench import tuning
from components.bench.harness import BenchRequest
from components.bench.tuning import (
    GridPoint,
    TuningResult,
    check_grid_against_set,
    edge_keys,
    expand_grid,
    grid_size,
    grid_stages,
    load_grids,
    tune_method,
    utility,
    validation_gap,
)
from components.cli import app
from components.config import PipelineConfig, load_config
from components.unlearning.base import build_config

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
SHRINK = ["train.recipes.digits.epochs=2", "base.device=cpu", "bench.tuning.edge_extensions=0"]
# epochs in the grid too: the tuned layer is the only one that beats kinds.<kind>.mixunlearn.epochs
GRID = {"epochs": [1], "lr": [1e-3, 1e-5]}
SAMPLE_SCENARIO = "data:0.4:5-9"
TUNING_SEED = 100  # params.yaml's tuning seeds are disjoint from the reporting seeds; the CLI refuses seed 0


def test_expand_grid_is_the_product_in_key_order() -> None:
    # when
    points = expand_grid({"b": ["x", "y"], "a": [1, 2, 3]})
    # then: the first key varies slowest
    assert points == [
        {"b": "x", "a": 1},
        {"b": "x", "a": 2},
        {"b": "x", "a": 3},
        {"b": "y", "a": 1},
        {"b": "y", "a": 2},
        {"b": "y", "a": 3},
    ]
    assert [list(point) for point in points] == [["b", "a"]] * 6


def test_empty_grid_is_one_default_point() -> None:
    assert expand_grid({}) == [{}]


def test_a_key_without_values_gives_no_points() -> None:
    assert expand_grid({"lr": [], "epochs": [1, 2]}) == []


def test_validation_gap_is_the_mean_of_the_laf_and_salun_gaps() -> None:
    # given sample-level metrics computed on the validation split (keys as evaluate_predictions names them)
    method = {"train_r": 90.0, "train_f": 10.0, "test": 80.0, "asr": 60.0, "ua": 90.0, "ra": 90.0, "ta": 80.0}
    method["mia_efficacy"] = 20.0
    retrain = {"train_r": 80.0, "train_f": 30.0, "test": 80.0, "asr": 50.0, "ua": 70.0, "ra": 80.0, "ta": 80.0}
    retrain["mia_efficacy"] = 10.0
    # when / then: LAF (10 + 20 + 0 + 10) / 4 = 10, SalUn (20 + 10 + 0 + 10) / 4 = 10
    assert validation_gap(method, retrain) == pytest.approx(10.0)


def test_validation_gap_counts_membership_not_only_accuracy() -> None:
    # given two settings with Retrain's accuracies, one leaving the forget set more recognisable
    retrain = {"train_r": 100.0, "train_f": 0.0, "test_r": 97.0, "asr": 60.0, "ra": 100.0, "ta": 97.0}
    matched = dict(retrain)
    recognisable = {**retrain, "asr": 80.0}
    # when / then: only the membership term separates them
    assert validation_gap(matched, retrain) == 0.0
    assert validation_gap(recognisable, retrain) == pytest.approx(20.0 / 4 / 2)


def test_validation_gap_without_shared_metrics_fails() -> None:
    with pytest.raises(ValueError, match="no metric is shared"):
        validation_gap({"train_r": 1.0}, {"asr": 2.0})


class PoisonedTest:
    """Stands in for a seed's test tensors: any attribute access fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"tuning read the test split (.{name})")


@dataclasses.dataclass
class SplitGuard:
    """The real test tensors of every prepared seed, and how many predict calls were checked against them."""

    tests: list[torch.Tensor] = dataclasses.field(default_factory=list)
    checked: int = 0


@pytest.fixture
def split_guard(monkeypatch: pytest.MonkeyPatch) -> SplitGuard:
    """Hide every prepared seed's test tensors from tuning, and fail any predict() call on them."""
    guard = SplitGuard()
    real_prepare, real_predict = tuning.prepare_seed, tuning.predict

    def prepare(*args: Any, **kwargs: Any) -> Any:
        prepared = real_prepare(*args, **kwargs)
        guard.tests.append(prepared.test.images)
        return dataclasses.replace(prepared, test=PoisonedTest())

    def predict(model: torch.nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        for test in guard.tests:
            assert x is not test, "predict() ran on the test split"
            assert not (x.shape == test.shape and torch.equal(x, test)), "predict() ran on the test images"
        guard.checked += 1
        return real_predict(model, x, *args, **kwargs)

    monkeypatch.setattr(tuning, "prepare_seed", prepare)
    monkeypatch.setattr(tuning, "predict", predict)
    return guard


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: two threads on a busy 2-core machine run several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory: pytest.TempPathFactory) -> tuple[PipelineConfig, Path]:
    cache_dir = tmp_path_factory.mktemp("tuning-cache")
    return load_config(REPO_PARAMS, [*SHRINK, f"bench.cache_dir={cache_dir}"]), cache_dir


def _request(config: PipelineConfig, scenario: str) -> BenchRequest:
    return BenchRequest(
        dataset="digits", scenario=scenario, methods=("mixunlearn",), seeds=(TUNING_SEED,), config=config
    )


def _assert_sorted_grid_points(result: TuningResult) -> None:
    assert len(result.points) == 2
    gaps = [point.validation_gap for point in result.points]
    assert gaps == sorted(gaps)
    assert sorted(dict(point.settings)["lr"] for point in result.points) == sorted(GRID["lr"])
    for point in result.points:
        assert dict(point.settings)["epochs"] == 1
        assert 0.0 <= point.validation_gap <= 100.0
        assert point.seconds > 0


def test_tune_class_scenario_on_validation_only(shrunk: tuple[PipelineConfig, Path], split_guard: SplitGuard) -> None:
    # given
    config, _ = shrunk
    seen: list[dict[str, Any]] = []
    # when
    result = tune_method("mixunlearn", GRID, _request(config, "class:0"), lambda p: seen.append(dict(p.settings)))
    # then
    assert result.kind == "class"
    _assert_sorted_grid_points(result)
    assert seen == expand_grid(GRID)  # reported as evaluated, in grid order
    assert len(split_guard.tests) == 1
    assert split_guard.checked >= 3 * (1 + len(seen))  # retain, forget, val per model (reference + points)


def test_tune_sample_scenario_on_validation_only(shrunk: tuple[PipelineConfig, Path], split_guard: SplitGuard) -> None:
    # given
    config, _ = shrunk
    # when
    result = tune_method("mixunlearn", GRID, _request(config, SAMPLE_SCENARIO))
    # then
    assert result.kind == "sample"
    _assert_sorted_grid_points(result)
    assert split_guard.checked >= 3 * 3


def test_grid_points_differ_in_what_they_measure(shrunk: tuple[PipelineConfig, Path]) -> None:
    # given a grid whose second point is the first one's lr a hundred times smaller
    config, _ = shrunk
    # when
    result = tune_method("mixunlearn", GRID, _request(config, "class:0"))
    # then: the settings reached the method (otherwise both points would measure the same model)
    gaps = {dict(point.settings)["lr"]: point.validation_gap for point in result.points}
    assert gaps[1e-3] != gaps[1e-5]


def test_a_staged_grid_builds_each_stage_on_the_best_point_so_far(shrunk: tuple[PipelineConfig, Path]) -> None:
    # given: stage 2 varies omega only; the point equal to stage 1's winner is not run twice
    config, _ = shrunk
    stages = [GRID, {"omega": [0.25, 1.0]}]
    seen: list[dict[str, Any]] = []
    # when
    result = tune_method("mixunlearn", stages, _request(config, "class:0"), lambda p: seen.append(dict(p.settings)))
    # then
    stage_one = seen[:2]
    winner = min(result.points[:], key=lambda point: point.validation_gap)
    best_of_stage_one = min(
        (point for point in result.points if "omega" not in point.settings), key=lambda point: point.validation_gap
    )
    assert stage_one == expand_grid(GRID)
    assert seen[2:] == [{**best_of_stage_one.settings, "omega": 0.25}, {**best_of_stage_one.settings, "omega": 1.0}]
    assert len(result.points) == 4
    assert result.points[0] == winner


def test_grid_stages_accepts_a_block_or_a_list_of_blocks() -> None:
    assert grid_stages({"lr": [1.0]}) == [{"lr": [1.0]}]
    assert grid_stages([{"lr": [1.0]}, {"tau": [2.0, 3.0]}]) == [{"lr": [1.0]}, {"tau": [2.0, 3.0]}]
    assert grid_size([{"lr": [1.0, 2.0]}, {"tau": [2.0, 3.0, 4.0]}]) == 5
    for bad in ([], "lr", [{"lr": [1.0]}, 3]):
        with pytest.raises(ValueError, match="a grid is"):
            grid_stages(bad)  # type: ignore[arg-type]


def test_load_grids_names_the_method_of_a_malformed_grid(tmp_path: Path) -> None:
    path = tmp_path / "grids.yaml"
    path.write_text("mixunlearn: [1, 2]\n")
    with pytest.raises(ValueError, match="mixunlearn: a grid is"):
        load_grids(path)


def test_every_shipped_grid_point_is_a_valid_setting_and_grids_stay_small() -> None:
    # given
    from components.unlearning.base import build_config

    grids = load_grids(REPO_PARAMS.parent / "grids.yaml")
    for method, grid in grids.items():
        # then: no key a config would refuse, and the staged designs stay the order of the peers' 4-6 points
        assert grid_size(grid) <= 16, method
        for stage in grid_stages(grid):
            for point in expand_grid(stage):
                build_config(method, point)


def test_tune_unknown_method_fails_before_any_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("data was loaded before the method name was checked")

    monkeypatch.setattr(tuning, "load_dataset", forbidden)
    # when / then
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        tune_method("nope", {"lr": [1.0]}, _request(PipelineConfig(), "class:0"))


def _cli_args(cache_dir: Path, grids: Path, selected: Path, *extra: str) -> list[str]:
    overrides = [item for text in [*SHRINK, f"bench.cache_dir={cache_dir}"] for item in ("--set", text)]
    return [
        "tune",
        "--params",
        str(REPO_PARAMS),
        *overrides,
        "--grids",
        str(grids),
        "--tuned",
        str(selected),
        *extra,
    ]


def test_cli_tune_writes_the_winner_and_keeps_other_entries(
    shrunk: tuple[PipelineConfig, Path], tmp_path: Path
) -> None:
    # given a grid file and a tuned file holding entries of other scenarios, datasets and methods
    config, cache_dir = shrunk
    grids = tmp_path / "grids.yaml"
    grids.write_text(yaml.safe_dump({"mixunlearn": GRID}))
    selected = tmp_path / "tuned.yaml"
    before = {
        "digits": {"class:0": {"ft": {"epochs": 2}}, SAMPLE_SCENARIO: {"ga": {"lr": 1e-5}}},
        "fashion_mnist": {SAMPLE_SCENARIO: {"mixunlearn": {"lr": 3e-4}}},
    }
    selected.write_text(yaml.safe_dump(before))
    expected = tune_method("mixunlearn", GRID, _request(config, SAMPLE_SCENARIO)).points[0].settings
    # when
    args = _cli_args(cache_dir, grids, selected, "--dataset", "digits", "--scenario", SAMPLE_SCENARIO, "--seeds", "100")
    result = CliRunner().invoke(app, args)
    # then
    assert result.exit_code == 0, result.output
    text = selected.read_text()
    assert text.startswith("# Written by `mixunlearn tune`")
    after = yaml.safe_load(text)
    assert after["digits"][SAMPLE_SCENARIO]["mixunlearn"] == dict(expected)
    assert after["digits"][SAMPLE_SCENARIO]["ga"] == {"lr": 1e-5}
    assert after["digits"]["class:0"] == before["digits"]["class:0"]
    assert after["fashion_mnist"] == before["fashion_mnist"]
    assert f"selected for mixunlearn (digits, {SAMPLE_SCENARIO}): {dict(expected)}" in result.stdout
    assert result.stdout.count("val-gap") == 2


def test_cli_tune_grid_of_an_unknown_method_exits_2(shrunk: tuple[PipelineConfig, Path], tmp_path: Path) -> None:
    # given
    _, cache_dir = shrunk
    grids = tmp_path / "grids.yaml"
    grids.write_text(yaml.safe_dump({"nope": {"lr": [1e-3]}}))
    selected = tmp_path / "tuned.yaml"
    # when
    result = CliRunner().invoke(app, _cli_args(cache_dir, grids, selected, "--scenario", "class:0"))
    # then
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown method 'nope'")
    assert not selected.exists()


def test_cli_tune_method_without_a_grid_exits_2(shrunk: tuple[PipelineConfig, Path], tmp_path: Path) -> None:
    # given
    _, cache_dir = shrunk
    grids = tmp_path / "grids.yaml"
    grids.write_text(yaml.safe_dump({"mixunlearn": GRID}))
    # when
    result = CliRunner().invoke(app, _cli_args(cache_dir, grids, tmp_path / "tuned.yaml", "--methods", "ft"))
    # then
    assert result.exit_code == 2, result.output
    assert "no grid for ft" in result.stderr


def test_cli_tune_into_an_empty_tuned_file(shrunk: tuple[PipelineConfig, Path], tmp_path: Path) -> None:
    # given an empty tuned file (e.g. created with `touch`)
    _, cache_dir = shrunk
    grids = tmp_path / "grids.yaml"
    grids.write_text(yaml.safe_dump({"mixunlearn": {"epochs": [1], "lr": [1e-3]}}))
    selected = tmp_path / "tuned.yaml"
    selected.touch()
    # when
    result = CliRunner().invoke(app, _cli_args(cache_dir, grids, selected, "--scenario", "class:0", "--seeds", "100"))
    # then
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(selected.read_text()) == {"digits": {"class:0": {"mixunlearn": {"epochs": 1, "lr": 1e-3}}}}


def test_grid_size_and_edge_keys() -> None:
    grid = {"lr": [1e-4, 1e-3, 1e-2], "epochs": [3], "alpha": [0.1, 0.5]}
    assert grid_size(grid) == 6
    # lr in the middle, epochs not varied, alpha at an end
    assert edge_keys(grid, {"lr": 1e-3, "epochs": 3, "alpha": 0.5}) == ["alpha"]
    assert edge_keys(grid, {"lr": 1e-2, "epochs": 3, "alpha": 0.1}) == ["lr", "alpha"]


def test_utility_is_kept_class_accuracy_when_classes_are_forgotten() -> None:
    assert utility({"test": 50.0, "test_r": 90.0}) == 90.0
    assert utility({"test": 70.0, "test_r": None}) == 70.0


def test_all_collapsed_only_when_every_point_collapsed() -> None:
    some = TuningResult("class", (GridPoint({}, 1.0, 0.1, collapsed=True), GridPoint({}, 2.0, 0.1)))
    every = TuningResult("class", (GridPoint({}, 1.0, 0.1, collapsed=True),) * 2)
    assert not some.all_collapsed
    assert every.all_collapsed


def test_a_dataset_section_replaces_a_methods_grid_on_that_dataset(tmp_path: Path) -> None:
    # given a top-level grid for ga and scrub, and a fashion_mnist section that resizes ga
    path = tmp_path / "grids.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "ga": {"lr": [1e-5, 1e-4]},
                "scrub": {"alpha": [0.5]},
                "fashion_mnist": {"ga": {"lr": [1e-6, 1e-5, 3e-5], "epochs": [1, 3]}},
            }
        )
    )
    # when
    digits, fashion = load_grids(path, "digits"), load_grids(path, "fashion_mnist")
    # then: the section is a dataset's, never a method's; ga is replaced whole on fashion_mnist only
    assert digits == {"ga": {"lr": [1e-5, 1e-4]}, "scrub": {"alpha": [0.5]}}
    assert fashion == {"ga": {"lr": [1e-6, 1e-5, 3e-5], "epochs": [1, 3]}, "scrub": {"alpha": [0.5]}}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"ga": {"lr": [1.0]}, "fashion_mnist": {"nope": {"lr": [1.0]}}},
            "fashion_mnist section has a grid for 'nope'",
        ),
        ({"ga": {"lr": 1.0}}, "the grid of ga must map keys to lists"),
        ({"ga": {"lr": [1.0]}, "fashion_mnist": [1]}, "the fashion_mnist section must map"),
    ],
)
def test_malformed_grids_fail_with_one_line(tmp_path: Path, document: dict[str, Any], message: str) -> None:
    path = tmp_path / "grids.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match=message):
        load_grids(path, "fashion_mnist")


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_the_repository_grids_are_valid_and_of_one_size_order(dataset: str) -> None:
    # given the shipped grids with the dataset's section applied
    grids = load_grids(REPO_PARAMS.parent / "grids.yaml", dataset)
    # then: every method's grid has 4 to 15 points (a staged grid counts every stage), and every point is a valid
    # setting of its method
    sizes = {method: grid_size(grid) for method, grid in grids.items()}
    assert all(4 <= size <= 15 for size in sizes.values()), sizes
    for method, grid in grids.items():
        for stage in grid_stages(grid):
            for point in expand_grid(stage):
                build_config(method, point)


def test_scrub_on_fashion_mnist_uses_sgd_with_momentum_as_its_reference_code() -> None:
    grid = load_grids(REPO_PARAMS.parent / "grids.yaml", "fashion_mnist")["scrub"]
    configs = [build_config("scrub", point) for point in expand_grid(grid)]
    assert {(config.optimizer, config.momentum) for config in configs} == {("sgd", 0.9)}


def test_a_set_key_the_grid_varies_is_a_conflict_naming_both_values() -> None:
    # given --set pins scrub's lr and the mixunlearn tau (a shorthand); the grids vary lr and tau_mix
    config = load_config(None, ["unlearn.defaults.scrub.lr=0.01", "unlearn.kinds.class.mixunlearn.tau=2.0"])
    # when / then
    with pytest.raises(
        ValueError, match=r"unlearn\.defaults\.scrub\.lr=0\.01 conflicts with the scrub grid's lr: \[0\.1, 0\.2\]"
    ):
        check_grid_against_set("scrub", {"lr": [0.1, 0.2]}, config.unlearn)
    with pytest.raises(ValueError, match=r"kinds\.class\.mixunlearn\.tau=2\.0 conflicts .* tau_mix"):
        check_grid_against_set("mixunlearn", {"tau_mix": [1.0, 4.0]}, config.unlearn)
    check_grid_against_set("scrub", {"alpha": [0.1]}, config.unlearn)  # other keys are free


def test_cli_tune_refuses_a_reporting_seed_before_any_data(
    shrunk: tuple[PipelineConfig, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    _, cache_dir = shrunk
    grids = tmp_path / "grids.yaml"
    grids.write_text(yaml.safe_dump({"mixunlearn": GRID}))
    monkeypatch.setattr(tuning, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the seed check"))
    # when
    result = CliRunner().invoke(app, _cli_args(cache_dir, grids, tmp_path / "tuned.yaml", "--seeds", "100,2"))
    # then
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "include reporting seed(s) [2]" in lines[0]
    assert not (tmp_path / "tuned.yaml").exists()


def test_a_method_that_ruins_the_model_is_reported_collapsed(
    shrunk: tuple[PipelineConfig, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a method whose every model answers class 9 whatever the input (about a tenth of Retrain's accuracy)
    config, _ = shrunk

    class Constant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(len(x), 10)
            logits[:, 9] = 1.0
            return logits

    monkeypatch.setattr(tuning, "run_method", lambda *args: (Constant(), 0.01))
    # when
    result = tune_method("ga", {"lr": [1e-3, 1e-2]}, _request(config, SAMPLE_SCENARIO))
    # then
    assert result.all_collapsed


def _bowl(optimum: dict[str, float], seen: list[dict[str, Any]]) -> Any:
    """An evaluator whose gap is the squared log-distance to ``optimum``: the best point is known by construction."""
    import math

    def evaluate(settings: dict[str, Any]) -> GridPoint:
        seen.append(dict(settings))
        gap = sum(math.log10(settings.get(key, 1.0) / value) ** 2 for key, value in optimum.items())
        return GridPoint(settings=settings, validation_gap=gap, seconds=0.0)

    return evaluate


def test_search_without_extensions_evaluates_the_grid_as_written() -> None:
    # given an optimum far beyond the grid's largest lr
    seen: list[dict[str, Any]] = []
    # when
    outcome = tuning.search_grid({"lr": [1e-4, 1e-3]}, _bowl({"lr": 1.0}, seen), edge_extensions=0)
    # then
    assert seen == [{"lr": 1e-4}, {"lr": 1e-3}]
    assert outcome.extended == 0
    assert outcome.edges == ("lr",)


def test_search_steps_past_the_edge_while_the_winner_sits_on_it() -> None:
    # given an optimum two geometric steps past the largest lr
    seen: list[dict[str, Any]] = []
    # when
    outcome = tuning.search_grid({"lr": [1e-4, 1e-3]}, _bowl({"lr": 1e-1}, seen), edge_extensions=3)
    # then: 1e-2 wins, so 1e-1 is tried; 1e-1 wins, so 1.0 is tried and loses: the winner is inside
    assert [point["lr"] for point in seen] == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert outcome.extended == 3
    assert min(outcome.points, key=lambda point: point.validation_gap).settings == {"lr": 1e-1}
    assert outcome.edges == ()


def test_search_extends_each_key_at_most_edge_extensions_times() -> None:
    # given an optimum far below the smallest epochs and far above the largest lr
    seen: list[dict[str, Any]] = []
    grid = {"lr": [1e-4, 1e-3], "epochs": [4, 8]}
    # when
    outcome = tuning.search_grid(grid, _bowl({"lr": 10.0, "epochs": 0.001}, seen), edge_extensions=1)
    # then: one step per key, each from the winner so far, and both keys are still on their edge
    extensions = seen[len(tuning.expand_grid(grid)) :]
    assert extensions == [{"lr": 1e-2, "epochs": 4}, {"lr": 1e-2, "epochs": 2}]
    assert outcome.extended == 2
    assert set(outcome.edges) == {"lr", "epochs"}


def test_an_integer_axis_stays_integral_and_positive() -> None:
    assert tuning.step_past_edge([30, 300], 300) == 3000
    assert tuning.step_past_edge([2, 5], 2) == 1
    assert tuning.step_past_edge([1, 2], 1) is None  # 0.5 rounds to 0: no positive integer lies past the edge
    assert tuning.step_past_edge([1e-4, 1e-3, 1e-2], 1e-3) is None  # inside the axis


def test_a_non_numeric_key_is_never_extended_but_is_reported_on_its_edge() -> None:
    seen: list[dict[str, Any]] = []

    def evaluate(settings: dict[str, Any]) -> GridPoint:
        seen.append(dict(settings))
        return GridPoint(settings=settings, validation_gap=0.0 if settings["optimizer"] == "sgd" else 1.0, seconds=0)

    # when
    outcome = tuning.search_grid({"optimizer": ["adam", "sgd"]}, evaluate, edge_extensions=2)
    # then
    assert len(seen) == 2
    assert outcome.edges == ("optimizer",)


def test_an_extension_the_method_refuses_is_not_run() -> None:
    # given a bounded key (a share of weights) whose next step would pass 1
    seen: list[dict[str, Any]] = []
    grid = {"mask_ratio": [0.5, 0.9]}
    # when
    outcome = tuning.search_grid(
        grid, _bowl({"mask_ratio": 1.0}, seen), edge_extensions=2, is_valid=lambda s: s["mask_ratio"] <= 1.0
    )
    # then: 0.9 * 0.9 / 0.5 = 1.62 is refused, nothing past the grid ran
    assert len(seen) == 2
    assert outcome.extended == 0
    assert outcome.edges == ("mask_ratio",)


def test_extensions_start_from_the_staged_winner() -> None:
    # given two stages; the optimum lies past stage two's largest omega
    seen: list[dict[str, Any]] = []
    grid = [{"lr": [1e-4, 1e-3, 1e-2]}, {"omega": [0.25, 4.0]}]
    # when
    outcome = tuning.search_grid(grid, _bowl({"lr": 1e-3, "omega": 64.0}, seen), edge_extensions=1)
    # then: lr stays at its interior winner; omega steps once to 4 * 4 / 0.25 = 64
    assert seen[-1] == {"lr": 1e-3, "omega": 64.0}
    assert min(outcome.points, key=lambda point: point.validation_gap).settings == {"lr": 1e-3, "omega": 64.0}


def test_a_kept_default_outside_a_stages_values_is_on_the_edge_and_extended() -> None:
    # given a later stage whose omega values all lie above the default (1) that the stage-one winner keeps, and an
    # optimum below that default
    seen: list[dict[str, Any]] = []
    grid = [{"lr": [1e-4, 1e-3, 1e-2]}, {"omega": [16.0, 64.0]}]
    # when
    outcome = tuning.search_grid(
        grid, _bowl({"lr": 1e-3, "omega": 0.1}, seen), edge_extensions=1, resolve=lambda settings: {"omega": 1.0}
    )
    # then: the default wins its stage, so omega steps below it by the default's ratio to its neighbour (1 / 16)
    assert seen[-1] == {"lr": 1e-3, "omega": 0.0625}
    assert outcome.extended == 1
    assert "lr" not in outcome.edges


@pytest.mark.parametrize(
    ("stage_omegas", "optimum"),
    [
        pytest.param([0.25, 4.0], 1.0, id="the kept default inside the stage's values"),
        pytest.param([16.0, 64.0], 16.0, id="a stage value beside the evaluated default"),
    ],
)
def test_a_winner_between_an_evaluated_default_and_stage_values_is_not_extended(
    stage_omegas: list[float], optimum: float
) -> None:
    # given a default omega (1) that stage one evaluates and an optimum inside what omega took
    seen: list[dict[str, Any]] = []
    grid = [{"lr": [1e-4, 1e-3, 1e-2]}, {"omega": stage_omegas}]
    # when
    outcome = tuning.search_grid(
        grid, _bowl({"lr": 1e-3, "omega": optimum}, seen), edge_extensions=2, resolve=lambda settings: {"omega": 1.0}
    )
    # then: nothing past the grid runs and no key is on its edge
    assert len(seen) == 5
    assert outcome.extended == 0
    assert outcome.edges == ()
