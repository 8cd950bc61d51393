"""Fixtures for the stage tests that need S3: ``moto_url`` (session), a real moto server on loopback with dummy
``AWS_*`` credentials set for the session, and ``s3_bucket``, a fresh bucket on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.moto import dummy_aws_credentials, fresh_bucket, running_moto


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dummy_aws_credentials(), running_moto(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def s3_bucket(moto_url: str) -> str:
    return fresh_bucket(moto_url, "erasure")
