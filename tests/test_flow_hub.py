"""The pipeline against the fake Hub: Hub base model, publish, checkpoints, secrets, pre-flight."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture

from tuneship.config import load_config
from tuneship.demo import demo_config_path
from tuneship.errors import TuneshipError

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _config(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(
        demo_config_path(),
        [
            "name=hub-run",
            "model.base=acme/tiny-base",
            "training.max_steps=12",
            "training.eval_steps=6",
            "training.require_improvement=false",
            "publish.target=hub",
            "publish.repo_id=alice/tiny-ft",
            "publish.push_checkpoints=true",
            "serve.target=none",
            "publish.vllm_load_check=off",
            f"workdir={tmp_path / 'run'}",
            f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
            *extra,
        ],
    )


def _stored_logs_and_artifacts(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        run = client.read_flow_run(flow_run_id)
    parts = [log.message for log in logs]
    parts += [str(a.data) + str(a.description) for a in artifacts]
    parts.append(repr(run.parameters))
    assert logs and artifacts  # the scan must look at something
    return "\n".join(parts)


def test_hub_pipeline_publishes_loadable_model_and_never_leaks_the_token(
    fake_hub: FakeHub,  # noqa: F811
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneship.flows.finetune import finetune_and_deploy
    from tuneship.registry import Registry

    token = fake_hub.add_token("alice", token="hf_TUNESHIPleakCANARY0123456789abcdef")
    monkeypatch.setenv("HF_TOKEN", token)
    fake_hub.add_folder("acme/tiny-base", tiny_model_dir)
    cfg = _config(tmp_path)

    summary = finetune_and_deploy(cfg)

    assert summary.published.target == "hub"
    assert summary.published.revision == fake_hub.head("alice/tiny-ft")
    assert fake_hub.repos["alice/tiny-ft"].private
    # Checkpoints went to their own branch; main holds only the merged model.
    assert any(p.startswith("checkpoint-") for p in fake_hub.files("alice/tiny-ft", "checkpoints"))
    assert not any(p.startswith("checkpoint-") for p in fake_hub.files("alice/tiny-ft"))

    local = snapshot_download("alice/tiny-ft", token=token, cache_dir=tmp_path / "dl")
    model = AutoModelForCausalLM.from_pretrained(local)
    tok = AutoTokenizer.from_pretrained(local)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    assert model.generate(**ids, max_new_tokens=3).shape[1] > ids["input_ids"].shape[1]
    readme = (Path(local) / "README.md").read_text(encoding="utf-8")
    assert "base_model: acme/tiny-base" in readme

    entry = Registry(cfg.registry_url()).get_model("alice/tiny-ft", summary.model_version)
    assert entry is not None and entry.artifact_revision == summary.published.revision

    stored = _stored_logs_and_artifacts(str(summary.flow_run_id))
    assert token not in stored
    assert token not in readme
    assert token not in entry.model_dump_json()


def test_gated_base_model_fails_before_training(
    fake_hub: FakeHub,  # noqa: F811
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneship.flows.finetune import finetune_and_deploy

    monkeypatch.setenv("HF_TOKEN", fake_hub.add_token("alice"))
    fake_hub.add_folder("acme/tiny-base", tiny_model_dir, gated="manual")
    with pytest.raises(TuneshipError, match="accept the licence"):
        finetune_and_deploy(_config(tmp_path))
    assert not (tmp_path / "run" / "train").exists()


def test_bad_token_fails_before_training(
    fake_hub: FakeHub,  # noqa: F811
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneship.flows.finetune import finetune_and_deploy

    fake_hub.add_folder("acme/tiny-base", tiny_model_dir)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_token_the_hub_knows_0000000")
    with pytest.raises(TuneshipError) as info:
        finetune_and_deploy(_config(tmp_path))
    assert "hf_not_a_token" not in str(info.value)
    assert not (tmp_path / "run" / "train").exists()
