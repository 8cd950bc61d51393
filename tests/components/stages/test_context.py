"""RunContext: one run's facts, assembled once and shared by the flow, the DVC stages and the bench."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import load_config
from components.data.types import DatasetBundle, ImageSet
from components.deletion import policy
from components.stages.context import RunContext, training_code_sha256
from components.unlearning.mixunlearn import MixUnlearnConfig

CLASSES = 3
REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


def toy_bundle(name: str = "digits") -> DatasetBundle:
    rng = np.random.default_rng(0)
    n = 12
    train = ImageSet(
        ids=np.asarray([f"{name}/train/{i:05d}" for i in range(n)]),
        images=rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8),
        labels=np.arange(n, dtype=np.int64) % CLASSES,
    )
    return DatasetBundle(
        name=name, train=train, test=train, num_classes=CLASSES, mean=(0.5,), std=(0.25,), default_model="small_cnn"
    )


@pytest.fixture
def context() -> RunContext:
    config = load_config(REPO_PARAMS, ["base.device=cpu", "train.recipes.digits.epochs=1"])
    return RunContext.create(config, toy_bundle())


def test_create_takes_the_dataset_recipe_and_default_architecture(context: RunContext) -> None:
    assert context.recipe == context.config.train.recipe("digits")
    assert context.architecture == "small_cnn"
    assert context.device == torch.device("cpu")
    assert context.seed == context.config.base.seed
    assert context.forgotten_classes == ()
    assert context.forget_kind == "sample"


def test_for_batch_changes_only_the_forget_kind(context: RunContext) -> None:
    # when
    batch = context.for_batch([2], scenario="class:2")
    # then
    assert batch.forget_kind == "class"
    assert batch.forgotten_classes == (2,)
    assert batch.scenario == "class:2"
    assert (batch.recipe, batch.architecture, batch.seed, batch.bundle) == (
        context.recipe,
        context.architecture,
        context.seed,
        context.bundle,
    )


def test_method_settings_follow_the_forget_kind(context: RunContext) -> None:
    unlearn = context.config.unlearn
    assert context.method_settings("mixunlearn") == unlearn.settings("mixunlearn", "digits", "sample", "mixunlearn")
    class_level = context.for_batch([0])
    assert class_level.method_settings("lmix") == unlearn.settings("mixunlearn", "digits", "class", "lmix")
    config = class_level.method_config("mixunlearn")
    assert isinstance(config, MixUnlearnConfig)
    assert config.epochs == unlearn.kinds["class"]["mixunlearn"]["epochs"]


def test_the_serving_method_follows_the_forget_kind() -> None:
    config = load_config(REPO_PARAMS, ["base.device=cpu", "pipeline.kind_methods={class: lmix}"])
    context = RunContext.create(config, toy_bundle())
    assert context.serving_method == config.pipeline.method  # sample-level: no entry, the pipeline's method
    assert context.for_batch([1]).serving_method == "lmix"


def test_build_model_has_the_bundle_shape(context: RunContext) -> None:
    model = context.build_model()
    logits = model(torch.zeros(2, 1, 8, 8))
    assert logits.shape == (2, CLASSES)


def test_tensors_are_normalised_and_labelled_on_the_device(context: RunContext) -> None:
    data = context.tensors(context.bundle.train)
    assert data.images.dtype == torch.float32
    assert data.labels.dtype == torch.long
    assert data.images.device == context.device
    expected = (context.bundle.train.images[0, 0, 0, 0] / 255.0 - 0.5) / 0.25
    assert data.images[0, 0, 0, 0].item() == pytest.approx(float(expected), abs=1e-5)


def test_unlearning_task_can_protect_the_callers_model(context: RunContext) -> None:
    original = context.build_model()
    data = context.tensors(context.bundle.train)
    copied = context.unlearning_task(original, retain=data, forget=data, copy_original=True)
    shared = context.unlearning_task(original, retain=data, forget=data)
    assert copied.original is not original
    assert shared.original is original
    assert copied.num_classes == CLASSES
    assert copied.train_config == context.recipe


def test_original_method_through_the_context_returns_an_equal_copy(context: RunContext) -> None:
    original = context.build_model()
    data = context.tensors(context.bundle.train)
    result = context.unlearn("original", context.unlearning_task(original, retain=data, forget=data))
    assert result.model is not original
    for mine, theirs in zip(result.model.state_dict().values(), original.state_dict().values(), strict=True):
        assert torch.equal(mine, theirs)


def test_recipe_tags_name_what_determines_a_trained_model(context: RunContext) -> None:
    tags = context.recipe_tags()
    assert set(tags) == set(policy.REFERENCE_TAGS)
    assert tags["training_code_sha256"] == training_code_sha256()[:16]
    other = RunContext.create(context.config, context.bundle, seed=context.seed + 1)
    assert other.recipe_tags()["seed"] != tags["seed"]


def test_the_reference_key_changes_with_everything_that_changes_a_trained_model(context: RunContext) -> None:
    # given one change of each kind: recipe, seed, architecture, preprocessing, training code, retained IDs
    def key(ctx: RunContext, pool: str = "pool") -> dict[str, str]:
        return policy.reference_key(pool, ctx.recipe_tags())

    recipe = load_config(None, ["train.recipes.default.epochs=7", "train.recipes.digits.epochs=7"])
    variants = {
        "recipe": RunContext.create(recipe, context.bundle, seed=context.seed),
        "seed": RunContext.create(context.config, context.bundle, seed=context.seed + 1),
        "architecture": dataclasses.replace(context, architecture="another"),
        "preprocessing": dataclasses.replace(context, bundle=dataclasses.replace(context.bundle, mean=(0.25,))),
    }
    base = key(context)
    # then: each changes the key; the same context gives the same key
    assert key(context) == base
    for name, variant in variants.items():
        assert key(variant) != base, name
    assert key(context, "other pool") != base


def test_the_training_code_hash_covers_the_loop_model_and_preprocessing_sources() -> None:
    # the files whose edit changes what a recipe trains, hashed in this order
    root = Path(__file__).resolve().parents[3] / "components"
    files = ("training.py", "models/backbones.py", "runtime.py", "data/types.py")
    expected = hashlib.sha256(b"".join((root / name).read_bytes() for name in files)).hexdigest()
    assert training_code_sha256() == expected
