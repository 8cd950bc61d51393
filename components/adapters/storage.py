"""boto3 S3 adapter: a bucket (and key prefix) used as an object store for artifacts and reports.

This module and ``dvc_remote.py`` (a DVC remote's objects, for purge) import ``boto3``. Credentials and region come from
the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) or boto3's other standard
sources, never from arguments or config files. ``endpoint_url`` points at an S3-compatible server (moto, MinIO);
``None`` means AWS itself.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from components.adapters.errors import one_line

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_CONDITION_FAILED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


class StorageError(RuntimeError):
    """An object-store operation that failed; the message is one line for the user."""


class ObjectMissingError(StorageError):
    """The object (or the bucket) does not exist."""


class ObjectTooLargeError(StorageError):
    """The object is larger than the caller reads."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing says about one object: its key (relative to the store's prefix), size, ETag and age."""

    key: str
    size: int
    etag: str
    last_modified: datetime


def _code(error: ClientError) -> str | None:
    return error.response.get("Error", {}).get("Code")


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

    def check_bucket(self) -> None:
        """Fail with one line when the bucket is missing, not ours, or the endpoint does not answer (never creates
        it: a queue bucket with a typo should stop the service, not start an empty queue)."""
        where = f"bucket {self.bucket} at {self.endpoint_url or 'AWS'}"
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in _MISSING_CODES:
                raise ObjectMissingError(f"{where} does not exist: create it or fix the configured bucket") from None
            raise StorageError(f"cannot use {where}: {_describe(error)}") from None
        except BotoCoreError as error:
            raise StorageError(f"cannot reach {where}: {_describe(error)} (is S3_ENDPOINT_URL right?)") from None

    def objects(self, prefix: str = "") -> list[ObjectInfo]:
        """The objects whose key starts with ``prefix`` (relative to the store's prefix), sorted by key."""
        full = f"{self.prefix}/{prefix.lstrip('/')}" if self.prefix else prefix.lstrip("/")
        strip = len(self.prefix) + 1 if self.prefix else 0
        found: list[ObjectInfo] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                found.extend(
                    ObjectInfo(item["Key"][strip:], int(item["Size"]), item["ETag"].strip('"'), item["LastModified"])
                    for item in page.get("Contents", [])
                )
        except (ClientError, BotoCoreError) as error:
            raise StorageError(f"cannot list s3://{self.bucket}/{full}: {_describe(error)}") from None
        return sorted(found, key=lambda info: info.key)

    def read(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes; an object over ``max_bytes`` is refused (``StorageError``) before its body is read.

        Raises:
            ObjectMissingError: The object is gone.
            StorageError: Any other failure, or an object over ``max_bytes``.
        """
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                raise ObjectMissingError(f"{self.uri(key)} does not exist") from None
            raise StorageError(f"cannot read {self.uri(key)}: {_describe(error)}") from None
        except BotoCoreError as error:
            raise StorageError(f"cannot read {self.uri(key)}: {_describe(error)}") from None
        body = response["Body"]
        try:
            if int(response.get("ContentLength", 0)) > max_bytes:
                raise ObjectTooLargeError(
                    f"{self.uri(key)}: object of {response['ContentLength']} bytes, more than the limit of {max_bytes}"
                )
            return body.read(max_bytes + 1)[: max_bytes + 1]
        except (ClientError, BotoCoreError) as error:
            raise StorageError(f"cannot read {self.uri(key)}: {_describe(error)}") from None
        finally:
            body.close()

    def write(self, key: str, payload: bytes, only_if_absent: bool = False) -> str | None:
        """Store ``payload`` at ``key`` and return the new object's ETag. With ``only_if_absent`` the write is
        conditional (``If-None-Match: *``): S3 accepts exactly one of several concurrent writers of a missing key and
        answers the others 412, for which this returns None."""
        extra = {"IfNoneMatch": "*"} if only_if_absent else {}
        try:
            response = self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=payload, **extra)
        except ClientError as error:
            # 409 ConditionalRequestConflict: a concurrent conditional write is in flight; it wins or fails on its own
            if only_if_absent and _code(error) in _CONDITION_FAILED:
                return None
            raise StorageError(f"cannot write {self.uri(key)}: {_describe(error)}") from None
        except BotoCoreError as error:
            raise StorageError(f"cannot write {self.uri(key)}: {_describe(error)}") from None
        return str(response.get("ETag", "")).strip('"')

    def copy(self, source: str, target: str) -> None:
        """Server-side copy within the bucket (the bytes never pass through this process).

        Raises:
            ObjectMissingError: ``source`` is gone.
        """
        try:
            self._client.copy_object(
                Bucket=self.bucket, Key=self._key(target), CopySource={"Bucket": self.bucket, "Key": self._key(source)}
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                raise ObjectMissingError(f"{self.uri(source)} does not exist") from None
            raise StorageError(f"cannot copy {self.uri(source)} to {self.uri(target)}: {_describe(error)}") from None
        except BotoCoreError as error:
            raise StorageError(f"cannot copy {self.uri(source)} to {self.uri(target)}: {_describe(error)}") from None

    def delete(self, key: str, if_match: str | None = None) -> bool:
        """Delete ``key`` (a missing key is no error in S3). With ``if_match`` (an ETag) only that version of the
        object is deleted (a conditional delete); returns False when the object changed or is gone."""
        extra = {"IfMatch": if_match} if if_match is not None else {}
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key), **extra)
        except ClientError as error:
            if if_match is not None and _code(error) in _CONDITION_FAILED | _MISSING_CODES:
                return False
            raise StorageError(f"cannot delete {self.uri(key)}: {_describe(error)}") from None
        except BotoCoreError as error:
            raise StorageError(f"cannot delete {self.uri(key)}: {_describe(error)}") from None
        return True
