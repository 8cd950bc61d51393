"""Great Expectations 1.x adapter: data contracts for image sets and forget requests.

This is the only module that imports ``great_expectations``. Each check builds a one-row-per-item pandas frame,
runs an ``ExpectationSuite`` through a ``ValidationDefinition`` in an ephemeral context (no files, no network),
and returns a ``ValidationReport`` whose failures are one line per failing expectation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

_SAMPLE_VALUES = 5
_SMALL_SET = 20


class ValidationFailed(ValueError):  # noqa: N818 (the name the pipeline and issue #3 use)
    """Data that breaks its contract; the message lists each failing expectation on its own line."""

    itemised = True  # the CLI prints every line of the message, not only the first


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of one suite.

    Attributes:
        suite: Suite name, e.g. ``image_set`` or ``forget_request``.
        success: Whether every expectation passed.
        failures: One line per failing expectation: its type, column and bounds, the unexpected count and a
            few unexpected values.
        evaluated: Number of expectations evaluated.
    """

    suite: str
    success: bool
    failures: list[str] = field(default_factory=list)
    evaluated: int = 0

    def raise_for_failures(self) -> None:
        """Raise ``ValidationFailed`` listing the failures if the suite did not pass."""
        if not self.success:
            lines = "\n".join(f"  - {line}" for line in self.failures)
            raise ValidationFailed(f"{self.suite}: {len(self.failures)} expectation(s) failed\n{lines}")


def validate_image_set(
    ids: Sequence[str] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    images: np.ndarray | Sequence[np.ndarray],
    num_classes: int,
    image_shape: tuple[int, int, int],
) -> ValidationReport:
    """Check an image set: unique non-null IDs, labels in ``range(num_classes)``, pixels in [0, 255], shapes.

    Args:
        ids: Sample IDs, one per image.
        labels: Class index per image.
        images: ``(n, C, H, W)`` array, or a sequence of ``(C, H, W)`` arrays (shapes may then differ).
        num_classes: Number of classes.
        image_shape: Expected ``(C, H, W)``.

    Returns:
        The report; ``success`` is ``False`` if any expectation failed.
    """
    n_ids, n_labels, n_images = len(ids), len(labels), len(images)
    if not n_ids == n_labels == n_images:
        return ValidationReport(
            "image_set", False, [f"aligned lengths: {n_ids} ids, {n_labels} labels, {n_images} images"], 0
        )
    frame = pd.DataFrame(
        {
            "id": pd.Series(list(ids), dtype=object),
            "label": pd.Series(np.asarray(labels)),
            **_pixel_columns(images),
        }
    )
    channels, height, width = (int(v) for v in image_shape)
    expectations = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToNotBeNull(column="label"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(range(num_classes))),
        gxe.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="pixel_max", max_value=255),
        gxe.ExpectColumnValuesToBeInSet(column="channels", value_set=[channels]),
        gxe.ExpectColumnValuesToBeInSet(column="height", value_set=[height]),
        gxe.ExpectColumnValuesToBeInSet(column="width", value_set=[width]),
    ]
    return _run("image_set", frame, expectations)


def validate_forget_request(
    request_ids: Sequence[str | None],
    known_ids: Sequence[str] | np.ndarray,
    already_forgotten_ids: Sequence[str] | np.ndarray,
    max_fraction: float,
    pool_size: int,
) -> ValidationReport:
    """Check a forget request against the dataset and the deletion policy.

    Expectations: IDs not null, unique, known (in ``known_ids``), not already forgotten, and the batch holds
    between 1 and ``floor(max_fraction * pool_size)`` IDs.

    Args:
        request_ids: The requested sample IDs.
        known_ids: Every sample ID of the dataset (the pool requests may draw from).
        already_forgotten_ids: IDs removed by earlier batches.
        max_fraction: Largest batch allowed, as a fraction of ``pool_size``.
        pool_size: Size of the pool the fraction refers to (usually the training set).

    Returns:
        The report; ``success`` is ``False`` if any expectation failed.
    """
    if not 0.0 < max_fraction <= 1.0:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    max_rows = math.floor(max_fraction * pool_size)
    frame = pd.DataFrame({"id": pd.Series(list(request_ids), dtype=object)})
    # The sets are narrowed to the requested IDs first: an ID is in a set exactly when it is in the set's
    # intersection with the request, so the outcome and the unexpected values are the same, while GX no longer
    # serialises a 70,000-ID value set into each expectation (12.7 s of a Fashion-MNIST batch's planning).
    # Messages still name the whole set (``meta``), not the narrowed one.
    requested = {sample_id for sample_id in request_ids if sample_id is not None}
    all_known, all_forgotten = sorted(set(_as_list(known_ids))), sorted(set(_as_list(already_forgotten_ids)))
    expectations = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=max_rows),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeInSet(
            column="id",
            value_set=sorted(requested.intersection(all_known)),
            meta={"value_set": _set_text(all_known)},
        ),
        gxe.ExpectColumnValuesToNotBeInSet(
            column="id",
            value_set=sorted(requested.intersection(all_forgotten)),
            meta={"value_set": _set_text(all_forgotten)},
        ),
    ]
    return _run("forget_request", frame, expectations)


