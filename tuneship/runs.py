"""Per-run folders and the publish lock: two runs with the same name never share files.

Each run writes its split, checkpoints, merged model and package to
``<runs>/<name>/<UTC time>-<flow run id>/``, so a second run with the same config name
cannot overwrite the first one's files. ``resume_from_checkpoint: auto`` looks for the
newest earlier run folder of that name that has checkpoints and resumes from it by path
(saying which), instead of mixing old checkpoints into the new folder.

Publishing to one repo is serialised by a file lock, so two runs cannot move the same
repo at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from tuneship.config import PipelineConfig
from tuneship.errors import EvalGateError, PublishError

_RUN_FOLDER = re.compile(r"^\d{8}T\d{6}Z-[A-Za-z0-9]+$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def new_run_dir(runs_root: Path, run_id: str | None) -> Path:
    """Create and return a fresh folder for one run under ``runs_root``.

    Args:
        runs_root: The config's run folder (``$TUNESHIP_HOME/runs/<name>`` or ``workdir``).
        run_id: The Prefect flow run id (its first 8 characters name the folder); None uses
            the process id.

    Returns:
        ``runs_root/<UTC time>-<id>``, created; never an existing folder.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    short = (run_id or f"pid{os.getpid()}").replace("-", "")[:8]
    runs_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        folder = runs_root / (f"{stamp}-{short}" + (f"{attempt}" if attempt else ""))
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise PublishError(f"cannot create a new run folder under {runs_root}")  # pragma: no cover


def latest_checkpoint_run(runs_root: Path, exclude: Path | None = None) -> Path | None:
    """Return the newest checkpoint of the newest earlier run folder that has one.

    Args:
        runs_root: The folder holding the run folders of one config name.
        exclude: The current run's folder, never returned.

    Returns:
        A ``checkpoint-N`` folder (highest N of that run), or None.
    """
    if not runs_root.is_dir():
        return None
    folders = sorted(
        (p for p in runs_root.iterdir() if p.is_dir() and _RUN_FOLDER.match(p.name)),
        key=lambda p: p.name,
        reverse=True,
    )
    for folder in folders:
        if exclude is not None and folder.resolve() == exclude.resolve():
            continue
        train = folder / "train"
        checkpoints = [
            (int(m.group(1)), p)
            for p in (train.iterdir() if train.is_dir() else [])
            if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").is_file()
        ]
        if checkpoints:
            return max(checkpoints)[1]
    return None


