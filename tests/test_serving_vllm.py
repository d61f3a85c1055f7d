"""A real vLLM server (CPU backend, via .venv-vllm) serving the tiny model.

Each test starts its own server (~40-80 s on 2 cores), so the set is kept small: one
serves and is stopped from the CLI, three prove that an exception, SIGTERM and Ctrl-C
leave no process, three prove start-up failures are reported with vLLM's own words.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from _serving_helpers import (
    Driver,
    assert_group_gone,
    engine_python_or_skip,
    group_pids,
    tiny_serve_options,
)
from typer.testing import CliRunner

from tuneship.cli.deployments import deployments_app
from tuneship.registry import Registry
from tuneship.serving import (
    DeploymentInfo,
    LocalVllmTarget,
    ServerStartError,
    managed_deployment,
    run_smoke_test,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine() -> Path:
    return engine_python_or_skip()


@pytest.fixture
def registry_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


def test_serves_smoke_test_then_cli_stops(
    engine: Path, tiny_model_dir: Path, registry_url: str, tmp_path: Path
) -> None:
    options = tiny_serve_options(engine, keep_serving=True)
    with managed_deployment(
        tiny_model_dir,
        options,
        name="tiny-keep",
        model_name="acme/tiny",
        model_version="1",
        registry_url=registry_url,
    ) as info:
        assert info.url.startswith("http://127.0.0.1:")
        assert info.served_model_name == "tiny-keep"
        result = run_smoke_test(info.url, info.api_key, info.served_model_name)
    pgid = info.pgid
    assert pgid is not None

    # Chat and stream both answered, with the server's token counts.
    assert result.answer.strip() and result.streamed_answer.strip()
    assert result.prompt_tokens and result.prompt_tokens > 0
    assert result.completion_tokens and 0 < result.completion_tokens <= 32
    assert result.stream_completion_tokens and result.stream_completion_tokens > 0
    assert 0 < result.time_to_first_token_s <= result.stream_latency_s

    # keep_serving: still up after the block; the registry has it, without the key.
    assert group_pids(pgid)
    entry = Registry(registry_url).get_deployment("tiny-keep")
    assert entry is not None and entry.status == "running"
    assert entry.details["pgid"] == pgid and entry.details["max_model_len"] == 512
    assert entry.details["backend"] == "cpu" and entry.details["tensor_parallel_size"] == 1
    assert info.api_key not in json.dumps(entry.model_dump(mode="json"))
    assert info.api_key not in repr(info) and "api_key" not in info.model_dump()
    key_file = Path(entry.details["api_key_file"])
    assert key_file.read_text().strip() == info.api_key
    assert key_file.stat().st_mode & 0o077 == 0

    runner = CliRunner()
    listed = runner.invoke(deployments_app, ["list", "--json", "--registry", registry_url])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["name"], r["status"], r["alive"]) for r in rows] == [("tiny-keep", "running", True)]

    stopped = runner.invoke(deployments_app, ["stop", "tiny-keep", "--registry", registry_url])
    assert stopped.exit_code == 0, stopped.output
    assert_group_gone(pgid)
    assert Registry(registry_url).get_deployment("tiny-keep").status == "stopped"  # type: ignore[union-attr]
    again = runner.invoke(deployments_app, ["list", "--json", "--registry", registry_url])
    assert json.loads(again.output)[0]["alive"] is False


def test_exception_in_block_stops_server(
    engine: Path, tiny_model_dir: Path, registry_url: str
) -> None:
    seen: list[DeploymentInfo] = []
    with (
        pytest.raises(RuntimeError, match="flow failed"),
        managed_deployment(
            tiny_model_dir,
            tiny_serve_options(engine, keep_serving=True),  # keep only applies to success
            name="tiny-fail",
            registry_url=registry_url,
        ) as info,
    ):
        seen.append(info)
        assert group_pids(info.pgid or 0)
        raise RuntimeError("flow failed after the server started")
    assert_group_gone(seen[0].pgid or 0)
    assert Registry(registry_url).get_deployment("tiny-fail").status == "failed"  # type: ignore[union-attr]


def test_sigterm_after_ready_stops_server(
    engine: Path, tiny_model_dir: Path, registry_url: str, tmp_path: Path
) -> None:
    driver = Driver(tmp_path, tiny_serve_options(engine), tiny_model_dir, "tiny-term", registry_url)
    pgid = driver.wait_for("ready")["pgid"]
    assert group_pids(pgid)
    driver.proc.send_signal(signal.SIGTERM)
    code, err = driver.finish()
    assert code != 0 and "TerminationRequested" in err
    assert_group_gone(pgid)
    assert Registry(registry_url).get_deployment("tiny-term").status == "stopped"  # type: ignore[union-attr]


def test_ctrl_c_while_starting_stops_server(
    engine: Path, tiny_model_dir: Path, registry_url: str, tmp_path: Path
) -> None:
    driver = Driver(tmp_path, tiny_serve_options(engine), tiny_model_dir, "tiny-int", registry_url)
    pgid = driver.wait_for("started", timeout_s=120)["pgid"]
    deadline = time.monotonic() + 120
    while len(group_pids(pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)  # wait until vLLM has spawned its engine process
    assert len(group_pids(pgid)) >= 2
    driver.proc.send_signal(signal.SIGINT)
    code, err = driver.finish()
    assert code != 0 and "KeyboardInterrupt" in err
    assert_group_gone(pgid)


def test_startup_crash_quotes_vllm(engine: Path, tiny_model_copy: Path) -> None:
    (tiny_model_copy / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    target = LocalVllmTarget()
    with pytest.raises(ServerStartError) as caught:
        target.deploy(tiny_model_copy, tiny_serve_options(engine), name="tiny-corrupt")
    err = caught.value
    assert "exited with code" in str(err)
    assert err.engine_lines, str(err)
    assert any(line in str(err) for line in err.engine_lines)
    assert err.log_path is not None and err.log_path.is_file()
    # The quoted lines are vLLM's own: each appears in its log.
    log_text = err.log_path.read_text()
    assert all(line.split(": ", 1)[-1][:40] in log_text for line in err.engine_lines)


def test_bad_option_is_reported(engine: Path, tiny_model_dir: Path) -> None:
    options = tiny_serve_options(engine, extra_options={"max_num_seqs": "many"})
    with pytest.raises(ServerStartError) as caught:
        LocalVllmTarget().deploy(tiny_model_dir, options, name="tiny-badopt")
    assert "--max-num-seqs" in str(caught.value)
    assert "'many'" in str(caught.value)


def test_readiness_timeout_stops_server(engine: Path, tiny_model_dir: Path) -> None:
    pgids: list[int] = []
    target = LocalVllmTarget(on_start=lambda proc: pgids.append(proc.pid))
    with pytest.raises(ServerStartError, match=r"not ready after serve.startup_timeout_s=4 s"):
        target.deploy(tiny_model_dir, tiny_serve_options(engine, startup_timeout_s=4), name="t")
    assert_group_gone(pgids[0])
