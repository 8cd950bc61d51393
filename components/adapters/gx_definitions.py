"""Writes the repository's Great Expectations project (``gx/``): run once, commit the output, and the contracts load it.

``python -m components.adapters.gx_definitions [GX_DIR]`` creates a file-backed GX project in a scratch folder and
copies its definitions into ``GX_DIR`` (default ``gx``): ``great_expectations.yml`` (the pandas datasource, the stores
and the Data Docs site), ``expectations/*.json`` (the suites), ``validation_definitions/*.json`` and
``checkpoints/*.json`` (one checkpoint per contract), plus ``config_variables.yml``. Values that depend on the run
(the label set, the image shape, the dataset's IDs, the batch limit) are suite parameters (``{"$PARAMETER": ...}``),
so the files stay static; ``components/adapters/expectations.py`` passes them when it runs a checkpoint.

Outputs (validation results, Data Docs) never go into the project: both stores point at ``${mixunlearn_gx_outputs}``,
which the pipeline sets to ``<root>/<pipeline.artifacts_dir>/gx`` and which ``config_variables.yml`` defaults to
``../artifacts/gx`` (the same folder for a checkout), so a plain ``gx.get_context(mode="file")`` works as well.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.checkpoint import UpdateDataDocsAction

DATASOURCE = "mixunlearn"
OUTPUTS_VARIABLE = "mixunlearn_gx_outputs"
DEFAULT_OUTPUTS = "../artifacts/gx"  # relative to the project folder: <checkout>/artifacts/gx
SITE = "local_site"
VIEWS = "components.adapters.gx_views"
INDEX_LIMIT = 30  # the Data Docs index lists the newest results only: each build reads every result it lists
DEFINITION_FILES = ("great_expectations.yml", "config_variables.yml", "expectations", "validation_definitions",
                    "checkpoints")  # fmt: skip

NARROWED = (
    "Run with the value set narrowed to the requested IDs: an ID is in a set exactly when it is in the set's "
    "intersection with the request, so the outcome and the unexpected values are those of the whole set."
)


def _image_set() -> list[gxe.Expectation]:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToNotBeNull(column="label"),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set={"$PARAMETER": "labels"}),
        gxe.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="pixel_max", max_value=255),
        gxe.ExpectColumnValuesToBeInSet(column="channels", value_set={"$PARAMETER": "channels"}),
        gxe.ExpectColumnValuesToBeInSet(column="height", value_set={"$PARAMETER": "height"}),
        gxe.ExpectColumnValuesToBeInSet(column="width", value_set={"$PARAMETER": "width"}),
    ]


def _forget_request() -> list[gxe.Expectation]:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value={"$PARAMETER": "max_rows"}),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeInSet(
            column="id", value_set={"$PARAMETER": "known_ids"}, notes=f"The dataset's sample IDs. {NARROWED}"
        ),
        gxe.ExpectColumnValuesToNotBeInSet(
            column="id",
            value_set={"$PARAMETER": "forgotten_ids"},
            notes=f"IDs removed by earlier batches. {NARROWED}",
        ),
    ]


@dataclass(frozen=True)
class Contract:
    """One contract: its checkpoint, the suite it validates and the dataframe asset its batches come from."""

    checkpoint: str
    suite: str
    asset: str
    expectations: Callable[[], list[gxe.Expectation]]


CONTRACTS: dict[str, Contract] = {
    "data": Contract("data_contract", "image_set", "image_set", _image_set),
    "requests": Contract("request_contract", "forget_request", "forget_request", _forget_request),
}

PROJECT_YML = f"""\
# The mixunlearn GX project, written by `python -m components.adapters.gx_definitions`; commit it, do not edit ids.
config_version: 4
config_variables_file_path: config_variables.yml
plugins_directory:
analytics_enabled: false
stores:
  expectations_store:
    class_name: ExpectationsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: expectations/
  validation_results_store:
    class_name: ValidationResultsStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: ${{{OUTPUTS_VARIABLE}}}/validations/
  checkpoint_store:
    class_name: CheckpointStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: checkpoints/
  validation_definition_store:
    class_name: ValidationDefinitionStore
    store_backend:
      class_name: TupleFilesystemStoreBackend
      suppress_store_backend_id: true
      base_directory: validation_definitions/
expectations_store_name: expectations_store
validation_results_store_name: validation_results_store
checkpoint_store_name: checkpoint_store
data_docs_sites:
  {SITE}:
    class_name: SiteBuilder
    show_how_to_buttons: false
    store_backend:
      class_name: TupleFilesystemStoreBackend
      base_directory: ${{{OUTPUTS_VARIABLE}}}/data_docs/
    # GX's page views with compiled templates kept for the process (components/adapters/gx_views.py)
    site_section_builders:
      expectations:
        view:
          module_name: {VIEWS}
          class_name: CachedJinjaPageView
      validations:
        view:
          module_name: {VIEWS}
          class_name: CachedJinjaPageView
    site_index_builder:
      class_name: DefaultSiteIndexBuilder
      validation_results_limit: {INDEX_LIMIT}
      view:
        module_name: {VIEWS}
        class_name: CachedJinjaIndexPageView
"""


def write_project(gx_dir: Path) -> Path:
    """Write the project's definition files into ``gx_dir`` (replacing earlier ones); returns ``gx_dir``."""
    with tempfile.TemporaryDirectory(prefix="mixunlearn-gx-") as scratch:
        project = Path(scratch) / "gx"
        (project / "expectations").mkdir(parents=True)
        (project / "great_expectations.yml").write_text(PROJECT_YML)
        (project / "config_variables.yml").write_text(f"{OUTPUTS_VARIABLE}: {DEFAULT_OUTPUTS}\n")
        context = gx.get_context(mode="file", context_root_dir=project, runtime_environment=_outputs(scratch))
        source = context.data_sources.add_pandas(DATASOURCE)
        for contract in CONTRACTS.values():
            batch = source.add_dataframe_asset(contract.asset).add_batch_definition_whole_dataframe(contract.asset)
            suite = context.suites.add(gx.ExpectationSuite(name=contract.suite))
            for expectation in contract.expectations():
                suite.add_expectation(expectation)
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(name=contract.suite, data=batch, suite=suite)
            )
            context.checkpoints.add(
                gx.Checkpoint(
                    name=contract.checkpoint,
                    validation_definitions=[definition],
                    actions=[UpdateDataDocsAction(name="update_data_docs", site_names=[SITE])],
                    result_format="SUMMARY",
                )
            )
        gx_dir.mkdir(parents=True, exist_ok=True)
        for name in DEFINITION_FILES:
            target = gx_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            if (project / name).is_dir():
                shutil.copytree(project / name, target)
            else:
                shutil.copy2(project / name, target)
    return gx_dir


def _outputs(folder: str) -> dict[str, str]:
    return {OUTPUTS_VARIABLE: str(Path(folder) / "outputs")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gx_dir", nargs="?", default="gx", type=Path, help="the project folder to write (gx)")
    args = parser.parse_args(argv)
    write_project(args.gx_dir)
    print(f"wrote the GX project definitions to {args.gx_dir}/")  # noqa: T201


if __name__ == "__main__":
    main()
