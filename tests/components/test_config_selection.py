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
        explicit={"defaults": {"mixunlearn": {"lr": 1.0, "tau_gen": 2.0}}},
    )
    # when
    merged = section.settings("mixunlearn", "digits", "class", "mixunlearn")
    # then: pinning one temperature pins its shorthand too; unpinned tuned keys still apply
    assert merged == {"lr": 1.0, "tau_gen": 2.0, "epochs": 9}


def test_an_explicit_default_beats_the_kinds_layer_and_an_explicit_kind_beats_it() -> None:
    # given params.yaml's kinds set lr for both kinds; --set gives a default lr, and a class lr
    section = UnlearnSection(
        defaults={"mixunlearn": {"lr": 1.0}},
        kinds={"class": {"mixunlearn": {"lr": 5.0}}, "sample": {"mixunlearn": {"lr": 6.0}}},
        explicit={"defaults": {"mixunlearn": {"lr": 1.0}}, "class": {"mixunlearn": {"lr": 5.0}}},
    )
    # when / then: the kind's --set wins for its kind; the default's --set wins over params.yaml's other kind
    assert section.settings("mixunlearn", "digits", "class")["lr"] == 5.0
    assert section.settings("mixunlearn", "digits", "sample")["lr"] == 1.0


def test_an_explicit_tau_beats_temperatures_a_lower_layer_set_one_by_one() -> None:
    # given params.yaml's class kind sets tau_mix, and --set gives tau
    section = UnlearnSection(
        defaults={"mixunlearn": {"tau": 2.0}},
        kinds={"class": {"mixunlearn": {"tau_mix": 8.0}}},
        explicit={"defaults": {"mixunlearn": {"tau": 2.0}}},
    )
    # when
    config = build_config("mixunlearn", section.settings("mixunlearn", "digits", "class", "mixunlearn"))
    # then: all three temperatures are the explicit tau
    assert (config.tau_mix, config.tau_real, config.tau_gen) == (2.0, 2.0, 2.0)


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
    # given a tuned file
    params = _write(tmp_path / "params.yaml", {"unlearn": {"tuned_file": "tuned.yaml"}})
    _write(tmp_path / "tuned.yaml", TUNED)
    # when: the whole selection is given by an override, and separately one entry is added
    replaced = load_config(params, ["unlearn.tuned={digits: {class: {mixunlearn: {lr: 0.5}}}}"])
    added = load_config(params, ["unlearn.tuned.digits.class.mixunlearn.lr=0.5"])
    # then: a whole mapping replaces the file's; one key joins the file's entries
    assert replaced.unlearn.tuned == {"digits": {"class": {"mixunlearn": {"lr": 0.5}}}}
    assert added.unlearn.tuned == {"digits": {**TUNED["digits"], "class": {"mixunlearn": {"lr": 0.5}}}}


def test_a_tuned_mapping_in_params_is_used_instead_of_the_file(tmp_path: Path) -> None:
    params = _write(
        tmp_path / "params.yaml", {"unlearn": {"tuned_file": "tuned.yaml", "tuned": {"svhn": {"class": {}}}}}
    )
    _write(tmp_path / "tuned.yaml", TUNED)
    assert load_config(params).unlearn.tuned == {"svhn": {"class": {}}}


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
    assert config.unlearn.explicit == {"defaults": {"mixunlearn": {"tau": 2.0}}}


def test_set_wins_over_params_kinds_and_the_tuned_file_for_every_kind(tmp_path: Path) -> None:
    # given params.yaml's kinds set lr (as the shipped params.yaml does) and a tuned lr for class:0
    params = _write(
        tmp_path / "params.yaml",
        {
            "unlearn": {
                "kinds": {"class": {"mixunlearn": {"lr": 0.01}}, "sample": {"mixunlearn": {"lr": 0.02}}},
                "tuned_file": "tuned.yaml",
            }
        },
    )
    _write(tmp_path / "tuned.yaml", TUNED)
    # when: an explicit default lr, given twice (the last one counts)
    config = load_config(params, ["unlearn.defaults.mixunlearn.lr=0.5", "unlearn.defaults.mixunlearn.lr=0.25"])
    # then: the explicit value reaches every kind and scenario, and the method config built from it
    for kind, scenario in (("class", "class:0"), ("class", None), ("sample", None)):
        assert config.unlearn.method_config("mixunlearn", "digits", kind, scenario).lr == 0.25


def test_set_inside_the_tuned_selection_edits_the_tuned_file(tmp_path: Path) -> None:
    # given a tuned file with lr and tau for digits class:0
    params = _write(tmp_path / "params.yaml", {"unlearn": {"tuned_file": "tuned.yaml"}})
    _write(tmp_path / "tuned.yaml", TUNED)
    # when one tuned key is overridden
    config = load_config(params, ["unlearn.tuned.digits.class:0.mixunlearn.lr=0.5"])
    # then the rest of the file still applies (it is not replaced by the one key)
    settings = config.unlearn.settings("mixunlearn", "digits", "class", "mixunlearn", "class:0")
    assert settings == {"lr": 0.5, "tau": 4.0}


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


def test_a_set_default_that_both_kinds_of_params_set_takes_effect() -> None:
    # given params-level kinds (here given as plain document values) that both set epochs
    section = UnlearnSection(
        defaults={"mixunlearn": {"epochs": 5}},
        kinds={"class": {"mixunlearn": {"epochs": 3}}, "sample": {"mixunlearn": {"epochs": 1}}},
        explicit={"defaults": {"mixunlearn": {"epochs": 5}}},
    )
    # when / then: no "never takes effect" error, and both kinds get the explicit value
    from components.config import validate_method_settings

    validate_method_settings(section)
    assert {section.settings("mixunlearn", "digits", kind)["epochs"] for kind in ("class", "sample")} == {5}


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
