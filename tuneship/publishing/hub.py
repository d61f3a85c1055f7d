"""Publish a packaged model folder to the Hugging Face Hub.

The repo is created if missing (private unless configured) and reused if it exists. The
folder is uploaded as one commit on ``main`` or on a configured branch (created if missing),
with retries on 429/5xx, then optional tags are pointed at that commit.

Re-publishing an unchanged folder makes no commit: huggingface_hub asks the Hub for the
remote hash of every file (``preupload``), drops unchanged files, and returns the current
head instead of committing when nothing is left (``HfApi.create_commit``, 2.4.0). The result
says so (``created_new_revision=False``) by comparing the head before and after.

Large folders are resumable. With ``hf_xet`` (the default on the real Hub)
``upload_folder`` streams files and commits in batches, and re-running skips what was
committed. Without Xet (``HF_HUB_DISABLE_XET=1``, or huggingface_hub 1.x without hf_xet)
folders over ``large_folder_bytes`` are committed here in batches; LFS objects already on
the Hub are never sent again (the LFS batch API answers without an upload action), so a
re-run after a failure sends only what is missing. huggingface_hub 2.x has no
``upload_large_folder``; this covers the same need.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoFile, constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from pydantic import SecretStr

from tuneship.errors import PublishError
from tuneship.hub.client import call_with_retries, make_api, resolve_endpoint, translate_error
from tuneship.publishing.base import PublishResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

LARGE_FOLDER_BYTES = 5 * 1024**3
BATCH_BYTES = 2 * 1024**3
BATCH_FILES = 100
# Never published: VCS data and huggingface_hub's own download metadata.
SKIPPED_PARTS = frozenset({".git", ".cache"})


def xet_upload_available() -> bool:
    """Whether huggingface_hub will upload through Xet (hf_xet installed and not disabled)."""
    return not constants.HF_HUB_DISABLE_XET and importlib.util.find_spec("hf_xet") is not None


def folder_files(folder: Path) -> list[Path]:
    """Files of ``folder`` that get published, sorted (VCS and cache folders skipped)."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not SKIPPED_PARTS.intersection(path.relative_to(folder).parts)
    ]


def plan_batches(
    files: Sequence[Path], *, max_bytes: int = BATCH_BYTES, max_files: int = BATCH_FILES
) -> list[list[Path]]:
    """Split files into commit batches of at most ``max_bytes`` and ``max_files``.

    A single file larger than ``max_bytes`` gets a batch of its own.

    Args:
        files: Files in upload order.
        max_bytes: Size limit of a batch.
        max_files: File count limit of a batch.

    Returns:
        The batches, in order.
    """
    batches: list[list[Path]] = []
    current: list[Path] = []
    size = 0
    for path in files:
        file_size = path.stat().st_size
        if current and (size + file_size > max_bytes or len(current) >= max_files):
            batches.append(current)
            current, size = [], 0
        current.append(path)
        size += file_size
    if current:
        batches.append(current)
    return batches


