"""The one configuration object, loaded from ``params.yaml`` plus ``key.path=value`` overrides.

Each stage reads its own section. Secrets and endpoints never live here: they come from the environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from components.training import TrainConfig
from components.verification.gates import GateConfig

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml or an override is unusable; the message is one line."""


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseSection(Section):
    """What every stage shares."""

    dataset: str = "digits"
    seed: int = 0
    data_dir: str | None = None
    device: str = "auto"


class DataSection(Section):
    """Splitting and the default forget scenario."""

    val_fraction: float = Field(0.1, ge=0, lt=0.5)
    scenario: str = "data:0.4:5-9"


class TrainSection(Section):
    """Training recipes of the original and retrained models, by dataset (``default`` for the rest)."""

    recipes: dict[str, TrainConfig] = Field(default_factory=lambda: {"default": TrainConfig()})

    def recipe(self, dataset: str) -> TrainConfig:
        return self.recipes.get(dataset, self.recipes.get("default", TrainConfig()))


ForgetKind = Literal["class", "sample"]


class UnlearnSection(Section):
    """Method settings, merged in this order (later wins):

    ``defaults.<section>`` -> ``kinds.<kind>.<section>`` -> ``datasets.<name>.<section>`` ->
    ``datasets.<name>.kinds.<kind>.<section>``.

    The kind is ``class`` when the forget set removes whole classes and ``sample`` otherwise: removing a class
    needs strong forgetting (Retrain never saw it), while removing samples of kept classes needs gentle forgetting
    (Retrain still classifies most of them correctly), so the two are tuned separately.
    """

    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    kinds: dict[ForgetKind, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    selected_file: str | None = None
    selected: dict[str, dict[str, dict[str, dict[str, Any]]]] = Field(default_factory=dict)

    def settings(
        self,
        section: str,
        dataset: str,
        kind: ForgetKind = "sample",
        method: str | None = None,
        scenario: str | None = None,
    ) -> dict[str, Any]:
        """The merged settings; validation-tuned values (``selected[dataset][scenario or kind][method]``) apply
        last, the scenario's entry when there is one, else the forget kind's."""
        tuned = self.selected.get(dataset, {})
        chosen = tuned.get(scenario, {}) if scenario and scenario in tuned else tuned.get(kind, {})
        per_dataset = self.datasets.get(dataset, {})
        layers = [
            self.defaults.get(section, {}),
            self.kinds.get(kind, {}).get(section, {}),
            per_dataset.get(section, {}),
            per_dataset.get("kinds", {}).get(kind, {}).get(section, {}),
            # an ablation without its own tuned entry uses the full method's (same section, one switch flipped)
            chosen.get(method, chosen.get(section, {})) if method else chosen.get(section, {}),
        ]
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        return merged


class BenchSection(Section):
    """Defaults of ``mixunlearn bench``."""

    methods: list[str] = Field(default_factory=lambda: ["original", "retrain", "mixunlearn"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    out: str = "artifacts/bench"
    cache_dir: str = "artifacts/cache"
    eval_batch_size: int = Field(1024, ge=1)

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("at least one seed is needed")
        return seeds


class PipelineSection(Section):
    """The deletion pipeline: which method serves deletions, registry names and request policy.

    Endpoints and credentials (MLflow tracking server, S3) come from the environment: ``MLFLOW_TRACKING_URI``,
    ``MIXUNLEARN_DVC_REMOTE`` (e.g. ``s3://bucket/prefix``), ``S3_ENDPOINT_URL`` and the ``AWS_*`` variables.
    """

    method: str = "mixunlearn"
    experiment: str = "mixunlearn"
    registered_model: str = "mixunlearn-{dataset}"
    reference_model: str = "mixunlearn-{dataset}-retrain"
    alias: str = "champion"
    max_batch_fraction: float = Field(0.5, gt=0, le=1)
    example_request: str | None = "examples/requests/digits-data-owner.json"
    reports_dir: str = "artifacts/reports"
    artifacts_dir: str = "artifacts"


class PipelineConfig(Section):
    """All of params.yaml."""

    base: BaseSection = Field(default_factory=BaseSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    unlearn: UnlearnSection = Field(default_factory=UnlearnSection)
    verify: GateConfig = Field(default_factory=GateConfig)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    bench: BenchSection = Field(default_factory=BenchSection)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({error.__class__.__name__})") from None
    return key.strip().split("."), value


def apply_overrides(document: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``document`` with each override set, creating intermediate mappings."""
    result = yaml.safe_load(yaml.safe_dump(document)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a mapping")
            node = child
        node[path[-1]] = value
    return result


def load_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"parameter file {path} not found")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    return document


def load_config(path: Path | str | None = DEFAULT_PARAMS, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Load and validate params.yaml (or only defaults when ``path`` is None) with overrides applied.

    ``unlearn.selected_file`` (relative to the parameter file) names the validation-tuned settings written by
    ``mixunlearn tune``; they are read into ``unlearn.selected`` unless that is given explicitly.
    """
    document = apply_overrides(load_document(Path(path)) if path is not None else {}, overrides)
    unlearn = document.get("unlearn") or {}
    selected_file = unlearn.get("selected_file") if isinstance(unlearn, dict) else None
    if selected_file and "selected" not in unlearn:
        selected_path = (Path(path).parent if path is not None else Path()) / selected_file
        if selected_path.exists():
            unlearn["selected"] = load_document(selected_path)
    return config_from_mapping(document)


def config_from_mapping(document: Mapping[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(dict(document))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"invalid parameter {where}: {first['msg']}") from None
