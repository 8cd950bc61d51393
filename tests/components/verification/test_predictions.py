"""Tests for ``components.verification.predictions``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.verification.predictions import Predictions, predict


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 3)
    )


def test_accuracy_perfect_and_partial() -> None:
    # given
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    # when
    perfect = Predictions(probs=probs, labels=np.array([0, 1, 0, 1]))
    half = Predictions(probs=probs, labels=np.array([0, 1, 1, 0]))
    # then
    assert perfect.accuracy() == 100.0
    assert half.accuracy() == 50.0
    assert len(perfect) == 4
    assert perfect.num_classes == 2


def test_accuracy_of_empty_set_raises() -> None:
    empty = Predictions(probs=np.zeros((0, 3)), labels=np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        empty.accuracy()


def test_subset_by_mask_and_positions() -> None:
    # given
    preds = Predictions(probs=np.eye(3)[[0, 1, 2, 1]], labels=np.array([0, 1, 2, 0]))
    # when
    by_mask = preds.subset(preds.labels == 0)
    by_positions = preds.subset(np.array([3, 0]))
    # then
    assert by_mask.labels.tolist() == [0, 0]
    assert by_mask.accuracy() == 50.0
    assert by_positions.labels.tolist() == [0, 0]
    np.testing.assert_array_equal(by_positions.probs, preds.probs[[3, 0]])


def test_misaligned_predictions_raise() -> None:
    with pytest.raises(ValueError, match="misaligned"):
        Predictions(probs=np.zeros((3, 2)), labels=np.zeros(2, dtype=np.int64))


def test_predict_returns_softmax_rows() -> None:
    # given
    model = _model()
    x = torch.randn(20, 4)
    labels = np.arange(20) % 3
    # when
    preds = predict(model, x, labels)
    # then
    assert preds.probs.shape == (20, 3)
    assert preds.probs.dtype == np.float32
    np.testing.assert_allclose(preds.probs.sum(axis=1), 1.0, atol=1e-5)
    assert (preds.probs >= 0).all()
    np.testing.assert_array_equal(preds.labels, labels)


def test_predict_batching_does_not_change_result() -> None:
    # given: BatchNorm and Dropout would make results batch-dependent unless the model is in eval mode
    model = _model()
    model.train()
    x = torch.randn(20, 4)
    labels = torch.arange(20) % 3
    # when
    small = predict(model, x, labels, batch_size=3)
    large = predict(model, x, labels, batch_size=512)
    # then
    np.testing.assert_allclose(small.probs, large.probs, atol=1e-6)
    np.testing.assert_array_equal(small.labels, labels.numpy())


def test_predict_restores_each_module_mode() -> None:
    # given: a training model with one sub-module deliberately kept in eval mode
    model = _model()
    model.train()
    model[1].eval()
    before = [module.training for module in model.modules()]
    # when
    predict(model, torch.randn(5, 4), np.zeros(5, dtype=np.int64))
    # then
    assert [module.training for module in model.modules()] == before
    model.eval()
    predict(model, torch.randn(5, 4), np.zeros(5, dtype=np.int64))
    assert not any(module.training for module in model.modules())


def test_predict_restores_mode_when_forward_fails() -> None:
    model = _model()
    model.train()
    with pytest.raises(RuntimeError):
        predict(model, torch.randn(5, 7), np.zeros(5, dtype=np.int64))
    assert model.training


def test_predict_rejects_label_mismatch_and_empty_input() -> None:
    model = _model()
    with pytest.raises(ValueError, match="labels"):
        predict(model, torch.randn(5, 4), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        predict(model, torch.randn(0, 4), np.zeros(0, dtype=np.int64))
