"""Great Expectations 1.x adapter: data contracts for image sets and forget requests.

The suites, validation definitions and one checkpoint per contract (``data_contract``, ``request_contract``) live as
files in the repository's GX project ``gx/`` (written once by ``components/adapters/gx_definitions.py``, packaged
like ``params.yaml``); this module loads them, never rebuilds them. Each check builds a one-row-per-item pandas frame
and runs the contract's checkpoint on it with the run's values as suite parameters. The checkpoint stores the
validation result (JSON) and updates the Data Docs site under the outputs folder the caller names (the pipeline's
``<root>/<pipeline.artifacts_dir>/gx``; a temporary folder, removed afterwards, when none is named). The returned
``ValidationReport`` lists one line per failing expectation and where its result and Data Docs page are.
No network: GX 1.24 sends no analytics, and the project disables them as well.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from components.adapters.gx_definitions import CONTRACTS, OUTPUTS_VARIABLE, SITE
from components.packaged import default_file

GX_DIR = "gx"  # the project folder: at the repository root, and packaged under components/defaults/
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
        run_name: The GX run name the result is stored under (e.g. ``digits-pool``, a request ID).
        result_file: The stored validation result (JSON); None when no outputs folder keeps it.
        docs_page: The result's Data Docs page (HTML); None when no outputs folder keeps it.
    """

    suite: str
    success: bool
    failures: list[str] = field(default_factory=list)
    evaluated: int = 0
    run_name: str | None = None
    result_file: Path | None = None
    docs_page: Path | None = None

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
    outputs: Path | None = None,
    run_name: str = "image_set",
) -> ValidationReport:
    """Check an image set (checkpoint ``data_contract``): unique non-null IDs, labels in ``range(num_classes)``,
    pixels in [0, 255], shapes.

    Args:
        ids: Sample IDs, one per image.
        labels: Class index per image.
        images: ``(n, C, H, W)`` array, or a sequence of ``(C, H, W)`` arrays (shapes may then differ).
        num_classes: Number of classes.
        image_shape: Expected ``(C, H, W)``.
        outputs: The folder that keeps validation results and Data Docs (None: nothing is kept).
        run_name: The GX run name of the result, e.g. ``<dataset>-<split>``.

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
    parameters = {"labels": list(range(num_classes)), "channels": [channels], "height": [height], "width": [width]}
    return _run("data", frame, parameters, {}, outputs, run_name)


def validate_forget_request(
    request_ids: Sequence[str | None],
    known_ids: Sequence[str] | np.ndarray,
    already_forgotten_ids: Sequence[str] | np.ndarray,
    max_fraction: float,
    pool_size: int,
    outputs: Path | None = None,
    run_name: str = "forget_request",
) -> ValidationReport:
    """Check a forget request against the dataset and the deletion policy (checkpoint ``request_contract``).

    Expectations: IDs not null, unique, known (in ``known_ids``), not already forgotten, and the batch holds
    between 1 and ``floor(max_fraction * pool_size)`` IDs.

    Args:
        request_ids: The requested sample IDs.
        known_ids: Every sample ID of the dataset (the pool requests may draw from).
        already_forgotten_ids: IDs removed by earlier batches.
        max_fraction: Largest batch allowed, as a fraction of ``pool_size``.
        pool_size: Size of the pool the fraction refers to (usually the training set).
        outputs: The folder that keeps validation results and Data Docs (None: nothing is kept).
        run_name: The GX run name of the result, e.g. the request ID.

    Returns:
        The report; ``success`` is ``False`` if any expectation failed.
    """
    if not 0.0 < max_fraction <= 1.0:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    max_rows = math.floor(max_fraction * pool_size)
    frame = pd.DataFrame({"id": pd.Series(list(request_ids), dtype=object)})
    # The sets are narrowed to the requested IDs first: an ID is in a set exactly when it is in the set's
    # intersection with the request, so the outcome and the unexpected values are the same, while GX no longer
    # serialises a 70,000-ID value set into the result (12.7 s of a Fashion-MNIST batch's planning).
    # Messages still name the whole set, not the narrowed one (the suite's notes say so in Data Docs).
    requested = {sample_id for sample_id in request_ids if sample_id is not None}
    all_known, all_forgotten = sorted(set(_as_list(known_ids))), sorted(set(_as_list(already_forgotten_ids)))
    parameters = {
        "max_rows": max_rows,
        "known_ids": sorted(requested.intersection(all_known)),
        "forgotten_ids": sorted(requested.intersection(all_forgotten)),
    }
    described = {"known_ids": _set_text(all_known), "forgotten_ids": _set_text(all_forgotten)}
    return _run("requests", frame, parameters, described, outputs, run_name)


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


def project_dir() -> Path:
    """The GX project the contracts load: the checkout's ``gx/`` in a source tree or an editable install, the packaged
    copy (``components/defaults/gx``) in an installed wheel."""
    packaged = default_file(GX_DIR)
    if packaged is None or not (packaged / "great_expectations.yml").is_file():
        raise FileNotFoundError(f"the GX project {GX_DIR}/ is missing from this install (great_expectations.yml)")
    return packaged


def open_context(outputs: Path, project: Path | None = None) -> Any:
    """The file-backed GX context of ``project`` (default ``project_dir()``), its results and Data Docs in
    ``outputs``. Opening it writes nothing into the project folder, so a read-only install works."""
    context = gx.get_context(
        mode="file",
        context_root_dir=project or project_dir(),
        runtime_environment={OUTPUTS_VARIABLE: str(Path(outputs).resolve())},
    )
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


@dataclass(frozen=True)
class StoredValidation:
    """A validation result kept in a GX project's validation results store, with its Data Docs page."""

    contract: str  # checkpoint name, e.g. ``data_contract``
    suite: str
    run_name: str
    run_time: str
    success: bool
    result_file: Path
    docs_page: Path | None


