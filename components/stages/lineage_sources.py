"""``mixunlearn audit`` wired to a project: the registry, the batch records, git + DVC, behind the look-ups that
``components.deletion.lineage_audit`` re-checks the recorded facts against."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from components.adapters.services import open_environment, open_tracking
from components.adapters.tracking import TrackingError, TrackingStore
from components.adapters.versioning import DataVersioning
from components.config import PipelineConfig
from components.data.types import DataError, ids_sha256
from components.deletion import lineage_audit, purge
from components.deletion.lineage_audit import ChainAudit, Honoured, Sources, VersionFacts
from components.deletion.purge import PURGES_DIR
from components.deletion.store import DataStore, ForgetBatch, image_set_from_bytes, read_image_set


def parse_target(target: str | None, default_model: str, default_alias: str) -> tuple[str, str | None, str | None]:
    """``MODEL[@ALIAS|/VERSION]`` as (model, alias, version); exactly one of alias and version is set."""
    text = (target or default_model).strip()
    if "@" in text:
        model, alias = text.split("@", 1)
        return model or default_model, alias or default_alias, None
    if "/" in text:
        model, version = text.rsplit("/", 1)
        if not version.isdigit():
            raise ValueError(f"version {version!r} in {text!r} is not a number")
        return model or default_model, None, version
    return text, default_alias, None


def dataset_of(model: str, template: str, default: str) -> str:
    """The dataset a registered model name was made for (``mixunlearn-{dataset}`` -> ``digits``), else ``default``."""
    prefix, _, suffix = template.partition("{dataset}")
    if model.startswith(prefix) and model.endswith(suffix) and len(model) > len(prefix) + len(suffix):
        return model[len(prefix) : len(model) - len(suffix)]
    return default


@dataclass(frozen=True)
class AuditSession:
    """One project's registry, data store and data versions, and the served version being audited."""

    model: str
    label: str  # "<model>@<alias>" or "<model>/<version>"
    version: str
    dataset: str
    tracking: TrackingStore
    store: DataStore
    versioning: DataVersioning
    deep: bool
    retention_days: float  # pipeline.purge_after_days: when a pending erasure is due
    purged: Mapping[str, Mapping[str, Any]]  # md5 -> purge entry of every purged data version (data/purges/)

    def sources(self) -> Sources:
        return Sources(
            version=self._version,
            batch_record=self._batch_record,
            md5_at=self.versioning.md5_at,
            run_metrics=self._run_metrics,
            pool_sha256_at=cache(self._pool_sha256_at) if self.deep else None,
            purged_at=self._purged_at,
        )

    def chain(self) -> ChainAudit:
        """The chain re-checked, with each batch's erasure from the stored data versions."""
        audit = lineage_audit.audit_chain(self.label, self.version, self.sources(), self.deep)
        return replace(audit, erasure=tuple(e.to_document(self.retention_days) for e in self._erasures()))

    def request(self, request_id: str) -> tuple[Honoured, ChainAudit]:
        audit = self.chain()
        state, reasons = self._request_state(request_id)
        answer = lineage_audit.request_honoured(request_id, state, self._batches(), audit.links, self.label, reasons)
        return answer, audit

    def sample(self, sample_id: str) -> tuple[Honoured, ChainAudit]:
        audit = self.chain()
        pool = read_image_set(self.store.dataset_dir(self.dataset) / "pool.npz")
        in_pool = sample_id in set(pool.ids.tolist())
        return lineage_audit.sample_honoured(sample_id, self._batches(), audit.links, self.label, in_pool), audit

    # -- the look-ups --------------------------------------------------------------------------------------------

    def _version(self, version: str) -> VersionFacts | None:
        record = self.tracking.version_record(self.model, version)
        return None if record is None else VersionFacts(version, record.tags, record.created_at)

    def _batch_record(self, batch_id: str) -> str | None:
        path = self.store.batches_dir / f"{batch_id}.json"
        # a tag is data, not a path: a batch ID that walks out of batches/ names no record
        if Path(batch_id).name != batch_id or not path.is_file():
            return None
        return path.read_text()

    def _run_metrics(self, run_id: str) -> Mapping[str, float] | None:
        """The pipeline run's metrics (certification) with its stages' (rte_seconds, train_seconds) merged in."""
        try:
            merged = dict(self.tracking.run_metrics(run_id))
            for stage in self.tracking.child_run_metrics(run_id).values():
                for key, value in stage.items():
                    merged.setdefault(key, value)
        except TrackingError:
            return None
        return merged

    def _pool_sha256_at(self, rev: str) -> str:
        payload = self.versioning.read_at(f"data/{self.dataset}/pool.npz", rev)
        return ids_sha256(image_set_from_bytes(payload).ids.tolist())

    def _purged_at(self, rev: str) -> str | None:
        entry = self.purged.get(self.versioning.md5_at(rev) or "")
        if entry is None:
            return None
        return (
            f"data version {rev[:12]} was purged on {str(entry.get('purged_at') or '?')[:10]} "
            f"({PURGES_DIR}/{entry['record']}); the batch records keep its forgotten IDs and their hashes"
        )

    def _erasures(self) -> list[purge.Erasure]:
        current = self.versioning.current_md5()
        if current is None:
            return []
        history = [(rev, md5) for rev, md5, _ in self.versioning.version_history()]
        return purge.erasures(history, self._batches(), current, self.purged)

    def _batches(self) -> list[ForgetBatch]:
        """Every readable batch record of the dataset (an unreadable one is the chain audit's to report)."""
        batches = []
        for path in sorted(self.store.batches_dir.glob("*.json")):
            batch, _ = lineage_audit.parse_batch(path.stem, path.read_text())
            if batch is not None and batch.dataset == self.dataset:
                batches.append(batch)
        return sorted(batches, key=lambda batch: batch.created_at)

    def _request_state(self, request_id: str) -> tuple[str, list[str]]:
        name = f"{request_id}.json"
        if Path(name).name != name:
            return "unknown", []
        if (self.store.pending_dir / name).is_file():
            return "pending", []
        if (self.store.rejected_dir / name).is_file():
            try:
                reasons = json.loads((self.store.rejected_dir / name).read_text()).get("reasons", [])
            except (ValueError, AttributeError):
                reasons = []
            return "rejected", [str(reason) for reason in reasons]
        if (self.store.processed_dir / name).is_file():
            return "processed", []
        return "unknown", []


