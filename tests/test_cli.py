"""The tuneship command line: config schema, validate, run errors, sub-commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture
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


def _runpod_validate(tmp_path: Path, *overrides: str) -> object:
    sets = [
        "model.base=tuneship-demo://tiny-llama",  # no pre-training needed to validate
        "compute.provider=runpod",
        "publish.target=hub",
        "publish.repo_id=alice/tiny-ft",
        *overrides,
    ]
    args = [item for pair in (("--set", s) for s in sets) for item in pair]
    return runner.invoke(app, ["validate", str(demo_config_path()), *_isolated(tmp_path), *args])


def test_validate_on_runpod_shows_gpu_cost_and_time_and_rents_nothing(
    tmp_path: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_TOKEN", fake_hub.add_token("alice"))
    result = _runpod_validate(tmp_path)
    assert result.exit_code == 0, result.output
    gpu = next(line for line in result.output.splitlines() if "runpod training" in line)
    cost = next(line for line in result.output.splitlines() if "runpod cost" in line)
    assert "NVIDIA" in gpu and "$" in gpu
    assert re.search(r"about [\d.]+ (min|h) \([\d.]+ (min|h)?-?[\d.]+ (min|h)\)", cost), cost
    assert re.search(r"\$[\d.]+ \(\$[\d.]+-\$[\d.]+\)", cost) and "budget $20" in cost

    # Every problem at once: the publish target, the budget and the data; still no pod.
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c",\n', encoding="utf-8")
    result = _runpod_validate(
        tmp_path, "publish.target=local", "compute.runpod.max_usd=0.01", f"data.path={rows}"
    )
    assert result.exit_code == 1
    assert "2 problems" in result.output and f"{rows}:2" in result.output
    assert "publish.target must be 'hub'" in result.output
    assert "buys less than one hour" in result.output
    assert "ok  credentials" in result.output  # what passed is still shown
    assert not fake_runpod.calls("podFindAndDeployOnDemand")
    assert not fake_runpod.calls("podRentInterruptable")


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
