"""The certification stage function: evidence from a model on forget / held-out / retained samples, no Prefect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import load_config
from components.data.types import DatasetBundle, ImageSet
from components.stages.certify import certification_metrics, certify_batch, model_evidence, retain_sample
from components.stages.context import RunContext
from components.verification.predictions import predict

CLASSES = 3
REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


def image_set(split: str, n: int, seed: int) -> ImageSet:
    rng = np.random.default_rng(seed)
    return ImageSet(
        ids=np.asarray([f"digits/{split}/{i:05d}" for i in range(n)]),
        images=rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8),
        labels=np.arange(n, dtype=np.int64) % CLASSES,
    )


@pytest.fixture
def context() -> RunContext:
    config = load_config(REPO_PARAMS, ["base.device=cpu", "verify.retain_sample=20"])
    train = image_set("train", 60, 1)
    bundle = DatasetBundle(
        name="digits", train=train, test=train, num_classes=CLASSES, mean=(0.5,), std=(0.25,), default_model="small_cnn"
    )
    return RunContext.create(config, bundle)


@pytest.fixture
def model(context: RunContext) -> torch.nn.Module:
    torch.manual_seed(0)
    return context.build_model().eval()


def test_retain_sample_is_seeded_bounded_and_in_pool_order() -> None:
    pool = image_set("train", 50, 3)
    first, again, other = retain_sample(pool, 10, 0), retain_sample(pool, 10, 0), retain_sample(pool, 10, 1)
    assert len(first) == 10
    assert first.ids.tolist() == again.ids.tolist()
    assert first.ids.tolist() != other.ids.tolist()
    assert set(first.ids.tolist()) <= set(pool.ids.tolist())
    assert first.ids.tolist() == sorted(first.ids.tolist())
    assert retain_sample(pool, 100, 0) is pool


def test_model_evidence_holds_the_model_outputs_on_each_split(context: RunContext, model: torch.nn.Module) -> None:
    forget, heldout, retain = image_set("train", 6, 4), image_set("val", 9, 5), image_set("train", 12, 6)
    evidence = model_evidence(context, model, forget, heldout, retain)
    for predictions, images in ((evidence.forget, forget), (evidence.heldout, heldout), (evidence.retain, retain)):
        assert predictions.probs.shape == (len(images), CLASSES)
        assert predictions.labels.tolist() == images.labels.tolist()
        tensors = context.tensors(images)
        np.testing.assert_allclose(predictions.probs, predict(model, tensors.images, tensors.labels).probs)
        np.testing.assert_allclose(predictions.probs.sum(axis=1), 1.0, rtol=1e-5)


def test_certifying_the_control_against_itself_gives_the_control_checks(
    context: RunContext, model: torch.nn.Module
) -> None:
    # given a "no-op" unlearning: the candidate is the control
    forget, heldout, pool = image_set("train", 6, 4), image_set("val", 30, 5), image_set("train", 60, 1)
    # when
    certification = certify_batch(context, model, model, forget, heldout, pool)
    # then the candidate's checks are the control's, so it fails wherever the control fails
    assert certification.candidate_checks == certification.control_checks
    assert certification.verdict_line().startswith(("PASS", "FAIL"))
    metrics = certification_metrics(certification)
    assert metrics["cert_membership_value"] == metrics["cert_control_membership_value"]
    assert metrics["cert_utility_drop_value"] == 0.0
    assert {"cert_certified", "cert_measurable", "cert_forget_excess_limit"} <= set(metrics)


def test_class_level_context_runs_the_class_checks(context: RunContext, model: torch.nn.Module) -> None:
    pool = image_set("train", 60, 1)
    forget = pool.subset(np.flatnonzero(pool.labels == 2)[:5])
    certification = certify_batch(context.for_batch([2]), model, model, forget, image_set("val", 30, 5), pool)
    names = [check.name for check in certification.candidate_checks]
    assert names == ["membership", "forget_accuracy", "heldout_forgotten_accuracy", "utility_drop"]