class HubPublisher:
    """Publishes packaged model folders to a Hugging Face Hub repo.

    Args:
        token: Access token with write access to the target namespace.
        endpoint: Hub endpoint (default: ``$HF_ENDPOINT`` or https://huggingface.co).
        private: Create missing repos as private (existing repos keep their visibility).
        branch: Branch to publish to (created from main if missing); None for main.
        tags: Tags to point at the published commit (moved if they pointed elsewhere).
        mirror: Delete remote files that are not in the folder, so the commit holds exactly
            the folder (``.gitattributes`` is always kept).
        attempts: Attempts per Hub call on 429/5xx/network errors.
        base_delay_s: First retry delay, doubled on each retry.
        large_folder_bytes: Folders above this size are committed in batches when Xet is
            not available.
        batch_bytes: Size limit of one batch commit.
        batch_files: File count limit of one batch commit.
        api: An ``HfApi`` to use instead of building one from ``token`` and ``endpoint``.
        sleep: Sleep function between retries (tests pass a fake).
    """

    target = "hub"

    def __init__(
        self,
        token: SecretStr,
        endpoint: str | None = None,
        private: bool = True,
        branch: str | None = None,
        tags: Sequence[str] = (),
        *,
        mirror: bool = True,
        attempts: int = 5,
        base_delay_s: float = 2.0,
        large_folder_bytes: int = LARGE_FOLDER_BYTES,
        batch_bytes: int = BATCH_BYTES,
        batch_files: int = BATCH_FILES,
        api: HfApi | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._token = token
        self.endpoint = resolve_endpoint(endpoint)
        self.private = private
        self.branch = branch
        self.tags = tuple(tags)
        self.mirror = mirror
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.large_folder_bytes = large_folder_bytes
        self.batch_bytes = batch_bytes
        self.batch_files = batch_files
        self.api = api or make_api(token, self.endpoint)
        self._sleep = sleep

    def __repr__(self) -> str:
        return (
            f"HubPublisher(endpoint={self.endpoint!r}, private={self.private}, "
            f"branch={self.branch!r}, tags={self.tags!r}, token=SecretStr('**********'))"
        )

    # ------------------------------------------------------------------ public
    def publish(self, folder: Path, repo_id: str, *, commit_message: str) -> PublishResult:
        """Publish ``folder`` as ``repo_id``; an unchanged folder makes no new commit.

        Args:
            folder: The packaged model folder.
            repo_id: ``namespace/name`` on the Hub.
            commit_message: Commit title; name the run in it.

        Returns:
            The commit sha, its URL, and whether a new commit was made.

        Raises:
            PublishError: The folder is empty/missing, or the Hub refused (bad token, no
                write access, ...); the message never contains the token.
            TransientError: The Hub kept answering 429/5xx or the network failed.
        """
        folder = Path(folder)
        files = folder_files(folder) if folder.is_dir() else []
        if not files:
            raise PublishError(f"nothing to publish: {folder} is missing or has no files")
        revision = self.branch or "main"
        try:
            self._retry(
                lambda: self.api.create_repo(repo_id, private=self.private, exist_ok=True),
                f"creating {repo_id}",
            )
            if self.branch:
                self._retry(
                    lambda: self.api.create_branch(repo_id, branch=revision, exist_ok=True),
                    f"creating branch {revision} of {repo_id}",
                )
            before = self._head(repo_id, revision)
            total = sum(p.stat().st_size for p in files)
            if total > self.large_folder_bytes and not xet_upload_available():
                sha = self._upload_in_batches(folder, files, repo_id, revision, commit_message)
            else:
                sha = self._upload_folder(folder, repo_id, revision, commit_message)
            self._verify(folder, files, repo_id, sha)
            for tag in self.tags:
                self._point_tag(repo_id, tag, sha)
        except HfHubHTTPError as exc:
            raise translate_error(
                exc,
                what=f"publishing {folder} to {repo_id}",
                token=self._token,
                endpoint=self.endpoint,
            ) from None
        url = f"{self.endpoint}/{repo_id}" + (f"/tree/{self.branch}" if self.branch else "")
        created = sha != before
        logger.info(
            "published %s to %s@%s: %s (%s)",
            folder,
            repo_id,
            revision,
            sha[:10],
            "new commit" if created else "unchanged, no commit",
        )
        return PublishResult(
            target=self.target,
            repo_id=repo_id,
            revision=sha,
            location=f"{self.endpoint}/{repo_id}/tree/{sha}",
            url=url,
            created_new_revision=created,
        )

    # --------------------------------------------------------------- internals
    def _retry(self, func: Callable[[], T], what: str) -> T:
        return call_with_retries(
            func,
            what=what,
            attempts=self.attempts,
            base_delay_s=self.base_delay_s,
            sleep=self._sleep,
            token=self._token,
        )

    def _head(self, repo_id: str, revision: str) -> str | None:
        try:
            info = self._retry(
                lambda: self.api.repo_info(repo_id, revision=revision),
                f"reading {repo_id}@{revision}",
            )
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return None
        return info.sha

    def _upload_folder(self, folder: Path, repo_id: str, revision: str, message: str) -> str:
        info = self._retry(
            lambda: self.api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=message,
                revision=revision,
                delete_patterns="*" if self.mirror else None,
            ),
            f"uploading {folder} to {repo_id}@{revision}",
        )
        return str(info.oid)  # type: ignore[union-attr]  # run_as_future is False

    def _upload_in_batches(
        self, folder: Path, files: list[Path], repo_id: str, revision: str, message: str
    ) -> str:
        batches = plan_batches(files, max_bytes=self.batch_bytes, max_files=self.batch_files)
        deletions: list[CommitOperationDelete] = []
        if self.mirror:
            local = {p.relative_to(folder).as_posix() for p in files}
            remote = self._retry(
                lambda: self.api.list_repo_files(repo_id, revision=revision),
                f"listing {repo_id}@{revision}",
            )
            deletions = [
                CommitOperationDelete(path_in_repo=path)
                for path in remote
                if path not in local and path != ".gitattributes"
            ]
        sha = ""
        for index, batch in enumerate(batches, start=1):
            operations: list[CommitOperationAdd | CommitOperationDelete] = [
                CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=p)
                for p in batch
            ]
            if index == len(batches):
                operations += deletions
            title = f"{message} (part {index}/{len(batches)})" if len(batches) > 1 else message

            def commit(
                ops: list[CommitOperationAdd | CommitOperationDelete] = operations, t: str = title
            ) -> str:
                # Fresh operation objects per attempt: huggingface_hub marks them as used.
                fresh = [
                    CommitOperationAdd(
                        path_in_repo=o.path_in_repo, path_or_fileobj=o.path_or_fileobj
                    )
                    if isinstance(o, CommitOperationAdd)
                    else o
                    for o in ops
                ]
                return str(
                    self.api.create_commit(
                        repo_id, operations=fresh, commit_message=t, revision=revision
                    ).oid
                )

            sha = self._retry(
                commit, f"uploading part {index}/{len(batches)} of {folder} to {repo_id}"
            )
            logger.info("committed part %d/%d to %s@%s", index, len(batches), repo_id, revision)
        return sha

    def _verify(self, folder: Path, files: list[Path], repo_id: str, sha: str) -> None:
        """Check every local file is in the commit with the right size (catches partial pushes)."""
        remote = {
            entry.path: entry.size
            for entry in self._retry(
                lambda: list(self.api.list_repo_tree(repo_id, revision=sha, recursive=True)),
                f"listing {repo_id}@{sha[:10]}",
            )
            if isinstance(entry, RepoFile)
        }
        wrong = [
            rel
            for rel, size in ((p.relative_to(folder).as_posix(), p.stat().st_size) for p in files)
            if remote.get(rel) != size
        ]
        if wrong:
            raise PublishError(
                f"{repo_id}@{sha[:10]} does not match {folder}: {', '.join(wrong[:10])} missing or "
                "of a different size after upload; publish again"
            )

    def _point_tag(self, repo_id: str, tag: str, sha: str) -> None:
        refs = self._retry(lambda: self.api.list_repo_refs(repo_id), f"listing refs of {repo_id}")
        current = next((ref.target_commit for ref in refs.tags if ref.name == tag), None)
        if current == sha:
            return
        if current is not None:
            logger.info("moving tag %s of %s from %s to %s", tag, repo_id, current[:10], sha[:10])
            self._retry(lambda: self.api.delete_tag(repo_id, tag=tag), f"moving tag {tag}")
        self._retry(
            lambda: self.api.create_tag(repo_id, tag=tag, revision=sha),
            f"tagging {repo_id}@{sha[:10]} as {tag}",
        )
