"""MixUnlearn on a tiny SmallCNN task: which parameters each step moves, pairing, targets, the loop and the registry."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

import components.unlearning  # noqa: F401  (registers every method)
from components.unlearning import mixunlearn as mixunlearn_module
from components.unlearning.base import METHODS, UnlearningTask, build_config, build_unlearner, get_method
from components.unlearning.losses import sharpen
from components.unlearning.mixunlearn import MixUnlearn, MixUnlearnConfig, PairBatch

TaskFactory = Callable[..., UnlearningTask]

EXPECTED_METHODS = {
    "original",
    "retrain",
    "mixunlearn",
    "mixunlearn_agnostic",
    "lmix",
    "mixunlearn_no_real",
    "mixunlearn_no_mix",
    "mixunlearn_agnostic_no_sharpen",
    "mixunlearn_teacher",
    "mixunlearn_laf_schedule",
}
# name -> fields its switches must set (everything else keeps MixUnlearnConfig's default).
ABLATION_SWITCHES: dict[str, dict[str, Any]] = {
    "mixunlearn": {"label_mode": "aware"},
    "mixunlearn_agnostic": {"label_mode": "agnostic"},
    "lmix": {"label_mode": "aware", "mixer": "vanilla"},
    "mixunlearn_no_real": {"label_mode": "aware", "use_real_loss": False},
    "mixunlearn_no_mix": {"label_mode": "aware", "use_mix_loss": False},
    "mixunlearn_agnostic_no_sharpen": {"label_mode": "agnostic", "sharpen": False},
    "mixunlearn_teacher": {"label_mode": "aware", "teacher": True},
    # its step-budget switches (steps, min_steps, max_steps 0) restate the defaults, against tuned and kind layers
    "mixunlearn_laf_schedule": {"label_mode": "aware", "epochs": 20, "lr": 1e-4, "guard": False},
}
FAST = {"epochs": 1, "batch_size": 8, "generator_interval": 1}


def _config(**changes: Any) -> MixUnlearnConfig:
    return MixUnlearnConfig(**{**FAST, **changes})


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _equal(module: nn.Module, snapshot: Mapping[str, torch.Tensor]) -> bool:
    state = module.state_dict()
    return state.keys() == snapshot.keys() and all(torch.equal(state[k], snapshot[k]) for k in snapshot)


def _first_batch(mu: MixUnlearn, task: UnlearningTask, n: int = 8) -> PairBatch:
    return mu.make_batch(task.forget.images[:n], task.forget.labels[:n], task.retain.images[:n], task.retain.labels[:n])


def _grads_are_none(module: nn.Module) -> bool:
    return all(p.grad is None for p in module.parameters())


def test_generator_step_moves_only_the_mixblock(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    mu = MixUnlearn(_config(), task)
    batch = _first_batch(mu, task)
    unlearner, teacher, mixblock = _snapshot(mu.unlearner), _snapshot(mu.teacher), _snapshot(mu.mixblock)
    # when
    loss = mu.generator_step(batch)
    # then
    assert math.isfinite(loss)
    assert not _equal(mu.mixblock, mixblock)
    assert _equal(mu.unlearner, unlearner)
    assert _equal(mu.teacher, teacher)
    for name, parameter in mu.mixblock.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert _grads_are_none(mu.unlearner)
    assert _grads_are_none(mu.teacher)


def test_unlearner_step_moves_only_the_unlearner(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    mu = MixUnlearn(_config(), task)
    batch = _first_batch(mu, task)
    unlearner, teacher, mixblock = _snapshot(mu.unlearner), _snapshot(mu.teacher), _snapshot(mu.mixblock)
    # when
    values = mu.unlearner_step(batch)
    # then
    assert set(values) == {"loss", "loss_mix", "loss_real"}
    assert all(math.isfinite(v) for v in values.values())
    assert not _equal(mu.unlearner, unlearner)
    assert _equal(mu.teacher, teacher)
    assert _equal(mu.mixblock, mixblock)
    assert _grads_are_none(mu.mixblock)  # the unlearner's mask is detached
    assert _grads_are_none(mu.teacher)
    for name, parameter in mu.unlearner.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_run_never_modifies_the_original_model(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    original = _snapshot(task.original)
    # when
    result = MixUnlearn(_config(epochs=2), task).run()
    # then
    assert result.model is not task.original
    assert _equal(task.original, original)
    assert all(p.requires_grad for p in task.original.parameters())
    assert not _equal(result.model, original)


def test_vanilla_mixer_runs_no_generator_step(tiny_task: TaskFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    task = tiny_task()
    mu = MixUnlearn(_config(mixer="vanilla"), task)
    mixblock = _snapshot(mu.mixblock)
    calls: list[int] = []
    original_step = MixUnlearn.generator_step

    def counting_step(self: MixUnlearn, batch: PairBatch) -> float:
        calls.append(1)
        return original_step(self, batch)

    monkeypatch.setattr(MixUnlearn, "generator_step", counting_step)
    # when
    result = mu.run()
    # then
    assert calls == []
    assert _equal(mu.mixblock, mixblock)
    assert "loss_gen" not in result.history


def test_mixblock_mixer_runs_generator_steps_at_the_interval(
    tiny_task: TaskFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: 16 forget samples, batch 8 -> 2 steps per epoch, 3 epochs = 6 steps; interval 4 -> steps 0 and 4
    task = tiny_task()
    mu = MixUnlearn(_config(epochs=3, generator_interval=4), task)
    mixblock = _snapshot(mu.mixblock)
    calls: list[int] = []
    original_step = MixUnlearn.generator_step

    def counting_step(self: MixUnlearn, batch: PairBatch) -> float:
        calls.append(1)
        return original_step(self, batch)

    monkeypatch.setattr(MixUnlearn, "generator_step", counting_step)
    # when
    result = mu.run()
    # then
    assert len(calls) == 2
    assert not _equal(mu.mixblock, mixblock)
    assert math.isfinite(result.history["loss_gen"])


def test_unlearner_mixtures_are_compared_with_the_target_of_the_retain_image_mixed_in(
    tiny_task: TaskFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: retain image j is the constant j with label j; with the vanilla mixer and lambda = 0 each mixture
    # row is exactly the retain image mixed into it, so its value names the target it must be compared with.
    n = 8
    task = tiny_task()
    mu = MixUnlearn(_config(mixer="vanilla"), task)
    monkeypatch.setattr(mu, "draw_lambda", lambda: 0.0)
    retain_images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    retain_labels = torch.arange(n)
    batch = mu.make_batch(task.forget.images[:n], task.forget.labels[:n], retain_images, retain_labels)
    seen_inputs: list[torch.Tensor] = []
    mu.unlearner.register_forward_pre_hook(lambda module, args: seen_inputs.append(args[0].detach().clone()))
    captured: dict[str, torch.Tensor] = {}
    real_loss = mixunlearn_module.mix_contrastive_loss

    def spy(outputs: torch.Tensor, retain_targets: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        captured["retain_targets"] = retain_targets.detach().clone()
        return real_loss(outputs, retain_targets, *args, **kwargs)

    monkeypatch.setattr(mixunlearn_module, "mix_contrastive_loss", spy)
    # when
    mu.unlearner_step(batch)
    # then
    mixed = seen_inputs[0][:n]
    mixed_source = mixed.flatten(1).mean(dim=1).round().long()
    torch.testing.assert_close(mixed, retain_images[mixed_source])  # each row is one retain image
    assert mixed_source.tolist() != list(range(n)), "the pairs must be shuffled for this test to have power"
    torch.testing.assert_close(captured["retain_targets"], F.one_hot(mixed_source, task.num_classes).float())


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"label_mode": "aware"}, "one_hot"),
        ({"label_mode": "agnostic", "sharpen_temperature": 0.3}, "sharpened"),
        ({"label_mode": "agnostic", "sharpen": False}, "softmax"),
    ],
)
def test_targets(tiny_task: TaskFactory, changes: dict[str, Any], expected: str) -> None:
    # given
    task = tiny_task()
    mu = MixUnlearn(_config(**changes), task)
    images, labels = task.retain.images[:5], task.retain.labels[:5]
    with torch.no_grad():
        teacher_probabilities = torch.softmax(task.original(images), dim=1)
    reference = {
        "one_hot": F.one_hot(labels, task.num_classes).float(),
        "sharpened": sharpen(teacher_probabilities, 0.3),
        "softmax": teacher_probabilities,
    }[expected]
    # when
    targets = mu.targets(images, labels)
    # then
    torch.testing.assert_close(targets, reference)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(5))


def test_sharpened_targets_are_sharper_than_the_teacher(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    images, labels = task.retain.images[:5], task.retain.labels[:5]
    # when
    plain = MixUnlearn(_config(label_mode="agnostic", sharpen=False), task).targets(images, labels)
    sharp = MixUnlearn(_config(label_mode="agnostic", sharpen_temperature=0.3), task).targets(images, labels)
    # then
    assert (sharp.max(dim=1).values > plain.max(dim=1).values).all()


def test_both_losses_off_is_refused(tiny_task: TaskFactory) -> None:
    with pytest.raises(ValueError, match="at least one of use_mix_loss and use_real_loss"):
        MixUnlearn(_config(use_mix_loss=False, use_real_loss=False), tiny_task())


@pytest.mark.parametrize("name", sorted(ABLATION_SWITCHES))
def test_short_run_has_finite_losses_and_reports_steps(tiny_task: TaskFactory, name: str) -> None:
    # given
    events: list[tuple[str, dict[str, float], int]] = []
    unlearn = build_unlearner(name, {**FAST, "epochs": 2})
    # a switch wins over the settings: the LAF-schedule row always makes its 20 passes (2 batches each here)
    expected = 2 * build_config(name, {**FAST, "epochs": 2}).epochs
    # when
    result = unlearn(tiny_task(), [lambda event, values, step: events.append((event, dict(values), step))])
    # then
    assert events[0] == ("unlearn_start", {"total_steps": float(expected)}, 0)
    steps = [(values, step) for event, values, step in events if event == "unlearn_step"]
    assert [step for _, step in steps] == list(range(1, expected + 1))
    for values, _ in steps:
        assert values, name
        assert all(math.isfinite(v) for v in values.values()), values
    assert result.history
    assert all(math.isfinite(v) for v in result.history.values())
    for parameter in result.model.parameters():
        assert torch.isfinite(parameter).all()


def test_a_last_forget_batch_of_one_sample_is_skipped(tiny_task: TaskFactory) -> None:
    # given: 17 forget samples in batches of 8 -> batches of 8, 8 and 1
    task = tiny_task(n_forget=17)
    steps: list[int] = []
    # when
    MixUnlearn(_config(), task).run(
        [lambda event, values, step: steps.append(step) if event.endswith("step") else None]
    )
    # then
    assert steps == [1, 2]


def test_run_returns_positive_seconds_and_an_eval_model(tiny_task: TaskFactory) -> None:
    # when
    result = MixUnlearn(_config(), tiny_task()).run()
    # then
    assert result.seconds > 0
    assert not any(module.training for module in result.model.modules())


def test_same_seed_gives_identical_weights(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    config = _config(epochs=2)
    # when
    first = MixUnlearn(config, task).run().model
    second = MixUnlearn(config, task).run().model
    other_seed = MixUnlearn(config, dataclasses.replace(task, seed=7)).run().model
    # then
    assert _equal(second, _snapshot(first))
    assert not _equal(other_seed, _snapshot(first))


def test_registry_holds_the_eight_methods() -> None:
    assert set(METHODS) >= EXPECTED_METHODS  # other modules may register more (baselines)
    for name in EXPECTED_METHODS:
        assert get_method(name).name == name
        assert get_method(name).description


def test_unknown_method_lists_the_registered_names() -> None:
    with pytest.raises(ValueError, match="unknown method 'nope'") as error:
        get_method("nope")
    assert all(name in str(error.value) for name in EXPECTED_METHODS)


@pytest.mark.parametrize("name", sorted(ABLATION_SWITCHES))
def test_build_config_applies_each_variants_switches(name: str) -> None:
    # given
    expected = MixUnlearnConfig().model_copy(update=ABLATION_SWITCHES[name])
    # when
    config = build_config(name, {})
    # then
    assert get_method(name).section == "mixunlearn"
    assert config == expected


def test_lmix_uses_the_vanilla_mixer() -> None:
    assert build_config("lmix", {}).mixer == "vanilla"  # type: ignore[attr-defined]


def test_switches_win_over_settings() -> None:
    # when
    config = build_config("lmix", {"mixer": "mixblock", "label_mode": "agnostic", "lr": 0.5})
    # then
    assert config.mixer == "vanilla"  # type: ignore[attr-defined]
    assert config.label_mode == "aware"  # type: ignore[attr-defined]
    assert config.lr == 0.5  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(EXPECTED_METHODS))
def test_unknown_setting_key_is_a_validation_error(name: str) -> None:
    with pytest.raises(ValidationError):
        build_config(name, {"no_such_setting": 1})


@pytest.mark.parametrize("settings", [{"tau_mix": 0.0}, {"epochs": 0}, {"mixer": "cutmix"}, {"batch_size": 1}])
def test_invalid_setting_value_is_a_validation_error(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        build_config("mixunlearn", settings)


@pytest.mark.parametrize("name", sorted(EXPECTED_METHODS))
def test_every_registered_method_runs_on_the_tiny_task(tiny_task: TaskFactory, name: str) -> None:
    # given
    task = tiny_task()
    original = _snapshot(task.original)
    settings = FAST if get_method(name).section == "mixunlearn" else {}
    # when
    result = build_unlearner(name, settings)(task)
    # then
    assert result.model is not task.original
    assert result.seconds >= 0
    assert not any(module.training for module in result.model.modules())
    assert _equal(task.original, original)
    with torch.no_grad():
        logits = result.model(task.forget.images)
    assert logits.shape == (len(task.forget), task.num_classes)
    assert torch.isfinite(logits).all()


def test_announced_total_steps_match_the_steps_run(tiny_task: TaskFactory) -> None:
    # given: 17 forget samples in batches of 8 -> 2 steps per epoch are run
    events: list[tuple[str, dict[str, float], int]] = []
    # when
    MixUnlearn(_config(epochs=2), tiny_task(n_forget=17)).run(
        [lambda event, values, step: events.append((event, dict(values), step))]
    )
    # then
    total = events[0][1]["total_steps"]
    assert total == sum(event == "unlearn_step" for event, _, _ in events)


@pytest.mark.parametrize(
    ("changes", "expected_steps"),
    [
        ({"epochs": 1}, 2),  # 17 samples in batches of 8: 2 steps per pass
        ({"epochs": 1, "min_steps": 5}, 6),  # passes repeat until the floor fits: 3 passes
        ({"epochs": 3, "min_steps": 1}, 6),  # the floor never lowers the passes asked for
        ({"epochs": 4, "max_steps": 5}, 5),  # the ceiling stops mid-pass
        ({"epochs": 1, "min_steps": 5, "max_steps": 5}, 5),
    ],
)
def test_the_step_budget_sets_the_number_of_unlearner_steps(
    tiny_task: TaskFactory, changes: dict[str, Any], expected_steps: int
) -> None:
    events: list[tuple[str, dict[str, float], int]] = []
    MixUnlearn(_config(**changes), tiny_task(n_forget=17)).run(
        [lambda event, values, step: events.append((event, dict(values), step))]
    )
    assert sum(event == "unlearn_step" for event, _, _ in events) == expected_steps
    assert events[0][1]["total_steps"] == expected_steps


def test_a_step_floor_above_the_ceiling_is_refused() -> None:
    with pytest.raises(ValueError, match="min_steps 9 exceeds max_steps 5"):
        _config(min_steps=9, max_steps=5)


@pytest.mark.parametrize(
    ("n_forget", "changes"),
    [
        (17, {"steps": 5}),  # 2 steps per pass: 3 passes, the last cut short
        (40, {"steps": 5}),  # 5 steps per pass: the budget does not grow with the forget set
        (17, {"steps": 5, "epochs": 4, "min_steps": 1, "max_steps": 2}),  # steps wins over the epoch budget
    ],
)
def test_a_fixed_step_budget_runs_exactly_that_many_steps(
    tiny_task: TaskFactory, n_forget: int, changes: dict[str, Any]
) -> None:
    # given
    events: list[tuple[str, dict[str, float], int]] = []
    # when
    MixUnlearn(_config(**changes), tiny_task(n_forget=n_forget)).run(
        [lambda event, values, step: events.append((event, dict(values), step))]
    )
    # then
    assert sum(event == "unlearn_step" for event, _, _ in events) == 5
    assert events[0][1]["total_steps"] == 5


def test_separate_temperatures_win_over_the_tau_shorthand() -> None:
    config = build_config("mixunlearn", {"tau": 16.0, "tau_mix": 4.0, "tau_gen": 64.0})
    assert (config.tau_mix, config.tau_real, config.tau_gen) == (4.0, 16.0, 64.0)  # type: ignore[attr-defined]


def test_teacher_step_adds_a_finite_distillation_term_that_is_zero_at_the_start(tiny_task: TaskFactory) -> None:
    # given: the unlearner starts as a copy of the teacher, so KL(f_D || f_U) is 0 on the first step
    task = tiny_task()
    mu = MixUnlearn(_config(teacher=True), task)
    batch = _first_batch(mu, task)
    teacher = _snapshot(mu.teacher)
    # when
    values = mu.unlearner_step(batch)
    # then
    assert set(values) == {"loss", "loss_mix", "loss_real", "loss_teacher"}
    assert values["loss_teacher"] == pytest.approx(0.0, abs=1e-5)
    assert _equal(mu.teacher, teacher)
    assert _grads_are_none(mu.teacher)
    assert batch.retain_teacher is not None
    torch.testing.assert_close(batch.retain_teacher.sum(dim=1), torch.ones(len(batch.retain_images)))


def test_teacher_weight_zero_gives_the_faithful_method_exactly(tiny_task: TaskFactory) -> None:
    # given: the same seed, data and settings; the variant's extra term has weight 0
    task = tiny_task()
    settings = {**FAST, "epochs": 2}
    # when
    faithful = build_unlearner("mixunlearn", settings)(task).model
    variant = build_unlearner("mixunlearn_teacher", {**settings, "teacher_weight": 0.0})(task).model
    # then
    assert _equal(variant, _snapshot(faithful))


def test_teacher_runs_without_the_real_loss(tiny_task: TaskFactory) -> None:
    # given
    task = tiny_task()
    mu = MixUnlearn(_config(teacher=True, use_real_loss=False), task)
    # when
    values = mu.unlearner_step(_first_batch(mu, task))
    # then
    assert set(values) == {"loss", "loss_mix", "loss_teacher"}
    assert all(math.isfinite(v) for v in values.values())
