"""DVC + git adapter: snapshot ``data/`` into ``data.dvc``, push it to a remote, and read old versions back.

This is the only module that imports ``dvc``. Git is driven through ``git -C <repo_root>`` subprocesses.

The git history of ``data.dvc`` is the log of data versions (each forget batch is one commit). A snapshot is
all-or-nothing: the data is hashed into the DVC cache, pushed to the remote, and only then is ``data.dvc``
committed; if the push or the commit fails, ``data.dvc`` and ``.gitignore`` are put back as they were.

Remotes: by default a local directory ``<repo_root>/.dvc-remote`` (git-ignored); an ``s3://`` URL with an
optional ``endpoint_url`` (moto, MinIO) otherwise. S3 credentials come only from the environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) and are never written to a
config file.

Purged versions: ``mixunlearn purge`` deletes the cache and remote objects (``dvc_remote.py``: a local directory or
``s3://``) of old data versions that still hold forgotten samples and records it in ``<data_dir>/purges/*.json``
(versioned with the data). Reading or restoring such a version raises ``DataVersionPurgedError`` naming the date and the
batches instead of DVC's "missing cache" error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dvc.api
import yaml
from dvc.config_schema import RelPath
from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc.utils.serialize import load_yaml

from components.adapters.dvc_remote import LocalObjects, RemoteObjects, RemoteObjectsError, open_remote
from components.adapters.errors import one_line
from components.adapters.retry import ATTEMPTS, connection_failed, os_error, retrying, storage_state
from components.hashing import file_md5

DEFAULT_LOCAL_REMOTE = ".dvc-remote"
"""Default local-directory remote, relative to the repository root (git-ignored)."""

_DVC_SETUP_FILES = (".dvc/config", ".dvc/.gitignore", ".dvcignore")


class VersioningError(RuntimeError):
    """A DVC or git operation that failed; the message is one line for the user."""


class DataVersionMissingError(VersioningError):
    """The data version ``<data_dir>.dvc`` records is in neither the DVC cache nor the remote."""


class DataVersionPurgedError(VersioningError):
    """The data version was purged (``mixunlearn purge``): its samples are gone from the cache and the remote."""


PURGES_DIR = "purges"
"""Folder of purge records inside the data directory."""


@dataclass(frozen=True)
class DataSnapshot:
    """One committed version of the data directory.

    Attributes:
        md5: The directory hash DVC recorded in the ``.dvc`` file (``<md5>.dir``).
        git_rev: The git commit that holds this ``.dvc`` file (full hex SHA).
        dvc_file: Path of the ``.dvc`` file relative to the repository root, e.g. ``data.dvc``.
    """

    md5: str
    git_rev: str
    dvc_file: str


class DataVersioning:
    """Versions one data directory of a git repository with DVC.

    Args:
        repo_root: Root of the git repository (DVC is initialised there if needed).
        data_dir: Data directory relative to ``repo_root``; tracked as ``<data_dir>.dvc``.
        remote_name: Name of the DVC remote to configure and push to (made the default remote).
        remote_url: Remote URL: a local directory or ``s3://bucket/prefix``. ``None`` keeps an existing remote
            of that name, or configures ``<repo_root>/.dvc-remote``.
        endpoint_url: S3 endpoint (e.g. ``http://127.0.0.1:5001`` for moto); only for ``s3://`` remotes.
    """

    def __init__(
        self,
        repo_root: Path,
        data_dir: str = "data",
        remote_name: str = "local",
        remote_url: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.repo_root = Path(repo_root).resolve()
        self.data_dir = data_dir.strip("/")
        self.remote_name = remote_name
        self.remote_url = remote_url
        self.endpoint_url = endpoint_url
        if endpoint_url is not None and not (remote_url or "").startswith("s3://"):
            raise VersioningError(f"endpoint_url {endpoint_url!r} needs an s3:// remote_url, got {remote_url!r}")

    @property
    def dvc_file(self) -> str:
        """The ``.dvc`` file of the data directory, relative to the repository root."""
        return f"{self.data_dir}.dvc"

    # ------------------------------------------------------------------ git

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        result = subprocess.run(
            ["git", "-C", str(self.repo_root), *args], capture_output=True, text=True, env=env, check=False
        )
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise VersioningError(f"git {args[0]} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
        return result

    def git_revision(self) -> str:
        """Return the full SHA of ``HEAD``."""
        return self._git("rev-parse", "HEAD").stdout.strip()

    # ------------------------------------------------------------------ dvc

    def _open(self) -> Repo:
        try:
            return Repo(str(self.repo_root))
        except DvcException as error:
            raise VersioningError(f"cannot open DVC repo at {self.repo_root}: {one_line(error)}") from error

    def ensure_initialised(self) -> None:
        """Initialise DVC in the git repository if needed, turn analytics off and configure the remote.

        Raises:
            VersioningError: If ``repo_root`` is not the root of a git repository or DVC cannot be set up.
        """
        top = self._git("rev-parse", "--show-toplevel", check=False)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != self.repo_root:
            raise VersioningError(f"{self.repo_root} is not the root of a git repository")
        try:
            if not (self.repo_root / ".dvc").is_dir():
                with _quiet_dvc():
                    Repo.init(str(self.repo_root)).close()
            with self._open() as repo:
                known = set(repo.config["remote"])  # every level, .dvc/config.local included
                if self.remote_url is not None:
                    self._configure_local_remote(repo)
                with repo.config.edit(level="repo") as config:
                    config["core"]["analytics"] = False
                    config["core"]["check_update"] = False
                    if self.remote_url is not None:
                        _forget_shared_remote(config, self.remote_name)
                    else:
                        if self.remote_name not in known:
                            config["remote"][self.remote_name] = {"url": self._remote_location(DEFAULT_LOCAL_REMOTE)}
                            self._ignore(f"/{DEFAULT_LOCAL_REMOTE}")
                        config["core"].setdefault("remote", self.remote_name)
        except DvcException as error:
            raise VersioningError(f"cannot initialise DVC in {self.repo_root}: {one_line(error)}") from error

    def _configure_local_remote(self, repo: Repo) -> None:
        """Write the remote from the environment (URL, endpoint) to ``.dvc/config.local`` and make it the default
        there: it is this machine's setting, and DVC's own ``.dvc/.gitignore`` keeps that file out of git, so no
        endpoint ever lands in the committed ``.dvc/config``."""
        with repo.config.edit(level="local") as config:
            section = {"url": self._remote_location(self.remote_url or DEFAULT_LOCAL_REMOTE)}
            if self.endpoint_url is not None:
                section["endpointurl"] = self.endpoint_url
            config["remote"][self.remote_name] = section
            config["core"]["remote"] = self.remote_name

    def _remote_location(self, url: str) -> str:
        """Resolve a local remote path against the repository root.

        ``Config.edit`` resolves a plain relative string against the process's working directory; a ``RelPath``
        inside the repository is written relative to ``.dvc/`` instead, so clones of the repository work.
        """
        if re.match(r"\w+://", url):
            return url
        path = Path(url) if Path(url).is_absolute() else self.repo_root / url
        return RelPath(str(path)) if path.is_relative_to(self.repo_root) else str(path)

    def _ignore(self, pattern: str) -> None:
        """Append ``pattern`` to the root ``.gitignore`` unless it is there already."""
        path = self.repo_root / ".gitignore"
        lines = path.read_text().splitlines() if path.exists() else []
        if pattern not in lines:
            path.write_text("\n".join([*lines, pattern]) + "\n")

    def current_md5(self) -> str | None:
        """Return the md5 recorded in the working tree's ``.dvc`` file, or ``None`` if there is none."""
        path = self.repo_root / self.dvc_file
        if not path.exists():
            return None
        try:
            outs = load_yaml(str(path)).get("outs") or []
        except DvcException as error:
            raise VersioningError(f"cannot read {self.dvc_file}: {one_line(error)}") from error
        if len(outs) != 1 or "md5" not in outs[0]:
            raise VersioningError(f"{self.dvc_file} does not hold exactly one output with an md5")
        return str(outs[0]["md5"])

    def snapshot(self, message: str) -> DataSnapshot:
        """Hash the data directory, push it to the remote and commit its ``.dvc`` file.

        If the data is unchanged since the last commit, nothing is committed and ``HEAD`` is returned.

        Args:
            message: The git commit message.

        Returns:
            The md5 recorded in the ``.dvc`` file and the commit that holds it.

        Raises:
            VersioningError: If the data directory is missing or empty, or hashing, pushing or committing
                fails. The ``.dvc`` file and ``.gitignore`` are then restored and nothing is committed.
        """
        data_path = self.repo_root / self.data_dir
        if not data_path.is_dir() or not any(data_path.iterdir()):
            raise VersioningError(f"cannot snapshot {self.data_dir}/: missing or empty")
        saved = {
            p: _read_or_none(self.repo_root / p)
            for p in (self.dvc_file, ".gitignore", ".dvc/config", ".dvc/config.local")
        }
        if saved[".dvc/config"] is None:
            del saved[".dvc/config"]  # a fresh `dvc init` is kept even if the snapshot fails
        candidates = [self.dvc_file, ".gitignore", *_DVC_SETUP_FILES]
        step = "dvc init"
        try:
            self.ensure_initialised()
            step = "dvc add"
            with _quiet_dvc(), self._open() as repo:
                repo.add(str(self.repo_root / self.data_dir))
                step = f"dvc push to remote {self.remote_name!r}"
                target = str(self.repo_root / self.dvc_file)
                # content-addressed objects: a push is idempotent, so a dropped connection is tried again
                retrying(lambda: repo.push(targets=[target], remote=self.remote_name), connection_failed)
            md5 = self.current_md5()
            step = "git commit"
            paths = [p for p in candidates if (self.repo_root / p).exists()]
            self._git("add", "--", *paths)
            if self._git("diff", "--cached", "--quiet", "--", *paths, check=False).returncode != 0:
                self._git("commit", "-q", "-m", message, "--", *paths)
        except Exception as error:  # DVC's filesystems raise OSError and others besides DvcException
            self._rollback(candidates, saved)
            if step.startswith("dvc push"):
                raise VersioningError(self.remote_fault_line(error)) from error
            raise VersioningError(f"snapshot of {self.data_dir}/ failed at {step}: {one_line(error)}") from error
        return DataSnapshot(md5=str(md5), git_rev=self.git_revision(), dvc_file=self.dvc_file)

    def remote_fault_line(self, error: BaseException) -> str:
        """One line for a push that failed: which remote, what is wrong with it, what to do, and that nothing was
        committed (``data.dvc`` is as it was; the next run pushes again)."""
        where = f"DVC remote {self.remote_name!r} ({self.remote_description()}"
        where += f", endpoint {self.endpoint_url})" if self.endpoint_url else ")"
        after = f"{self.dvc_file} was not committed; the next run pushes again"
        if connection_failed(error):
            return (
                f"{where} is unreachable after {ATTEMPTS} attempts ({one_line(_innermost(error))}): start the "
                f"endpoint or fix S3_ENDPOINT_URL / MIXUNLEARN_DVC_REMOTE; {after}"
            )
        disk = os_error(error)
        local = not re.match(r"\w+://", self.remote_description()) or self.remote_description().startswith("file://")
        if disk is not None and local:
            return (
                f"{where} is {storage_state(disk)} ({one_line(disk)}): make it a writable directory with free space "
                f"or set MIXUNLEARN_DVC_REMOTE; {after}"
            )
        missing = self._missing_bucket()
        if missing is not None:
            return (
                f"snapshot of {self.data_dir}/ failed at dvc push to remote {self.remote_name!r} "
                f"({self.remote_description()}): {missing}; {after}"
            )
        return (
            f"snapshot of {self.data_dir}/ failed at dvc push to remote {self.remote_name!r} "
            f"({self.remote_description()}): {one_line(error)}: check the remote, its bucket and credentials; {after}"
        )

    def _missing_bucket(self) -> str | None:
        """For an ``s3://`` remote whose push failed: the one-line reason when its bucket does not exist (checked,
        never created: a bucket name with a typo must not become a new, empty remote), else None."""
        url = self.remote_description()
        if not url.startswith("s3://"):
            return None
        from components.adapters.storage import ObjectMissingError, ObjectStore, StorageError

        bucket = url.removeprefix("s3://").split("/", 1)[0]
        try:
            ObjectStore(bucket, endpoint_url=self.endpoint_url).check_bucket()
        except ObjectMissingError:
            return (
                f"bucket {bucket} does not exist at {self.endpoint_url or 'AWS'}: create it "
                "or fix MIXUNLEARN_DVC_REMOTE"
            )
        except StorageError:
            return None
        return None

    def _rollback(self, paths: list[str], saved: dict[str, bytes | None]) -> None:
        """Unstage ``paths`` and put the saved files back as they were before the snapshot."""
        existing = [p for p in paths if (self.repo_root / p).exists()]
        if existing:
            self._git("reset", "-q", "--", *existing, check=False)
        for relative, content in saved.items():
            path = self.repo_root / relative
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)

    def restore(self, rev: str) -> str:
        """Make the data directory match revision ``rev`` (from the cache, else pulled from the remote).

        ``<data_dir>.dvc`` is checked out from ``rev`` into the working tree (not committed), then the data
        directory is checked out to match it exactly (files not in that version are removed).

        Returns:
            The md5 of the restored version.

        Raises:
            VersioningError: If ``rev`` has no ``.dvc`` file or the data cannot be found locally or remotely.
        """
        self._raise_if_purged(self.md5_at(rev), rev)
        self._git("checkout", rev, "--", self.dvc_file)
        try:
            with _quiet_dvc(), self._open() as repo:
                try:
                    repo.checkout(targets=[str(self.repo_root / self.dvc_file)], force=True)
                except (DvcException, OSError):
                    repo.pull(targets=[str(self.repo_root / self.dvc_file)], remote=self.remote_name, force=True)
        except (DvcException, OSError) as error:
            raise VersioningError(f"cannot restore {self.data_dir}/ at {rev}: {one_line(error)}") from error
        return str(self.current_md5())

    def checkout_committed(self) -> str:
        """Make the data directory match the version the working tree's ``.dvc`` file records: checked out from
        the DVC cache, else pulled from the remote. Unlike ``restore``, no git file is touched.

        Returns:
            The md5 of the restored version.

        Raises:
            DataVersionPurgedError: If that version was purged.
            DataVersionMissingError: If neither the cache nor the remote holds it; a data directory that did not exist
                before is removed again, so nothing half-restored is left behind.
        """
        md5 = self.current_md5()
        if md5 is None:
            raise VersioningError(f"{self.dvc_file} not found: there is no committed data version to restore")
        self._raise_if_purged(md5, "HEAD")
        data_path = self.repo_root / self.data_dir
        existed = data_path.exists()
        target = str(self.repo_root / self.dvc_file)
        try:
            self.ensure_initialised()
            with _quiet_dvc(logging.CRITICAL, "dvc", "dvc_data"), self._open() as repo:  # a miss is reported below
                try:
                    repo.checkout(targets=[target], force=True)
                except (DvcException, OSError):
                    repo.pull(targets=[target], remote=self.remote_name, force=True)
        except (DvcException, OSError) as error:
            if not existed and data_path.exists():
                shutil.rmtree(data_path, ignore_errors=True)
            raise DataVersionMissingError(
                f"{self.dvc_file} records data version {md5} but neither the DVC cache (.dvc/cache) nor the remote "
                f"{self.remote_name!r} ({self.remote_description()}) holds it: copy the cache or the remote back "
                f"(then `dvc pull`), or set MIXUNLEARN_DVC_REMOTE to the remote that holds it ({one_line(error)})"
            ) from error
        return md5

    def remote_description(self) -> str:
        """The remote's URL as configured (for messages)."""
        if self.remote_url is not None:
            return self.remote_url
        try:
            with self._open() as repo:
                return str(repo.config["remote"][self.remote_name]["url"])
        except (DvcException, KeyError, VersioningError):
            return DEFAULT_LOCAL_REMOTE

    def version_history(self) -> list[tuple[str, str, str]]:
        """``(git_rev, md5, subject)`` of every commit that changed the ``.dvc`` file, oldest first."""
        shown = self._git("log", "--reverse", "--format=%H %s", "--", self.dvc_file, check=False)
        history = []
        for line in shown.stdout.splitlines():
            rev, _, subject = line.partition(" ")
            md5 = self.md5_at(rev)
            if md5 is not None:
                history.append((rev, md5, subject))
        return history

    # ------------------------------------------------------------------ purge

    def listing(self, md5: str) -> dict[str, str] | None:
        """``{relpath: md5}`` of the data version ``md5`` (a ``.dir`` hash), read from the cache or the remote;
        None when neither holds its listing.

        Raises:
            VersioningError: If the remote cannot be reached or the listing cannot be parsed (never None for a
                remote that did not answer: purge would take a version it cannot see into for one with nothing left).
        """
        try:
            payload = self._cache().read(md5)
            if payload is None:
                payload = self._remote_objects().read(md5)
        except RemoteObjectsError as error:
            raise VersioningError(f"cannot read the listing of data version {md5}: {error}") from error
        if payload is None:
            return None
        try:
            return {str(e["relpath"]): str(e["md5"]) for e in json.loads(payload)}
        except (ValueError, KeyError, TypeError) as error:
            raise VersioningError(f"cannot read the listing of data version {md5}: {one_line(error)}") from error

    def cache_root(self) -> Path:
        """The DVC cache folder (``.dvc/cache``)."""
        return self.repo_root / ".dvc" / "cache"

    def _cache(self) -> LocalObjects:
        return LocalObjects(self.cache_root())

    def _remote_objects(self) -> RemoteObjects:
        """The objects of the configured remote: ``remote_url`` (and ``endpoint_url``) when given, else the remote
        of that name in ``.dvc/config`` (its ``endpointurl`` included)."""
        if self.remote_url is not None:
            url, endpoint, base = self.remote_url, self.endpoint_url, self.repo_root
        else:
            try:
                with self._open() as repo:
                    section = repo.config["remote"][self.remote_name]
                    url, endpoint = str(section["url"]), section.get("endpointurl")
            except (DvcException, KeyError, VersioningError) as error:
                raise VersioningError(f"no DVC remote {self.remote_name!r} configured: {one_line(error)}") from error
            base = self.repo_root / ".dvc"  # DVC resolves a relative remote path against .dvc/
        try:
            return open_remote(url, endpoint, base)
        except RemoteObjectsError as error:
            raise VersioningError(str(error)) from error

    def delete_objects(self, md5s: list[str]) -> list[str]:
        """Delete the objects ``md5s`` (file hashes or ``.dir`` listings) from the remote, then from the DVC cache.

        The remote goes first, and within each store the ``.dir`` listings go last, so a purge interrupted part-way
        (an endpoint that drops) still finds the listings and the remaining objects on its next run.

        Returns:
            The deleted locations: cache paths relative to the repository root, remote paths or ``s3://`` URLs.

        Raises:
            VersioningError: One line, if the remote cannot be reached or an object cannot be deleted.
        """
        ordered = sorted(md5s, key=lambda md5: (md5.endswith(".dir"), md5))
        deleted = []
        try:
            for store in (self._remote_objects(), self._cache()):
                deleted += store.delete(ordered)
        except RemoteObjectsError as error:
            raise VersioningError(f"purge stopped: {error}; nothing was recorded, so the next purge goes on") from error
        return [
            Path(location).relative_to(self.repo_root).as_posix()
            if Path(location).is_absolute() and Path(location).is_relative_to(self.repo_root)
            else location
            for location in deleted
        ]

    def purged(self) -> dict[str, dict]:
        """``{md5: purge entry}`` of every data version the purge records in the working tree name.

        Each entry holds ``git_rev``, ``purged_at``, ``batch_ids`` (and the record's file name as ``record``).
        """
        found: dict[str, dict] = {}
        for path in sorted((self.repo_root / self.data_dir / PURGES_DIR).glob("*.json")):
            try:
                document = json.loads(path.read_text())
                for version in document.get("versions", []):
                    found[str(version["data_md5"])] = {
                        **version,
                        "purged_at": document.get("purged_at"),
                        "record": path.name,
                    }
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        return found

    def _raise_if_purged(self, md5: str | None, rev: str) -> None:
        entry = self.purged().get(md5) if md5 is not None else None
        if entry is not None:
            date = str(entry.get("purged_at") or "?")[:10]
            batches = ", ".join(entry.get("batch_ids") or []) or "?"
            raise DataVersionPurgedError(
                f"data version {rev} was purged on {date} (batch {batches}): its samples were deleted from the DVC "
                f"cache and remote; the batch records and the purge record {self.data_dir}/{PURGES_DIR}/"
                f"{entry['record']} keep the audit trail"
            )

    def last_change(self) -> tuple[str, str] | None:
        """The commit that last changed the ``.dvc`` file at ``HEAD`` and its subject, or None when there is none."""
        shown = self._git("log", "-1", "--format=%H%x1f%s", "--", self.dvc_file, check=False)
        commit, _, subject = shown.stdout.strip().partition("\x1f")
        return (commit, subject) if shown.returncode == 0 and commit else None

    def md5_at(self, rev: str) -> str | None:
        """The md5 the ``.dvc`` file records at git revision ``rev``, or ``None`` when the revision or the file at
        it does not exist (a rewritten history, a wrong revision tag)."""
        shown = self._git("show", f"{rev}:{self.dvc_file}", check=False)
        if shown.returncode != 0:
            return None
        try:
            outs = yaml.safe_load(shown.stdout).get("outs") or []
        except (yaml.YAMLError, AttributeError) as error:
            raise VersioningError(f"cannot read {self.dvc_file} at {rev}: {one_line(error)}") from error
        if len(outs) != 1 or "md5" not in outs[0]:
            raise VersioningError(f"{self.dvc_file} at {rev} does not hold exactly one output with an md5")
        return str(outs[0]["md5"])

    def read_at(self, path: str, rev: str) -> bytes:
        """Return the bytes of a tracked file (e.g. ``data/raw/labels.npy``) as it was at git revision ``rev``.

        Reads from the local cache, or from the configured remote when the cache lacks it.

        Raises:
            DataVersionPurgedError: If the version at ``rev`` was purged (``mixunlearn purge``).
            VersioningError: If the file cannot be read.
        """
        self._raise_if_purged(self.md5_at(rev), rev)
        try:
            return dvc.api.read(path, repo=str(self.repo_root), rev=rev, remote=self.remote_name, mode="rb")
        except (DvcException, OSError) as error:
            raise VersioningError(f"cannot read {path} at {rev}: {one_line(error)}") from error

    def read_version(self, md5: str, path: str) -> bytes:
        """Return the bytes of ``path`` (relative to the data directory, e.g. ``digits/pool.npz``) in the data
        version ``md5`` (the ``<md5>.dir`` hash a ``.dvc`` file records), from the DVC cache or else the remote.

        It reads by content alone, so a worker on another machine, with neither this repository's git history nor
        its ``data/``, reads the version its caller names from the shared (S3) remote.

        Raises:
            DataVersionPurgedError: If that version was purged (as far as this checkout's purge records know).
            VersioningError: If the version or the file is in neither the cache nor the remote.
        """
        self._raise_if_purged(md5, md5)
        self.ensure_initialised()  # a fresh clone: the remote from the environment, in .dvc/config.local
        try:
            with self._open() as repo:
                stores = [repo.cache.local, repo.cloud.get_remote_odb(self.remote_name, "read_version")]

                def read(oid: str) -> bytes:
                    for store in stores:
                        location = store.oid_to_path(oid)
                        if store.fs.exists(location):
                            return bytes(store.fs.cat_file(location))
                    raise VersioningError(
                        f"data version {md5}: object {oid} is in neither the DVC cache nor the remote "
                        f"{self.remote_name!r} ({self.remote_description()})"
                    )

                listing = {str(entry["relpath"]): str(entry["md5"]) for entry in json.loads(read(md5))}
                if path not in listing:
                    raise VersioningError(f"data version {md5} holds no {path}")
                return read(listing[path])
        except (DvcException, OSError, ValueError, KeyError, TypeError) as error:
            raise VersioningError(f"cannot read {path} of data version {md5}: {one_line(error)}") from error


