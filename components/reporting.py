"""Reports: models' metrics beside Retrain's, with both gaps and the time ratio, as tables, JSON and plots.

Two documents share one table and plot: a benchmark's ``results.json`` (rows per method and seed, summarised over
seeds; the JSON follows the core issue's contract, checked by ``shared/tools/check_results.py``) and a deletion
batch's report (one measurement per model, no seeds). Gaps are taken between per-method means and Retrain's means
(each metric averaged over seeds first, as SalUn's Avg. Gap).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from components.files import remove_temporaries, write_atomically
from components.verification.gates import Verdict
from components.verification.metrics import ALL_METRICS, gap_laf, gap_salun

if TYPE_CHECKING:
    from components.deletion.store import ForgetBatch

ROW_METRICS: tuple[str, ...] = (*ALL_METRICS, "seconds")
LABELS = {
    "train_r": "Train_r",
    "train_f": "Train_f",
    "test": "Test",
    "test_r": "Test_r",
    "test_f": "Test_f",
    "asr": "ASR",
    "asr_balanced": "ASR bal.",
    "ua": "UA",
    "ra": "RA",
    "ta": "TA",
    "mia_efficacy": "MIA-Eff.",
    "seconds": "RTE (s)",
}


def mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation over seeds; None when the metric does not apply."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    array = np.asarray(present)
    return float(array.mean()), float(array.std())


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary entry per method (in first-seen order) with means, stds, both gaps and the time ratio."""
    methods = list(dict.fromkeys(str(row["method"]) for row in rows))
    summary: list[dict[str, Any]] = []
    for method in methods:
        cells = [row for row in rows if row["method"] == method]
        entry: dict[str, Any] = {"method": method, "n_seeds": len({row["seed"] for row in cells})}
        for metric in ROW_METRICS:
            entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean_std([row.get(metric) for row in cells])
        summary.append(entry)
    return with_gaps(summary)


def measurements(metrics: Mapping[str, Mapping[str, Any]], seconds: Mapping[str, float]) -> list[dict[str, Any]]:
    """Summary entries of single measurements (one per model, no seeds, no spread), with gaps to ``retrain``."""
    summary = [
        {
            "method": model,
            "n_seeds": None,
            **{f"{m}_mean": values.get(m) for m in ALL_METRICS},
            **{f"{m}_std": None for m in ROW_METRICS},
            "seconds_mean": seconds.get(model),
        }
        for model, values in metrics.items()
    ]
    return with_gaps(summary)


