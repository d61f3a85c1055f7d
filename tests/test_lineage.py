"""`tuneship models show NAME --lineage`: dataset to run, training, revision, deployments, cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from tuneship.cli.models import models_app
from tuneship.registry import DeploymentEntry, ModelEntry, Registry
from tuneship.registry.lineage import build_lineage


def _populate(url: str) -> None:
    started = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    with Registry(url) as reg:
        reg.upsert_model(
            ModelEntry(
                name="acme/chat",
                version="rev1",
                base_model="acme/base",
                method="dpo",
                adapter="lora",
                dataset_path="data/prefs.jsonl",
                dataset_fingerprint="fp-1111",
                metrics={"base_eval_loss": 2.5, "eval_loss": 1.25},
                artifact_target="hub",
                artifact_location="https://huggingface.co/acme/chat",
                artifact_revision="rev1",
                flow_run_id="11111111-aaaa",
            )
        )
        reg.upsert_model(
            ModelEntry(
                name="acme/chat",
                version="rev2",
                method="sft",
                adapter="qlora",
                dataset_path="data/chat.jsonl",
                dataset_fingerprint="fp-2222",
                metrics={"base_eval_loss": 2.5, "eval_loss": 0.75},
                artifact_target="hub",
                artifact_location="https://huggingface.co/acme/chat",
                artifact_revision="rev2",
                flow_run_id="22222222-bbbb",
            )
        )
        for name, target, price in (
            ("chat-pod", "runpod-pod", 0.5),
            ("chat-here", "local-vllm", None),
        ):
            reg.upsert_deployment(
                DeploymentEntry(
                    name=name,
                    model_name="acme/chat",
                    model_version="rev2",
                    target=target,
                    url=f"https://{name}.example/v1",
                    served_model_name="acme/chat",
                    status="running",
                    details={"usd_per_hour": price, "started_at": started},
                )
            )
        # The pod stopped two hours after it started: 2 h at $0.50.
        reg.set_deployment_status("chat-pod", "stopped")
    # The stop time is when the row was last updated; put it 2 h after the start.
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE deployments SET updated_at = :t WHERE name = 'chat-pod'"),
            {"t": datetime.now(UTC) - timedelta(hours=1)},
        )
    engine.dispose()


def test_lineage_follows_the_chain_in_order(
    registry_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _populate(registry_url)
    monkeypatch.setenv("PREFECT_UI_URL", "http://127.0.0.1:4200")
    result = CliRunner().invoke(
        models_app, ["show", "acme/chat", "--lineage", "--registry", registry_url]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    # The latest version (rev2) and its own dataset, run, metrics and deployments.
    expected_in_order = [
        "Lineage of acme/chat version rev2",
        "dataset",
        "path: data/chat.jsonl",
        "fingerprint: fp-2222",
        "flow run",
        "id: 22222222-bbbb",
        "ui: http://127.0.0.1:4200/runs/flow-run/22222222-bbbb",
        "training",
        "method: sft / qlora",
        "base_eval_loss 2.5000, eval_loss 0.7500",
        "published",
        "revision: rev2",
        "deployments",
        "chat-pod [stopped] runpod-pod https://chat-pod.example/v1",
        "cost: $0.50/h, $1.00 in all",
        "chat-here [running] local-vllm https://chat-here.example/v1",
        "cost: $0.00/h, $0.00 so far",
        "cost",
        "deployments so far: $1.00",
    ]
    position = 0
    for piece in expected_in_order:
        found = out.find(piece, position)
        assert found >= 0, f"{piece!r} missing or out of order in:\n{out}"
        position = found + len(piece)
    assert "fp-1111" not in out and "data/prefs.jsonl" not in out

    older = CliRunner().invoke(
        models_app,
        [
            "show",
            "acme/chat",
            "--version",
            "rev1",
            "--lineage",
            "--json",
            "--registry",
            registry_url,
        ],
    )
    data = json.loads(older.output)
    assert data["model"]["dataset_path"] == "data/prefs.jsonl"
    assert data["model"]["method"] == "dpo" and data["deployments"] == []
    assert data["usd_so_far"] is None


def test_lineage_of_an_unknown_model(registry_url: str) -> None:
    with Registry(registry_url) as reg:
        assert build_lineage(reg, "acme/none") is None
    result = CliRunner().invoke(
        models_app, ["show", "acme/none", "--lineage", "--registry", registry_url]
    )
    assert result.exit_code == 1 and "not found" in result.output
