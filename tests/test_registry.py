"""The model registry on a real SQLite file and a real PostgreSQL server, and the CLI.

Tests that take ``registry_url`` (or ``registry``) run once per backend; the PostgreSQL run
uses a throwaway server (``tests/_postgres.py``) and is skipped where none can start, unless
``TUNESHIP_REQUIRE_POSTGRES=1``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from tuneship.cli.models import models_app
from tuneship.errors import RegistryError
from tuneship.registry import DeploymentEntry, ModelEntry, Registry, mask_url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "registry.db"


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    reg = Registry(registry_url)
    yield reg
    reg.close()


def _entry(**overrides: object) -> ModelEntry:
    values: dict[str, object] = {
        "name": "acme/tiny-chat",
        "version": "1",
        "base_model": "acme/tiny-llama",
        "method": "sft",
        "adapter": "lora",
        "dataset_fingerprint": "f00d",
        "metrics": {"base_eval_loss": 3.0, "eval_loss": 2.0},
        "artifact_target": "local",
        "artifact_location": "/store/acme/tiny-chat/revisions/abc",
        "artifact_revision": "abc123def456",
        "flow_run_id": "run-1",
    }
    values.update(overrides)
    return ModelEntry.model_validate(values)


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_upsert_twice_keeps_one_row(registry: Registry, registry_url: str) -> None:
    first = registry.upsert_model(_entry())
    second = registry.upsert_model(
        _entry(metrics={"base_eval_loss": 3.0, "eval_loss": 1.5}, flow_run_id="run-2")
    )

    if registry_url.startswith("sqlite:///"):
        assert Path(registry_url.removeprefix("sqlite:///")).is_file()
    assert _count(registry_url, "models") == 1
    assert second.id == first.id
    assert second.metrics["eval_loss"] == 1.5
    assert second.flow_run_id == "run-2"
    assert second.created_at == first.created_at
    assert first.updated_at is not None and second.updated_at is not None
    assert second.updated_at > first.updated_at
    assert registry.get_model("acme/tiny-chat") == second


def test_upsert_leaves_unset_fields_alone(registry: Registry) -> None:
    registry.upsert_model(_entry())
    updated = registry.upsert_model(
        ModelEntry(name="acme/tiny-chat", version="1", flow_run_id="r9")
    )
    assert updated.flow_run_id == "r9"
    assert updated.artifact_revision == "abc123def456"
    assert updated.metrics == {"base_eval_loss": 3.0, "eval_loss": 2.0}


def test_versions_and_latest(registry: Registry, registry_url: str) -> None:
    registry.upsert_model(_entry())
    assert registry.next_version("acme/tiny-chat") == "2"
    registry.upsert_model(_entry(version="2", artifact_revision="fff"))
    registry.upsert_model(_entry(name="acme/other", version="1"))

    assert _count(registry_url, "models") == 3
    latest = registry.get_model("acme/tiny-chat")
    assert latest is not None and latest.version == "2"
    older = registry.get_model("acme/tiny-chat", "1")
    assert older is not None and older.artifact_revision == "abc123def456"
    assert registry.get_model("acme/tiny-chat", "9") is None
    assert registry.get_model("nobody/none") is None
    assert [(m.name, m.version) for m in registry.list_models()] == [
        ("acme/other", "1"),
        ("acme/tiny-chat", "1"),
        ("acme/tiny-chat", "2"),
    ]
    # Entries survive a fresh connection (data is on disk, not in a session).
    with Registry(registry_url) as again:
        assert len(again.list_models()) == 3


def test_deployments(registry: Registry, registry_url: str) -> None:
    registry.upsert_model(_entry())
    deployment = DeploymentEntry(
        name="tiny-chat-local",
        model_name="acme/tiny-chat",
        model_version="1",
        target="local-vllm",
        url="http://127.0.0.1:8000/v1",
        served_model_name="tiny-chat",
        status="starting",
        details={"max_model_len": 512},
    )
    first = registry.upsert_deployment(deployment)
    again = registry.upsert_deployment(deployment.model_copy(update={"url": "http://h:9/v1"}))
    assert _count(registry_url, "deployments") == 1
    assert again.url == "http://h:9/v1"
    assert again.created_at == first.created_at

    ready = registry.set_deployment_status("tiny-chat-local", "ready")
    assert ready.status == "ready"
    assert ready.updated_at is not None and again.updated_at is not None
    assert ready.updated_at > again.updated_at
    assert registry.get_deployment("tiny-chat-local") == ready
    assert registry.get_deployment("nope") is None
    assert registry.list_deployments("acme/tiny-chat") == [ready]
    assert registry.list_deployments("acme/other") == []

    details = registry.describe_model("acme/tiny-chat")
    assert details is not None
    assert [d.name for d in details.deployments] == ["tiny-chat-local"]
    assert json.loads(details.model_dump_json())["deployments"][0]["status"] == "ready"

    with pytest.raises(RegistryError, match=r"no deployment named 'gone'.*tiny-chat-local"):
        registry.set_deployment_status("gone", "stopped")


def test_registry_errors_name_the_url_without_password(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as caught:
        Registry("nosuchdialect://admin:hunter2@db.example/models")
    assert "hunter2" not in str(caught.value)
    assert "admin:***@db.example" in str(caught.value)
    assert "hunter2" not in mask_url("postgresql+psycopg://admin:hunter2@db/x")

    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(RegistryError, match=r"garbage\.db"):
        Registry(f"sqlite:///{not_a_db}").list_models()

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RegistryError, match="registry sqlite:///"):
        Registry(f"sqlite:///{blocker}/sub/registry.db")


# CLI


def _populate(url: str) -> None:
    with Registry(url) as reg:
        reg.upsert_model(_entry())
        reg.upsert_model(_entry(version="2", metrics={"base_eval_loss": 3.0, "eval_loss": 1.25}))
        reg.upsert_deployment(
            DeploymentEntry(
                name="tiny-chat-pod",
                model_name="acme/tiny-chat",
                model_version="2",
                target="runpod-serverless",
                url="https://api.runpod.ai/v2/abc/openai/v1",
                served_model_name="tiny-chat",
                status="ready",
            )
        )


def test_cli_list_text_and_json(registry_url: str) -> None:
    url = registry_url
    _populate(url)
    runner = CliRunner()

    text = runner.invoke(models_app, ["list", "--registry", url])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0].split()[:2] == ["NAME", "VERSION"]
    assert len(lines) == 3
    assert "1.2500" in lines[2] and "sft/lora" in lines[2]

    raw = runner.invoke(models_app, ["list", "--json", "--registry", url])
    assert raw.exit_code == 0, raw.output
    data = json.loads(raw.output)
    assert [(m["name"], m["version"]) for m in data] == [
        ("acme/tiny-chat", "1"),
        ("acme/tiny-chat", "2"),
    ]
    assert data[1]["metrics"]["eval_loss"] == 1.25


def test_cli_show_text_and_json(registry_url: str) -> None:
    url = registry_url
    _populate(url)
    runner = CliRunner()

    text = runner.invoke(models_app, ["show", "acme/tiny-chat", "--registry", url])
    assert text.exit_code == 0, text.output
    assert "Version:" in text.output and " 2" in text.output
    assert "tiny-chat-pod" in text.output and "runpod-serverless" in text.output

    raw = runner.invoke(
        models_app, ["show", "acme/tiny-chat", "--version", "1", "--json", "--registry", url]
    )
    assert raw.exit_code == 0, raw.output
    data = json.loads(raw.output)
    assert data["version"] == "1"
    assert data["deployments"] == []  # the deployment serves version 2


def test_cli_unknown_model_fails(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    _populate(url)
    result = CliRunner().invoke(models_app, ["show", "acme/missing", "--registry", url])
    assert result.exit_code == 1
    assert "'acme/missing' not found" in result.output
    assert "acme/tiny-chat" in result.output


def test_cli_uses_the_configured_default_registry(_isolated_home: Path) -> None:
    empty = CliRunner().invoke(models_app, ["list"])
    assert empty.exit_code == 0, empty.output
    assert "No models registered" in empty.output
    assert (_isolated_home / "registry.db").is_file()

    _populate(f"sqlite:///{_isolated_home / 'registry.db'}")
    result = CliRunner().invoke(models_app, ["list", "--json"])
    assert len(json.loads(result.output)) == 2


def test_cli_bad_registry_url_fails_cleanly() -> None:
    result = CliRunner().invoke(models_app, ["list", "--registry", "bogus://u:pw@h/db"])
    assert result.exit_code == 1
    assert "u:***@h" in result.output
    assert "pw@" not in result.output


def test_an_older_registry_gains_new_columns_in_place(registry_url: str) -> None:
    # A registry written before dataset_path existed: the current tables minus that column.
    with Registry(registry_url) as reg:
        reg.upsert_model(_entry())
    engine = create_engine(registry_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE models DROP COLUMN dataset_path"))
    engine.dispose()

    with Registry(registry_url) as reg:
        old = reg.get_model("acme/tiny-chat")
        assert old is not None and old.dataset_path is None and old.dataset_fingerprint == "f00d"
        reg.upsert_model(_entry(version="2", dataset_path="data/chat.jsonl"))
        assert [m.dataset_path for m in reg.list_models()] == [None, "data/chat.jsonl"]
    assert _count(registry_url, "models") == 2
