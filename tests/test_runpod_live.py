"""A RunPod training pod followed live: status endpoint, start-up, silence, budget, estimate.

The pod-side status endpoint and the flow-side watcher are exercised against the fake
RunPod API (whose proxy URL reaches the pod process's port) and the fake Hub; the one test
with a real pod trains the tiny model on the CPU.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _runpod_helpers import client_for, run_pods_for_real, training_config
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture
from pydantic import SecretStr

from tuneship.compute.budget import (
    Spend,
    budget_exceeded,
    estimate_training_cost,
    training_tokens,
)
from tuneship.compute.pod_job import STAGING_REPO_ENV
from tuneship.compute.pod_rental import rent_training_pod
from tuneship.compute.pod_status import (
    STATUS_PORT,
    STATUS_TOKEN_ENV,
    TOKEN_HEADER,
    PodStatus,
    serve_status,
)
from tuneship.compute.pod_watch import (
    BudgetExceededError,
    PodStartupTimeoutError,
    PodUnresponsiveError,
    read_pod_status,
    watch_training_pod,
)
from tuneship.compute.runpod import (
    TrainingPod,
    stage_training_inputs,
    terminate_training_pods,
    training_pod_command,
    training_pod_name,
)
from tuneship.compute.runpod_plan import check_runpod_training
from tuneship.config import PipelineConfig, load_config
from tuneship.hub.client import make_api
from tuneship.planning import load_model_facts


def _config(tmp_path: Path, *extra: str) -> PipelineConfig:
    return training_config(tmp_path, *extra, name="rp-live")


def _call(url: str, token: str | None, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method)
    if token is not None:
        request.add_header(TOKEN_HEADER, token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_status_endpoint_needs_the_run_token_and_keeps_the_newest_eval_loss(
    tmp_path: Path,
) -> None:
    progress = tmp_path / "progress.jsonl"
    lines = [
        {"step": 10, "max_steps": 40, "logs": {"loss": 2.0, "eval_loss": 2.5}},
        {"step": 11, "max_steps": 40, "logs": {"loss": 1.9}},
    ]
    progress.write_text("".join(json.dumps(line) + "\n" for line in lines))
    status = PodStatus(progress, tmp_path / "stop-requested")
    token = secrets.token_urlsafe(16)
    server = serve_status(status, token, port=0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert _call(url + "/status", None)[0] == 401
        assert _call(url + "/status", "not-" + token)[0] == 401
        assert _call(url + "/stop", "not-" + token, "POST")[0] == 401
        assert not status.stop_requested
        code, answer = _call(url + "/status", token)
        assert code == 200 and answer["progress"]["step"] == 11
        # The step-10 eval loss is kept although the newest report has none.
        assert answer["progress"]["logs"] == {"loss": 1.9, "eval_loss": 2.5}
        assert _call(url + "/stop", token, "POST")[0] == 202
        assert status.stop_requested and (tmp_path / "stop-requested").exists()
    finally:
        server.shutdown()
    with pytest.raises(ValueError, match="needs a token"):
        serve_status(status, "", port=0)


def test_cost_estimate_has_a_range_and_grows_with_the_work(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    params = load_model_facts(tiny_model_dir).param_count
    short, long = (
        _config(tmp_path, f"training.max_steps={n}", "data.max_length=512") for n in (100, 10000)
    )
    estimates = []
    for config in (short, long):
        tokens = training_tokens(config, n_train=1000, mean_row_tokens=300.0)
        estimate = estimate_training_cost(
            config,
            param_count=params,
            gpu_type_id="NVIDIA L4",
            gpu_count=1,
            usd_per_hour=0.5,
            tokens=tokens,
        )
        assert estimate is not None
        assert estimate.hours_low < estimate.hours < estimate.hours_high
        assert estimate.usd_low < estimate.usd < estimate.usd_high
        assert "NVIDIA L4" in estimate.describe() and "$" in estimate.describe()
        estimates.append(estimate)
    assert estimates[1].tokens == 100 * estimates[0].tokens
    assert estimates[1].hours > estimates[0].hours
    # A GPU without a throughput figure gets no made-up estimate.
    unknown = estimate_training_cost(
        short, param_count=params, gpu_type_id="X", gpu_count=1, usd_per_hour=1.0, tokens=1
    )
    assert unknown is None


def test_budget_counts_every_pod(tmp_path: Path) -> None:
    config = _config(tmp_path, "compute.runpod.max_usd=5", "compute.runpod.max_hours=2")
    assert budget_exceeded(config, Spend(usd=4.99, hours=1.9)) is None
    assert "max_usd=5 reached ($5.00 spent)" in str(budget_exceeded(config, Spend(5.0, 0.1)))
    assert "max_hours=2 reached" in str(budget_exceeded(config, Spend(0.1, 2.0)))


def _chat_rows(path: Path, n: int = 64) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            ]
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_pod_progress_is_live_silence_is_a_lost_pod_and_the_budget_stop_pushes_a_checkpoint(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub_token = fake_hub.add_token("alice")
    monkeypatch.setenv("HF_TOKEN", hub_token)
    run_pods_for_real(fake_runpod, fake_hub, tmp_path)
    config = _config(
        tmp_path,
        "data.max_length=64",
        "training.max_steps=100000",  # runs until stopped
        "training.per_device_train_batch_size=2",
        "training.eval_strategy=no",
        "training.require_improvement=false",
        "training.logging_steps=1",
        "training.save_strategy=steps",
        "training.save_steps=100000",  # the only checkpoint is the one the stop asks for
        "compute.runpod.unresponsive_grace_s=2",
        "compute.runpod.status_interval_s=0.3",
        "compute.runpod.stop_timeout_s=180",
    )
    api = make_api(SecretStr(hub_token), fake_hub.endpoint)
    train = _chat_rows(tmp_path / "train.jsonl")
    repo = stage_training_inputs(api, config, tiny_model_dir, str(train), None, "messages")
    client = client_for(fake_runpod)
    choice = check_runpod_training(config, tiny_model_dir, SecretStr(fake_runpod.api_key), client)
    status_token = secrets.token_urlsafe(16)
    env = {"HF_TOKEN": hub_token, STAGING_REPO_ENV: repo, STATUS_TOKEN_ENV: status_token}
    name = training_pod_name(config.name)
    created, gpu, gpu_count, usd_per_hour = rent_training_pod(
        client,
        name=name,
        options=choice.options,
        settings=config.compute.runpod,
        docker_args=training_pod_command(),
        ports=f"{STATUS_PORT}/http",
        env=env,
        disk_gb=40,
    )
    pod = TrainingPod(
        pod_id=str(created["id"]),
        name=name,
        gpu_type_id=gpu.gpu_type_id,
        gpu_count=gpu_count,
        usd_per_hour=usd_per_hour,
        staging_repo=repo,
        started_at=time.time(),
    )
    seen = []

    def freeze_after_some_steps(progress: object) -> None:
        seen.append(progress)
        # Once a speed is known (two reports at different steps: a fast first read can
        # already be past step 4), the container hangs; RunPod still says RUNNING.
        if (getattr(progress, "step", None) or 0) >= 4 and getattr(progress, "tokens_per_s", None):
            fake_runpod.freeze_pod(pod.pod_id)

    try:
        with pytest.raises(PodUnresponsiveError, match="has not answered for"):
            watch_training_pod(
                client,
                api,
                pod,
                config,
                token=status_token,
                spent_before=Spend(0.0, 0.0),
                tokens_per_step=100.0,
                on_progress=freeze_after_some_steps,
            )
        live = [p for p in seen if p.step]
        assert live[-1].max_steps == 100000 and any(p.loss is not None for p in live)
        assert any(p.tokens_per_s and p.eta_s for p in live)
        assert live[-1].cost_usd > 0 and live[-1].phase == "train"

        fake_runpod.thaw_pod(pod.pod_id)
        assert read_pod_status(client, pod.pod_id, "not-the-token") is None
        # Earlier pods of the run spent the whole budget: this one stops after a checkpoint.
        with pytest.raises(BudgetExceededError) as info:
            watch_training_pod(
                client,
                api,
                pod,
                config,
                token=status_token,
                spent_before=Spend(usd=config.compute.runpod.max_usd, hours=0.0),
            )
    finally:
        terminate_training_pods(client, config.name)
    message = str(info.value)
    assert "max_usd=20 reached" in message and re.search(r"\$20\.\d\d spent", message)
    found = re.search(r"checkpoint-\d+", message)
    assert found and "'checkpoints' branch of alice/tiny-ft" in message
    pushed = fake_hub.files("alice/tiny-ft", "checkpoints")
    assert any(path.startswith(found.group(0) + "/") for path in pushed)
    assert fake_runpod.leftovers()["pods"] == [] and not fake_runpod.pod_processes
    log = (tmp_path / "pods" / pod.pod_id / "pod.log").read_text()
    assert status_token not in log and hub_token not in log


def _never_starting_run(
    tmp_path: Path, fake: FakeRunPod, hub: FakeHub, tiny_model_dir: Path, *extra: str
) -> PipelineConfig:
    """A RunPod run whose pods never finish starting up (their proxy answers 502)."""
    from tuneship.demo import demo_config_path

    hub.add_folder("acme/tiny-base", tiny_model_dir)
    fake.pod_boot_polls = 10**9
    return load_config(
        demo_config_path(),
        [
            "name=rp-stuck",
            "model.base=acme/tiny-base",
            "compute.provider=runpod",
            "compute.runpod.status_interval_s=0.3",
            "training.max_steps=5",
            "publish.target=hub",
            "publish.repo_id=alice/tiny-ft",
            "publish.vllm_load_check=off",
            "serve.target=none",
            f"workdir={tmp_path / 'run'}",
            f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
            *extra,
        ],
    )


def _artifact_markdown(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return str(found[-1].data) if found else ""


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_start_up_timeout_restarts_then_fails_naming_the_phase(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneship.flows.finetune import finetune_and_deploy

    monkeypatch.setenv("HF_TOKEN", fake_hub.add_token("alice"))
    config = _never_starting_run(
        tmp_path,
        fake_runpod,
        fake_hub,
        tiny_model_dir,
        "compute.runpod.startup_timeout_s=2",
        "compute.runpod.max_restarts=1",
    )
    with pytest.raises(PodStartupTimeoutError, match=r"start-up phase .*startup_timeout_s=2 s"):
        finetune_and_deploy(config)
    assert len(fake_runpod.calls("podFindAndDeployOnDemand")) == 2  # one restart, then it fails
    assert "start-up phase" in _artifact_markdown("rp-stuck-pod-restart-1")
    assert "NVIDIA" in _artifact_markdown("rp-stuck-cost-estimate")
    assert fake_runpod.leftovers()["pods"] == []
    assert "alice/tuneship-rp-stuck-staging" not in fake_hub.repos


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_budget_reached_fails_the_run_saying_what_was_spent(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneship.flows.finetune import finetune_and_deploy

    monkeypatch.setenv("HF_TOKEN", fake_hub.add_token("alice"))
    config = _never_starting_run(
        tmp_path,
        fake_runpod,
        fake_hub,
        tiny_model_dir,
        "compute.runpod.max_hours=0.0005",  # 1.8 s of pod time
        "compute.runpod.stop_timeout_s=1",
    )
    with pytest.raises(BudgetExceededError, match=r"max_hours=0.0005 reached.*\$[\d.]+ spent"):
        finetune_and_deploy(config)
    assert len(fake_runpod.calls("podFindAndDeployOnDemand")) == 1
    assert fake_runpod.leftovers()["pods"] == []
    assert "alice/tuneship-rp-stuck-staging" not in fake_hub.repos
