"""The data-change decision on a real git + DVC repository: a version committed by someone else triggers once; the
pipeline's own commits (a batch, the first version, a purge) never do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from components.adapters.versioning import DataVersioning
from components.triggers.data_change import DataChangeWatch

pytestmark = pytest.mark.integration


def write_data(repo: Path, labels: list[int]) -> None:
    (repo / "data").mkdir(exist_ok=True)
    np.save(repo / "data" / "labels.npy", np.asarray(labels))


def test_a_foreign_commit_triggers_once_and_own_commits_never(git_repo: Path, git: Callable[..., str]) -> None:
    versioning = DataVersioning(git_repo)
    watch = DataChangeWatch(git_repo, versioning)
    assert watch.poll() is None  # no data.dvc committed yet

    write_data(git_repo, [1, 2])
    versioning.snapshot("data: digits version before deletion batches")
    assert watch.poll() is None  # the first look is the baseline

    write_data(git_repo, [1, 2, 3])
    foreign = versioning.snapshot("add the new licence withdrawals")  # e.g. a commit pulled from elsewhere
    changed = watch.poll()
    assert changed is not None
    assert changed.md5 == foreign.md5
    assert changed.commit == foreign.git_rev
    assert watch.poll() is None  # a version triggers once

    write_data(git_repo, [1, 3])
    versioning.snapshot("data: forget batch batch-20261127T080000-abcdef12 (1 samples)")
    assert watch.poll() is None  # the pipeline's own batch
    write_data(git_repo, [3])
    versioning.snapshot("data: purge-20261227 deleted forgotten samples of 1 older version(s) (batches b)")
    assert watch.poll() is None

    git(git_repo, "commit", "-q", "--allow-empty", "-m", "unrelated")  # HEAD moves, data.dvc does not
    assert watch.poll() is None
    # a restart keeps the last version seen: a change made while serve was down is noticed
    write_data(git_repo, [4])
    later = versioning.snapshot("restore an older sample set")
    changed = DataChangeWatch(git_repo, versioning).poll()
    assert changed is not None
    assert changed.md5 == later.md5
