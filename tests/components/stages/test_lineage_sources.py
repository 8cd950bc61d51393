"""How ``mixunlearn audit`` reads its MODEL[@ALIAS|/VERSION] argument and finds the model's dataset."""

from __future__ import annotations

import pytest

from components.stages.lineage_sources import dataset_of, parse_target


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, ("mixunlearn-digits", "champion", None)),
        ("mixunlearn-fashion_mnist", ("mixunlearn-fashion_mnist", "champion", None)),
        ("mixunlearn-digits@candidate", ("mixunlearn-digits", "candidate", None)),
        ("mixunlearn-digits/3", ("mixunlearn-digits", None, "3")),
        ("@candidate", ("mixunlearn-digits", "candidate", None)),
    ],
)
def test_targets_name_a_model_and_an_alias_or_a_version(target: str | None, expected: tuple[str, ...]) -> None:
    assert parse_target(target, "mixunlearn-digits", "champion") == expected


def test_a_version_must_be_a_number() -> None:
    with pytest.raises(ValueError, match="version 'latest'"):
        parse_target("mixunlearn-digits/latest", "mixunlearn-digits", "champion")


def test_the_dataset_comes_from_the_registered_model_template() -> None:
    assert dataset_of("mixunlearn-fashion_mnist", "mixunlearn-{dataset}", "digits") == "fashion_mnist"
    assert dataset_of("someone-elses-model", "mixunlearn-{dataset}", "digits") == "digits"
    assert dataset_of("mixunlearn-", "mixunlearn-{dataset}", "digits") == "digits"
