"""Checkpoints pushed to a Hub branch during training survive a lost machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from huggingface_hub import HfApi
from pydantic import SecretStr
from transformers import TrainerCallback

from tuneship.errors import PublishError
from tuneship.hub.checkpoints import (
    PushCheckpointsCallback,
    download_latest_checkpoint,
    ensure_branch,
    list_remote_checkpoints,
    push_checkpoint,
)
from tuneship.hub.client import make_api
from tuneship.publishing.hub import HubPublisher


@pytest.fixture
def api(fake_hub: FakeHub) -> HfApi:  # noqa: F811 - the imported fixture
    return make_api(SecretStr(fake_hub.add_token("alice")), fake_hub.endpoint)


def _fake_checkpoint(root: Path, step: int) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "model.safetensors").write_bytes(bytes([step % 256]) * 64)
    return folder


def test_nothing_to_resume_from(api: HfApi, tmp_path: Path) -> None:
    assert download_latest_checkpoint(api, "alice/none", tmp_path) is None
    api.create_repo("alice/empty")
    assert download_latest_checkpoint(api, "alice/empty", tmp_path) is None  # no branch
    ensure_branch(api, "alice/empty", "checkpoints")
    assert download_latest_checkpoint(api, "alice/empty", tmp_path) is None  # no checkpoint
    with pytest.raises(PublishError, match="must not be pushed to 'main'"):
        PushCheckpointsCallback(api, "alice/empty", branch="main")


def test_push_keeps_the_newest_checkpoints_on_their_branch(
    api: HfApi,
    fake_hub: FakeHub,  # noqa: F811
    tmp_path: Path,
) -> None:
    ensure_branch(api, "alice/run", "checkpoints")
    existing: list[int] = []
    for step in (2, 4, 6):
        push_checkpoint(
            api,
            "alice/run",
            _fake_checkpoint(tmp_path, step),
            keep_last=2,
            existing=existing,
            run_name="demo",
        )
    assert existing == [4, 6]
    assert list_remote_checkpoints(api, "alice/run") == [4, 6]
    assert set(fake_hub.files("alice/run")) == {".gitattributes"}  # main untouched
    assert fake_hub.commits("alice/run", "checkpoints")[0].title == "demo: checkpoint at step 6"
    dest = tmp_path / "restored"
    latest = download_latest_checkpoint(api, "alice/run", dest)
    assert latest == dest / "checkpoint-6"
    assert json.loads((latest / "trainer_state.json").read_text())["global_step"] == 6
    assert not (dest / "checkpoint-4").exists()


class StepRecorder(TrainerCallback):
    """Collects the global step after each training step."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.append(state.global_step)


def _trainer(
    model_dir: Path, output_dir: Path, max_steps: int, callbacks: list[Any]
) -> tuple[Any, StepRecorder]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from tuneship.demo.tiny_model import sample_data_path

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [
        " ".join(m["content"] for m in json.loads(line)["messages"])
        for line in sample_data_path().read_text(encoding="utf-8").splitlines()[:16]
    ]
    encoded = tokenizer(texts, truncation=True, max_length=32, padding="max_length")
    data = Dataset.from_dict({**encoded, "labels": encoded["input_ids"]})
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    recorder = StepRecorder()
    trainer = Trainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=args,
        train_dataset=data,
        callbacks=[*callbacks, recorder],
    )
    return trainer, recorder


@pytest.mark.slow
def test_checkpoints_survive_a_lost_machine_and_training_resumes(
    fake_hub: FakeHub,  # noqa: F811
    api: HfApi,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    repo = "alice/tiny-ft"
    output = tmp_path / "run" / "output"
    push = PushCheckpointsCallback(api, repo, run_name="tiny-ft")
    first, _ = _trainer(tiny_model_dir, output, max_steps=4, callbacks=[push])
    first.train()
    assert [step for step, _ in push.pushed] == [2, 4]
    assert list_remote_checkpoints(api, repo) == [2, 4]
    assert fake_hub.repos[repo].private

    # The machine is lost: every local file of the run is gone.
    shutil.rmtree(tmp_path / "run")
    latest = download_latest_checkpoint(api, repo, output)
    assert latest == output / "checkpoint-4"
    for name in ("trainer_state.json", "optimizer.pt", "scheduler.pt", "model.safetensors"):
        assert (latest / name).is_file(), name

    push_again = PushCheckpointsCallback(api, repo, run_name="tiny-ft")
    second, recorder = _trainer(tiny_model_dir, output, max_steps=6, callbacks=[push_again])
    second.train(resume_from_checkpoint=str(latest))
    assert recorder.steps == [5, 6]  # continued from step 4, not from 0
    assert second.state.global_step == 6
    assert list_remote_checkpoints(api, repo) == [4, 6]

    # The final model goes to main; checkpoints stay on their branch, untouched.
    final = tmp_path / "final"
    second.save_model(str(final))
    token = SecretStr(api.token or "")
    result = HubPublisher(token, fake_hub.endpoint).publish(final, repo, commit_message="tiny-ft")
    main_files = set(fake_hub.files(repo, result.revision))
    assert "model.safetensors" in main_files
    assert not any(path.startswith("checkpoint-") for path in main_files)
    assert list_remote_checkpoints(api, repo) == [4, 6]


def test_failed_push_warns_and_training_goes_on(
    fake_hub: FakeHub,  # noqa: F811
    api: HfApi,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    callback = PushCheckpointsCallback(api, "alice/flaky")
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    state = TrainerState()
    state.global_step = 2
    callback.on_train_begin(args, state, TrainerControl())
    _fake_checkpoint(tmp_path, 2)
    fake_hub.fail_next("POST", "/commit/", 403)
    callback.on_save(args, state, TrainerControl())
    assert callback.pushed == []
    assert "could not push checkpoint-2" in caplog.text
    strict = PushCheckpointsCallback(api, "alice/flaky", raise_on_error=True)
    fake_hub.fail_next("POST", "/commit/", 403)
    with pytest.raises(PublishError, match="pushing checkpoint-2"):
        strict.on_save(args, state, TrainerControl())
