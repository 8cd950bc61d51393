"""The ephemeral Prefect server boot that overlaps the CLI's imports (``pipelines/server.py``)."""

from __future__ import annotations

import pytest

from pipelines.server import boot_ephemeral_server


def test_with_a_configured_server_nothing_is_booted(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a Prefect server configured by URL (a team's server, or serve's)
    from prefect.server.api.server import SubprocessASGIServer

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    before = dict(SubprocessASGIServer._instances)

    # when the CLI asks for the boot
    wait = boot_ephemeral_server()
    wait()

    # then no temporary server was created or started
    assert SubprocessASGIServer._instances == before


@pytest.mark.slow
def test_the_booted_server_is_the_one_the_flow_client_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    # given no configured server
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from prefect.client.orchestration import get_client
    from prefect.server.api.server import SubprocessASGIServer

    # when the boot is awaited and a client is opened afterwards
    boot_ephemeral_server()()
    server = SubprocessASGIServer()
    with get_client(sync_client=True) as client:
        healthy = client.api_healthcheck()

    # then the client talks to the server the boot started (a singleton per port), and it answers
    assert server.running
    assert server.server_process is not None
    assert server.server_process.poll() is None
    assert healthy is None
    assert str(client.api_url).startswith(server.api_url)