def _as_list(values: Sequence[Any] | np.ndarray) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _pixel_columns(images: np.ndarray | Sequence[np.ndarray]) -> dict[str, Any]:
    """Per-sample pixel statistics and shape columns."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        n, c, h, w = images.shape
        flat = images.reshape(n, c * h * w)
        empty = flat.shape[1] == 0
        return {
            "pixel_min": np.zeros(n) if empty else flat.min(axis=1),
            "pixel_max": np.zeros(n) if empty else flat.max(axis=1),
            "pixel_mean": np.zeros(n) if empty else flat.mean(axis=1, dtype=np.float64),
            "channels": np.full(n, c),
            "height": np.full(n, h),
            "width": np.full(n, w),
        }
    rows = [np.asarray(image) for image in images]
    shapes = [(image.shape if image.ndim == 3 else (-1, -1, -1)) for image in rows]
    return {
        "pixel_min": [float(image.min()) if image.size else 0.0 for image in rows],
        "pixel_max": [float(image.max()) if image.size else 0.0 for image in rows],
        "pixel_mean": [float(image.mean()) if image.size else 0.0 for image in rows],
        "channels": [s[0] for s in shapes],
        "height": [s[1] for s in shapes],
        "width": [s[2] for s in shapes],
    }


def _run(suite_name: str, frame: pd.DataFrame, expectations: list[gxe.Expectation]) -> ValidationReport:
    """Run ``expectations`` on ``frame`` in an ephemeral context and summarise the failures."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = (
        context.data_sources.add_pandas(f"{suite_name}_source")
        .add_dataframe_asset(f"{suite_name}_frame")
        .add_batch_definition_whole_dataframe(f"{suite_name}_batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    failures = [_describe(item) for item in result.results if not item.success]
    return ValidationReport(suite_name, bool(result.success), failures, len(result.results))


def _describe(item: Any) -> str:
    """One line for a failing ``ExpectationValidationResult``."""
    config = item.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "column") and v is not None}
    args = [str(config.kwargs["column"])] if "column" in config.kwargs else []
    described = dict(config.meta or {})  # a narrowed set is described by the whole set it stands for
    for key, value in kwargs.items():
        args.append(f"{key}={described[key]}" if key in described else f"{key}={_set_text(value)}")
    head = f"{config.type}({', '.join(args)})"
    info = item.exception_info or {}
    if info.get("raised_exception"):
        message = str(info.get("exception_message") or "").strip()
        return f"{head}: error: {message.splitlines()[0] if message else 'the expectation raised an error'}"
    result = item.result or {}
    if "unexpected_count" in result:
        values = [_plain(v) for v in result.get("partial_unexpected_list") or []]
        sample = [v for i, v in enumerate(values) if v not in values[:i]][:_SAMPLE_VALUES]
        return f"{head}: {result['unexpected_count']} of {result.get('element_count', '?')} unexpected, e.g. {sample}"
    return f"{head}: observed {_plain(result.get('observed_value'))}"


def _set_text(value: Any) -> str:
    """A keyword value as a message shows it: long collections by their size."""
    if isinstance(value, list | tuple | set) and len(value) > _SMALL_SET:
        return f"<{len(value)} values>"
    return repr(value)


def _plain(value: Any) -> Any:
    """Numpy scalars and NaN as plain Python values for messages."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