def latest_validations(outputs: Path, wanted: Sequence[tuple[str, str]]) -> list[StoredValidation]:
    """The newest stored result of each ``(contract key, run name)`` in ``wanted`` (contract keys as in
    ``CONTRACTS``: ``data``, ``requests``), in that order; pairs never validated under ``outputs`` are left out."""
    outputs = Path(outputs).resolve()
    if not (outputs / "validations").is_dir():
        return []
    context = open_context(outputs)
    store = context.validation_results_store
    newest: dict[tuple[str, str], Any] = {}
    for key in store.list_keys():
        pair = (key.expectation_suite_identifier.name, key.run_id.run_name)
        if pair not in newest or key.run_id.run_time > newest[pair].run_id.run_time:
            newest[pair] = key
    found = []
    for contract_key, run_name in wanted:
        contract = CONTRACTS[contract_key]
        key = newest.get((contract.suite, run_name))
        if key is None:
            continue
        found.append(
            StoredValidation(
                contract.checkpoint,
                contract.suite,
                run_name,
                key.run_id.to_tuple()[1],
                bool(store.get(key).success),
                _result_file(outputs, key.to_tuple()),
                _docs_page(context, key),
            )
        )
    return found


def docs_index(outputs: Path) -> Path:
    """The Data Docs site's index page under ``outputs`` (it exists once a checkpoint ran there)."""
    return Path(outputs) / "data_docs" / "index.html"


@contextmanager
def _kept_in(outputs: Path | None) -> Iterator[Path]:
    if outputs is not None:
        yield Path(outputs).resolve()
        return
    scratch = Path(tempfile.mkdtemp(prefix="mixunlearn-gx-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(
    contract_name: str,
    frame: pd.DataFrame,
    parameters: Mapping[str, Any],
    described: Mapping[str, str],
    outputs: Path | None,
    run_name: str,
) -> ValidationReport:
    """Run the contract's checkpoint on ``frame`` and summarise the failures.

    With no ``outputs`` nothing is kept, so the checkpoint's validation definition runs alone (its result goes to a
    temporary folder) and no Data Docs are built: the build costs more than the validation (about 0.3 s, GX
    compiles its page templates anew each time). ``described`` names a parameter by the whole set it stands for
    (a narrowed set) in failure messages."""
    contract = CONTRACTS[contract_name]
    with _kept_in(outputs) as folder:
        context = open_context(folder)
        checkpoint = context.checkpoints.get(contract.checkpoint)
        (definition,) = checkpoint.validation_definitions
        uses = {
            expectation.id: {key: value["$PARAMETER"] for key, value in _parameters(expectation).items()}
            for expectation in definition.suite.expectations
        }
        batch, values = {"dataframe": frame}, dict(parameters)
        if outputs is None:
            result = definition.run(
                batch_parameters=batch, expectation_parameters=values, result_format=checkpoint.result_format
            )
            key = None
        else:
            run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
            outcome = checkpoint.run(batch_parameters=batch, expectation_parameters=values, run_id=run_id)
            ((key, result),) = outcome.run_results.items()
        failures = [
            _describe(
                item, {k: described[p] for k, p in uses.get(item.expectation_config.id, {}).items() if p in described}
            )
            for item in result.results
            if not item.success
        ]
        return ValidationReport(
            contract.suite,
            bool(result.success),
            failures,
            len(result.results),
            run_name,
            None if key is None else _result_file(folder, key.to_tuple()),
            None if key is None else _docs_page(context, key),
        )


def _parameters(expectation: Any) -> dict[str, Any]:
    """An expectation's keyword arguments that are suite parameters (``{"$PARAMETER": name}``)."""
    config = expectation.configuration.kwargs
    return {key: value for key, value in config.items() if isinstance(value, dict) and "$PARAMETER" in value}


def _result_file(outputs: Path, key: tuple[str, ...]) -> Path:
    """Where the file-backed validation results store keeps the result of ``key``."""
    *folders, name = key
    return outputs / "validations" / Path(*folders) / f"{name}.json"


def _docs_page(context: Any, key: Any) -> Path | None:
    """The Data Docs page of the result ``key`` (GX gives a ``file://`` URL with the key's part escaped)."""
    urls = context.get_docs_sites_urls(resource_identifier=key, site_name=SITE)
    url = urls[0]["site_url"] if urls else None
    return Path(unquote(url.removeprefix("file://"))) if url and url.startswith("file://") else None


def _describe(item: Any, described: Mapping[str, str]) -> str:
    """One line for a failing ``ExpectationValidationResult``; ``described`` gives the text of a keyword argument
    that stands for a larger set (a narrowed value set is described by the whole set)."""
    config = item.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "column") and v is not None}
    args = [str(config.kwargs["column"])] if "column" in config.kwargs else []
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
