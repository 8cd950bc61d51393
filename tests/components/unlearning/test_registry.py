"""``register_runner``: a method whose state lives in ``runner(config, task)`` and whose work is ``.run(callbacks)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pytest

from components.runtime import Callback
from components.unlearning.base import (
    METHODS,
    MethodConfig,
    UnlearningResult,
    UnlearningTask,
    build_config,
    build_unlearner,
    get_method,
    method_names,
    register_runner,
)

FAKE = "fake_runner_for_tests"
FAKE_ABLATION = "fake_runner_for_tests_no_boost"


class FakeConfig(MethodConfig):
    lr: float = 0.1
    boost: bool = True


class FakeRunner:
    """Records how it was built and run; returns the original model unchanged."""

    built: ClassVar[list[FakeRunner]] = []

    def __init__(self, config: FakeConfig, task: UnlearningTask) -> None:
        self.config = config
        self.task = task
        self.runs: list[Sequence[Callback]] = []
        FakeRunner.built.append(self)

    def run(self, callbacks: Sequence[Callback] = ()) -> UnlearningResult:
        self.runs.append(callbacks)
        return UnlearningResult(model=self.task.original, seconds=1.5, history={"lr": self.config.lr})


@pytest.fixture
def registered() -> Iterator[None]:
    """Register the fake method and its ablation; remove them (and only them) afterwards."""
    before = list(METHODS)
    FakeRunner.built.clear()
    register_runner(FAKE, FakeConfig, "a fake runner", FakeRunner)
    register_runner(
        FAKE_ABLATION, FakeConfig, "the fake without boost", FakeRunner, section=FAKE, switches={"boost": False}
    )
    try:
        yield
    finally:
        METHODS.pop(FAKE, None)
        METHODS.pop(FAKE_ABLATION, None)
        FakeRunner.built.clear()
        assert list(METHODS) == before


def test_registered_runner_is_listed_with_its_section(registered: None) -> None:
    # when
    spec = get_method(FAKE)
    ablation = get_method(FAKE_ABLATION)
    # then: the section defaults to the name; the ablation shares the section and fixes its switch
    assert method_names()[-2:] == [FAKE, FAKE_ABLATION]
    assert (spec.section, spec.config_type, spec.description, dict(spec.switches)) == (
        FAKE,
        FakeConfig,
        "a fake runner",
        {},
    )
    assert (ablation.section, dict(ablation.switches)) == (FAKE, {"boost": False})


def test_unlearner_builds_the_runner_with_config_and_task_then_runs_it_with_the_callbacks(
    registered: None, tiny_task: Callable[..., UnlearningTask]
) -> None:
    # given
    task = tiny_task()
    events: list[str] = []

    def callback(event: str, values: Any, step: int) -> None:
        events.append(event)

    callbacks = [callback]
    # when
    result = build_unlearner(FAKE, {"lr": 0.5})(task, callbacks)
    # then: one runner per call, built from the validated config and the task, run once with the callbacks
    (runner,) = FakeRunner.built
    assert runner.config == FakeConfig(lr=0.5, boost=True)
    assert runner.task is task
    assert runner.runs == [callbacks]
    assert (result.model, result.seconds, dict(result.history)) == (task.original, 1.5, {"lr": 0.5})


def test_each_call_builds_a_fresh_runner(registered: None, tiny_task: Callable[..., UnlearningTask]) -> None:
    # given
    unlearn = build_unlearner(FAKE)
    first, second = tiny_task(seed=0), tiny_task(seed=1)
    # when
    unlearn(first)
    unlearn(second)
    # then: no state leaks between calls; the default callbacks are empty
    assert [runner.task for runner in FakeRunner.built] == [first, second]
    assert [list(runner.runs[0]) for runner in FakeRunner.built] == [[], []]


def test_switches_win_over_settings_for_a_registered_runner(
    registered: None, tiny_task: Callable[..., UnlearningTask]
) -> None:
    # when
    build_unlearner(FAKE_ABLATION, {"boost": True, "lr": 0.2})(tiny_task())
    # then
    (runner,) = FakeRunner.built
    assert runner.config == FakeConfig(lr=0.2, boost=False)


def test_unknown_setting_of_a_registered_runner_is_refused_before_building_it(registered: None) -> None:
    # when / then
    with pytest.raises(ValueError, match="bogus"):
        build_config(FAKE, {"bogus": 1})
    assert FakeRunner.built == []
