"""Per-run folders, resuming from an earlier run, the publish lock and the publish gate."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tuneship.config import PipelineConfig, load_config
from tuneship.demo import demo_config_path
from tuneship.errors import EvalGateError, PublishError
from tuneship.publishing.local_store import content_revision
from tuneship.registry import ModelEntry, Registry
from tuneship.runs import (
    check_not_worse_than_published,
    config_for_run_folder,
    latest_checkpoint_run,
    new_run_dir,
    publish_journal,
    publish_lock,
    read_interrupted_publish,
)

_RUN_FLOW = """
import sys
from pathlib import Path
from tuneship.config import PipelineConfig
from tuneship.flows.finetune import finetune_and_deploy
summary = finetune_and_deploy(PipelineConfig.model_validate_json(sys.argv[1]))
Path(sys.argv[2]).write_text(summary.model_dump_json())
"""


def _checkpoint(run: Path, step: int) -> Path:
    folder = run / "train" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}", encoding="utf-8")
    return folder


def test_same_name_runs_get_their_own_folders(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path, "0123abcd-0000")
    second = new_run_dir(tmp_path, "0123abcd-0000")
    assert first != second and first.parent == second.parent == tmp_path


def test_auto_resume_uses_the_newest_earlier_run_with_checkpoints(tmp_path: Path) -> None:
    cfg = load_config(None, [f"workdir={tmp_path}", "training.resume_from_checkpoint=auto"])
    old = tmp_path / "20260101T000000Z-aaaaaaaa"
    _checkpoint(old, 5)
    wanted = _checkpoint(old, 10)
    (tmp_path / "20260102T000000Z-bbbbbbbb").mkdir()  # a later run that saved nothing
    current = new_run_dir(tmp_path, None)
    assert latest_checkpoint_run(tmp_path, exclude=current) == wanted
    resumed, note = config_for_run_folder(cfg, current)
    assert resumed.run_dir() == current
    assert resumed.training.resume_from_checkpoint == str(wanted)
    assert str(wanted) in note
    fresh, note = config_for_run_folder(load_config(None, [f"workdir={tmp_path}"]), current)
    assert fresh.training.resume_from_checkpoint is None and note == ""


def _hold_lock(lock_dir: str, ready: multiprocessing.synchronize.Event, done: object) -> None:
    with publish_lock(Path(lock_dir), "me/model", wait=False, timeout_s=1):
        ready.set()
        done.wait(30)  # type: ignore[attr-defined]


def test_publish_lock_fails_or_waits_while_another_process_publishes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        with (
            pytest.raises(PublishError, match="another run is publishing to me/model"),
            publish_lock(tmp_path, "me/model", wait=False, timeout_s=1),
        ):
            pass
        with (
            pytest.raises(PublishError, match="after waiting"),
            publish_lock(tmp_path, "me/model", wait=True, timeout_s=1),
        ):
            pass
        with publish_lock(tmp_path, "me/other", wait=False, timeout_s=1):
            pass  # another repo is not blocked
        threading.Timer(0.5, done.set).start()
        with publish_lock(tmp_path, "me/model", wait=True, timeout_s=30):
            pass  # acquired once the holder is done
    finally:
        done.set()
        holder.join(30)


def test_publish_gate_refuses_a_worse_model_unless_forced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    assert "no earlier" in check_not_worse_than_published(url, "me/m", 1.0, force=False)
    Registry(url).upsert_model(
        ModelEntry(
            name="me/m",
            version="v1",
            base_model="b",
            method="sft",
            adapter="lora",
            metrics={"eval_loss": 1.0},
            artifact_target="local",
            artifact_location=str(tmp_path),
            artifact_revision="v1",
        )
    )
    assert "<=" in check_not_worse_than_published(url, "me/m", 0.9, force=False)
    with pytest.raises(EvalGateError, match=r"1\.2000 is worse than 1\.0000.*publish\.force"):
        check_not_worse_than_published(url, "me/m", 1.2, force=False)
    assert "anyway" in check_not_worse_than_published(url, "me/m", 1.2, force=True)


def test_a_publish_killed_before_registration_is_remembered_by_the_gate(tmp_path: Path) -> None:
    """A run dies after moving the target, before the registry row: the journal stays, and
    the next run's gate compares against that model too."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    locks = tmp_path / "locks"
    with (
        pytest.raises(RuntimeError, match="killed"),
        publish_journal(locks, "me/m", "run a (1)", 0.5) as mark_published,
    ):
        mark_published()  # the target moved
        raise RuntimeError("killed before the registry write")
    journal = read_interrupted_publish(locks, "me/m")
    assert journal == {"run": "run a (1)", "eval_loss": 0.5}
    with pytest.raises(EvalGateError, match=r"0\.8000 is worse than 0\.5000 of the unregistered"):
        check_not_worse_than_published(url, "me/m", 0.8, force=False, interrupted=journal)
    assert "<= 0.5000" in check_not_worse_than_published(
        url, "me/m", 0.4, force=False, interrupted=journal
    )
    # A publish that itself failed moved nothing: the earlier killed one stays on record.
    with pytest.raises(OSError), publish_journal(locks, "me/m", "run b (2)", 0.4):
        raise OSError("the Hub refused the upload")
    assert read_interrupted_publish(locks, "me/m") == journal
    # A completed publish and registration clear it.
    with publish_journal(locks, "me/m", "run c (3)", 0.4) as mark_published:
        mark_published()
    assert read_interrupted_publish(locks, "me/m") is None


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_two_concurrent_same_name_runs_publish_their_own_weights(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from tuneship.flows.finetune import RunSummary

    def config(lr: str) -> PipelineConfig:
        return load_config(
            demo_config_path(),
            [
                f"model.base={tiny_model_dir}",
                "training.adapter=lora",
                "training.max_steps=3",
                "training.eval_strategy=no",
                "training.require_improvement=false",
                f"training.learning_rate={lr}",
                "serve.target=none",
                "publish.vllm_load_check=off",
                "publish.load_check=false",
                f"workdir={tmp_path / 'runs'}",
                f"publish.store_path={tmp_path / 'store'}",
                f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
            ],
        )

    # Separate processes, as two `tuneship run` invocations are: transformers' model loading
    # is not thread-safe, so threads of one process would test a race that users never hit.
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    runs = []
    for lr in ("0.01", "0.05"):
        out = tmp_path / f"summary-{lr}.json"
        log = (tmp_path / f"run-{lr}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_FLOW, config(lr).model_dump_json(), str(out)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        runs.append((proc, out, log))
    for proc, _, log in runs:
        proc.wait(600)
        log.close()
    for proc, _, log in runs:
        assert proc.returncode == 0, Path(log.name).read_text(errors="replace")[-3000:]
    summaries = [RunSummary.model_validate_json(out.read_text()) for _, out, _ in runs]
    packages = {Path(s.package_dir) for s in summaries}
    assert len(packages) == 2, "the runs shared a folder"
    for summary in summaries:
        # What each run published and registered is what it packaged itself.
        assert summary.published.revision == content_revision(summary.package_dir)
        entry = Registry(summary.registry_url).get_model(summary.model_name, summary.model_version)
        assert entry is not None and entry.flow_run_id == summary.flow_run_id
    assert len({s.published.revision for s in summaries}) == 2
