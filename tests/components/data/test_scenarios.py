"""Forget scenarios resolve to explicit manifests; manifests round-trip; every refusal case raises DataError."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from components.data.datasets import load_dataset, make_ids
from components.data.scenarios import (
    CLASS_LEVEL_SCENARIO,
    DEFAULT_SCENARIO,
    ForgetManifest,
    partition,
    resolve_scenario,
    validate_forget_ids,
)
from components.data.splits import make_split
from components.data.types import DataError, ImageSet


def toy_pool(per_class: int = 10, classes: int = 10) -> ImageSet:
    """``classes * per_class`` samples, classes interleaved (label = position % classes)."""
    n = per_class * classes
    return ImageSet(
        ids=make_ids("toy", "train", n),
        images=np.zeros((n, 1, 2, 2), np.uint8),
        labels=np.arange(n, dtype=np.int64) % classes,
    )


@pytest.fixture
def pool() -> ImageSet:
    return toy_pool()


def labels_of(pool: ImageSet, ids: tuple[str, ...]) -> np.ndarray:
    return pool.labels[pool.positions_of(list(ids))]


def test_class_scenario_forgets_every_sample_of_the_classes(pool: ImageSet) -> None:
    manifest = resolve_scenario("class:1,3", pool, "toy", seed=0)

    assert len(manifest.ids) == 20
    assert set(labels_of(pool, manifest.ids).tolist()) == {1, 3}
    assert manifest.forgotten_classes == (1, 3)
    assert (manifest.dataset, manifest.scenario, manifest.seed) == ("toy", "class:1,3", 0)


def test_data_scenario_takes_a_fraction_of_each_listed_class(pool: ImageSet) -> None:
    manifest = resolve_scenario(DEFAULT_SCENARIO, pool, "toy", seed=0)

    assert DEFAULT_SCENARIO == "data:0.4:5-9"
    assert np.bincount(labels_of(pool, manifest.ids), minlength=10).tolist() == [0] * 5 + [4] * 5
    assert manifest.forgotten_classes == ()
    assert list(manifest.ids) == sorted(manifest.ids)


def test_data_scenario_is_deterministic_per_seed(pool: ImageSet) -> None:
    first = resolve_scenario("data:0.3:5,7", pool, "toy", seed=1)
    again = resolve_scenario("data:0.3:5,7", pool, "toy", seed=1)
    other = resolve_scenario("data:0.3:5,7", pool, "toy", seed=2)

    assert first == again
    assert first.ids != other.ids
    assert np.bincount(labels_of(pool, first.ids), minlength=10)[[5, 7]].tolist() == [3, 3]


def test_data_scenario_forgets_at_least_one_sample_per_class(pool: ImageSet) -> None:
    manifest = resolve_scenario("data:0.01:2", pool, "toy", seed=0)  # 0.1 rounds to 0, raised to 1

    assert len(manifest.ids) == 1


def test_random_scenario_draws_from_the_whole_pool(pool: ImageSet) -> None:
    manifest = resolve_scenario("random:0.25", pool, "toy", seed=4)

    assert len(manifest.ids) == 25
    assert manifest == resolve_scenario("random:0.25", pool, "toy", seed=4)
    assert manifest.ids != resolve_scenario("random:0.25", pool, "toy", seed=5).ids


def test_class_level_default_marks_the_class_forgotten() -> None:
    bundle = load_dataset("digits")
    split = make_split(bundle, 0.1, seed=0)

    manifest = resolve_scenario(CLASS_LEVEL_SCENARIO, split.pool, "digits", seed=0)
    data_level = resolve_scenario(DEFAULT_SCENARIO, split.pool, "digits", seed=0)

    assert manifest.forgotten_classes == (0,)
    assert len(manifest.ids) == int((split.pool.labels == 0).sum())
    assert data_level.forgotten_classes == ()
    assert all(i.startswith("digits/train/") for i in data_level.ids)


def test_ids_scenario_reads_a_text_file_with_comments(tmp_path: Path, pool: ImageSet) -> None:
    path = tmp_path / "forget.txt"
    path.write_text("# request 42\n\ntoy/train/00007\n  toy/train/00003  # user asked\n\n")

    manifest = resolve_scenario(f"ids:{path}", pool, "toy", seed=0)

    assert manifest.ids == ("toy/train/00003", "toy/train/00007")


def test_ids_scenario_reads_a_saved_manifest(tmp_path: Path, pool: ImageSet) -> None:
    original = resolve_scenario("class:4", pool, "toy", seed=3)
    path = original.save(tmp_path / "requests" / "batch.json")

    manifest = resolve_scenario(f"ids:{path}", pool, "toy", seed=3)

    assert manifest.ids == original.ids
    assert manifest.forgotten_classes == (4,)


def test_ids_scenario_refuses_a_manifest_for_another_dataset(tmp_path: Path, pool: ImageSet) -> None:
    path = resolve_scenario("class:4", pool, "toy", seed=0).save(tmp_path / "m.json")

    with pytest.raises(DataError, match="is for dataset 'toy', not 'digits'"):
        resolve_scenario(f"ids:{path}", pool, "digits", seed=0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("class", "malformed forget scenario 'class'; accepted forms: class:<c>"),
        ("class:", "malformed forget scenario"),
        ("nope:1", "unknown forget scenario prefix 'nope'.*data:<fraction>:<classes>"),
        ("data:0.4", "expected data:<fraction>:<classes>"),
        ("data:0.4:", "expected data:<fraction>:<classes>"),
        ("data:abc:5", "forget fraction 'abc' .* is not a number"),
        ("data:0:5", "must be strictly between 0 and 1"),
        ("data:1.5:5", "must be strictly between 0 and 1"),
        ("random:1", "must be strictly between 0 and 1"),
        ("random:-0.2", "must be strictly between 0 and 1"),
        ("random:nan", "must be strictly between 0 and 1"),
        ("class:10", r"classes \[10\] in 'class:10' are not labels"),
        ("data:0.4:8-11", r"classes \[10, 11\]"),
        ("class:x", "malformed classes 'x'"),
        ("data:0.4:9-5", "malformed class range '9-5'"),
        ("data:0.97:5", "would forget all 10 pool samples of class 5"),
        ("class:0-9", "covers the whole pool"),
        ("random:0.999", "covers the whole pool"),
    ],
)
def test_bad_specs_are_refused(pool: ImageSet, spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        resolve_scenario(spec, pool, "toy", seed=0)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "toy/train/00001\ntoy/test/00001\ntoy/train/99999\n",
            "2 forget IDs are not in the training pool, e.g. 'toy/test",
        ),
        ("toy/train/00001\ntoy/train/00001\n", "1 duplicate IDs, e.g. 'toy/train/00001'"),
        ("# nothing to forget\n\n", "empty forget set"),
    ],
)
def test_bad_id_files_are_refused(tmp_path: Path, pool: ImageSet, lines: str, message: str) -> None:
    path = tmp_path / "ids.txt"
    path.write_text(lines)

    with pytest.raises(DataError, match=message):
        resolve_scenario(f"ids:{path}", pool, "toy", seed=0)


def test_missing_id_file_is_refused(tmp_path: Path, pool: ImageSet) -> None:
    with pytest.raises(DataError, match="forget ID file not found"):
        resolve_scenario(f"ids:{tmp_path / 'absent.txt'}", pool, "toy", seed=0)


def test_validate_forget_ids_names_the_first_few_unknown_ids(pool: ImageSet) -> None:
    unknown = [f"toy/val/{i:05d}" for i in range(5)]

    with pytest.raises(
        DataError, match=r"5 forget IDs .* e.g. 'toy/val/00000', 'toy/val/00001', 'toy/val/00002';"
    ) as info:
        validate_forget_ids(["toy/train/00000", *unknown], pool)

    assert "toy/val/00003" not in str(info.value)
    validate_forget_ids(["toy/train/00000"], pool)  # a valid set passes silently


def test_manifest_sha256_is_order_independent() -> None:
    ids = ("toy/train/00009", "toy/train/00001", "toy/train/00005")

    a = ForgetManifest("toy", "ids:x", 0, ids)
    b = ForgetManifest("toy", "ids:x", 0, tuple(reversed(ids)))

    assert a == b
    assert a.ids == tuple(sorted(ids))
    assert a.sha256 == b.sha256 == hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
    assert a.sha256 != ForgetManifest("toy", "ids:x", 0, ids[:2]).sha256


def test_manifest_round_trips_through_dict_and_file(tmp_path: Path, pool: ImageSet) -> None:
    manifest = resolve_scenario("class:2", pool, "toy", seed=7)

    assert ForgetManifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    assert json.dumps(ForgetManifest("toy", "class:2", np.int64(7), manifest.ids).to_dict())  # numpy seed serialises
    path = manifest.save(tmp_path / "m.json")
    assert ForgetManifest.load(path) == manifest
    assert json.loads(path.read_text())["sha256"] == manifest.sha256
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_manifest_save_replaces_an_existing_file(tmp_path: Path, pool: ImageSet) -> None:
    path = tmp_path / "m.json"
    resolve_scenario("class:2", pool, "toy", seed=7).save(path)

    second = resolve_scenario("class:3", pool, "toy", seed=7)
    second.save(path)

    assert ForgetManifest.load(path) == second


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(ids=d["ids"][1:]), "sha256 .* does not match its IDs"),
        (lambda d: d.update(extra=1), r"unexpected \['extra'\]"),
        (lambda d: d.pop("seed"), r"missing \['seed'\]"),
        (lambda d: d.update(ids="toy/train/00001"), "'ids' must be a list of strings"),
        (lambda d: d.update(seed="1"), "'seed' must be an integer"),
        (lambda d: d.update(forgotten_classes=["a"]), "'forgotten_classes' must be a list of integers"),
        (lambda d: d.update(ids=[d["ids"][0], d["ids"][0]]), "duplicate IDs"),
    ],
)
def test_manifest_load_rejects_edited_files(tmp_path: Path, pool: ImageSet, edit, message: str) -> None:
    data = resolve_scenario("class:2", pool, "toy", seed=7).to_dict()
    edit(data)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))

    with pytest.raises(DataError, match=message):
        ForgetManifest.load(path)


def test_manifest_load_rejects_missing_and_non_json_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="forget manifest not found"):
        ForgetManifest.load(tmp_path / "absent.json")

    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match=r"cannot read forget manifest .*bad.json"):
        ForgetManifest.load(tmp_path / "bad.json")

    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="expected a JSON object"):
        ForgetManifest.load(tmp_path / "list.json")


def test_partition_splits_the_pool_in_pool_order(pool: ImageSet) -> None:
    manifest = resolve_scenario("data:0.5:1-2", pool, "toy", seed=0)

    retain, forget = partition(pool, manifest)

    assert sorted(forget.ids.tolist()) == list(manifest.ids)
    assert set(retain.ids.tolist()).isdisjoint(manifest.ids)
    assert len(retain) + len(forget) == len(pool)
    assert retain.ids.tolist() == sorted(retain.ids.tolist())  # pool order (IDs are zero-padded positions)
    np.testing.assert_array_equal(forget.labels, pool.labels[pool.positions_of(forget.ids)])


def test_partition_refuses_a_manifest_from_another_pool(pool: ImageSet) -> None:
    manifest = ForgetManifest("toy", "ids:x", 0, ("toy/train/99999",))

    with pytest.raises(DataError, match="not in the training pool"):
        partition(pool, manifest)
