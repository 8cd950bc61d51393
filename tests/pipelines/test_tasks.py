import re

import pytest

from pipelines.tasks import report_key


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist", "CIFAR10", "svhn.v2"])
def test_report_key_is_a_valid_prefect_artifact_key(dataset: str) -> None:
    # when
    key = report_key(dataset)
    # then: Prefect refuses anything but lowercase letters, digits and dashes
    assert re.fullmatch(r"[a-z0-9-]+", key)
    assert key.startswith("deletion-report-")


def test_report_keys_of_different_datasets_differ() -> None:
    assert report_key("fashion_mnist") != report_key("digits")
