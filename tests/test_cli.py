"""The tuneship command line: config schema, validate, run errors, sub-commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuneship.cli import app
from tuneship.demo import demo_config_path

runner = CliRunner()


def _isolated(tmp_path: Path) -> list[str]:
    return [
        "--set",
        f"workdir={tmp_path / 'run'}",
        "--set",
        f"publish.store_path={tmp_path / 'store'}",
        "--set",
        f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
        "--set",
        "serve.target=none",
        "--set",
        "publish.vllm_load_check=off",
    ]


def test_config_schema_is_json_schema_of_the_pipeline_config() -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["title"] == "PipelineConfig"
    assert "training" in schema["properties"]


def test_config_show_applies_overrides() -> None:
    result = runner.invoke(
        app, ["config", "show", str(demo_config_path()), "--set", "training.max_steps=7"]
    )
    assert result.exit_code == 0, result.output
    assert "max_steps: 7" in result.output


def test_validate_passes_on_the_demo_config_and_trains_nothing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(demo_config_path()), *_isolated(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ok  data" in result.output and "nothing was started" in result.output
    assert not (tmp_path / "run").exists()


def test_validate_reports_a_malformed_line_and_exits_non_zero(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c",\n', encoding="utf-8")
    result = runner.invoke(
        app,
        ["validate", str(demo_config_path()), *_isolated(tmp_path), "--set", f"data.path={data}"],
    )
    assert result.exit_code == 1
    assert f"{data}:2" in result.output


def test_validate_names_an_invalid_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("training:\n  per_device_eval_batch_size: 0\n", encoding="utf-8")
    result = runner.invoke(app, ["validate", str(cfg)])
    assert result.exit_code == 1
    assert "training.per_device_eval_batch_size" in result.output
    assert str(cfg) in result.output


@pytest.mark.slow
def test_run_rejects_dpo_on_chat_data_before_training(tmp_path: Path) -> None:
    # A real process: the run goes through Prefect's own ephemeral API, as for a user.
    import os
    import subprocess
    import sys

    # Its own Prefect home too: the ephemeral API migrates the database it finds.
    env = {
        **os.environ,
        "TUNESHIP_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tuneship.cli",
            "run",
            str(demo_config_path()),
            *_isolated(tmp_path),
            "--set",
            "training.method=dpo",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "chosen" in proc.stderr and "rejected" in proc.stderr
    # One error line; Prefect's tracebacks of a user error stay out of the console.
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    # Prefect's queued run logs reach its temporary API before it stops, so nothing is
    # printed after the error line.
    assert proc.stderr.rstrip().splitlines()[-1].startswith("error:"), proc.stderr[-500:]
    assert "Error logging to API" not in proc.stderr
    assert not (tmp_path / "run" / "train").exists()


@pytest.mark.parametrize("group", ["models", "plan", "blocks", "deployments"])
def test_sub_commands_are_mounted(group: str) -> None:
    result = runner.invoke(app, [group, "--help"])
    assert result.exit_code == 0, result.output
