"""The deletion report: metrics beside the retrain reference, the verdict, the lineage, and plots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.deletion.store import ForgetBatch
from components.files import write_atomically
from components.reporting import markdown_table, plot, results_document
from components.verification.gates import Verdict


@dataclass(frozen=True)
class DeletionOutcome:
    """What one pipeline run decided: the verdict, which model now serves, and why."""

    batch: ForgetBatch
    verdict: Verdict
    promoted_source: str  # "unlearned" or "retrain"
    promoted_version: str
    previous_version: str | None
    metrics: Mapping[str, Mapping[str, float | None]]  # method -> metrics
    seconds: Mapping[str, float]  # method -> RTE / training seconds
    lineage: Mapping[str, str] = field(default_factory=dict)


def outcome_document(outcome: DeletionOutcome) -> dict[str, Any]:
    rows = [
        {"method": method, "seed": 0, **metrics, "seconds": outcome.seconds.get(method, 0.0)}
        for method, metrics in outcome.metrics.items()
    ]
    return results_document(outcome.batch.dataset, outcome.batch.batch_id, rows)


def verdict_table(verdict: Verdict) -> str:
    lines = ["| Gate | Value | Limit | Result |", "|---|---|---|---|"]
    for check in verdict.checks:
        value = "–" if check.value is None else f"{check.value:.2f}"
        lines.append(f"| {check.name} | {value} | {check.limit:.2f} | {'pass' if check.passed else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def render_markdown(outcome: DeletionOutcome, model_name: str, alias: str) -> str:
    batch = outcome.batch
    document = outcome_document(outcome)
    promoted = (
        f"**{model_name}@{alias} → version {outcome.promoted_version}** "
        f"({outcome.promoted_source} model; previously version {outcome.previous_version or 'none'})"
    )
    lineage = "\n".join(f"- `{key}`: {value}" for key, value in sorted(outcome.lineage.items()))
    return (
        f"# Deletion report: {batch.batch_id}\n\n"
        f"- Dataset: {batch.dataset}; requests: {', '.join(batch.request_ids)} "
        f"(requesters: {', '.join(batch.requesters)})\n"
        f"- Forgotten training samples: {len(batch.forget_ids)}; other samples deleted: "
        f"{len(batch.removed_elsewhere)}; whole classes removed: {list(batch.forgotten_classes) or 'none'}\n"
        f"- Manifest sha256: `{batch.sha256}`\n\n"
        f"## Verdict: {outcome.verdict.summary()}\n\n{verdict_table(outcome.verdict)}\n"
        f"Serving now: {promoted}\n\n"
        f"## Metrics\n\n{markdown_table(document)}\n"
        f"![metrics](metrics.png)\n\n## Lineage\n\n{lineage}\n"
    )


def write_report(outcome: DeletionOutcome, out_dir: Path, model_name: str, alias: str) -> dict[str, Path]:
    """Write report.md and metrics.png into ``out_dir``."""
    paths = {"md": out_dir / "report.md", "png": out_dir / "metrics.png"}
    plot(outcome_document(outcome), paths["png"])
    write_atomically(paths["md"], render_markdown(outcome, model_name, alias))
    return paths
