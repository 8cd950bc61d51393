"""The lineage audit as a reader sees it: a JSON document and a text list of the chain, oldest first, ending with
the re-check's verdict (``components.deletion.lineage_audit`` finds the facts and the problems)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.deletion.audit import AUDIT_TAGS
from components.deletion.lineage_audit import ChainAudit, VersionFacts

DEFAULT_PROMOTER = "deletion-batch"  # versions registered before the promoted_by tag existed came from a batch
KEY_METRICS = ("cert_certified", "cert_measurable", "cert_attack_auc", "rte_seconds", "train_seconds")


def key_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The run metrics the audit shows: the certification's (``cert_*``, the control's left out), RTE, train time."""
    return {
        key: value
        for key, value in sorted(metrics.items())
        if key in KEY_METRICS or (key.startswith("cert_") and not key.startswith("cert_control_"))
    }


def link_document(link: VersionFacts, audit: ChainAudit) -> dict[str, Any]:
    tags = link.tags
    batch = audit.batches.get(tags.get("forget_batch_id", ""))
    return {
        "version": link.version,
        "source": link.source,
        "created_at": link.created_at.isoformat() if link.created_at else None,
        "promoted_by": tags.get("promoted_by", DEFAULT_PROMOTER),
        "parent_model_version": tags.get("parent_model_version"),
        "batch": None
        if not tags.get("forget_batch_id")
        else {
            "batch_id": tags["forget_batch_id"],
            "request_ids": link.listed("forget_request_ids"),
            "requesters": link.listed("forget_requesters"),
            "manifest_sha256": tags.get("forget_manifest_sha256"),
            "forget_samples": len(batch.forget_ids) if batch else None,
            "created_at": batch.created_at.isoformat() if batch else None,
        },
        "data": {
            "md5": tags.get("data_md5"),
            "git_rev": tags.get("git_rev"),
            "pool_sha256": tags.get("pool_sha256"),
            "parent_md5": tags.get("parent_data_md5"),
            "parent_git_rev": tags.get("parent_git_rev"),
        },
        "run_id": tags.get("pipeline_run_id"),
        "metrics": key_metrics(audit.metrics.get(link.version, {})),
        "method": tags.get("method"),
        "verify_mode": tags.get("verify_mode"),
        "certification": tags.get("certification"),
        "verdict": tags.get("verdict"),
        "verdict_detail": tags.get("verdict_detail"),
        "retrain_audit": {key.removeprefix("audit_"): tags[key] for key in AUDIT_TAGS if tags.get(key)},
        "problems": [problem.message for problem in audit.problems if problem.version == link.version],
        "notes": [note.message for note in audit.notes if note.version == link.version],
    }


def audit_document(audit: ChainAudit) -> dict[str, Any]:
    return {
        "target": audit.target,
        "version": audit.links[-1].version if audit.links else None,
        "ok": audit.ok,
        "checks": audit.checks,
        "deep": audit.deep,
        "chain": [link_document(link, audit) for link in audit.links],
        "problems": [{"version": p.version, "check": p.check, "message": p.message} for p in audit.problems],
        "notes": [{"version": n.version, "check": n.check, "message": n.message} for n in audit.notes],
        "erasure": [dict(entry) for entry in audit.erasure],
    }


def _short(value: str | None, width: int = 12) -> str:
    return "–" if not value else value[:width]


def render(audit: ChainAudit) -> str:
    """The chain as a readable list, oldest first, then the re-check's verdict."""
    lines = [f"{audit.target}: chain of {len(audit.links)} version(s), oldest first"]
    for link in audit.links:
        doc = link_document(link, audit)
        created = link.created_at.strftime("%Y-%m-%d %H:%M:%S UTC") if link.created_at else "unknown time"
        lines += ["", f"version {link.version}  {link.source}  registered {created}, promoted by {doc['promoted_by']}"]
        data = doc["data"]
        if data["parent_md5"] or data["parent_git_rev"]:
            lines.append(f"  data before    md5 {data['parent_md5'] or '–'} at git {_short(data['parent_git_rev'])}")
        lines.append(
            f"  data           md5 {data['md5'] or '–'} at git {_short(data['git_rev'])}, "
            f"pool sha256 {_short(data['pool_sha256'])}"
        )
        if doc["batch"]:
            batch = doc["batch"]
            size = f", {batch['forget_samples']} samples" if batch["forget_samples"] is not None else ""
            lines.append(
                f"  batch          {batch['batch_id']}{size}, manifest sha256 {_short(batch['manifest_sha256'])}"
            )
            lines.append(f"  requests       {', '.join(batch['request_ids']) or '–'}")
            lines.append(f"  requesters     {', '.join(batch['requesters']) or '–'}")
        if doc["parent_model_version"]:
            lines.append(f"  parent         version {doc['parent_model_version']}")
        if doc["run_id"]:
            shown = ", ".join(f"{key} {value:.4g}" for key, value in doc["metrics"].items() if key in KEY_METRICS)
            lines.append(f"  run            {doc['run_id']}" + (f": {shown}" if shown else ""))
        if doc["certification"]:
            lines.append(f"  certification  {doc['certification']}")
        if doc["verdict"]:
            # in certify mode the verdict's detail is the certification line already shown
            detail = doc["verdict_detail"] if doc["verdict_detail"] not in (None, "", doc["certification"]) else ""
            lines.append(f"  verdict        {doc['verdict']}" + (f": {detail}" if detail else ""))
        retrain = doc["retrain_audit"]
        if retrain:
            gap = f", gap_laf {retrain['gap_laf']}" if retrain.get("gap_laf") else ""
            at = f" at {retrain['at']}" if retrain.get("at") else ""
            lines.append(f"  retrain audit  {retrain.get('verdict', '–')}{gap}{at}")
        else:
            lines.append("  retrain audit  not audited")
        lines += [f"  PROBLEM        {message}" for message in doc["problems"]]
        lines += [f"  note           {message}" for message in doc["notes"]]
    if audit.erasure:
        lines += ["", "erasure of the forgotten samples from the stored data versions:"]
        lines += [f"  {entry['line']}" for entry in audit.erasure]
    lines.append("")
    scope = "" if audit.deep else " (pool fingerprints not re-read: --deep)"
    if audit.deep and audit.notes:
        scope = f" ({len(audit.notes)} purged data version(s) not re-read: the purge records document them)"
    if audit.ok:
        lines.append(f"OK: {audit.checks} recorded facts re-checked, all match{scope}")
    else:
        count = len(audit.problems)
        lines.append(f"FAIL: {count} recorded fact{'s' if count > 1 else ''} missing or not matching{scope}:")
        lines += [f"  version {p.version}: {p.message}" for p in audit.problems]
    return "\n".join(lines)