def open_audit(config: PipelineConfig, root: Path, target: str | None, deep: bool = False) -> AuditSession:
    """The session auditing ``target`` in the project at ``root``.

    Raises:
        DataError: when the project has no registry, the model or alias does not exist, or the version is unknown
            (what the user asked cannot be audited: a usage error, not a failed check).
    """
    default_model = config.pipeline.registered_model.format(dataset=config.base.dataset)
    model, alias, version = parse_target(target, default_model, config.pipeline.alias)
    tracking = open_tracking(config, root, create=False)
    if tracking is None:
        raise DataError(f"no model registry under {root / 'mlflow'}: run the pipeline first")
    if not tracking.is_registered(model):
        raise DataError(f"no registered model {model!r}")
    if alias is not None:
        ref = tracking.get_alias(model, alias)
        if ref is None:
            raise DataError(f"{model} has no alias {alias!r}")
        version, label = ref.version, f"{model}@{alias}"
    else:
        if tracking.version_record(model, str(version)) is None:
            raise DataError(f"{model} has no version {version}")
        label = f"{model}/{version}"
    env = open_environment(config, root)
    dataset = dataset_of(model, config.pipeline.registered_model, config.base.dataset)
    return AuditSession(
        model,
        label,
        str(version),
        dataset,
        tracking,
        env.store,
        env.versioning,
        deep,
        config.pipeline.purge_after_days,
        env.versioning.purged(),
    )
