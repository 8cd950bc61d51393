"""The benchmark's Prefect server: a real `prefect server start` that answers inside the block, gone after."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.bench.prefect_server import answers, free_port, running_prefect_server


@pytest.mark.slow
def test_the_server_answers_inside_the_block_and_stops_after_it(tmp_path: Path) -> None:
    with running_prefect_server(tmp_path / "prefect") as environment:
        health = f"{environment['PREFECT_API_URL']}/health"
        assert answers(health)
        assert environment["PREFECT_HOME"].startswith(str(tmp_path))
    assert not answers(health)


def test_nothing_answers_on_a_port_nobody_listens_on() -> None:
    assert not answers(f"http://127.0.0.1:{free_port()}/api/health")
