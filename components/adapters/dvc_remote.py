"""The objects of a DVC remote, by hash: what ``mixunlearn purge`` reads (``.dir`` listings) and deletes.

DVC 3 keeps each object of a remote at ``<remote>/files/md5/<first two hex digits>/<the rest>``, a ``.dir``
listing keeping its suffix (dvc 3.67.1: ``Remote.odb`` in ``dvc/data_cloud.py`` joins ``files/md5`` to the remote
path, ``HashFileDB.oid_to_path`` in ``dvc_objects/db.py`` splits the hash). Its local cache uses the same layout
under ``.dvc/cache``.

Two kinds of remote, looked up by URL scheme in ``REMOTES``: a local directory, and ``s3://bucket/prefix`` through
boto3. The S3 endpoint is the remote's ``endpointurl`` (``S3_ENDPOINT_URL`` when the remote comes from the
environment); credentials come from the environment (``AWS_*``) as for DVC, and are never passed here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from components.adapters.errors import one_line

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class RemoteObjectsError(RuntimeError):
    """A remote that cannot be read or changed; the message is one line for the user."""


def object_key(md5: str) -> str:
    """The object's path below the remote (or cache) root: ``files/md5/ab/cdef...``."""
    return f"files/md5/{md5[:2]}/{md5[2:]}"


class RemoteObjects(Protocol):
    """A DVC remote's objects, by hash."""

    description: str

    def read(self, md5: str) -> bytes | None:
        """The object's bytes, or None when the remote does not hold it."""
        ...

    def delete(self, md5s: list[str]) -> list[str]:
        """Delete the objects the remote holds, in the order given; returns their locations."""
        ...


@dataclass(frozen=True)
class LocalObjects:
    """A local-directory remote (or the DVC cache)."""

    root: Path

    @property
    def description(self) -> str:
        return str(self.root)

    def path(self, md5: str) -> Path:
        return self.root / object_key(md5)

    def read(self, md5: str) -> bytes | None:
        path = self.path(md5)
        try:
            return path.read_bytes() if path.is_file() else None
        except OSError as error:
            raise RemoteObjectsError(f"cannot read {path}: {one_line(error)}") from error

    def delete(self, md5s: list[str]) -> list[str]:
        deleted = []
        for md5 in md5s:
            path = self.path(md5)
            if path.is_file():
                try:
                    path.chmod(0o644)  # DVC makes cache objects read-only
                    path.unlink()
                except OSError as error:
                    raise RemoteObjectsError(f"cannot delete {path}: {one_line(error)}") from error
                deleted.append(str(path))
        return deleted


class S3Objects:
    """An ``s3://bucket/prefix`` remote through boto3.

    Args:
        bucket: The bucket.
        prefix: The remote's key prefix (a folder; may be empty).
        endpoint_url: An S3-compatible endpoint (MinIO, moto); None for AWS.
    """

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.description = f"s3://{bucket}/{self.prefix}" + (f" at {endpoint_url}" if endpoint_url else "")
        try:
            self._client = boto3.client("s3", endpoint_url=endpoint_url)
        except BotoCoreError as error:
            raise RemoteObjectsError(f"cannot create an S3 client for {self.description}: {one_line(error)}") from error

    def key(self, md5: str) -> str:
        return f"{self.prefix}/{object_key(md5)}" if self.prefix else object_key(md5)

    def _fault(self, doing: str, md5: str, error: Exception) -> RemoteObjectsError:
        if isinstance(error, ClientError):
            details = error.response.get("Error", {})
            cause = f"{details.get('Code', 'error')}: {details.get('Message', '') or one_line(error)}"
        else:
            cause = one_line(error)
        return RemoteObjectsError(f"cannot {doing} s3://{self.bucket}/{self.key(md5)} ({self.description}): {cause}")

    def _exists(self, md5: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.key(md5))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise self._fault("check", md5, error) from error
        except BotoCoreError as error:
            raise self._fault("check", md5, error) from error
        return True

    def read(self, md5: str) -> bytes | None:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self.key(md5))["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise self._fault("read", md5, error) from error
        except BotoCoreError as error:
            raise self._fault("read", md5, error) from error

    def delete(self, md5s: list[str]) -> list[str]:
        # one object at a time, in order: an interruption leaves the listings (deleted last) for the next purge
        deleted = []
        for md5 in md5s:
            if not self._exists(md5):
                continue
            try:
                self._client.delete_object(Bucket=self.bucket, Key=self.key(md5))
            except (ClientError, BotoCoreError) as error:
                raise self._fault("delete", md5, error) from error
            deleted.append(f"s3://{self.bucket}/{self.key(md5)}")
        return deleted


def _local(url: str, endpoint_url: str | None, base: Path) -> RemoteObjects:
    path = Path(url.removeprefix("file://"))
    return LocalObjects(path if path.is_absolute() else (base / path).resolve())


def _s3(url: str, endpoint_url: str | None, base: Path) -> RemoteObjects:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise RemoteObjectsError(f"remote URL {url!r} names no bucket")
    return S3Objects(bucket, prefix, endpoint_url)


REMOTES: dict[str, Callable[[str, str | None, Path], RemoteObjects]] = {"": _local, "file": _local, "s3": _s3}
"""How to reach the objects of a remote, by URL scheme ("" for a plain path)."""


def open_remote(url: str, endpoint_url: str | None, base: Path) -> RemoteObjects:
    """The objects of the remote at ``url``; a relative local path is resolved against ``base``.

    Raises:
        RemoteObjectsError: For a scheme purge cannot delete from (``gs://``, ``azure://``, ...).
    """
    scheme = match.group(1) if (match := re.match(r"(\w+)://", url)) else ""
    if scheme not in REMOTES:
        kinds = ", ".join(f"{name}://" for name in REMOTES if name not in ("", "file"))
        raise RemoteObjectsError(f"purge deletes objects from local-directory and {kinds} remotes, not {url}")
    return REMOTES[scheme](url, endpoint_url, base)
