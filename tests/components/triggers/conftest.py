"""The trigger tests use the adapter tests' real services: a moto S3 server on loopback and temporary git repos."""

from tests.components.adapters.conftest import git, git_repo, moto_url, offline_env, s3_bucket  # noqa: F401
