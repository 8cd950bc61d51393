"""Method settings: the precedence of ``UnlearnSection.settings`` (defaults -> kinds -> tuned -> --set), the tuned
file, and validation of every method's settings when the configuration loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, UnlearnSection, load_config
from components.unlearning.base import build_config
from components.unlearning.mixunlearn import MixUnlearnConfig

LAYER_KEYS = ("defaults", "kind", "tuned")


def every_layer() -> UnlearnSection:
    """Each layer sets its own key and every key of the layers after it, so each key names the last layer that won."""
    return UnlearnSection(
        defaults={"mixunlearn": dict.fromkeys(LAYER_KEYS, "defaults")},
        kinds={"class": {"mixunlearn": dict.fromkeys(LAYER_KEYS[1:], "kind")}},
        tuned={"digits": {"class": {"mixunlearn": {"tuned": "tuned"}}}},
    )


def test_settings_merge_every_layer_in_order() -> None:
    # when
    merged = every_layer().settings("mixunlearn", "digits", "class", "mixunlearn")
    # then: defaults -> kinds -> tuned, later wins
    assert merged == {key: key for key in LAYER_KEYS}


def test_layers_of_another_kind_or_dataset_do_not_apply() -> None:
    # given
    section = every_layer()
    # when
    sample = section.settings("mixunlearn", "digits", "sample", "mixunlearn")
    other = section.settings("mixunlearn", "svhn", "class", "mixunlearn")
    # then
    assert sample == dict.fromkeys(LAYER_KEYS, "defaults")
    assert other == {**dict.fromkeys(LAYER_KEYS, "defaults"), **dict.fromkeys(LAYER_KEYS[1:], "kind")}


def test_pinned_keys_are_never_taken_from_the_tuned_layer() -> None:
    # given tuned lr and tau, with lr and tau_gen pinned by --set
    section = UnlearnSection(
        defaults={"mixunlearn": {"lr": 1.0, "tau_gen": 2.0}},
        tuned={"digits": {"class": {"mixunlearn": {"lr": 9.0, "tau": 9.0, "epochs": 9}}}},
        pinned={"mixunlearn": ["lr", "tau_gen"]},
    )
    # when
    merged = section.settings("mixunlearn", "digits", "class", "mixunlearn")
    # then: pinning one temperature pins its shorthand too; unpinned tuned keys still apply
    assert merged == {"lr": 1.0, "tau_gen": 2.0, "epochs": 9}


def test_scenario_entry_beats_kind_entry() -> None:
    # given both a kind entry and a scenario entry for digits
    section = UnlearnSection(
        defaults={"mixunlearn": {"lr": 1.0, "tau": 1.0}},
        tuned={
            "digits": {
                "class": {"mixunlearn": {"lr": 2.0, "epochs": 7}},
                "class:0": {"mixunlearn": {"lr": 3.0}},
            }
        },
    )
    # when
    by_scenario = section.settings("mixunlearn", "digits", "class", "mixunlearn", "class:0")
    other_scenario = section.settings("mixunlearn", "digits", "class", "mixunlearn", "class:3")
    no_scenario = section.settings("mixunlearn", "digits", "class", "mixunlearn")
    # then: the scenario entry replaces the kind entry as a whole (no epochs from it); others fall back to the kind
    assert by_scenario == {"lr": 3.0, "tau": 1.0}
    assert other_scenario == {"lr": 2.0, "tau": 1.0, "epochs": 7}
    assert no_scenario == other_scenario


def test_ablation_without_its_own_entry_uses_the_sections_entry() -> None:
    # given tuned entries for the full method and for lmix, none for mixunlearn_no_mix
    section = UnlearnSection(
        defaults={"mixunlearn": {"lr": 1.0, "epochs": 5}},
        tuned={"digits": {"data:0.4:5-9": {"mixunlearn": {"lr": 2.0, "tau": 4.0}, "lmix": {"lr": 3.0, "tau": 16.0}}}},
    )
    scenario = "data:0.4:5-9"
    # when
    ablation = section.settings("mixunlearn", "digits", "sample", "mixunlearn_no_mix", scenario)
    lmix = section.settings("mixunlearn", "digits", "sample", "lmix", scenario)
    full = section.settings("mixunlearn", "digits", "sample", "mixunlearn", scenario)
    # then
    assert ablation == full == {"lr": 2.0, "epochs": 5, "tau": 4.0}
    assert lmix == {"lr": 3.0, "epochs": 5, "tau": 16.0}


def test_tuned_entry_of_another_dataset_does_not_apply() -> None:
    # given
    section = UnlearnSection(tuned={"fashion_mnist": {"class:0": {"mixunlearn": {"lr": 9.0}}}})
    # when / then
    assert section.settings("mixunlearn", "digits", "class", "mixunlearn", "class:0") == {}


def test_tau_sets_the_three_temperatures() -> None:
    # when
    config = MixUnlearnConfig.model_validate({"tau": 4.0})
    # then
    assert (config.tau_mix, config.tau_real, config.tau_gen) == (4.0, 4.0, 4.0)


def test_an_explicit_temperature_wins_over_tau() -> None:
    # when: tau from a lower layer, tau_gen given explicitly (the merged dict holds both)
    config = build_config("mixunlearn", {"tau": 4.0, "tau_gen": 0.5})
    # then
    assert (config.tau_mix, config.tau_real, config.tau_gen) == (4.0, 4.0, 0.5)


def test_tau_shorthand_leaves_the_input_mapping_unchanged() -> None:
    # given
    settings = {"tau": 2.0, "lr": 1e-3}
    # when
    MixUnlearnConfig.model_validate(settings)
    # then: settings dicts are shared between methods, so validation must not pop from them
    assert settings == {"tau": 2.0, "lr": 1e-3}


def _write(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


TUNED = {"digits": {"class:0": {"mixunlearn": {"lr": 0.001, "tau": 4.0}}}}


def test_load_config_reads_the_tuned_file_relative_to_the_params_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given params.yaml in conf/ naming tuned/tuned.yaml, and a decoy at the same path relative to the cwd
    params = _write(tmp_path / "conf" / "params.yaml", {"unlearn": {"tuned_file": "tuned/tuned.yaml"}})
    _write(tmp_path / "conf" / "tuned" / "tuned.yaml", TUNED)
    _write(tmp_path / "cwd" / "tuned" / "tuned.yaml", {"digits": {"class:0": {"mixunlearn": {"lr": 9.0}}}})
    monkeypatch.chdir(tmp_path / "cwd")
    # when
    config = load_config(params)
    # then
    assert config.unlearn.tuned == TUNED
    assert config.unlearn.settings("mixunlearn", "digits", "class", "mixunlearn", "class:0") == {
        "lr": 0.001,
        "tau": 4.0,
    }


def test_load_config_skips_an_absent_tuned_file(tmp_path: Path) -> None:
    # given
    params = _write(tmp_path / "params.yaml", {"unlearn": {"tuned_file": "missing/tuned.yaml"}})
    # when
    config = load_config(params)
    # then
    assert config.unlearn.tuned == {}
    assert config.unlearn.tuned_file == "missing/tuned.yaml"


def test_explicit_tuned_wins_over_the_tuned_file(tmp_path: Path) -> None:
    # given a tuned file, and a tuned entry set by an override
    params = _write(tmp_path / "params.yaml", {"unlearn": {"tuned_file": "tuned.yaml"}})
    _write(tmp_path / "tuned.yaml", TUNED)
    # when
    config = load_config(params, ["unlearn.tuned.digits.class.mixunlearn.lr=0.5"])
    # then: the file is not read at all
    assert config.unlearn.tuned == {"digits": {"class": {"mixunlearn": {"lr": 0.5}}}}


def test_malformed_tuned_file_is_a_config_error(tmp_path: Path) -> None:
    # given
    params = _write(tmp_path / "params.yaml", {"unlearn": {"tuned_file": "tuned.yaml"}})
    (tmp_path / "tuned.yaml").write_text("- just\n- a list\n")
    # when / then
    with pytest.raises(ValueError, match=r"tuned\.yaml must hold a mapping"):
        load_config(params)


def test_set_wins_over_the_tuned_file(tmp_path: Path) -> None:
    # given a tuned tau for class:0 and an explicit --set of tau
    params = _write(tmp_path / "params.yaml", {"unlearn": {"tuned_file": "tuned.yaml"}})
    _write(tmp_path / "tuned.yaml", TUNED)
    # when
    config = load_config(params, ["unlearn.defaults.mixunlearn.tau=2.0"])
    # then: the --set value wins; the tuned lr (not set) still applies
    settings = config.unlearn.settings("mixunlearn", "digits", "class", "mixunlearn", "class:0")
    assert settings == {"tau": 2.0, "lr": 0.001}
    assert config.unlearn.pinned == {"mixunlearn": ["tau"]}


def test_method_config_is_the_typed_validated_config(tmp_path: Path) -> None:
    # given
    params = _write(tmp_path / "params.yaml", {"unlearn": {"tuned_file": "tuned.yaml"}})
    _write(tmp_path / "tuned.yaml", TUNED)
    # when
    config = load_config(params).unlearn.method_config("mixunlearn", "digits", "class", "class:0")
    # then
    assert isinstance(config, MixUnlearnConfig)
    assert (config.lr, config.tau_mix) == (0.001, 4.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["unlearn.kinds.class.mixunlearn.lr=-1"], r"unlearn\.kinds\.class\.mixunlearn\.lr .*greater than 0"),
        (["unlearn.defaults.mixunlearn.bogus=1"], r"unlearn\.kinds\.\w+\.mixunlearn\.bogus"),
        (["unlearn.defaults.nosuch.lr=1"], r"unknown method section 'nosuch'"),
        (["unlearn.tuned.digits.class:0.mixunlearn.epochs=0"], r"unlearn\.tuned: digits\.class:0\.mixunlearn\.epochs"),
        (["unlearn.tuned.digits.class:0.nosuch.lr=1"], r"names unknown method 'nosuch'"),
    ],
)
def test_bad_method_settings_fail_when_the_config_loads(overrides: list[str], message: str) -> None:
    # when / then: one line naming the setting, before any data is read or model trained
    with pytest.raises(ConfigError, match=message) as error:
        load_config(None, overrides)
    assert "\n" not in str(error.value)


def test_a_defaults_key_that_both_kinds_set_is_an_error() -> None:
    # given: both kinds set epochs, so a default epochs could never take effect
    overrides = [
        "unlearn.kinds.class.mixunlearn.epochs=3",
        "unlearn.kinds.sample.mixunlearn.epochs=1",
        "unlearn.defaults.mixunlearn.epochs=5",
    ]
    # when / then
    with pytest.raises(ConfigError, match=r"unlearn\.defaults\.mixunlearn\.epochs never takes effect"):
        load_config(None, overrides)
