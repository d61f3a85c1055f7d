"""Checkpoints that survive a lost machine: push them to a Hub branch, pull the newest back.

Checkpoints go to a separate branch of the model repo (``checkpoints`` by default), each in
its own ``checkpoint-<step>/`` folder, so the merged model on ``main`` and the checkpoints
never overwrite each other. A lost pod costs at most one save interval:
:func:`download_latest_checkpoint` puts the newest pushed checkpoint back into the output
folder, where ``Trainer.train(resume_from_checkpoint=...)`` continues from it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoFolder
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneship.errors import PublishError, TransientError, is_transient
from tuneship.hub.client import call_with_retries, describe_error, translate_error

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
DEFAULT_BRANCH = "checkpoints"


def ensure_branch(api: HfApi, repo_id: str, branch: str, *, private: bool = True) -> None:
    """Create ``repo_id`` (if missing) and its ``branch`` (if missing).

    Args:
        api: An authenticated ``HfApi``.
        repo_id: ``namespace/name``.
        branch: Branch to create from ``main``.
        private: Visibility when the repo has to be created.
    """
    call_with_retries(
        lambda: api.create_repo(repo_id, private=private, exist_ok=True),
        what=f"creating {repo_id}",
    )
    if branch != "main":
        call_with_retries(
            lambda: api.create_branch(repo_id, branch=branch, exist_ok=True),
            what=f"creating branch {branch} of {repo_id}",
        )


def list_remote_checkpoints(api: HfApi, repo_id: str, branch: str = DEFAULT_BRANCH) -> list[int]:
    """Steps of the ``checkpoint-<step>`` folders on ``branch``, ascending.

    Args:
        api: An ``HfApi``.
        repo_id: ``namespace/name``.
        branch: The checkpoints branch.

    Returns:
        The steps; empty when the repo or branch does not exist.
    """
    try:
        entries = call_with_retries(
            lambda: list(api.list_repo_tree(repo_id, revision=branch, recursive=False)),
            what=f"listing checkpoints in {repo_id}@{branch}",
        )
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return []
    steps = []
    for entry in entries:
        match = CHECKPOINT_DIR.match(entry.path)
        if match and isinstance(entry, RepoFolder):
            steps.append(int(match[1]))
    return sorted(steps)


def push_checkpoint(
    api: HfApi,
    repo_id: str,
    checkpoint_dir: Path,
    *,
    branch: str = DEFAULT_BRANCH,
    keep_last: int = 2,
    existing: list[int] | None = None,
    run_name: str | None = None,
) -> str:
    """Upload one checkpoint folder to ``branch`` and drop older ones beyond ``keep_last``.

    The upload and the deletions are one commit, so the branch never holds a half-written
    newest checkpoint without the previous one.

    Args:
        api: An authenticated ``HfApi``.
        repo_id: ``namespace/name`` (must exist, with ``branch``).
        checkpoint_dir: A ``checkpoint-<step>`` folder written by the Trainer.
        branch: The checkpoints branch.
        keep_last: How many checkpoints to keep on the branch (at least 1).
        existing: Steps already on the branch (listed when None).
        run_name: Named in the commit message.

    Returns:
        The commit sha.
    """
    name = checkpoint_dir.name
    step_match = CHECKPOINT_DIR.match(name)
    if step_match is None:
        raise PublishError(f"{checkpoint_dir} is not a checkpoint-<step> folder")
    step = int(step_match[1])
    steps = existing if existing is not None else list_remote_checkpoints(api, repo_id, branch)
    kept = sorted({*steps, step})[-max(1, keep_last) :]
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(
            path_in_repo=f"{name}/{path.relative_to(checkpoint_dir).as_posix()}",
            path_or_fileobj=path,
        )
        for path in sorted(checkpoint_dir.rglob("*"))
        if path.is_file()
    ]
    operations += [
        CommitOperationDelete(path_in_repo=f"checkpoint-{old}/", is_folder=True)
        for old in steps
        if old not in kept
    ]
    message = f"{run_name + ': ' if run_name else ''}checkpoint at step {step}"

    def commit() -> str:
        info = api.create_commit(
            repo_id, operations=operations, commit_message=message, revision=branch
        )
        return str(info.oid)

    sha = call_with_retries(commit, what=f"pushing {name} to {repo_id}@{branch}")
    if existing is not None:
        existing[:] = kept
    return sha


class PushCheckpointsCallback(TrainerCallback):
    """A ``transformers`` callback that pushes every saved checkpoint to a Hub branch.

    Args:
        api: An authenticated ``HfApi``.
        repo_id: The model repo (created private if missing).
        branch: Branch for checkpoints; never ``main``, where the merged model goes.
        keep_last: Checkpoints kept on the branch.
        private: Visibility if the repo has to be created.
        run_name: Named in commit messages.
        raise_on_error: Stop training when a push fails (default: log a warning and go on;
            the next save pushes again).

    Example:
        ```python
        trainer = Trainer(..., callbacks=[PushCheckpointsCallback(api, "acme/my-model")])
        ```
    """

    def __init__(
        self,
        api: HfApi,
        repo_id: str,
        branch: str = DEFAULT_BRANCH,
        *,
        keep_last: int = 2,
        private: bool = True,
        run_name: str | None = None,
        raise_on_error: bool = False,
    ) -> None:
        if branch == "main":
            raise PublishError(
                "checkpoints must not be pushed to 'main' (the merged model goes there); "
                "choose another branch"
            )
        self.api = api
        self.repo_id = repo_id
        self.branch = branch
        self.keep_last = keep_last
        self.private = private
        self.run_name = run_name
        self.raise_on_error = raise_on_error
        self.pushed: list[tuple[int, str]] = []
        self._remote_steps: list[int] | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Create the repo and branch before the first save, so a bad token fails early."""
        if state.is_world_process_zero:
            try:
                ensure_branch(self.api, self.repo_id, self.branch, private=self.private)
            except HfHubHTTPError as exc:
                raise translate_error(exc, what=f"preparing {self.repo_id}@{self.branch}") from None

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Push ``<output_dir>/checkpoint-<global_step>`` after the Trainer wrote it."""
        if not state.is_world_process_zero:
            return
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            logger.warning("checkpoint folder %s not found; nothing pushed", folder)
            return
        try:
            if self._remote_steps is None:
                self._remote_steps = list_remote_checkpoints(self.api, self.repo_id, self.branch)
            sha = push_checkpoint(
                self.api,
                self.repo_id,
                folder,
                branch=self.branch,
                keep_last=self.keep_last,
                existing=self._remote_steps,
                run_name=self.run_name,
            )
        except (HfHubHTTPError, TransientError) as exc:
            if self.raise_on_error:
                if isinstance(exc, TransientError):
                    raise
                raise translate_error(exc, what=f"pushing {folder.name}") from None
            logger.warning(
                "could not push %s to %s@%s (%s); training continues and the next save "
                "pushes again",
                folder.name,
                self.repo_id,
                self.branch,
                describe_error(exc),
            )
            return
        self.pushed.append((state.global_step, sha))
        logger.info("pushed %s to %s@%s (%s)", folder.name, self.repo_id, self.branch, sha[:10])


def download_latest_checkpoint(
    api: HfApi, repo_id: str, dest: Path, branch: str = DEFAULT_BRANCH
) -> Path | None:
    """Download the newest pushed checkpoint into ``dest/checkpoint-<step>``.

    Args:
        api: An ``HfApi`` that can read the repo.
        repo_id: ``namespace/name``.
        dest: Folder to put the checkpoint folder in (the Trainer's output folder).
        branch: The checkpoints branch.

    Returns:
        The checkpoint folder, or None when nothing was pushed yet (no repo, no branch or no
        checkpoint on it).

    Raises:
        PublishError: The Hub refused the download (e.g. a bad token).
    """
    steps = list_remote_checkpoints(api, repo_id, branch)
    if not steps:
        return None
    name = f"checkpoint-{steps[-1]}"
    dest.mkdir(parents=True, exist_ok=True)
    what = f"downloading {name} from {repo_id}@{branch}"
    try:
        # No retry loop here: snapshot_download backs off on 429/5xx by itself, and a
        # failure still transient after that is left to the task's retry policy.
        api.snapshot_download(
            repo_id, revision=branch, allow_patterns=[f"{name}/*"], local_dir=dest
        )
    except HfHubHTTPError as exc:
        if is_transient(exc):
            raise TransientError(f"{what}: {describe_error(exc)}; retry later") from None
        raise translate_error(exc, what=what) from None
    folder = dest / name
    if not (folder / "trainer_state.json").is_file():
        raise PublishError(
            f"{repo_id}@{branch}/{name} has no trainer_state.json; it is not a complete "
            "Trainer checkpoint (delete it on the Hub and resume from an older one)"
        )
    return folder