def _forget_shared_remote(config: dict[str, Any], name: str) -> None:
    """Drop remote ``name`` from the committed config when it holds an endpoint or a cloud URL: an older run wrote
    the environment's remote there (the default directory remote of clones is kept); the default remote goes with
    it if it named that remote."""
    section = config["remote"].get(name)
    if section is not None and ("endpointurl" in section or re.match(r"\w+://", str(section.get("url", "")))):
        del config["remote"][name]
        if config["core"].get("remote") == name:
            del config["core"]["remote"]


@contextmanager
def _quiet_dvc(at_least: int = logging.WARNING, *names: str) -> Iterator[None]:
    """Hide DVC's INFO hints ("To track the changes with git, run: ...") that it logs to stdout; with ``at_least``
    and logger ``names``, more of DVC's chatter (a checkout's "missing cache files" warnings)."""
    loggers = [logging.getLogger(name) for name in names or ("dvc",)]
    levels = [logger.level for logger in loggers]
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(max(level, at_least))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _innermost(error: BaseException) -> BaseException:
    while error.__cause__ is not None and error.__cause__ is not error:
        error = error.__cause__
    return error


def directory_md5(path: Path) -> str:
    """The DVC 3 hash (``<md5>.dir``) of a local directory, computed without touching the cache: the md5 of the
    JSON listing of ``{"md5", "relpath"}`` entries sorted by relpath (what ``dvc add`` records)."""
    entries = sorted(
        (
            {"md5": file_md5(file), "relpath": file.relative_to(path).as_posix()}
            for file in path.rglob("*")
            if file.is_file()
        ),
        key=lambda entry: entry["relpath"],
    )
    return hashlib.md5(json.dumps(entries).encode(), usedforsecurity=False).hexdigest() + ".dir"


def _read_or_none(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None
