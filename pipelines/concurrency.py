"""One deletion batch or Retrain audit per registered model at a time, across processes and Prefect workers.

The flows hold the Prefect global concurrency limit ``mixunlearn-model-<model>`` (one slot, created when missing)
while they plan, apply and promote. Against a Prefect server every worker and served deployment shares the limit;
a second run waits for the slot, then finds the first run's requests processed. ``mixunlearn run`` also holds an OS
file lock per model (``components/locking.py``) before the flow (and its ephemeral server) starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

LIMIT_PREFIX = "mixunlearn-model-"
LEASE_SECONDS = 120.0  # renewed while held; a crashed holder's slot is reclaimed this long after it stops renewing


def limit_name(model: str) -> str:
    """The global concurrency limit guarding ``model``."""
    return f"{LIMIT_PREFIX}{model}"


def ensure_model_limit(model: str) -> str:
    """Create the model's limit with one slot when it is missing (an existing limit is left as configured)."""
    name = limit_name(model)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):  # another run created it in between
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    return name


def release_stale_slots(model: str) -> None:
    """Free the model's slots. Only for a caller that knows no holder is alive: ``mixunlearn run`` under its file
    lock on an ephemeral server, whose slots a killed process would otherwise keep in the shared database."""
    name = ensure_model_limit(model)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))


def uses_ephemeral_server() -> bool:
    """True when no Prefect server is configured, i.e. each process starts its own (sharing ``PREFECT_HOME``)."""
    from prefect.settings import get_current_settings

    return not (os.environ.get("PREFECT_API_URL") or get_current_settings().api.url)


@contextlib.contextmanager
def model_slot(model: str) -> Iterator[None]:
    """Hold the model's single slot (wait for it when another run holds it)."""
    with concurrency(ensure_model_limit(model), occupy=1, strict=True, lease_duration=LEASE_SECONDS):
        yield
