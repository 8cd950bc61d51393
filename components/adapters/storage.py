"""boto3 S3 adapter: a bucket (and key prefix) used as an object store for artifacts and reports.

This module and ``dvc_remote.py`` (a DVC remote's objects, for purge) import ``boto3``. Credentials and region come from
the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) or boto3's other standard
sources, never from arguments or config files. ``endpoint_url`` points at an S3-compatible server (moto, MinIO);
``None`` means AWS itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from components.adapters.errors import one_line

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


class StorageError(RuntimeError):
    """An object-store operation that failed; the message is one line for the user."""


def _describe(error: Exception) -> str:
    """One line for an S3 error: a ``ClientError``'s code and message, else ``one_line``."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '') or str(error)}".strip()
    return one_line(error)


class ObjectStore:
    """Objects under ``s3://<bucket>/<prefix>``; every ``key`` argument is relative to the prefix.

    Args:
        bucket: Bucket name.
        endpoint_url: S3-compatible endpoint such as ``http://127.0.0.1:5001``; ``None`` for AWS.
        prefix: Key prefix (a folder), e.g. ``mixunlearn/reports``; leading and trailing slashes are ignored.
    """

    def __init__(self, bucket: str, endpoint_url: str | None = None, prefix: str = "") -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.prefix = prefix.strip("/")
        try:
            self._client = boto3.client("s3", endpoint_url=endpoint_url)
        except BotoCoreError as error:
            raise StorageError(f"cannot create S3 client for {endpoint_url or 'AWS'}: {_describe(error)}") from error

    def _key(self, key: str) -> str:
        key = key.lstrip("/")
        if not key:
            raise StorageError("object key must not be empty")
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        """Return ``s3://bucket/<prefix>/<key>``."""
        return f"s3://{self.bucket}/{self._key(key)}"

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (in the client's region)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _MISSING_CODES:
                raise StorageError(f"cannot reach bucket {self.bucket}: {_describe(error)}") from error
        except BotoCoreError as error:
            raise StorageError(f"cannot reach bucket {self.bucket}: {_describe(error)}") from error
        region = self._client.meta.region_name
        params: dict = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**params)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise StorageError(f"cannot create bucket {self.bucket}: {_describe(error)}") from error
        except BotoCoreError as error:
            raise StorageError(f"cannot create bucket {self.bucket}: {_describe(error)}") from error

    def upload_file(self, path: Path, key: str) -> str:
        """Upload a local file to ``key`` and return its ``s3://`` URI."""
        path = Path(path)
        if not path.is_file():
            raise StorageError(f"cannot upload {path}: not a file")
        try:
            self._client.upload_file(str(path), self.bucket, self._key(key))
        except (ClientError, BotoCoreError, S3UploadFailedError) as error:
            raise StorageError(f"cannot upload {path} to {self.uri(key)}: {_describe(error)}") from error
        return self.uri(key)

    def download_file(self, key: str, path: Path) -> Path:
        """Download ``key`` to ``path`` atomically (a temporary file in the same folder, then ``os.replace``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        os.close(fd)
        try:
            self._client.download_file(self.bucket, self._key(key), temp_name)
            Path(temp_name).replace(path)
        except (ClientError, BotoCoreError) as error:
            raise StorageError(f"cannot download {self.uri(key)}: {_describe(error)}") from error
        finally:
            Path(temp_name).unlink(missing_ok=True)
        return path

    def exists(self, key: str) -> bool:
        """Return whether an object exists at ``key``."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise StorageError(f"cannot check {self.uri(key)}: {_describe(error)}") from error
        except BotoCoreError as error:
            raise StorageError(f"cannot check {self.uri(key)}: {_describe(error)}") from error
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Return the keys (relative to the store's prefix) that start with ``prefix``, sorted."""
        full = f"{self.prefix}/{prefix.lstrip('/')}" if self.prefix else prefix.lstrip("/")
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        except (ClientError, BotoCoreError) as error:
            raise StorageError(f"cannot list s3://{self.bucket}/{full}: {_describe(error)}") from error
        return sorted(keys)
