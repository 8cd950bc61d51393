"""The file-backed GX project (gx/): the committed definitions, loading them from files, and what a checkpoint keeps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from components.adapters import expectations
from components.adapters.expectations import (
    docs_index,
    latest_validations,
    open_context,
    project_dir,
    validate_forget_request,
    validate_image_set,
)
from components.adapters.gx_definitions import CONTRACTS, write_project

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KNOWN = [f"digits/train/{i:05d}" for i in range(100)]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its generated ids blanked (GX draws a new UUID for each object)."""
    return {
        path.relative_to(folder).as_posix(): UUID.sub("<id>", path.read_text())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_committed_project_is_what_the_generator_writes(tmp_path: Path) -> None:
    # given: the project written afresh
    written = write_project(tmp_path / "gx")
    # then: the repository's gx/ holds the same files, ids aside: the suites are not edited by hand
    assert project_dir() == ROOT / "gx"
    assert _files(written) == _files(ROOT / "gx")
    assert {"checkpoints/data_contract.json", "checkpoints/request_contract.json"} <= set(_files(written))


def test_each_contract_has_one_checkpoint_over_its_suite_with_data_docs(tmp_path: Path) -> None:
    context = open_context(tmp_path / "out")
    for contract in CONTRACTS.values():
        checkpoint = context.checkpoints.get(contract.checkpoint)
        assert [d.suite.name for d in checkpoint.validation_definitions] == [contract.suite]
        assert [action.type for action in checkpoint.actions] == ["update_data_docs"]
    # the run-dependent values are suite parameters: the suite files stay static
    request_suite = json.loads((ROOT / "gx" / "expectations" / "forget_request.json").read_text())
    parameters = {
        value["$PARAMETER"]
        for expectation in request_suite["expectations"]
        for value in expectation["kwargs"].values()
        if isinstance(value, dict)
    }
    assert parameters == {"max_rows", "known_ids", "forgotten_ids"}


def test_the_contract_is_the_suite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a copy of the project whose image_set suite allows pixels up to 100 only
    copy = write_project(tmp_path / "gx")
    suite_file = copy / "expectations" / "image_set.json"
    suite = json.loads(suite_file.read_text())
    for expectation in suite["expectations"]:
        if expectation["kwargs"].get("column") == "pixel_max":
            expectation["kwargs"]["max_value"] = 100
    suite_file.write_text(json.dumps(suite))
    monkeypatch.setattr(expectations, "default_file", lambda name: tmp_path / name)
    ids = [f"digits/train/{i:05d}" for i in range(3)]
    images = np.full((3, 1, 8, 8), 200, dtype=np.uint8)
    # then: the edited file decides, not code
    report = validate_image_set(ids, [0, 1, 2], images, 10, (1, 8, 8))
    assert report.failures == [
        "expect_column_values_to_be_between(pixel_max, max_value=100.0): 3 of 3 unexpected, e.g. [200]"
    ]


def test_a_checkpoint_run_keeps_the_result_and_builds_data_docs(tmp_path: Path) -> None:
    outputs = tmp_path / "gx-out"
    # when: a request with an unknown ID is checked with an outputs folder
    report = validate_forget_request(
        ["digits/train/00010", "digits/test/99999"], KNOWN, KNOWN[:3], 0.05, 100, outputs=outputs, run_name="req-7"
    )
    # then: the same one-line message as without outputs, and the result JSON, its Data Docs page and the index
    assert report.failures == [
        "expect_column_values_to_be_in_set(id, value_set=<100 values>): 1 of 2 unexpected, e.g. ['digits/test/99999']"
    ]
    without = validate_forget_request(["digits/train/00010", "digits/test/99999"], KNOWN, KNOWN[:3], 0.05, 100)
    assert without.failures == report.failures
    assert without.result_file is None
    assert without.docs_page is None
    assert report.result_file is not None
    assert report.docs_page is not None
    stored = json.loads(report.result_file.read_text())
    assert stored["success"] is False
    assert report.result_file.is_relative_to(outputs.resolve() / "validations" / "forget_request" / "req-7")
    assert report.docs_page.is_relative_to(outputs.resolve() / "data_docs" / "validations" / "forget_request")
    assert report.docs_page.suffix == ".html"
    assert "digits/test/99999" in report.docs_page.read_text()
    assert "req-7" in docs_index(outputs).read_text()


def test_latest_validations_finds_the_newest_result_of_each_run(tmp_path: Path) -> None:
    outputs = tmp_path / "gx-out"
    validate_forget_request(["digits/train/00001"], KNOWN, KNOWN[:3], 0.05, 100, outputs=outputs, run_name="req-1")
    second = validate_forget_request(KNOWN[20:22], KNOWN, [], 0.05, 100, outputs=outputs, run_name="req-1")
    found = latest_validations(outputs, [("requests", "req-1"), ("requests", "never"), ("data", "digits-pool")])
    assert [(v.contract, v.run_name, v.success) for v in found] == [("request_contract", "req-1", True)]
    assert found[0].result_file == second.result_file
    assert found[0].docs_page == second.docs_page
    assert latest_validations(tmp_path / "empty", [("requests", "req-1")]) == []


def test_a_read_only_project_is_left_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: an installed project that cannot be written (site-packages owned by root)
    project = write_project(tmp_path / "gx")
    before = _files(project)
    for path in [*project.rglob("*"), project]:
        path.chmod(path.stat().st_mode & ~0o222)
    monkeypatch.setattr(expectations, "default_file", lambda name: tmp_path / name)
    try:
        report = validate_forget_request(KNOWN[:2], KNOWN, [], 0.05, 100, outputs=tmp_path / "out", run_name="r")
    finally:
        for path in [project, *project.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    # then: the check ran, its outputs went to the outputs folder, and the project's files are unchanged
    assert report.success
    assert report.result_file is not None
    assert report.result_file.is_file()
    assert _files(project) == before


def test_a_missing_project_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(expectations, "default_file", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"^the GX project gx/ is missing from this install"):
        validate_forget_request(KNOWN[:1], KNOWN, [], 0.05, 100)


def test_data_docs_builds_reuse_the_compiled_templates(tmp_path: Path) -> None:
    # given: a cold cache
    from components.adapters import gx_views

    gx_views.CACHE.clear()
    # when: two checkpoint runs build Data Docs in this process
    first = validate_forget_request(["digits/test/99999"], KNOWN, [], 0.05, 100, outputs=tmp_path, run_name="a")
    compiled = dict(gx_views.CACHE._compiled)
    second = validate_forget_request(["digits/test/99998"], KNOWN, [], 0.05, 100, outputs=tmp_path, run_name="b")
    # then: the first compiled the page templates, the second compiled nothing new, and both pages show their IDs
    assert len(compiled) > 10
    assert gx_views.CACHE._compiled == compiled
    assert first.docs_page is not None
    assert second.docs_page is not None
    assert "digits/test/99999" in first.docs_page.read_text()
    assert "digits/test/99998" in second.docs_page.read_text()
