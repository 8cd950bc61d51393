"""The per-model Prefect global concurrency limit the flows hold (``pipelines/concurrency.py``)."""

from __future__ import annotations

import threading
import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate

from pipelines.concurrency import ensure_model_limit, limit_name, model_slot, release_stale_slots

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a Prefect server


def read(name: str) -> tuple[int, int]:
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(name)
    return limit.limit, limit.active_slots


def test_limit_is_created_with_one_slot_and_an_existing_one_is_kept(prefect_harness: None) -> None:
    assert ensure_model_limit("model-a") == limit_name("model-a") == "mixunlearn-model-model-a"
    assert read("mixunlearn-model-model-a") == (1, 0)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=limit_name("model-b"), limit=2))
    ensure_model_limit("model-b")
    assert read(limit_name("model-b")) == (2, 0)


def test_a_second_holder_waits_for_the_first(prefect_harness: None) -> None:
    events: list[str] = []

    def hold(who: str, seconds: float) -> None:
        with model_slot("model-c"):
            events.append(f"{who} in")
            time.sleep(seconds)
            events.append(f"{who} out")

    first = threading.Thread(target=hold, args=("first", 2.0))
    first.start()
    while not events:
        time.sleep(0.05)
    second = threading.Thread(target=hold, args=("second", 0.0))
    second.start()
    first.join(timeout=60)
    second.join(timeout=60)

    assert events == ["first in", "first out", "second in", "second out"]
    assert read(limit_name("model-c")) == (1, 0)


def test_release_stale_slots_frees_a_slot_left_by_a_killed_run(prefect_harness: None) -> None:
    name = ensure_model_limit("model-d")
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=1))
    release_stale_slots("model-d")
    assert read(name) == (1, 0)
