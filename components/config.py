"""The one configuration object, loaded from ``params.yaml`` plus ``key.path=value`` overrides.

Each stage reads its own section. Secrets and endpoints never live here: they come from the environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from components.training import TrainConfig
from components.triggers.settings import TriggersConfig
from components.unlearning.base import MethodConfig
from components.verification.certification import CertificationConfig
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
FORGET_KINDS: tuple[ForgetKind, ...] = ("class", "sample")
# where a --set of a method setting was given: unlearn.defaults.* or unlearn.kinds.<kind>.*
ExplicitScope = Literal["defaults", "class", "sample"]


def forget_kind(forgotten_classes: Sequence[int]) -> ForgetKind:
    """``class`` when a forget set removes whole classes, else ``sample`` (samples of kept classes).

    Removing a class needs strong forgetting (Retrain never saw it); removing samples of kept classes needs gentle
    forgetting (Retrain still classifies most of them correctly), so the two are configured and tuned apart.
    """
    return "class" if len(forgotten_classes) else "sample"


class UnlearnSection(Section):
    """Unlearning-method settings, keyed by each method's *section* (variants of one method share a section).

    One precedence, later wins, key by key:

    1. the method's own defaults (its pydantic config, e.g. ``MixUnlearnConfig`` in components/unlearning/);
    2. ``defaults.<section>`` in params.yaml;
    3. ``kinds.<class|sample>.<section>`` in params.yaml (the deletion's forget kind);
    4. the validation-tuned selection (``tuned_file``, written by ``mixunlearn tune``):
       ``tuned[<dataset>][<scenario> or <kind>][<method> or <section>]``, the scenario's entry when the caller
       names a scenario (the bench) and there is one, else the forget kind's;
    5. ``--set``: a key given with ``--set unlearn.defaults.<section>.<key>`` (then one given with
       ``--set unlearn.kinds.<kind>.<section>.<key>``) is applied last, over every layer above, and is never taken
       from the tuned selection; ``explicit`` records those values by scope (``defaults``, ``class``, ``sample``).
       An explicit override therefore always wins, whatever params.yaml's kinds or tuned.yaml say.

    Every method's settings are validated against its config for both kinds (and every tuned entry) when the
    configuration loads, so a bad value fails before any data changes. A ``defaults`` key that both kinds set is
    an error (it could never take effect) unless it was given with ``--set``.
    """

    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    kinds: dict[ForgetKind, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    tuned_file: str | None = None
    tuned: dict[str, dict[str, dict[str, dict[str, Any]]]] = Field(default_factory=dict)
    explicit: dict[ExplicitScope, dict[str, dict[str, Any]]] = Field(default_factory=dict)

    def pinned(self, section: str, kind: ForgetKind) -> dict[str, Any]:
        """The ``--set`` values of ``section`` that apply to ``kind`` (defaults scope, then the kind's scope)."""
        return {**self.explicit.get("defaults", {}).get(section, {}), **self.explicit.get(kind, {}).get(section, {})}

    def settings(
        self,
        section: str,
        dataset: str,
        kind: ForgetKind = "sample",
        method: str | None = None,
        scenario: str | None = None,
    ) -> dict[str, Any]:
        """The merged settings of ``section`` (a plain dict, a fresh copy) in the documented precedence."""
        tuned = self.tuned.get(dataset, {})
        chosen = tuned.get(scenario, {}) if scenario and scenario in tuned else tuned.get(kind, {})
        # an ablation without its own tuned entry uses the full method's (same section, one switch flipped)
        selected = chosen.get(method, chosen.get(section, {})) if method else chosen.get(section, {})
        explicit = self.pinned(section, kind)
        pinned = pinned_keys(list(explicit))
        merged: dict[str, Any] = {}
        for layer in (
            self.defaults.get(section, {}),
            self.kinds.get(kind, {}).get(section, {}),
            {key: value for key, value in selected.items() if key not in pinned},
        ):
            merged.update(layer)
        # a --set shorthand (tau) must also beat the fields it sets when a lower layer gave them one by one
        for key in explicit:
            for field in _SHORTHANDS.get(key, ()):
                if field not in explicit:
                    merged.pop(field, None)
        merged.update(explicit)
        return merged

    def method_config(self, method: str, dataset: str, kind: ForgetKind, scenario: str | None = None) -> MethodConfig:
        """The typed, validated config of ``method`` for this dataset, kind (and scenario)."""
        from components.unlearning.base import build_config, get_method

        return build_config(method, self.settings(get_method(method).section, dataset, kind, method, scenario))


# shorthand keys that set several config fields at once: pinning the shorthand pins the fields too
_SHORTHANDS: dict[str, tuple[str, ...]] = {"tau": ("tau_mix", "tau_real", "tau_gen")}


def pinned_keys(keys: Sequence[str]) -> set[str]:
    """``keys`` with the fields each shorthand among them sets, and the shorthand of each field among them."""
    pinned = set(keys)
    for key in keys:
        pinned.update(_SHORTHANDS.get(key, ()))
    pinned.update(short for short, fields in _SHORTHANDS.items() if pinned & set(fields))
    return pinned


class TuningSection(Section):
    """``mixunlearn tune``: the seeds every method's grid is evaluated on (validation split only).

    They must be disjoint from every seed a reported table uses (``BenchSection``), so that no setting is selected
    on a seed it is then scored on.
    """

    seeds: list[int] = Field(default_factory=lambda: [100, 101, 102])
    # How many geometric steps past the grid's edge the search may take per key while the winner sits on it
    # (components/bench/tuning.py); 0 evaluates the grid as written.
    edge_extensions: int = Field(2, ge=0)

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("at least one tuning seed is needed")
        return seeds


class BenchSection(Section):
    """Defaults of ``mixunlearn bench`` and the seeds of the reported tables.

    ``seeds`` are ``mixunlearn bench``'s default seeds; ``report_seeds`` the seeds of each dataset's reported
    matrix (``python -m components.bench.matrix``; ``default`` for other datasets). ``tuning.seeds`` may share no
    seed with either (checked when the configuration loads).
    """

    methods: list[str] = Field(default_factory=lambda: ["original", "retrain", "mixunlearn"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    report_seeds: dict[str, list[int]] = Field(default_factory=lambda: {"default": [0, 1, 2]})
    tuning: TuningSection = Field(default_factory=TuningSection)
    out: str = "artifacts/bench"
    cache_dir: str = "artifacts/cache"
    eval_batch_size: int = Field(1024, ge=1)

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("at least one seed is needed")
        return seeds

    @model_validator(mode="after")
    def _tuning_seeds_are_not_reporting_seeds(self) -> BenchSection:
        shared = sorted(set(self.tuning.seeds) & set(self.reporting_seeds()))
        if shared:
            raise ValueError(
                f"tuning.seeds {self.tuning.seeds} share {shared} with the reporting seeds "
                f"{self.reporting_seeds()}: tuning must not select on a seed it is scored on"
            )
        return self

    def reporting_seeds(self) -> list[int]:
        """Every seed a reported result may use: ``seeds`` and each dataset's ``report_seeds``."""
        return sorted({*self.seeds, *(seed for seeds in self.report_seeds.values() for seed in seeds)})

    def report_seeds_of(self, dataset: str) -> list[int]:
        return self.report_seeds.get(dataset, self.report_seeds.get("default", self.seeds))

    def check_tuning_seeds(self, seeds: Sequence[int]) -> None:
        """Raise ``ConfigError`` (one line) when tuning ``seeds`` include a reporting seed."""
        shared = sorted(set(seeds) & set(self.reporting_seeds()))
        if shared:
            raise ConfigError(
                f"tuning seeds {list(seeds)} include reporting seed(s) {shared} (bench.seeds / bench.report_seeds); "
                f"tune on seeds disjoint from them, e.g. bench.tuning.seeds {self.tuning.seeds}"
            )

    def check_reporting_seeds(self, seeds: Sequence[int]) -> None:
        """Raise ``ConfigError`` (one line) when reported ``seeds`` include a tuning seed."""
        shared = sorted(set(seeds) & set(self.tuning.seeds))
        if shared:
            raise ConfigError(
                f"seeds {list(seeds)} include tuning seed(s) {shared} (bench.tuning.seeds): a setting selected on "
                "a seed would be scored on it"
            )


VerifyMode = Literal["certify", "reference", "both"]


class VerifySection(GateConfig):
    """How a deletion batch is verified before its model may serve.

    ``mode``:

    - ``certify``: per-batch certification from the unlearned model's and the untouched champion's outputs on the
      forget batch, held-out data (the validation split) and a retained sample (``certification``); no retrained
      model unless certification fails, in which case a retrain-from-scratch model is trained and promoted;
    - ``reference``: the gates (the inherited ``max_*`` thresholds) against a retrain-from-scratch reference
      trained on every batch;
    - ``both``: both, and both must pass.

    ``retain_sample`` caps the retained training samples drawn (seeded) for the membership attack.
    """

    mode: VerifyMode = "certify"
    retain_sample: int = Field(2000, ge=2)
    certification: CertificationConfig = Field(default_factory=CertificationConfig)


class PipelineSection(Section):
    """The deletion pipeline: which method serves deletions, registry names and request policy.

    ``max_batch_fraction`` caps one batch as a share of the training pool; ``max_request_ids`` caps the IDs of
    one request at submit time (admission control, ``components.deletion.admission``), together with the batch
    limit once the pool is known. ``purge_after_days`` is the retention period after which ``mixunlearn purge``
    deletes forgotten samples from older data versions (``components.deletion.purge``).

    ``method`` serves every deletion batch unless ``kind_methods`` names another for the batch's forget kind
    (``class``: whole classes removed; ``sample``: samples of kept classes): the two kinds need different forgetting
    strength, and the label-agnostic form may serve one kind better than the label-aware one.

    Endpoints and credentials (MLflow tracking server, S3) come from the environment: ``MLFLOW_TRACKING_URI``,
    ``MIXUNLEARN_DVC_REMOTE`` (e.g. ``s3://bucket/prefix``), ``S3_ENDPOINT_URL`` and the ``AWS_*`` variables.
    """

    method: str = "mixunlearn"
    kind_methods: dict[ForgetKind, str] = Field(default_factory=dict)
    experiment: str = "mixunlearn"
    registered_model: str = "mixunlearn-{dataset}"
    reference_model: str = "mixunlearn-{dataset}-retrain"
    alias: str = "champion"
    max_batch_fraction: float = Field(0.5, gt=0, le=1)
    max_request_ids: int = Field(1_000_000, ge=1)
    example_request: str | None = "examples/requests/digits-data-owner.json"
    reports_dir: str = "artifacts/reports"
    artifacts_dir: str = "artifacts"
    purge_after_days: float = Field(30, ge=0)

    def method_for(self, kind: ForgetKind) -> str:
        """The method that serves a batch of forget ``kind``: ``kind_methods``'s entry, else ``method``."""
        return self.kind_methods.get(kind, self.method)


class AuditSection(Section):
    """The Retrain audit of the serving model (``mixunlearn retrain-audit``, the ``retrain-audit`` flow), off the
    deletion batches' critical path: it retrains from scratch on the current data version and applies the
    ``verify`` gates to the serving model.

    ``cron`` is its schedule in ``mixunlearn serve``; ``every_batches`` (K > 0) also starts it once K unlearned
    batches have been promoted without an audit; ``promote_on_failure`` serves the retrained model when the serving
    one fails a gate (the retrained model honours every deletion so far).
    """

    cron: str = "0 3 * * *"
    every_batches: int = Field(5, ge=0)
    promote_on_failure: bool = True


class PipelineConfig(Section):
    """All of params.yaml."""

    base: BaseSection = Field(default_factory=BaseSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    unlearn: UnlearnSection = Field(default_factory=UnlearnSection)
    verify: VerifySection = Field(default_factory=VerifySection)
    audit: AuditSection = Field(default_factory=AuditSection)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    bench: BenchSection = Field(default_factory=BenchSection)
    triggers: TriggersConfig = Field(default_factory=TriggersConfig)


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


def resolve_params(path: Path | str) -> Path:
    """The parameter file to read for ``path``: itself, except that the default name (``params.yaml``, relative)
    falls back to the packaged copy (``components.packaged``) when the working directory has none.

    Precedence: ``--params FILE`` given by the caller; ``./params.yaml``; the packaged params.yaml (an installed
    wheel's ``components/defaults/``, or the source checkout's root).
    """
    path = Path(path)
    if path == DEFAULT_PARAMS and not path.exists():
        from components.packaged import default_file

        return default_file(DEFAULT_PARAMS.name) or path
    return path


def load_config(path: Path | str | None = DEFAULT_PARAMS, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Load and validate params.yaml (or only defaults when ``path`` is None) with overrides applied.

    The default name ``params.yaml`` is read from the working directory, else from the packaged copy
    (``resolve_params``).

    ``unlearn.tuned_file`` (relative to the parameter file) names the validation-tuned settings written by
    ``mixunlearn tune``; they are read into ``unlearn.tuned`` unless that is given explicitly. Every method's
    settings are then validated for both forget kinds and every tuned entry (see ``UnlearnSection``).
    """
    path = resolve_params(path) if path is not None else None
    raw = load_document(path) if path is not None else {}
    document = apply_overrides(raw, overrides)
    unlearn = document.get("unlearn")
    raw_unlearn = raw.get("unlearn")
    if isinstance(unlearn, dict) and unlearn.get("tuned_file") and not _has_tuned(raw_unlearn):
        # read the tuned file *before* the overrides, so a --set inside unlearn.tuned edits it instead of
        # silently replacing the whole file
        tuned_path = (Path(path).parent if path is not None else Path()) / unlearn["tuned_file"]
        if tuned_path.exists():
            raw = {**raw, "unlearn": {**(raw_unlearn if isinstance(raw_unlearn, dict) else {})}}
            raw["unlearn"]["tuned"] = load_document(tuned_path)
            document = apply_overrides(raw, overrides)
            unlearn = document["unlearn"]
    if isinstance(unlearn, dict):
        explicit = explicit_by_overrides(overrides, unlearn)
        if explicit:
            unlearn["explicit"] = explicit
    config = config_from_mapping(document)
    validate_method_settings(config.unlearn)
    validate_pipeline_methods(config.pipeline)
    return config


def validate_pipeline_methods(pipeline: PipelineSection) -> None:
    """Fail with one line when ``pipeline.method`` or a ``pipeline.kind_methods`` entry is no registered method."""
    import components.unlearning  # noqa: F401  (registers the methods)
    from components.unlearning.base import get_method

    named = [("pipeline.method", pipeline.method)]
    named += [(f"pipeline.kind_methods.{kind}", method) for kind, method in pipeline.kind_methods.items()]
    for where, method in named:
        try:
            get_method(method)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None


def _has_tuned(unlearn: object) -> bool:
    return isinstance(unlearn, dict) and "tuned" in unlearn


def explicit_by_overrides(overrides: Sequence[str], unlearn: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{scope: {section: {key: value}}}`` of the method settings ``--set`` gives explicitly: scope ``defaults``
    for ``unlearn.defaults.<section>.<key>``, ``class``/``sample`` for ``unlearn.kinds.<kind>.<section>.<key>``
    (a whole mapping gives each of its keys). Values are read from ``unlearn`` after every override, so the last
    of two overrides of one key is the one recorded."""
    explicit: dict[str, dict[str, dict[str, Any]]] = {}
    for text in overrides:
        path, value = parse_override(text)
        if len(path) >= 3 and path[:2] == ["unlearn", "defaults"]:
            scope, section, rest = "defaults", path[2], path[3:]
            values = unlearn.get("defaults", {}).get(section, {})
        elif len(path) >= 4 and path[:2] == ["unlearn", "kinds"]:
            scope, section, rest = path[2], path[3], path[4:]
            values = unlearn.get("kinds", {}).get(scope, {}).get(section, {})
        else:
            continue
        keys = rest[:1] if rest else (list(value) if isinstance(value, dict) else [])
        for key in keys:
            if isinstance(values, dict) and key in values:
                explicit.setdefault(scope, {}).setdefault(section, {})[key] = values[key]
    return explicit


def _default_applies(unlearn: UnlearnSection, section: str, key: str, kind: ForgetKind) -> bool:
    """Whether ``defaults.<section>.<key>`` reaches ``kind``'s settings (``UnlearnSection.settings``' order)."""
    explicit = unlearn.explicit
    if key in explicit.get(kind, {}).get(section, {}):
        return False
    if key in explicit.get("defaults", {}).get(section, {}):
        return True
    return key not in unlearn.kinds.get(kind, {}).get(section, {})


def validate_method_settings(unlearn: UnlearnSection) -> None:
    """Fail with one line naming the setting when any method's merged settings do not fit its config.

    Checks every registered method for both forget kinds, every tuned entry, and that no ``defaults`` key is
    overridden by both kinds (such a key could never take effect).
    """
    import components.unlearning  # noqa: F401  (registers the methods)
    from components.unlearning.base import METHODS, build_config

    sections = {spec.section for spec in METHODS.values()}
    for name in [*unlearn.defaults, *(s for kind in unlearn.kinds.values() for s in kind)]:
        if name not in sections:
            raise ConfigError(
                f"unlearn settings name unknown method section {name!r}; known: {', '.join(sorted(sections))}"
            )
    for section, values in unlearn.defaults.items():
        shadowed = sorted(
            key for key in values if not any(_default_applies(unlearn, section, key, kind) for kind in FORGET_KINDS)
        )
        if shadowed:
            raise ConfigError(
                f"unlearn.defaults.{section}.{shadowed[0]} never takes effect: both kinds set it; "
                f"set unlearn.kinds.<class|sample>.{section}.{shadowed[0]} instead"
            )
    tuned_where = unlearn.tuned_file or "unlearn.tuned"
    entries = [
        (dataset, key, method) for dataset, keys in unlearn.tuned.items() for key in keys for method in keys[key]
    ]
    unknown = [entry for entry in entries if entry[2] not in METHODS and entry[2] not in sections]
    if unknown:
        dataset, key, method = unknown[0]
        raise ConfigError(f"{tuned_where}: {dataset}.{key} names unknown method {method!r}")
    checks: list[tuple[str, str, ForgetKind, str | None, str]] = [
        (method, "", kind, None, f"unlearn.kinds.{kind}.{spec.section}")
        for method, spec in METHODS.items()
        for kind in FORGET_KINDS
    ]
    checks += [
        (method, dataset, kind, key, f"{tuned_where}: {dataset}.{key}.{method}")
        for dataset, key, method in entries
        if method in METHODS
        for kind in ((key,) if key in FORGET_KINDS else FORGET_KINDS)  # a scenario key: validate under both kinds
    ]
    for method, dataset, kind, scenario, where in checks:
        try:
            build_config(method, unlearn.settings(METHODS[method].section, dataset, kind, method, scenario))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "settings"
            raise ConfigError(f"invalid method setting {where}.{field} (method {method}): {first['msg']}") from None


def config_from_mapping(document: Mapping[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(dict(document))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"invalid parameter {where}: {first['msg']}") from None
