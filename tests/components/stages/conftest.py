"""Fixtures for the stage tests that need S3: ``moto_url`` (session), a real moto server on loopback with dummy
``AWS_*`` credentials set for the session, and ``s3_bucket``, a fresh bucket on it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.moto import DUMMY_AWS, UNSET_AWS, running_moto


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in DUMMY_AWS.items():
            patch.setenv(key, value)
        for key in UNSET_AWS:
            patch.delenv(key, raising=False)
        with running_moto(tmp_path_factory.mktemp("moto") / "moto.log") as url:
            yield url


@pytest.fixture
def s3_bucket(moto_url: str) -> str:
    from components.adapters.storage import ObjectStore

    name = f"erasure-{uuid.uuid4().hex[:12]}"
    ObjectStore(name, endpoint_url=moto_url).ensure_bucket()
    return name
