"""The batch ledger: how far each deletion batch got, so an interrupted batch is resumed instead of forgotten.

A batch passes through these stages, each recorded once its step is done (``planned`` before the first step)::

    planned -> data_deleted -> snapshotted -> unlearned -> verified -> promoted -> reported

One small JSON file per batch, ``<root>/.mixunlearn/batches/<batch_id>.json``, written atomically. It lives beside
the model locks, outside ``data/``: ``data/`` is the DVC-tracked data version, and a state written after its
snapshot would make the next run see changed data. The file holds the whole batch (it is written before the batch
record under ``data/batches/`` exists), the champion the batch started from (``parent_model_version``) and, once
known, the data version after the deletion and the promoted version.

While a batch is not ``reported``, its requests are "in batch" (``request_state``), even though the data store has
already filed them under ``requests/processed`` with the data version that deleted their samples.

Transitions are pure functions (``advance``); ``BatchLedger`` only reads and writes the files.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from components.data.types import DataError
from components.deletion.store import DataStore, ForgetBatch
from components.files import write_atomically

Stage = Literal["planned", "data_deleted", "snapshotted", "unlearned", "verified", "promoted", "reported"]
STAGES: tuple[Stage, ...] = ("planned", "data_deleted", "snapshotted", "unlearned", "verified", "promoted", "reported")
LEDGER_DIR = Path(".mixunlearn") / "batches"


class Transition(BaseModel):
    """One stage reached, and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: Stage
    at: datetime


class BatchState(BaseModel):
    """Where one batch stands."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch: ForgetBatch
    parent_model_version: str | None  # the champion before the batch: the model to unlearn from
    stage: Stage
    history: tuple[Transition, ...]
    data_md5: str | None = None  # the data version after the deletion (``snapshotted``)
    git_rev: str | None = None
    promoted_version: str | None = None  # ``promoted``

    @property
    def finished(self) -> bool:
        return self.stage == STAGES[-1]

    def reached(self, stage: Stage) -> bool:
        """Whether ``stage`` (or a later one) is recorded."""
        return STAGES.index(self.stage) >= STAGES.index(stage)


def plan(batch: ForgetBatch, parent_model_version: str | None, now: datetime | None = None) -> BatchState:
    """The state of a batch that was just planned: nothing of it has happened yet."""
    moment = now or datetime.now(UTC)
    return BatchState(
        batch=batch,
        parent_model_version=parent_model_version,
        stage="planned",
        history=(Transition(stage="planned", at=moment),),
    )


def advance(state: BatchState, stage: Stage, now: datetime | None = None, **facts: str | None) -> BatchState:
    """``state`` with ``stage`` recorded, plus ``facts`` (``data_md5``, ``git_rev``, ``promoted_version``).

    Recording a stage already reached returns ``state`` unchanged (a resumed run redoes cheap steps, never
    rewinds); skipping a stage is an error.

    Raises:
        ValueError: ``stage`` is more than one step ahead, or a fact is not a field of the state.
    """
    unknown = set(facts) - {"data_md5", "git_rev", "promoted_version"}
    if unknown:
        raise ValueError(f"unknown batch facts: {', '.join(sorted(unknown))}")
    current, target = STAGES.index(state.stage), STAGES.index(stage)
    if target <= current:
        return state
    if target != current + 1:
        raise ValueError(
            f"batch {state.batch.batch_id} is {state.stage}; it cannot be {stage} before {STAGES[current + 1]}"
        )
    moment = now or datetime.now(UTC)
    return state.model_copy(
        update={
            "stage": stage,
            "history": (*state.history, Transition(stage=stage, at=moment)),
            **{key: value for key, value in facts.items() if value is not None},
        }
    )


class BatchLedger:
    """The ledger files under ``<root>/.mixunlearn/batches``."""

    def __init__(self, root: Path) -> None:
        self.directory = Path(root) / LEDGER_DIR

    def path(self, batch_id: str) -> Path:
        if Path(batch_id).name != batch_id:
            raise DataError(f"batch ID {batch_id!r} is not a file name")
        return self.directory / f"{batch_id}.json"

    def save(self, state: BatchState) -> BatchState:
        write_atomically(self.path(state.batch.batch_id), state.model_dump_json(indent=2) + "\n")
        return state

    def load(self, batch_id: str) -> BatchState | None:
        path = self.path(batch_id)
        if not path.is_file():
            return None
        try:
            return BatchState.model_validate_json(path.read_text())
        except ValidationError as error:
            raise DataError(f"batch ledger {path} is unreadable: {error.errors()[0]['msg']}") from None

    def record(self, state: BatchState, stage: Stage, **facts: str | None) -> BatchState:
        """Advance ``state`` to ``stage`` and write it; returns the new state."""
        updated = advance(state, stage, **facts)
        return self.save(updated) if updated != state else state

    def states(self, dataset: str) -> list[BatchState]:
        """Every batch of ``dataset`` in the ledger, oldest first."""
        states = [self.load(path.stem) for path in sorted(self.directory.glob("*.json"))]
        found = [state for state in states if state is not None and state.batch.dataset == dataset]
        return sorted(found, key=lambda state: state.batch.created_at)

    def unfinished(self, dataset: str) -> BatchState | None:
        """The batch of ``dataset`` that was started and not reported, if any.

        Raises:
            DataError: more than one is unfinished (batches of one model are serialised, so this is not expected).
        """
        open_batches = [state for state in self.states(dataset) if not state.finished]
        if len(open_batches) > 1:
            names = ", ".join(state.batch.batch_id for state in open_batches)
            raise DataError(f"several unfinished batches of {dataset} in {self.directory}: {names}")
        return open_batches[0] if open_batches else None

    def request_state(self, store: DataStore, request_id: str) -> str | None:
        """``"in batch <id>"`` while the batch honouring ``request_id`` is unfinished, else the store's state
        (``pending``, ``processed``, ``rejected``), or None when the request is unknown."""
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.json")):
                state = self.load(path.stem)
                if state is not None and not state.finished and request_id in state.batch.request_ids:
                    return f"in batch {state.batch.batch_id}"
        known = store.known_request(request_id)
        return known[0] if known else None
