"""Coalescing: a burst of arrivals gives one batch once it is quiet for the window, or at the longest wait."""

from __future__ import annotations

from components.triggers.coalesce import Coalescer


def test_a_burst_is_one_batch_once_it_is_quiet_for_the_window() -> None:
    coalescer = Coalescer(window_s=10, max_wait_s=120)
    for second, request_id in enumerate(["a", "b", "c"]):
        coalescer.request(float(second), "digits", request_id)

    assert coalescer.take(11.9) is None  # the last arrival was at t=2: quiet for 9.9 s only
    burst = coalescer.take(12.0)

    assert burst is not None
    assert burst.requests == {"digits": ("a", "b", "c")}
    assert burst.arrivals == 3
    assert (burst.opened_at, burst.closed_at) == (0.0, 12.0)
    assert not coalescer.open
    assert coalescer.take(1000.0) is None


def test_a_steady_trickle_still_gets_its_batch_at_the_longest_wait() -> None:
    coalescer = Coalescer(window_s=10, max_wait_s=30)
    for second in range(0, 40, 5):  # an arrival every 5 s: never quiet for 10 s
        coalescer.request(float(second), "digits", f"r{second}")
        if second < 30:
            assert coalescer.take(float(second)) is None
    burst = coalescer.take(35.0)
    assert burst is not None
    assert burst.arrivals == 8


def test_a_data_change_and_requests_of_two_datasets_are_one_burst() -> None:
    coalescer = Coalescer(window_s=0, max_wait_s=1)
    coalescer.data_changed(0.0, "abc.dir")
    coalescer.request(0.0, "fashion_mnist", "f1")

    burst = coalescer.take(0.0)

    assert burst is not None
    assert burst.data_md5 == "abc.dir"
    assert burst.datasets("digits") == ["digits", "fashion_mnist"]  # the served dataset for the data change
