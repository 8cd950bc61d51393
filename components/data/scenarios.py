"""Forget scenarios: a short spec such as ``data:0.4:5-9`` resolves to an explicit, auditable manifest of sample IDs.

The manifest, not the spec, is the record: it lists every forgotten ID, so a request can be checked and replayed
without knowing the seed or the code that drew it (unlike SalUn's count-plus-seed ``--num_indexes_to_replace``).

Accepted specs (prefix registry, see ``SCENARIOS``):

* ``class:<classes>``: every pool sample of the listed classes (the paper's class-level setting is ``class:0``).
* ``data:<fraction>:<classes>``: that fraction of each listed class (default ``data:0.4:5-9``, the paper's
  data-level setting).
* ``random:<fraction>``: that fraction of the whole pool, uniformly.
* ``ids:<file>``: a manifest JSON written by ``ForgetManifest.save``, or a text file with one ID per line.

Classes are written as ``5``, ``5,7``, ``5-9`` or a mix such as ``0,5-7``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.data.types import DataError, ImageSet, ids_sha256
from components.files import write_atomically

DEFAULT_SCENARIO = "data:0.4:5-9"
CLASS_LEVEL_SCENARIO = "class:0"

_MANIFEST_KEYS = frozenset({"dataset", "scenario", "seed", "ids", "forgotten_classes", "sha256"})
_SHOW_IDS = 3  # how many offending IDs an error message names


@dataclass(frozen=True)
class ForgetManifest:
    """The explicit forget set of one request.

    Attributes:
        dataset: Dataset name the IDs belong to.
        scenario: The spec it was resolved from (for humans; the IDs are authoritative).
        seed: Seed used to draw it (recorded even when the scenario draws nothing).
        ids: Sorted forgotten sample IDs.
        forgotten_classes: Sorted classes whose every pool sample is forgotten (class-level metrics use them);
            empty when no class is forgotten entirely.
    """

    dataset: str
    scenario: str
    seed: int
    ids: tuple[str, ...]
    forgotten_classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Normalise here so equal forget sets compare and serialise identically however they were built.
        object.__setattr__(self, "seed", int(self.seed))  # numpy integers from configs would not serialise
        object.__setattr__(self, "ids", tuple(sorted(str(i) for i in self.ids)))
        object.__setattr__(self, "forgotten_classes", tuple(sorted(int(c) for c in self.forgotten_classes)))

    @property
    def sha256(self) -> str:
        """sha256 hex of the sorted IDs joined by newlines; independent of the order the IDs were given in."""
        return ids_sha256(self.ids)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form, including ``sha256`` so a reader can detect edited ID lists."""
        return {
            "dataset": self.dataset,
            "scenario": self.scenario,
            "seed": self.seed,
            "forgotten_classes": list(self.forgotten_classes),
            "sha256": self.sha256,
            "ids": list(self.ids),
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> ForgetManifest:
        """Build a manifest from ``to_dict`` output, checking keys, types and the sha256.

        Args:
            data: The decoded JSON object.
            source: What to call it in error messages (usually the file path).

        Raises:
            DataError: Missing or unexpected keys, wrong types, duplicate IDs, or a sha256 that does not match the IDs.
        """
        if not isinstance(data, dict):
            raise DataError(f"{source}: expected a JSON object with keys {sorted(_MANIFEST_KEYS)}")
        missing, extra = _MANIFEST_KEYS - data.keys(), data.keys() - _MANIFEST_KEYS
        if missing or extra:
            raise DataError(
                f"{source}: manifest keys must be {sorted(_MANIFEST_KEYS)} (missing {sorted(missing)}, "
                f"unexpected {sorted(extra)})"
            )
        ids, classes, seed = data["ids"], data["forgotten_classes"], data["seed"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataError(f"{source}: 'ids' must be a list of strings")
        if not isinstance(classes, list) or not all(_is_int(c) for c in classes):
            raise DataError(f"{source}: 'forgotten_classes' must be a list of integers")
        if not _is_int(seed):
            raise DataError(f"{source}: 'seed' must be an integer")
        if not isinstance(data["dataset"], str) or not isinstance(data["scenario"], str):
            raise DataError(f"{source}: 'dataset' and 'scenario' must be strings")
        _check_duplicates(ids, source)
        manifest = cls(
            dataset=data["dataset"], scenario=data["scenario"], seed=seed, ids=ids, forgotten_classes=classes
        )
        if data["sha256"] != manifest.sha256:
            raise DataError(
                f"{source}: sha256 {data['sha256']!r} does not match its IDs ({manifest.sha256}); was it edited?"
            )
        return manifest

    def save(self, path: str | Path) -> Path:
        """Write the manifest as JSON atomically (``components.files.write_atomically``).

        Returns:
            The path written.
        """
        path = Path(path)
        write_atomically(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ForgetManifest:
        """Read and validate a manifest written by ``save``.

        Raises:
            DataError: The file is missing, not JSON, or fails ``from_dict``'s checks.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"forget manifest not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read forget manifest {path}: {exc}") from None
        return cls.from_dict(data, source=str(path))


@dataclass(frozen=True)
class ScenarioContext:
    """What a scenario resolver may look at."""

    pool: ImageSet
    dataset: str
    seed: int


ScenarioResolver = Callable[[str, ScenarioContext], Sequence[str]]


@dataclass(frozen=True)
class _Scenario:
    form: str
    resolve: ScenarioResolver


SCENARIOS: dict[str, _Scenario] = {}


def register_scenario(prefix: str, form: str) -> Callable[[ScenarioResolver], ScenarioResolver]:
    """Register a resolver for specs ``<prefix>:<argument>``.

    Args:
        prefix: The spec prefix before the first colon.
        form: The accepted form, shown in error messages (e.g. ``random:<fraction>``).

    Returns:
        A decorator that stores the resolver; it receives the argument after ``<prefix>:`` and a ``ScenarioContext``
        and returns the forget IDs (validation happens in ``resolve_scenario``).
    """

    def decorator(resolver: ScenarioResolver) -> ScenarioResolver:
        if prefix in SCENARIOS:
            raise ValueError(f"scenario prefix {prefix!r} is already registered")
        SCENARIOS[prefix] = _Scenario(form=form, resolve=resolver)
        return resolver

    return decorator


def scenario_forms() -> str:
    """Return the accepted spec forms as one line, for help texts and errors."""
    return " | ".join(SCENARIOS[prefix].form for prefix in sorted(SCENARIOS))


def resolve_scenario(spec: str, pool: ImageSet, dataset: str, seed: int) -> ForgetManifest:
    """Turn a scenario spec into an explicit, validated forget manifest.

    Args:
        spec: e.g. ``class:0``, ``data:0.4:5-9``, ``random:0.1`` or ``ids:requests/batch1.json``.
        pool: The training pool D the forget set is drawn from.
        dataset: Dataset name, recorded in the manifest (and checked against an ``ids:`` manifest).
        seed: Seed of ``numpy.random.default_rng`` for the drawing scenarios.

    Returns:
        The manifest; ``forgotten_classes`` lists every class whose pool samples are all forgotten.

    Raises:
        DataError: Malformed spec, unknown prefix, bad fraction or class, unknown, duplicate or no IDs, a ``data:``
            spec that retains nothing of a class, or a forget set equal to the whole pool.
    """
    prefix, sep, argument = spec.partition(":")
    if not sep or not argument:
        raise DataError(f"malformed forget scenario {spec!r}; accepted forms: {scenario_forms()}")
    if prefix not in SCENARIOS:
        raise DataError(f"unknown forget scenario prefix {prefix!r} in {spec!r}; accepted forms: {scenario_forms()}")
    ids = SCENARIOS[prefix].resolve(argument, ScenarioContext(pool=pool, dataset=dataset, seed=seed))
    validate_forget_ids(ids, pool)
    if len(ids) == len(pool):
        raise DataError(
            f"forget scenario {spec!r} covers the whole pool ({len(pool)} samples); nothing would be retained"
        )
    return ForgetManifest(
        dataset=dataset, scenario=spec, seed=seed, ids=tuple(ids), forgotten_classes=_fully_forgotten(ids, pool)
    )


def validate_forget_ids(ids: Sequence[str], pool: ImageSet) -> None:
    """Check that ``ids`` is a non-empty set of distinct IDs, all from ``pool``.

    Raises:
        DataError: Empty, duplicate IDs, or IDs not in the pool (the first few are named).
    """
    if len(ids) == 0:
        raise DataError("empty forget set; the scenario selected no samples")
    _check_duplicates(ids, "forget set")
    known = set(pool.ids.tolist())
    unknown = [i for i in ids if i not in known]
    if unknown:
        example = f"IDs look like {pool.ids[0]!r} and " if len(pool) else ""
        raise DataError(
            f"{len(unknown)} forget IDs are not in the training pool, e.g. {_preview(unknown)}; "
            f"{example}must come from the pool, not from val or test"
        )


def partition(pool: ImageSet, manifest: ForgetManifest) -> tuple[ImageSet, ImageSet]:
    """Split ``pool`` into ``(retain, forget)``, both in pool order.

    Raises:
        DataError: The manifest names IDs that are not in ``pool`` (it was made for another pool).
    """
    validate_forget_ids(manifest.ids, pool)
    forget = set(manifest.ids)
    is_forget = np.fromiter((i in forget for i in pool.ids.tolist()), dtype=bool, count=len(pool))
    return pool.subset(np.flatnonzero(~is_forget)), pool.subset(np.flatnonzero(is_forget))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _preview(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in list(values)[:_SHOW_IDS])


def _check_duplicates(ids: Sequence[str], source: str) -> None:
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if duplicates:
        raise DataError(f"{source}: {len(duplicates)} duplicate IDs, e.g. {_preview(duplicates)}")


def _fully_forgotten(ids: Sequence[str], pool: ImageSet) -> tuple[int, ...]:
    is_forget = np.isin(pool.ids, np.asarray(ids, dtype=pool.ids.dtype))
    return tuple(int(c) for c in np.unique(pool.labels) if is_forget[pool.labels == c].all())


def _nearest_count(fraction: float, n: int) -> int:
    # At least one sample: a fraction that rounds to nothing would silently make an empty request.
    return max(1, math.floor(fraction * n + 0.5))


def _parse_fraction(text: str, spec: str) -> float:
    try:
        fraction = float(text)
    except ValueError:
        raise DataError(f"forget fraction {text!r} in {spec!r} is not a number; write e.g. 0.4") from None
    if not (0.0 < fraction < 1.0):
        raise DataError(f"forget fraction {text!r} in {spec!r} must be strictly between 0 and 1")
    return fraction


def _parse_classes(text: str, spec: str, pool: ImageSet) -> list[int]:
    """Parse ``5``, ``5,7``, ``5-9`` or a mix, and check each class occurs in the pool."""
    classes: set[int] = set()
    for token in text.split(","):
        low, dash, high = token.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise DataError(f"malformed classes {text!r} in {spec!r}; write e.g. 0, 5,7 or 5-9") from None
        if first > last:
            raise DataError(f"malformed class range {token!r} in {spec!r}; write low-high, e.g. 5-9")
        classes.update(range(first, last + 1))
    present = {int(c) for c in np.unique(pool.labels)}
    outside = sorted(classes - present)
    if outside:
        raise DataError(f"classes {outside} in {spec!r} are not labels of this dataset's pool {sorted(present)}")
    return sorted(classes)


@register_scenario("class", "class:<c>[,<c>...]")
def _class_scenario(argument: str, ctx: ScenarioContext) -> Sequence[str]:
    classes = _parse_classes(argument, f"class:{argument}", ctx.pool)
    return ctx.pool.ids[np.isin(ctx.pool.labels, classes)].tolist()


@register_scenario("data", "data:<fraction>:<classes>")
def _data_scenario(argument: str, ctx: ScenarioContext) -> Sequence[str]:
    spec = f"data:{argument}"
    fraction_text, sep, classes_text = argument.partition(":")
    if not sep or not classes_text:
        raise DataError(f"malformed forget scenario {spec!r}; expected data:<fraction>:<classes>, e.g. data:0.4:5-9")
    fraction = _parse_fraction(fraction_text, spec)
    rng = np.random.default_rng(ctx.seed)
    chosen: list[np.ndarray] = []
    # Sorted classes and one generator: the draw depends only on the seed and the pool.
    for cls in _parse_classes(classes_text, spec, ctx.pool):
        positions = np.flatnonzero(ctx.pool.labels == cls)
        count = _nearest_count(fraction, len(positions))
        if count >= len(positions):
            raise DataError(
                f"{spec!r} would forget all {len(positions)} pool samples of class {cls}; a data-level request must "
                f"retain some (use class:{cls} to forget the class)"
            )
        chosen.append(rng.choice(positions, size=count, replace=False))
    return ctx.pool.ids[np.sort(np.concatenate(chosen))].tolist()


@register_scenario("random", "random:<fraction>")
def _random_scenario(argument: str, ctx: ScenarioContext) -> Sequence[str]:
    fraction = _parse_fraction(argument, f"random:{argument}")
    if len(ctx.pool) == 0:
        return []  # resolve_scenario reports the empty forget set
    rng = np.random.default_rng(ctx.seed)
    positions = rng.choice(len(ctx.pool), size=_nearest_count(fraction, len(ctx.pool)), replace=False)
    return ctx.pool.ids[np.sort(positions)].tolist()


@register_scenario("ids", "ids:<file>")
def _ids_scenario(argument: str, ctx: ScenarioContext) -> Sequence[str]:
    path = Path(argument)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"forget ID file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read forget ID file {path}: {exc}") from None
    if text.lstrip().startswith("{"):
        manifest = ForgetManifest.load(path)
        if manifest.dataset != ctx.dataset:
            raise DataError(f"forget manifest {path} is for dataset {manifest.dataset!r}, not {ctx.dataset!r}")
        return list(manifest.ids)
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]
