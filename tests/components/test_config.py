"""params.yaml loading, ``key.path=value`` overrides, one-line errors and the section helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.config import (
    ConfigError,
    PipelineConfig,
    TrainSection,
    UnlearnSection,
    apply_overrides,
    config_from_mapping,
    load_config,
    parse_override,
)
from components.training import TrainConfig

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_repository_params_yaml_loads() -> None:
    # when
    config = load_config(REPO_PARAMS)
    # then
    document = yaml.safe_load(REPO_PARAMS.read_text())
    assert config.base.dataset == document["base"]["dataset"]
    assert config.bench.methods == document["bench"]["methods"]
    assert set(config.train.recipes) == set(document["train"]["recipes"])
    assert config.train.recipe("digits").epochs == document["train"]["recipes"]["digits"]["epochs"]
    tuned = yaml.safe_load((REPO_PARAMS.parent / document["unlearn"]["tuned_file"]).read_text())
    for kind in ("class", "sample"):  # defaults, then the forget kind's entry, then the kind's tuned entry on top
        expected = {
            **document["unlearn"]["defaults"]["mixunlearn"],
            **document["unlearn"]["kinds"][kind]["mixunlearn"],
            **tuned["digits"].get(kind, {}).get("mixunlearn", {}),
        }
        assert config.unlearn.settings("mixunlearn", "digits", kind) == expected


def test_repository_method_settings_validate() -> None:
    # given: every method section in params.yaml must be accepted by its method's config
    import components.unlearning  # noqa: F401  (registers every method)
    from components.unlearning.base import METHODS, build_config

    config = load_config(REPO_PARAMS)
    # when / then
    for name, spec in METHODS.items():
        for kind in ("class", "sample"):
            build_config(name, config.unlearn.settings(spec.section, config.base.dataset, kind, name))


def test_no_file_gives_the_defaults() -> None:
    assert load_config(None) == PipelineConfig()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [("base: [unclosed\n", "not valid YAML"), ("- a\n- b\n", "mapping of sections")],
)
def test_malformed_file_is_a_one_line_config_error(tmp_path: Path, text: str, message: str) -> None:
    # given
    path = tmp_path / "params.yaml"
    path.write_text(text)
    # when
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    # then
    assert "\n" not in str(error.value)


def test_overrides_apply_nested_new_keys_and_yaml_values() -> None:
    # when
    config = load_config(
        REPO_PARAMS,
        [
            "train.recipes.digits.epochs=3",  # nested, existing
            "train.recipes.mnist.lr=0.01",  # new recipe entry
            "unlearn.kinds.sample.mixunlearn.tau_mix=5",  # nested, new key
            "bench.seeds=[0, 1, 2]",  # YAML list
            "base.data_dir=null",  # YAML null
            "base.seed=7",
            "data.scenario=class:0",
        ],
    )
    # then
    assert config.train.recipe("digits").epochs == 3
    assert config.train.recipe("digits").lr == 1.0e-3  # the sibling keys are kept
    assert config.train.recipe("mnist").lr == 0.01
    assert config.unlearn.settings("mixunlearn", "digits", "sample")["tau_mix"] == 5
    assert config.unlearn.settings("mixunlearn", "digits", "sample")["lr"] == 1.0e-4  # the sibling keys are kept
    assert config.bench.seeds == [0, 1, 2]
    assert config.base.data_dir is None
    assert config.base.seed == 7
    assert config.data.scenario == "class:0"


def test_overrides_do_not_modify_the_document() -> None:
    # given
    document = {"base": {"seed": 1}}
    # when
    result = apply_overrides(document, ["base.seed=2", "bench.out=x"])
    # then
    assert document == {"base": {"seed": 1}}
    assert result == {"base": {"seed": 2}, "bench": {"out": "x"}}


def test_later_overrides_win() -> None:
    assert load_config(None, ["base.seed=1", "base.seed=2"]).base.seed == 2


def test_parse_override() -> None:
    assert parse_override("a.b.c=1.5") == (["a", "b", "c"], 1.5)
    assert parse_override(" x = y=z") == (["x"], "y=z")
    assert parse_override("a=") == (["a"], None)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("base.seed", "not of the form key.path=value"),
        ("=3", "not of the form key.path=value"),
        ("bench.seeds=[0, 1", "not valid YAML"),
        ("base.seed.inner=1", "'seed' is not a mapping"),
    ],
)
def test_malformed_override_is_a_one_line_config_error(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_config(REPO_PARAMS, [override])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ("base.no_such_key=1", "base.no_such_key"),
        ("nonsense.key=1", "nonsense"),
        ("data.val_fraction=0.7", "data.val_fraction"),
        ("data.val_fraction=-0.1", "data.val_fraction"),
        ("bench.seeds=[]", "bench.seeds"),
        ("bench.eval_batch_size=0", "bench.eval_batch_size"),
        ("train.recipes.digits.epochs=0", "train.recipes.digits.epochs"),
        ("train.recipes.digits.optimizer=rmsprop", "train.recipes.digits.optimizer"),
        ("train.recipes.digits.bogus=1", "train.recipes.digits.bogus"),
        ("pipeline.kind_methods.samples=mixunlearn", "pipeline.kind_methods.samples"),
    ],
)
def test_invalid_parameter_is_a_one_line_config_error_naming_it(override: str, where: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid parameter {where}") as error:
        load_config(REPO_PARAMS, [override])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("override", "where"),
    [
        ("pipeline.method=nosuch", "pipeline.method"),
        ("pipeline.kind_methods.sample=nosuch", "pipeline.kind_methods.sample"),
    ],
)
def test_a_pipeline_method_that_is_not_registered_is_a_one_line_error(override: str, where: str) -> None:
    with pytest.raises(ConfigError, match=f"^{where}: unknown method 'nosuch'; known methods: ") as error:
        load_config(REPO_PARAMS, [override])
    assert "\n" not in str(error.value)


def test_kind_methods_choose_the_serving_method_per_forget_kind() -> None:
    pipeline = load_config(REPO_PARAMS, ["pipeline.method=mixunlearn", "pipeline.kind_methods={}"]).pipeline
    assert pipeline.method_for("class") == pipeline.method_for("sample") == "mixunlearn"
    pipeline = load_config(REPO_PARAMS, ["pipeline.kind_methods={sample: mixunlearn_agnostic}"]).pipeline
    assert (pipeline.method_for("class"), pipeline.method_for("sample")) == (pipeline.method, "mixunlearn_agnostic")


@pytest.mark.parametrize(
    "override",
    ["bench.tuning.seeds=[100, 3]", "bench.seeds=[0, 101]", "bench.report_seeds.svhn=[102]"],
)
def test_tuning_seeds_that_share_a_reporting_seed_are_a_one_line_error(override: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid parameter bench: .*tuning must not select on a seed") as error:
        load_config(REPO_PARAMS, [override])
    assert "\n" not in str(error.value)


def test_the_shipped_tuning_seeds_are_three_and_disjoint_from_every_reporting_seed() -> None:
    bench = load_config(REPO_PARAMS).bench
    assert len(bench.tuning.seeds) >= 3
    assert not set(bench.tuning.seeds) & set(bench.reporting_seeds())
    assert bench.report_seeds_of("digits") == [0, 1, 2, 3, 4]
    assert bench.report_seeds_of("fashion_mnist") == [0, 1, 2]
    assert bench.report_seeds_of("svhn") == [0, 1, 2]
    with pytest.raises(ConfigError, match=r"include reporting seed\(s\) \[4\]"):
        bench.check_tuning_seeds([4, 100])
    with pytest.raises(ConfigError, match=r"include tuning seed\(s\) \[100\]"):
        bench.check_reporting_seeds([0, 100])


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid parameter"):
        config_from_mapping({"data": {"val_fraction": 0.7}})


def test_config_is_frozen() -> None:
    config = load_config(None)
    with pytest.raises(Exception, match="frozen"):
        config.base.seed = 3  # type: ignore[misc]


def test_recipe_falls_back_to_default() -> None:
    # given
    section = TrainSection(recipes={"default": TrainConfig(epochs=3), "digits": TrainConfig(epochs=9)})
    # when / then
    assert section.recipe("digits").epochs == 9
    assert section.recipe("cifar10").epochs == 3
    assert TrainSection(recipes={"digits": TrainConfig(epochs=9)}).recipe("mnist") == TrainConfig()


def test_unlearn_settings_merge_defaults_then_the_kinds_entry() -> None:
    # given
    section = UnlearnSection(
        defaults={"mixunlearn": {"lr": 1e-4, "epochs": 5, "tau_mix": 1.0}, "other": {"x": 1}},
        kinds={"class": {"mixunlearn": {"lr": 1e-3, "omega": 2.0}}, "sample": {"other": {"x": 2}}},
    )
    # when / then: the kind's entries win key by key, the other defaults stay
    assert section.settings("mixunlearn", "digits", "class") == {"lr": 1e-3, "epochs": 5, "tau_mix": 1.0, "omega": 2.0}
    assert section.settings("mixunlearn", "digits", "sample") == {"lr": 1e-4, "epochs": 5, "tau_mix": 1.0}
    assert section.settings("other", "digits", "sample") == {"x": 2}
    assert section.settings("absent", "digits") == {}


def test_unlearn_settings_are_copies() -> None:
    # given
    section = UnlearnSection(defaults={"mixunlearn": {"lr": 1e-4}})
    # when
    section.settings("mixunlearn", "digits")["lr"] = 5.0
    # then
    assert section.settings("mixunlearn", "digits") == {"lr": 1e-4}