def with_gaps(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each entry's LAF and SalUn gaps and time ratio to the ``retrain`` entry (``None`` without one)."""
    reference = next((entry for entry in summary if entry["method"] == "retrain"), None)
    for entry in summary:
        means = {metric: entry.get(f"{metric}_mean") for metric in ALL_METRICS}
        if reference is None:
            entry["gap_laf"] = entry["gap_salun"] = entry["seconds_ratio_to_retrain"] = None
            continue
        retrain_means = {metric: reference.get(f"{metric}_mean") for metric in ALL_METRICS}
        entry["gap_laf"] = gap_laf(means, retrain_means)
        entry["gap_salun"] = gap_salun(means, retrain_means)
        retrain_seconds = reference["seconds_mean"]
        entry["seconds_ratio_to_retrain"] = (
            entry["seconds_mean"] / retrain_seconds if retrain_seconds and entry["seconds_mean"] is not None else None
        )
    return summary


# What ``asr`` means in a results document: LAF's code's imbalanced scoring (issue #9). Documents written before
# carry no such key and their ``asr`` is today's ``asr_balanced`` (``upgrade_asr``).
ASR_PROTOCOL = "laf_code"


def results_document(
    dataset: str, scenario: str, rows: Sequence[Mapping[str, Any]], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The results.json document: dataset, scenario, rows, summary (and provenance in ``extra``)."""
    return {
        "dataset": dataset,
        "scenario": scenario,
        "asr_protocol": ASR_PROTOCOL,
        **(extra or {}),
        "rows": list(rows),
        "summary": summarise(rows),
    }


PRE_ASR_NOTE = (
    "Run before the LAF-code ASR (issue #9): its ASR was the balanced attack, shown here as ASR bal.; the LAF-code "
    "ASR was not measured, so Gap LAF spans Train_r, Train_f and Test(_r) only."
)


def upgrade_asr(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` in today's ASR terms: a results document written before ``asr_protocol`` existed scored ``asr``
    on a balanced set, so that value moves to ``asr_balanced``, ``asr`` (LAF's code's scoring, never measured) is
    ``None``, and the summary and both gaps are recomputed and a note says so. Newer documents come back as they are
    (a copy)."""
    upgraded = dict(document)
    if "asr_protocol" in document:
        return upgraded
    rows = [{**row, "asr_balanced": row.get("asr"), "asr": None} for row in document["rows"]]
    note = " ".join(part for part in (str(document.get("note") or ""), PRE_ASR_NOTE) if part)
    upgraded.update(asr_protocol="balanced (pre-#9)", rows=rows, summary=summarise(rows), note=note)
    return upgraded


def _cell(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def title(document: Mapping[str, Any]) -> str:
    return str(document.get("title") or f"{document['dataset']} · {document['scenario']}")


def markdown_table(document: Mapping[str, Any]) -> str:
    """Mean ± std per metric, each beside Retrain's mean in brackets, plus both gaps and the time ratio."""
    summary = document["summary"]
    reference = next((entry for entry in summary if entry["method"] == "retrain"), None)
    metrics = [m for m in ROW_METRICS if any(entry.get(f"{m}_mean") is not None for entry in summary)]
    seeded = any(entry["n_seeds"] is not None for entry in summary)
    header = [
        "Method" if seeded else "Model",
        *(["Seeds"] if seeded else []),
        *[LABELS[m] for m in metrics],
        "Gap LAF",
        "Gap SalUn",
        "Time / Retrain",
    ]
    caption = "Mean ± std over seeds" if seeded else "One measurement per model"
    if reference is not None:
        caption += "; [Retrain's mean] beside each metric" if seeded else "; [Retrain's value] beside each metric"
    lines = [
        f"### {title(document)}",
        "",
        f"{caption}. Closer to Retrain is better.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for entry in summary:
        cells = [entry["method"], *([str(entry["n_seeds"])] if seeded else [])]
        for metric in metrics:
            text = _cell(entry.get(f"{metric}_mean"), entry.get(f"{metric}_std"))
            if reference is not None and entry is not reference and reference.get(f"{metric}_mean") is not None:
                text += f" [{reference[f'{metric}_mean']:.2f}]"
            cells.append(text)
        for key in ("gap_laf", "gap_salun"):
            cells.append("–" if entry.get(key) is None else f"{entry[key]:.2f}")
        ratio = entry.get("seconds_ratio_to_retrain")
        cells.append("–" if ratio is None else f"{ratio:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ranking_table(document: Mapping[str, Any]) -> str:
    """Methods other than Retrain ranked by each gap (smallest first)."""
    entries = [e for e in document["summary"] if e["method"] != "retrain"]
    lines = ["| Rank | by Gap LAF | by Gap SalUn |", "|---|---|---|"]
    by_laf = sorted((e for e in entries if e["gap_laf"] is not None), key=lambda e: e["gap_laf"])
    by_salun = sorted((e for e in entries if e["gap_salun"] is not None), key=lambda e: e["gap_salun"])
    for rank in range(max(len(by_laf), len(by_salun))):
        left = f"{by_laf[rank]['method']} ({by_laf[rank]['gap_laf']:.2f})" if rank < len(by_laf) else ""
        right = f"{by_salun[rank]['method']} ({by_salun[rank]['gap_salun']:.2f})" if rank < len(by_salun) else ""
        lines.append(f"| {rank + 1} | {left} | {right} |")
    return "\n".join(lines) + "\n"


def plot(document: Mapping[str, Any], path: Path) -> None:
    """Bar chart of each method's metrics (means with std error bars) against Retrain's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = document["summary"]
    metrics = [m for m in ALL_METRICS if any(entry.get(f"{m}_mean") is not None for entry in summary)]
    figure, axis = plt.subplots(figsize=(max(8, 1.2 * len(metrics) * max(1, len(summary)) / 3), 4.5))
    width = 0.8 / max(1, len(summary))
    positions = np.arange(len(metrics))
    for index, entry in enumerate(summary):
        means = [entry.get(f"{m}_mean") if entry.get(f"{m}_mean") is not None else np.nan for m in metrics]
        stds = [entry.get(f"{m}_std") or 0.0 for m in metrics]
        axis.bar(positions + index * width, means, width, yerr=stds, label=entry["method"], capsize=2)
    axis.set_xticks(positions + width * (len(summary) - 1) / 2, [LABELS[m] for m in metrics])
    axis.set_ylabel("percent")
    axis.set_ylim(0, 105)
    axis.set_title(f"{title(document)} (closer to retrain is better)")
    axis.legend(fontsize=7, ncols=2)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    write_atomically(path, buffer.getvalue())


def write_results(document: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write results.json, results.md and results.png into ``out_dir``; return their paths."""
    paths = {"json": out_dir / "results.json", "md": out_dir / "results.md", "png": out_dir / "results.png"}
    write_atomically(paths["json"], json.dumps(document, indent=2) + "\n")
    write_atomically(
        paths["md"], markdown_table(document) + "\nRanking by gap to Retrain:\n\n" + ranking_table(document)
    )
    plot(document, paths["png"])
    return paths


# -- deletion reports -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeletionOutcome:
    """What one pipeline run decided: the verdict, which model now serves, and why."""

    batch: ForgetBatch
    verdict: Verdict | None  # the gates against the retrain reference; None when none was compared (certify mode)
    promoted_source: str  # "unlearned" or "retrain"
    promoted_version: str
    previous_version: str | None
    metrics: Mapping[str, Mapping[str, float | None]]  # model -> metrics
    seconds: Mapping[str, float]  # model -> RTE / training seconds
    lineage: Mapping[str, str] = field(default_factory=dict)
    certification: Mapping[str, Any] | None = None  # Certification.to_document(), when certification ran
    mode: str = "reference"  # verify.mode
    summary_line: str | None = None  # the decision in one line (PASS/FAIL); the gates' summary when not given
    audit_history: Sequence[Mapping[str, str]] = ()  # the serving model's chain (components.deletion.audit.history)
    audit_due: str | None = None  # why a Retrain audit is due, when it is
    # the batch's GX validations (contract, run_name, run_time, success, docs_page, result_file) and the Data Docs
    # index (components.adapters.expectations.latest_validations / docs_index)
    validations: Sequence[Mapping[str, Any]] = ()
    data_docs: Path | None = None
    # the unlearning run: method, its RTE and what its loop reported (steps, budget, monitor_*, guard_*)
    unlearning: Mapping[str, Any] = field(default_factory=dict)

    @property
    def verdict_line(self) -> str:
        if self.summary_line is not None:
            return self.summary_line
        if self.verdict is not None:
            return self.verdict.summary()
        if self.certification is not None:
            return str(self.certification["verdict"])
        raise ValueError("a deletion outcome needs a verdict or a certification")


def outcome_document(outcome: DeletionOutcome) -> dict[str, Any]:
    """The batch's models (unlearned, retrain, original) as one table document: single measurements, no seeds."""
    batch = outcome.batch
    return {
        "title": f"{batch.dataset} · batch {batch.batch_id}",
        "dataset": batch.dataset,
        "batch_id": batch.batch_id,
        "summary": measurements(outcome.metrics, outcome.seconds),
    }


def verdict_table(verdict: Verdict) -> str:
    lines = ["| Gate | Value | Limit | Result |", "|---|---|---|---|"]
    for check in verdict.checks:
        value = "–" if check.value is None else f"{check.value:.2f}"
        lines.append(f"| {check.name} | {value} | {check.limit:.2f} | {'pass' if check.passed else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def _interval(check: Mapping[str, Any]) -> str:
    return f"{check['value']:.1f} [{check['lower']:.1f}, {check['upper']:.1f}]"


def certification_table(document: Mapping[str, Any]) -> str:
    """Each check's value [confidence interval] and limit, for the unlearned model and the untouched control."""
    lines = [
        "| Check | Unlearned model | Result | Control (untouched) | Result | Limit |",
        "|---|---|---|---|---|---|",
    ]
    control = {check["name"]: check for check in document["control_checks"]}
    for check in document["candidate_checks"]:
        other = control[check["name"]]
        lines.append(
            f"| {check['name']} | {_interval(check)} | {'pass' if check['passed'] else 'FAIL'} | "
            f"{_interval(other)} | {'pass' if other['passed'] else 'FAIL'} | {check['limit']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def certification_section(document: Mapping[str, Any]) -> str:
    """The report's Certification section: the verdict sentence, the check table and each check's counts."""
    measurable = "measurable" if document["measurable"] else "not measurable (the untouched control passes every check)"
    details = (
        "\n".join(f"- `{check['name']}` (unlearned): {check['detail']}" for check in document["candidate_checks"])
        + "\n"
        + "\n".join(f"- `{check['name']}` (control): {check['detail']}" for check in document["control_checks"])
    )
    return (
        "## Certification\n\n"
        f"{document['verdict']}\n\n"
        "Values in percent / percentage points with their confidence interval; a check fails when the lower bound "
        f"exceeds the limit. The batch is {measurable}; membership-attack AUC (forget vs held-out): unlearned "
        f"{document['candidate_attack_auc']:.3f}, control {document['control_attack_auc']:.3f}.\n\n"
        f"{certification_table(document)}\n{details}\n\n"
    )


def _link(path: Path | str, base: Path | None) -> str:
    """A markdown link target: relative to ``base`` (the report's folder) when given, so the report and the Data Docs
    site can move together; spaces escaped."""
    target = os.path.relpath(path, base) if base is not None else str(path)
    return Path(target).as_posix().replace(" ", "%20")


def validations_section(outcome: DeletionOutcome, base: Path | None = None) -> str:
    """The report's Data contracts section: each of the batch's GX validations with its Data Docs page."""
    if not outcome.validations and outcome.data_docs is None:
        return ""
    lines = ["## Data contracts (Great Expectations)", ""]
    if outcome.data_docs is not None:
        lines += [f"Data Docs: [index]({_link(outcome.data_docs, base)}) (the newest validations of this project).", ""]
    if outcome.validations:
        lines += ["| Checkpoint | Run | Validated at | Result | Data Docs | Result JSON |", "|---|---|---|---|---|---|"]
        for row in outcome.validations:
            page = f"[page]({_link(row['docs_page'], base)})" if row.get("docs_page") else "–"
            result = f"[json]({_link(row['result_file'], base)})" if row.get("result_file") else "–"
            lines.append(
                f"| {row['contract']} | {row['run_name']} | {row['run_time']} | "
                f"{'pass' if row['success'] else 'FAIL'} | {page} | {result} |"
            )
    return "\n".join(lines) + "\n\n"


def unlearning_section(unlearning: Mapping[str, Any]) -> str:
    """How the unlearning loop ran: its steps against the budget, why it stopped, and the guard's back-offs."""
    if not unlearning:
        return ""
    history = unlearning.get("history", {})
    lines = [f"Method `{unlearning['method']}`, {float(unlearning['seconds']):.1f} s"]
    if "steps" in history:
        lines[0] += f", {int(history['steps'])} unlearner steps of a budget of {int(history['budget_steps'])}"
    if "monitor_forgotten" in history:
        measure = (
            f"forget accuracy {history['monitor_value']:.1f} %"
            if history.get("monitor_class_level")
            else f"forget-batch accuracy {history['monitor_value']:+.1f} points from held-out accuracy on its classes"
        )
        if history["monitor_forgotten"]:
            lines.append(
                f"The forgetting monitor stopped the loop at step {int(history['monitor_stopped_step'])}: the forget "
                f"batch looked forgotten ({measure}, on validation samples certification does not read)."
            )
        else:
            lines.append(
                f"The forgetting monitor did not find the batch forgotten within the budget (last check: {measure}, "
                f"after {int(history['monitor_checks'])} checks): the whole budget ran."
            )
    if "guard_backoffs" in history:
        lines.append(
            f"Retained-accuracy guard: {history['guard_accuracy']:.1f} % on kept-class validation samples against "
            f"the original's {history['guard_baseline']:.1f} %, {int(history['guard_backoffs'])} back-off(s)"
            + (", stopped the loop." if history.get("guard_stopped") else ".")
        )
    return "## Unlearning\n\n" + "\n".join(f"- {line}" for line in lines) + "\n\n"


def render_deletion_report(outcome: DeletionOutcome, model_name: str, alias: str, base: Path | None = None) -> str:
    """The report's markdown; links to files (Data Docs pages) are relative to ``base`` when given."""
    batch = outcome.batch
    promoted = (
        f"**{model_name}@{alias} → version {outcome.promoted_version}** "
        f"({outcome.promoted_source} model; previously version {outcome.previous_version or 'none'})"
    )
    lineage = "\n".join(f"- `{key}`: {value}" for key, value in sorted(outcome.lineage.items()))
    gates = (
        verdict_table(outcome.verdict) + "\n"
        if outcome.verdict is not None
        else f"No retrain-from-scratch reference compared (verify mode {outcome.mode}).\n\n"
    )
    metrics = (
        f"## Metrics\n\n{markdown_table(outcome_document(outcome))}\n![metrics](metrics.png)\n\n"
        if outcome.metrics
        else "## Metrics\n\nNone computed on the deletion path (verify mode certify): the Retrain audit "
        "(`mixunlearn retrain-audit`) measures the serving model against a retrained one, off this path.\n\n"
    )
    history = (
        "## Audit history of the serving model\n\n"
        + (f"{outcome.audit_due}\n\n" if outcome.audit_due else "")
        + f"{history_markdown(outcome.audit_history)}\n"
        if outcome.audit_history
        else ""
    )
    return (
        f"# Deletion report: {batch.batch_id}\n\n"
        f"- Dataset: {batch.dataset}; requests: {', '.join(batch.request_ids)} "
        f"(requesters: {', '.join(batch.requesters)})\n"
        f"- Forgotten training samples: {len(batch.forget_ids)}; other samples deleted: "
        f"{len(batch.removed_elsewhere)}; whole classes removed: {list(batch.forgotten_classes) or 'none'}\n"
        f"- Manifest sha256: `{batch.sha256}`\n\n"
        f"## Verdict: {outcome.verdict_line}\n\n{gates}"
        f"Serving now: {promoted}\n\n"
        f"{unlearning_section(outcome.unlearning)}"
        f"{certification_section(outcome.certification) if outcome.certification is not None else ''}"
        f"{metrics}{history}{validations_section(outcome, base)}## Lineage\n\n{lineage}\n"
    )


def history_markdown(rows: Sequence[Mapping[str, str]]) -> str:
    """The serving model's chain, oldest version first: promotion verdict and Retrain-audit result of each."""
    lines = [
        "| Version | Source | Batch | Promotion verdict | Retrain audit | Gap (LAF) to Retrain | Audited at |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['version']} | {row['source']} | {row['batch']} | {row['promotion']} | {row['audit']} | "
            f"{row['audit_gap_laf']} | {row['audit_at']} |"
        )
    return "\n".join(lines) + "\n"


def write_deletion_report(outcome: DeletionOutcome, out_dir: Path, model_name: str, alias: str) -> dict[str, Path]:
    """Write report.md and metrics.png into ``out_dir`` (each atomically), first removing what a writer killed in
    that folder left behind (a resumed batch writes its report again)."""
    remove_temporaries(out_dir)
    paths = {"md": out_dir / "report.md"}
    if outcome.metrics:
        paths["png"] = out_dir / "metrics.png"
        plot(outcome_document(outcome), paths["png"])
    write_atomically(paths["md"], render_deletion_report(outcome, model_name, alias, base=out_dir))
    return paths


def write_audit_report(
    out_dir: Path,
    model_name: str,
    alias: str,
    record: Any,  # components.deletion.audit.AuditRecord
    verdict: Verdict,
    metrics: Mapping[str, Mapping[str, float | None]],
    history: Sequence[Mapping[str, str]],
    promoted_version: str | None,
    forgotten: int,
) -> Path:
    """Write the Retrain audit's report.md into ``out_dir``; returns its path."""
    serving = (
        f"{model_name}@{alias} → version {promoted_version} (the retrained model: the audited one failed a gate)"
        if promoted_version
        else f"{model_name}@{alias} stays on version {record.version}"
    )
    document = {"title": f"{model_name} version {record.version} vs Retrain", "summary": measurements(metrics, {})}
    text = (
        f"# Retrain audit: {model_name} version {record.version}\n\n"
        f"- Audited at {record.audited_at}; retained pool sha256 `{record.pool_sha256}`\n"
        f"- Reference: {record.reference} (trained from scratch on the same data, recipe and seed)\n"
        f"- Samples forgotten since the last model trained from scratch: {forgotten} "
        f"(unlearned batches since: {record.batches_since_scratch})\n\n"
        f"## Verdict: {record.detail}\n\n{verdict_table(verdict)}\nServing now: {serving}\n\n"
        f"## Metrics\n\n{markdown_table(document)}\n"
        f"## Audit history (drift from Retrain along the chain)\n\n{history_markdown(history)}"
    )
    path = out_dir / "report.md"
    write_atomically(path, text)
    return path