@contextlib.contextmanager
def publish_lock(lock_dir: Path, repo_id: str, *, wait: bool, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive lock on ``repo_id`` while the block publishes to it.

    The lock is an ``flock`` on a file, so it is released by the kernel when the holder
    dies, however it dies.

    Args:
        lock_dir: Folder for lock files (the local store or ``$TUNESHIP_HOME``).
        repo_id: The target repo.
        wait: Wait for another run's publish to finish (True) or fail at once (False).
        timeout_s: How long to wait at most.

    Raises:
        PublishError: Another run holds the lock (``wait`` false, or the timeout passed).
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{repo_id.replace('/', '--')}.publish.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                    how = "" if not wait else f" after waiting {timeout_s:.0f} s"
                    raise PublishError(
                        f"another run is publishing to {repo_id} ({holder}){how}; retry when "
                        f"it is done, or set publish.lock=wait (lock file {path})"
                    ) from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _journal_path(lock_dir: Path, repo_id: str) -> Path:
    return lock_dir / f"{repo_id.replace('/', '--')}.publish-pending.json"


def read_interrupted_publish(lock_dir: Path, repo_id: str) -> dict[str, object] | None:
    """What an earlier run was publishing to ``repo_id`` when it was killed, if one was.

    Call under :func:`publish_lock`. The journal of :func:`publish_journal` outlives a run
    killed after the target moved and before the registry recorded it (the registry then
    does not know what ``repo_id`` serves).
    """
    try:
        found = json.loads(_journal_path(lock_dir, repo_id).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:  # cut short while written: only the run label is lost
        return {"run": "unknown", "eval_loss": None}
    return found if isinstance(found, dict) else None


@contextlib.contextmanager
def publish_journal(
    lock_dir: Path, repo_id: str, run: str, eval_loss: float | None
) -> Iterator[Callable[[], None]]:
    """Record that this run is publishing to ``repo_id`` until it is registered.

    Yields a function to call once the publish call itself returned: from then on an
    exception or a kill keeps the journal (the target may have moved with no registry row);
    before it, a failed publish puts back what was there (nothing moved). A normal exit
    removes it: the target now serves this run's registered model.
    """
    path = _journal_path(lock_dir, repo_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An earlier killed publish stays on record until a publish replaces its model.
    earlier = path.read_bytes() if path.exists() else None

    def write(content: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)

    write(json.dumps({"run": run, "eval_loss": eval_loss}).encode())
    published = False

    def mark_published() -> None:
        nonlocal published
        published = True

    try:
        yield mark_published
    except BaseException:
        if not published:
            if earlier is None:
                path.unlink(missing_ok=True)
            else:
                write(earlier)
        raise
    path.unlink(missing_ok=True)


def config_for_run_folder(config: PipelineConfig, run_dir: Path) -> tuple[PipelineConfig, str]:
    """Point the config at this run's own folder; resolve ``resume_from_checkpoint: auto``.

    Args:
        config: The run's configuration (``run_dir()`` is the folder of all runs of its name).
        run_dir: This run's folder (from :func:`new_run_dir`).

    Returns:
        The config whose ``run_dir()`` is ``run_dir`` and a note saying where training resumes
        from (empty when it does not resume).
    """
    training = config.training
    note = ""
    if training.resume_from_checkpoint == "auto":
        latest = latest_checkpoint_run(config.run_dir(), exclude=run_dir)
        if latest is not None:
            training = training.model_copy(update={"resume_from_checkpoint": str(latest)})
            note = f"resume_from_checkpoint=auto: resuming from {latest} (an earlier run's folder)"
    return config.model_copy(update={"workdir": str(run_dir), "training": training}), note


def check_not_worse_than_published(
    registry_url: str,
    repo_id: str,
    eval_loss: float | None,
    *,
    force: bool,
    interrupted: dict[str, object] | None = None,
) -> str:
    """Refuse to move a repo's published revision to a model with a worse eval loss.

    Args:
        registry_url: The registry that records what was published.
        repo_id: The publish target.
        eval_loss: This run's eval loss (None: no eval, nothing to compare).
        force: Publish anyway (``publish.force``).
        interrupted: The journal of a run killed while it published to ``repo_id``
            (:func:`read_interrupted_publish`): its model may be what ``repo_id`` serves
            now although the registry does not know it, so a better eval loss of it counts.

    Returns:
        What was compared, for the log.

    Raises:
        EvalGateError: The latest registered version of ``repo_id`` has a lower eval loss.
    """
    from tuneship.registry import Registry

    with contextlib.closing(Registry(registry_url)) as registry:
        latest = registry.get_model(repo_id)
    previous = latest.metrics.get("eval_loss") if latest is not None else None
    what = f"the published version {latest.version[:12]}" if latest is not None else ""
    interrupted = interrupted or {}
    lost = interrupted.get("eval_loss")
    if isinstance(lost, int | float) and (previous is None or lost < previous):
        # Conservative: that run may have moved the repo before it was killed.
        previous = float(lost)
        what = (
            f"the unregistered publish of {interrupted.get('run')} (killed while it "
            "published; it may be what the repo serves now)"
        )
    if eval_loss is None or previous is None:
        return "no earlier eval loss to compare"
    if eval_loss <= previous:
        return f"eval loss {eval_loss:.4f} <= {previous:.4f} of {what}"
    message = f"eval loss {eval_loss:.4f} is worse than {previous:.4f} of {what}"
    if force:
        return message + "; publishing anyway (publish.force)"
    raise EvalGateError(message + "; not published. Set publish.force=true to publish it anyway")
