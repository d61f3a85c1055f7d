"""The whole pipeline under Prefect's test harness, on the tiny model, on the CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard

from tuneship.config import load_config
from tuneship.demo import demo_config_path
from tuneship.errors import DataError, TrainingError

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

FAST = [
    "training.max_steps=30",
    "training.eval_steps=10",
    "training.logging_steps=5",
    "serve.target=none",
    "publish.vllm_load_check=off",
]


def _config(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(
        demo_config_path(),
        [
            *FAST,
            f"workdir={tmp_path / 'run'}",
            f"publish.store_path={tmp_path / 'store'}",
            f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
            *extra,
        ],
    )


def _artifact_keys(flow_run_id: str) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in artifacts if a.key}


def _read_flow_run(flow_run_id: str) -> Any:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))


def _artifact_data(flow_run_id: str, key: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(any_=[key]),
            )
        )
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


def test_pipeline_end_to_end_registers_a_loadable_better_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneship.flows.finetune import finetune_and_deploy
    from tuneship.registry import Registry

    cfg = _config(tmp_path)
    summary = finetune_and_deploy(cfg)

    assert summary.base_eval_loss is not None and summary.eval_loss is not None
    assert summary.eval_loss < summary.base_eval_loss
    assert summary.base_answer == ""  # nothing is served, so the base is not asked either
    folder = Path(summary.published.location)
    assert folder.is_dir() and folder.is_relative_to(tmp_path / "store")

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]

    # The card reports this model's assistant-token eval loss, and its snippet loads the
    # model from where it was published (the local store), not from a Hub repo id.
    card = ModelCard.load(folder / "README.md")
    assert [(r.metric_name, r.metric_value) for r in card.data.eval_results] == [
        ("Eval loss on assistant tokens", pytest.approx(summary.eval_loss))
    ]
    assert card.data.datasets is None
    snippet = card.text.split("```python\n", 1)[1].split("tokenizer =", 1)[0]
    scope: dict[str, Any] = {}
    exec(snippet, scope)
    assert Path(scope["model_id"]) == folder

    entry = Registry(cfg.registry_url()).get_model(cfg.publish.repo_id, summary.model_version)
    assert entry is not None
    assert entry.dataset_fingerprint == summary.dataset_fingerprint
    assert entry.dataset_path == cfg.data.path
    assert entry.flow_run_id == summary.flow_run_id
    assert entry.metrics["eval_loss"] == pytest.approx(summary.eval_loss)

    keys = _artifact_keys(str(summary.flow_run_id))
    for suffix in (
        "data-summary",
        "training-progress",
        "training-metrics",
        "loss-chart",
        "training-summary",
        "published-model",
        "run-summary",
    ):
        assert f"tuneship-demo-{suffix}" in keys
    run = _read_flow_run(str(summary.flow_run_id))
    assert re.fullmatch(r"tuneship-demo-\d{8}-\d{6}", run.name)
    assert {"method:sft", "adapter:lora", "publish:local", "serve:none"} <= set(run.tags)
    metrics = _artifact_data(str(summary.flow_run_id), "tuneship-demo-training-metrics")
    # Prefect takes the table's columns from its first row: every column is in every row.
    assert all(set(row) == {"step", "loss", "eval_loss"} for row in metrics)
    assert [row["eval_loss"] for row in metrics if row["eval_loss"] != ""]
    # The progress artifact, made by a background thread, belongs to this run and ends full.
    progress = _artifact_data(str(summary.flow_run_id), "tuneship-demo-training-progress")
    assert float(progress) == 100.0

    # Running the same job again registers no duplicate.
    again = finetune_and_deploy(cfg)
    versions = {summary.model_version, again.model_version}
    models = Registry(cfg.registry_url()).list_models()
    assert len(models) == len(versions)


def test_bad_data_fails_before_training(tmp_path: Path) -> None:
    from tuneship.flows.finetune import finetune_and_deploy

    data = tmp_path / "broken.jsonl"
    good = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    )
    data.write_text(good + "\n" + "{not json\n" + good + "\n", encoding="utf-8")
    cfg = _config(tmp_path, f"data.path={data}")
    with pytest.raises(DataError, match=r"broken\.jsonl:2"):
        finetune_and_deploy(cfg)
    assert not (tmp_path / "run" / "train").exists()


def test_qlora_on_cpu_fails_before_anything_loads(tmp_path: Path) -> None:
    from tuneship.flows.finetune import finetune_and_deploy

    cfg = _config(tmp_path, "training.adapter=qlora", "compute.device=cpu")
    with pytest.raises(TrainingError, match="qlora"):
        finetune_and_deploy(cfg)
    assert not (tmp_path / "run" / "data").exists()


def test_pipeline_serves_answers_and_stops_the_server(tmp_path: Path) -> None:
    """The full pipeline with local vLLM: smoke-tested endpoint, recorded, then stopped."""
    from _serving_helpers import assert_group_gone, engine_python_or_skip

    from tuneship.flows.finetune import finetune_and_deploy, render_summary
    from tuneship.registry import Registry

    engine = engine_python_or_skip()
    cfg = _config(
        tmp_path,
        "serve.target=local",
        "publish.vllm_load_check=on",
        "serve.max_model_len=256",
        # Greedy: the answer is the model's own, and transformers' reference answer is checked.
        "serve.smoke_temperature=0",
        f"serve.engine_python={engine}",
        "serve.extra_options={enforce_eager: true}",
    )
    summary = finetune_and_deploy(cfg)

    dep = summary.deployment
    assert dep is not None and dep.answer.strip()
    assert not dep.kept_running
    # Before and after: the base model (before training) and the fine-tune (transformers
    # on the served folder) answered the same question, and the summary shows both.
    assert summary.base_answer.strip() and dep.reference_answer.strip()
    table = render_summary(summary)
    assert repr(summary.base_answer) in table and repr(dep.reference_answer) in table
    record = Registry(cfg.registry_url()).get_deployment(dep.name)
    assert record is not None
    assert record.status == "stopped" and record.model_version == summary.model_version
    pgid = record.details.get("pgid")
    assert pgid
    assert_group_gone(int(pgid))
