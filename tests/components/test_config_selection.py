"""Method settings: the merge order of ``UnlearnSection.settings`` and the validation-tuned ``selected`` layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.config import UnlearnSection, load_config
from components.unlearning.base import build_config
from components.unlearning.mixunlearn import MixUnlearnConfig

LAYER_KEYS = ("defaults", "kind", "dataset", "dataset_kind", "selected")


def every_layer() -> UnlearnSection:
    """Each layer sets its own key and every key of the layers after it, so each key names the last layer that won."""
    return UnlearnSection(
        defaults={"mixunlearn": dict.fromkeys(LAYER_KEYS, "defaults")},
        kinds={"class": {"mixunlearn": dict.fromkeys(LAYER_KEYS[1:], "kind")}},
        datasets={
            "digits": {
                "mixunlearn": dict.fromkeys(LAYER_KEYS[2:], "dataset"),
                "kinds": {"class": {"mixunlearn": dict.fromkeys(LAYER_KEYS[3:], "dataset_kind")}},
            }
        },
        selected={"digits": {"class": {"mixunlearn": {"selected": "selected"}}}},
    )


def test_settings_merge_every_layer_in_order() -> None:
    # when
    merged = every_layer().settings("mixunlearn", "digits", "class", "mixunlearn")
    # then: defaults -> kinds -> datasets -> datasets.kinds -> selected, later wins
    assert merged == {key: key for key in LAYER_KEYS}


def test_layers_of_another_kind_or_dataset_do_not_apply() -> None:
    # given
    section = every_layer()
    # when
    sample = section.settings("mixunlearn", "digits", "sample", "mixunlearn")
    other = section.settings("mixunlearn", "svhn", "class", "mixunlearn")
    # then
    assert sample == {**dict.fromkeys(LAYER_KEYS, "defaults"), **dict.fromkeys(LAYER_KEYS[2:], "dataset")}
    assert other == {**dict.fromkeys(LAYER_KEYS, "defaults"), **dict.fromkeys(LAYER_KEYS[1:], "kind")}


def test_scenario_entry_beats_kind_entry() -> None:
    # given both a kind entry and a scenario entry for digits
    section = UnlearnSection(
        defaults={"mixunlearn": {"lr": 1.0, "tau": 1.0}},
        selected={
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
        selected={
            "digits": {"data:0.4:5-9": {"mixunlearn": {"lr": 2.0, "tau": 4.0}, "lmix": {"lr": 3.0, "tau": 16.0}}}
        },
    )
    scenario = "data:0.4:5-9"
    # when
    ablation = section.settings("mixunlearn", "digits", "sample", "mixunlearn_no_mix", scenario)
    lmix = section.settings("mixunlearn", "digits", "sample", "lmix", scenario)
    full = section.settings("mixunlearn", "digits", "sample", "mixunlearn", scenario)
    # then
    assert ablation == full == {"lr": 2.0, "epochs": 5, "tau": 4.0}
    assert lmix == {"lr": 3.0, "epochs": 5, "tau": 16.0}


def test_selected_entry_of_another_dataset_does_not_apply() -> None:
    # given
    section = UnlearnSection(selected={"fashion_mnist": {"class:0": {"mixunlearn": {"lr": 9.0}}}})
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


SELECTED = {"digits": {"class:0": {"mixunlearn": {"lr": 0.001, "tau": 4.0}}}}


def test_load_config_reads_selected_file_relative_to_the_params_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given params.yaml in conf/ naming tuned/selected.yaml, and a decoy at the same path relative to the cwd
    params = _write(tmp_path / "conf" / "params.yaml", {"unlearn": {"selected_file": "tuned/selected.yaml"}})
    _write(tmp_path / "conf" / "tuned" / "selected.yaml", SELECTED)
    _write(tmp_path / "cwd" / "tuned" / "selected.yaml", {"digits": {"class:0": {"mixunlearn": {"lr": 9.0}}}})
    monkeypatch.chdir(tmp_path / "cwd")
    # when
    config = load_config(params)
    # then
    assert config.unlearn.selected == SELECTED
    assert config.unlearn.settings("mixunlearn", "digits", "class", "mixunlearn", "class:0") == {
        "lr": 0.001,
        "tau": 4.0,
    }


def test_load_config_skips_an_absent_selected_file(tmp_path: Path) -> None:
    # given
    params = _write(tmp_path / "params.yaml", {"unlearn": {"selected_file": "missing/selected.yaml"}})
    # when
    config = load_config(params)
    # then
    assert config.unlearn.selected == {}
    assert config.unlearn.selected_file == "missing/selected.yaml"


def test_explicit_selected_wins_over_the_selected_file(tmp_path: Path) -> None:
    # given a selected file, and a selected entry set by an override
    params = _write(tmp_path / "params.yaml", {"unlearn": {"selected_file": "selected.yaml"}})
    _write(tmp_path / "selected.yaml", SELECTED)
    # when
    config = load_config(params, ["unlearn.selected.digits.class.mixunlearn.lr=0.5"])
    # then: the file is not read at all
    assert config.unlearn.selected == {"digits": {"class": {"mixunlearn": {"lr": 0.5}}}}


def test_malformed_selected_file_is_a_config_error(tmp_path: Path) -> None:
    # given
    params = _write(tmp_path / "params.yaml", {"unlearn": {"selected_file": "selected.yaml"}})
    (tmp_path / "selected.yaml").write_text("- just\n- a list\n")
    # when / then
    with pytest.raises(ValueError, match=r"selected\.yaml must hold a mapping"):
        load_config(params)
