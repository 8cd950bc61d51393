"""Great Expectations adapter: image-set and forget-request contracts catch each kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from components.adapters.expectations import (
    ValidationFailed,
    ValidationReport,
    validate_forget_request,
    validate_image_set,
)

pytestmark = pytest.mark.integration

N, SHAPE, CLASSES = 40, (1, 8, 8), 10


def _image_set() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = np.array([f"digits/train/{i:05d}" for i in range(N)])
    images = rng.integers(0, 256, (N, *SHAPE)).astype(np.int16)  # int16 so out-of-range pixels can exist
    labels = np.arange(N, dtype=np.int64) % CLASSES
    return ids, labels, images


def _only_failure(report: ValidationReport) -> str:
    assert not report.success
    assert len(report.failures) == 1, report.failures
    return report.failures[0]


def test_a_clean_image_set_passes() -> None:
    ids, labels, images = _image_set()
    report = validate_image_set(ids, labels, images.astype(np.uint8), CLASSES, SHAPE)
    assert report.success
    assert report.failures == []
    assert report.evaluated == 10
    report.raise_for_failures()


def test_out_of_range_pixels_are_caught() -> None:
    ids, labels, images = _image_set()
    images[3, 0, 2, 2] = 300
    failure = _only_failure(validate_image_set(ids, labels, images, CLASSES, SHAPE))
    assert failure.startswith("expect_column_values_to_be_between(pixel_max, max_value=255")
    assert "1 of 40 unexpected, e.g. [300]" in failure

    images[3, 0, 2, 2] = -1
    failure = _only_failure(validate_image_set(ids, labels, images, CLASSES, SHAPE))
    assert failure.startswith("expect_column_values_to_be_between(pixel_min, min_value=0")


def test_duplicate_and_missing_ids_are_caught() -> None:
    ids, labels, images = _image_set()
    ids = ids.astype(object)
    ids[5] = ids[4]
    failure = _only_failure(validate_image_set(ids, labels, images, CLASSES, SHAPE))
    assert failure.startswith("expect_column_values_to_be_unique(id)")
    assert "2 of 40 unexpected" in failure
    assert "digits/train/00004" in failure

    ids[5] = None
    failure = _only_failure(validate_image_set(ids, labels, images, CLASSES, SHAPE))
    assert failure.startswith("expect_column_values_to_not_be_null(id)")


def test_unknown_label_is_caught() -> None:
    ids, labels, images = _image_set()
    labels[7] = CLASSES
    failure = _only_failure(validate_image_set(ids, labels, images, CLASSES, SHAPE))
    assert failure.startswith("expect_column_values_to_be_in_set(label, value_set=[0, 1, 2")
    assert "e.g. [10]" in failure


def test_wrong_shape_empty_set_and_misalignment_are_caught() -> None:
    ids, labels, images = _image_set()
    report = validate_image_set(ids, labels, images, CLASSES, (1, 28, 28))
    assert [f.split(":")[0] for f in report.failures] == [
        "expect_column_values_to_be_in_set(height, value_set=[28])",
        "expect_column_values_to_be_in_set(width, value_set=[28])",
    ]
    ragged = [images[0], images[1][:, :7, :], images[2]]
    failure = _only_failure(validate_image_set(ids[:3], labels[:3], ragged, CLASSES, SHAPE))
    assert failure.startswith("expect_column_values_to_be_in_set(height, value_set=[8]): 1 of 3 unexpected")

    empty = validate_image_set(ids[:0], labels[:0], images[:0], CLASSES, SHAPE)
    assert _only_failure(empty) == "expect_table_row_count_to_be_between(min_value=1): observed 0"
    assert _only_failure(validate_image_set(ids, labels[:-1], images, CLASSES, SHAPE)).startswith("aligned lengths")


def test_raise_for_failures_lists_one_expectation_per_line() -> None:
    ids, labels, images = _image_set()
    images[0, 0, 0, 0] = 999
    labels[1] = -1
    with pytest.raises(ValidationFailed) as info:
        validate_image_set(ids, labels, images, CLASSES, SHAPE).raise_for_failures()
    lines = str(info.value).splitlines()
    assert lines[0] == "image_set: 2 expectation(s) failed"
    assert sorted(line.split("(")[0] for line in lines[1:]) == [
        "  - expect_column_values_to_be_between",
        "  - expect_column_values_to_be_in_set",
    ]
    assert isinstance(info.value, ValueError)


KNOWN = [f"digits/train/{i:05d}" for i in range(100)]


def test_a_valid_forget_request_passes() -> None:
    report = validate_forget_request(KNOWN[10:15], KNOWN, KNOWN[:3], max_fraction=0.05, pool_size=100)
    assert report.success, report.failures
    assert report.evaluated == 5


@pytest.mark.parametrize(
    ("request_ids", "expected"),
    [
        (["digits/train/00010", "digits/test/99999"], "expect_column_values_to_be_in_set(id, value_set=<100 values>)"),
        (["digits/train/00010", "digits/train/00010"], "expect_column_values_to_be_unique(id)"),
        (["digits/train/00010", None], "expect_column_values_to_not_be_null(id)"),
        (["digits/train/00001", "digits/train/00010"], "expect_column_values_to_not_be_in_set(id"),
        (KNOWN[10:16], "expect_table_row_count_to_be_between(min_value=1, max_value=5): observed 6"),
        ([], "expect_table_row_count_to_be_between(min_value=1, max_value=5): observed 0"),
    ],
    ids=["unknown", "duplicate", "null", "already-forgotten", "too-large", "empty"],
)
def test_forget_request_failures_name_the_expectation(request_ids: list[str | None], expected: str) -> None:
    report = validate_forget_request(request_ids, KNOWN, KNOWN[:3], max_fraction=0.05, pool_size=100)
    failure = _only_failure(report)
    assert failure.startswith(expected), failure
    with pytest.raises(ValidationFailed, match=r"forget_request: 1 expectation\(s\) failed"):
        report.raise_for_failures()


def test_already_forgotten_failure_shows_the_ids() -> None:
    report = validate_forget_request(["digits/train/00002", "digits/train/00050"], KNOWN, KNOWN[:3], 0.05, 100)
    assert _only_failure(report) == (
        "expect_column_values_to_not_be_in_set(id, value_set=['digits/train/00000', 'digits/train/00001', "
        "'digits/train/00002']): 1 of 2 unexpected, e.g. ['digits/train/00002']"
    )
    with pytest.raises(ValueError, match="max_fraction"):
        validate_forget_request(KNOWN[:1], KNOWN, [], max_fraction=0.0, pool_size=100)
