"""The deletion-chain benchmark's table and its argument checks (the chain itself runs the real CLI: hours)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from components.bench.deletion_chain import BatchRow, main, markdown


def _row(batch: int, kind: str, wall: float, retrain: float | None) -> BatchRow:
    return BatchRow(
        batch=batch,
        kind=kind,
        request_id=f"bench-{batch}",
        samples=500,
        wall_seconds=wall,
        peak_rss_mb=1400.0,
        verdict="PASS: certified",
        certified=True,
        control_certified=False,
        measurable=True,
        served_source="unlearned",
        served_version=str(batch + 1),
        audit_verdict="pass",
        audit_gap_laf=1.5 if retrain else None,
        audit_detail="PASS",
        audit_promoted=False,
        retrain_seconds=retrain,
        ratio_to_retrain=wall / retrain if retrain else None,
        audit_wall_seconds=700.0,
        audit_peak_rss_mb=1300.0,
    )


def test_the_table_has_one_line_per_batch_with_its_ratio_to_retrain() -> None:
    # given a chain of two batches, the second without a retrain time
    document = {
        "batches": [asdict(_row(1, "sample", 80.0, 800.0)), asdict(_row(2, "class", 150.0, None))],
        "nothing_pending": {"wall_seconds": 6.0, "peak_rss_mb": 500.0},
        "setup_wall_seconds": 900.0,
        "command": "python -m components.bench.deletion_chain",
        "machine": "2 CPU cores, no GPU",
    }

    # when it is rendered
    lines = markdown(document).splitlines()

    # then each batch has its row, the ratio is wall / retrain, and a missing retrain shows as a dash
    rows = [line for line in lines if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2
    assert "| 0.100 |" in rows[0]
    assert "| – | – |" in rows[1]


@pytest.mark.parametrize(
    "arguments",
    [["--resume"], ["--resume", "--reuse-project"]],
    ids=["without-reuse-project", "without-results"],
)
def test_resume_needs_the_chain_it_continues(tmp_path: Path, arguments: list[str]) -> None:
    # when --resume is given without a project to continue or without the results of its earlier batches
    with pytest.raises(SystemExit) as stopped:
        main([*arguments, "--project", str(tmp_path / "project"), "--out", str(tmp_path / "out")])

    # then argparse refuses it (status 2) before any project is built
    assert stopped.value.code == 2
    assert not (tmp_path / "project").exists()
