"""The data-change trigger's decision: has the committed data version (``data.dvc`` at ``HEAD``) changed since the
watcher last looked, by a commit the pipeline did not make itself?

The pipeline commits ``data.dvc`` itself (a deletion batch, the first version of a dataset, a purge); those
versions need no batch, so the commit that last changed ``data.dvc`` is recognised by its subject
(``OWN_SUBJECT``). Anything else (a ``git pull`` or merge that brings a new data version, a person committing
requests or data with ``dvc add``) starts a batch. The last version seen is kept in
``<root>/.mixunlearn/triggers/data-version.json`` (outside ``data/``, beside the locks), so a change made while
``serve`` was down is noticed when it starts; on the very first look the current version is the baseline.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from components.adapters.versioning import DataVersioning
from components.files import write_atomically

STATE_FILE = Path(".mixunlearn") / "triggers" / "data-version.json"
# subjects of the commits the pipeline makes (pipelines/flows.py, components/stages/steps.py purge_data)
OWN_SUBJECT = re.compile(r"^data: (forget batch |purge|\S+ version before deletion batches)")


@dataclass(frozen=True)
class DataVersion:
    """The committed data version: its md5, the commit that last changed ``data.dvc`` and that commit's subject."""

    md5: str
    commit: str
    subject: str

    @property
    def own(self) -> bool:
        """Whether the pipeline made this version itself."""
        return OWN_SUBJECT.match(self.subject) is not None


def committed_version(versioning: DataVersioning) -> DataVersion | None:
    """The data version committed at ``HEAD``, or None when ``data.dvc`` was never committed."""
    last = versioning.last_change()
    if last is None:
        return None
    commit, subject = last
    md5 = versioning.md5_at(commit)
    return None if md5 is None else DataVersion(md5, commit, subject)


class DataChangeWatch:
    """Compares the committed data version with the last one seen (kept in ``STATE_FILE`` under ``root``)."""

    def __init__(self, root: Path, versioning: DataVersioning) -> None:
        self.state_path = Path(root) / STATE_FILE
        self.versioning = versioning

    def last_seen(self) -> str | None:
        try:
            return str(json.loads(self.state_path.read_text())["md5"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def poll(self) -> DataVersion | None:
        """The new version when one was committed by someone other than the pipeline since the last look, else None.
        Every version looked at becomes the last seen (a version triggers at most once)."""
        current = committed_version(self.versioning)
        if current is None:
            return None
        seen = self.last_seen()
        if current.md5 == seen:
            return None
        write_atomically(self.state_path, json.dumps({"md5": current.md5, "commit": current.commit}) + "\n")
        return current if seen is not None and not current.own else None
