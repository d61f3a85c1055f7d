"""A local model store laid out like the Hub, for publishing without an account.

Layout under the store root::

    <namespace>/<name>/revisions/<revision>/<files>   one folder per distinct content
    <namespace>/<name>/refs/main                       the current revision
    <namespace>/<name>/commits/<revision>.json         message, time and file list

A revision is the content hash of the folder, so publishing the same files again
writes nothing, and any change gives a new revision. Revision folders are written to a
temporary folder and renamed into place, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from tuneship.errors import PublishError
from tuneship.hub.ids import is_valid_repo_id
from tuneship.publishing.base import PublishResult

_SKIPPED_DIRS = {".git", ".cache"}
_CHUNK = 1024 * 1024


class CommitInfo(BaseModel):
    """What was recorded when a revision was first published."""

    revision: str
    message: str
    created_at: datetime
    files: list[str]


def _check_repo_id(repo_id: str) -> tuple[str, str]:
    if not is_valid_repo_id(repo_id, namespaced=True):
        raise PublishError(
            f"invalid repo id {repo_id!r}: expected namespace/name using letters, digits, "
            "'.', '_' and '-'"
        )
    namespace, name = repo_id.split("/")
    return namespace, name


def _walk_files(folder: Path) -> list[Path]:
    """Files under ``folder`` in sorted order, skipping VCS and cache folders."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        found.extend(Path(dirpath) / f for f in filenames)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_revision(folder: str | Path) -> str:
    """Return the content hash of a folder: sha1 over sorted relative paths and file sha256s.

    Args:
        folder: The folder to hash.

    Returns:
        40 hex digits, like a git commit id; equal for folders with equal files.
    """
    root = Path(folder)
    digest = hashlib.sha1(usedforsecurity=False)
    for file in _walk_files(root):
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        digest.update(_sha256(file).encode() + b"\n")
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class LocalStorePublisher:
    """Publish model folders into a local, Hub-like store (no account, no network).

    Args:
        root: The store's root folder (created on first publish).
    """

    target = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def _repo_dir(self, repo_id: str) -> Path:
        namespace, name = _check_repo_id(repo_id)
        return self.root / namespace / name

    def publish(self, folder: Path, repo_id: str, *, commit_message: str) -> PublishResult:
        """Store ``folder`` as a revision of ``repo_id`` and point ``refs/main`` at it.

        Args:
            folder: The packaged model folder.
            repo_id: namespace/name.
            commit_message: Recorded with a new revision.

        Returns:
            The revision and its folder; ``created_new_revision`` is False when the same
            content was already stored.

        Raises:
            PublishError: The folder is missing or empty, or the repo id is invalid.
        """
        source = Path(folder)
        repo_dir = self._repo_dir(repo_id)
        if not source.is_dir():
            raise PublishError(f"cannot publish {repo_id}: folder not found: {source}")
        files = [f.relative_to(source).as_posix() for f in _walk_files(source)]
        if not files:
            raise PublishError(f"cannot publish {repo_id}: folder {source} holds no files")
        revision = content_revision(source)
        dest = repo_dir / "revisions" / revision
        created = False
        if not dest.is_dir():
            staging = repo_dir / f".staging-{uuid.uuid4().hex[:8]}"
            try:
                shutil.copytree(source, staging, ignore=shutil.ignore_patterns(*_SKIPPED_DIRS))
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    staging.rename(dest)
                    created = True
                except OSError:
                    # Another publisher stored the same content first; theirs is identical.
                    if not dest.is_dir():
                        raise
            except OSError as exc:
                raise PublishError(f"cannot write {repo_id} into store {self.root}: {exc}") from exc
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        commit = repo_dir / "commits" / f"{revision}.json"
        if created or not commit.is_file():
            info = CommitInfo(
                revision=revision,
                message=commit_message,
                created_at=datetime.now(UTC),
                files=files,
            )
            _write_atomic(commit, info.model_dump_json(indent=2))
        _write_atomic(repo_dir / "refs" / "main", revision + "\n")
        return PublishResult(
            target=self.target,
            repo_id=repo_id,
            revision=revision,
            location=str(dest),
            url=dest.resolve().as_uri(),
            created_new_revision=created,
        )

    def list_revisions(self, repo_id: str) -> list[str]:
        """Return the stored revisions of ``repo_id``, oldest first.

        Raises:
            PublishError: The repo is not in the store.
        """
        repo_dir = self._repo_dir(repo_id)
        revisions_dir = repo_dir / "revisions"
        if not revisions_dir.is_dir():
            raise PublishError(self._unknown_repo(repo_id))
        revisions = [p.name for p in revisions_dir.iterdir() if p.is_dir()]
        return sorted(revisions, key=lambda r: (self._created_at(repo_dir, r), r))

    def commit_info(self, repo_id: str, revision: str = "main") -> CommitInfo:
        """Return what was recorded when ``revision`` of ``repo_id`` was published."""
        path = self.resolve(repo_id, revision)
        commit = self._repo_dir(repo_id) / "commits" / f"{path.name}.json"
        return CommitInfo.model_validate_json(commit.read_text(encoding="utf-8"))

    def resolve(self, repo_id: str, revision: str = "main") -> Path:
        """Return the folder of ``revision`` (a ref like ``main``, or a full or short hash).

        Raises:
            PublishError: The repo, ref or revision is not in the store; the message lists
                what is there.
        """
        repo_dir = self._repo_dir(repo_id)
        revisions_dir = repo_dir / "revisions"
        if not revisions_dir.is_dir():
            raise PublishError(self._unknown_repo(repo_id))
        ref = repo_dir / "refs" / revision
        if re.fullmatch(r"[\w.-]+", revision) and ref.is_file():
            revision = ref.read_text(encoding="utf-8").strip()
        known = self.list_revisions(repo_id)
        matches = [
            r for r in known if r == revision or (len(revision) >= 7 and r.startswith(revision))
        ]
        if len(matches) != 1:
            why = "is ambiguous" if matches else "not found"
            raise PublishError(
                f"revision {revision!r} of {repo_id} {why} in store {self.root}; stored "
                f"revisions (oldest first): {', '.join(known) or 'none'}"
            )
        return revisions_dir / matches[0]

    def list_repos(self) -> list[str]:
        """Return the repo ids in the store, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            f"{p.parent.parent.name}/{p.parent.name}" for p in self.root.glob("*/*/revisions")
        )

    def _unknown_repo(self, repo_id: str) -> str:
        repos = self.list_repos()
        listing = ", ".join(repos) if repos else "the store is empty"
        return f"model {repo_id!r} is not in the local store {self.root} ({listing})"

    @staticmethod
    def _created_at(repo_dir: Path, revision: str) -> str:
        commit = repo_dir / "commits" / f"{revision}.json"
        try:
            return str(json.loads(commit.read_text(encoding="utf-8"))["created_at"])
        except (OSError, ValueError, KeyError):
            return ""
