"""Training on RunPod (compute.provider: runpod) against the fake RunPod API and fake Hub.

Bad inputs are refused before any rental (the fake counts zero pods); the training pod
runs its command for real as a local process on the tiny model.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from _planning_helpers import fixture_path
from _runpod_helpers import client_for, run_pods_for_real, training_config
from fake_hub import FakeHub, HubError, fake_hub  # noqa: F401 - fixture
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture
from pydantic import SecretStr

from tuneship.compute.runpod_plan import check_runpod_training
from tuneship.config import PipelineConfig, build_config, load_config
from tuneship.errors import ConfigError
from tuneship.validation import RunSecrets, check_before_training

POD_MUTATIONS = ("podFindAndDeployOnDemand", "podRentInterruptable")


def _config(tmp_path: Path, *extra: str) -> PipelineConfig:
    return training_config(tmp_path, *extra)


def _pods_rented(fake: FakeRunPod) -> int:
    return sum(len(fake.calls(m)) for m in POD_MUTATIONS)


def test_image_must_be_pinned() -> None:
    with pytest.raises(ConfigError, match="not pinned"):
        build_config({}, ["compute.runpod.image=runpod/pytorch:latest"])
    with pytest.raises(ConfigError, match="not pinned"):
        build_config({}, ["compute.runpod.image=runpod/pytorch"])
    config = build_config({}, ["compute.provider=runpod"])
    assert config.compute.runpod.interruptible is False
    assert "cuda" in config.compute.runpod.image


def test_good_config_picks_cheapest_fitting_gpu_without_renting(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    config = _config(tmp_path)
    secrets = RunSecrets(runpod_api_key=SecretStr(fake_runpod.api_key))
    results = check_before_training(config, tiny_model_dir, secrets)
    detail = next(r.detail for r in results if r.name == "runpod training")
    live = client_for(fake_runpod)
    choice = check_runpod_training(config, tiny_model_dir, secrets.runpod_api_key, live)
    prices = [o.usd_per_hour for o in choice.options]
    assert prices == sorted(prices) and choice.first.runpod_gpu_id in detail
    assert _pods_rented(fake_runpod) == 0


def test_every_problem_refused_before_any_rental(
    tmp_path: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    big = fixture_path("meta-llama--Llama-3.3-70B-Instruct")
    config = _config(tmp_path, "publish.target=local", "training.adapter=full")
    with pytest.raises(ConfigError) as info:
        check_runpod_training(config, big, None)
    message = str(info.value)
    assert "publish.target must be 'hub'" in message
    assert "needs a RunPod API key" in message
    assert "more than any rentable RunPod GPU holds" in message
    assert _pods_rented(fake_runpod) == 0


def test_budget_below_one_hour_refused(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    config = _config(tmp_path, "compute.runpod.max_usd=0.01")
    with pytest.raises(ConfigError, match="buys less than one hour"):
        check_runpod_training(config, tiny_model_dir, SecretStr(fake_runpod.api_key))
    restricted = _config(tmp_path, "compute.runpod.gpu_types=['NVIDIA Nonexistent GPU']")
    with pytest.raises(ConfigError, match="holds no GPU type that fits"):
        check_runpod_training(restricted, tiny_model_dir, SecretStr(fake_runpod.api_key))
    assert _pods_rented(fake_runpod) == 0


def _training_pods(fake: FakeRunPod) -> list[dict[str, object]]:
    with fake.lock:
        return [p for p in fake.pods.values() if p["name"] == "tuneship-rp-flow-train"]


def _kill_in_training_then_in_the_merge(fake: FakeRunPod, hub: FakeHub) -> None:
    """Play two lost hosts: the first pod once it pushed its first checkpoint, the second
    once its merge started."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        try:
            pushed = any(
                p.startswith("checkpoint-") for p in hub.files("alice/tiny-ft", "checkpoints")
            )
        except (KeyError, HubError):  # no repo or no checkpoints branch yet
            pushed = False
        pods = _training_pods(fake)
        if pushed and pods:
            fake.kill_pod(str(pods[0]["id"]))
            break
        time.sleep(0.2)
    while time.monotonic() < deadline:
        pods = _training_pods(fake)
        if pods and "pod: stage merge starts" in fake.pod_log(str(pods[0]["id"])):
            fake.kill_pod(str(pods[0]["id"]))
            return
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_whole_flow_survives_lost_pods_and_leaves_nothing(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneship.demo import demo_config_path
    from tuneship.flows.finetune import finetune_and_deploy
    from tuneship.registry import Registry

    token = fake_hub.add_token("alice")
    monkeypatch.setenv("HF_TOKEN", token)
    fake_hub.add_folder("acme/tiny-base", tiny_model_dir)
    run_pods_for_real(fake_runpod, fake_hub, tmp_path)
    # The cheapest fitting type (24 GB types tie at one price; ids break the tie) is full.
    fake_runpod.capacity = {"NVIDIA GeForce RTX 3090"}
    config = load_config(
        demo_config_path(),
        [
            "name=rp-flow",
            "model.base=acme/tiny-base",
            "compute.provider=runpod",
            "compute.runpod.status_interval_s=2",
            "training.max_steps=40",
            "training.eval_steps=10",
            "training.save_strategy=steps",
            "training.save_steps=10",
            "training.require_improvement=false",
            "publish.target=hub",
            "publish.repo_id=alice/tiny-ft",
            "publish.vllm_load_check=auto",
            "serve.target=none",
            f"workdir={tmp_path / 'run'}",
            f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
        ],
    )

    killer = threading.Thread(
        target=_kill_in_training_then_in_the_merge, args=(fake_runpod, fake_hub)
    )
    killer.start()
    try:
        summary = finetune_and_deploy(config)
    finally:
        killer.join(timeout=5)

    created = fake_runpod.calls("podFindAndDeployOnDemand")
    # The 3090 had no capacity each time; the next type was rented 3 times (two pods lost).
    rented = [c for c in created if c["input"]["gpuTypeId"] != "NVIDIA GeForce RTX 3090"]
    assert len(rented) == 3 and len(created) == 6
    assert {c["input"]["gpuTypeId"] for c in rented} == {"NVIDIA GeForce RTX 4090"}
    logs = {p.read_text() for p in (tmp_path / "pods").glob("*/pod.log")}
    # The Hub base model is fetched by each pod, not uploaded from here with the inputs.
    assert all("pod: fetching the base model acme/tiny-base" in log for log in logs)
    second = next(log for log in logs if "resume: fetched checkpoint-" in log)
    assert "pod: stage merge starts" in second  # the second pod continued, not from 0
    # The third pod resumed at the merge: the adapter was pushed, nothing was retrained.
    (third,) = [log for log in logs if "already done by an earlier pod" in log]
    assert "stages already done by an earlier pod: ['train']" in third
    assert "pod: stage train starts" not in third
    assert "pod: stage merge starts" in third and "pod: stage publish starts" in third
    assert "3 pod(s)" in (summary.training_cost_detail or "")
    assert summary.device == "runpod 1 x NVIDIA GeForce RTX 4090"
    assert summary.published.revision == fake_hub.head("alice/tiny-ft")
    assert summary.training_cost_usd is not None and summary.training_cost_usd >= 0
    entry = Registry(config.registry_url()).get_model("alice/tiny-ft", summary.model_version)
    assert entry is not None and "training_cost_usd" in entry.metrics
    assert fake_runpod.leftovers()["pods"] == [] and not fake_runpod.pod_processes
    assert "alice/tuneship-rp-flow-staging" not in fake_hub.repos
    # Package, load check and push ran on the pod: no weights came back to this machine.
    assert not list((tmp_path / "run").rglob("*.safetensors"))
    assert "on pod tuneship-rp-flow-train" in summary.package_dir
    assert "model.safetensors" in fake_hub.files("alice/tiny-ft", summary.published.revision)
    # The "pod" here is a local process: it has vLLM where this checkout has an engine beside
    # its venv (CI), and none otherwise; either way the summary must say what was proven.
    load_check = summary.load_check or ""
    if "the pod image has no vLLM" in load_check:
        assert "the serving image runs vLLM 0.27.1" in load_check
    else:
        assert load_check.startswith("on the pod: passed with vLLM"), load_check
        assert "not the serving image's 0.27.1" in load_check
    for call in created:  # the training image's CUDA build or newer hosts only
        assert call["input"]["allowedCudaVersions"][0] == "12.8"
    # The Hub token reaches the pod as an environment secret only, never on its command.
    for call in created:
        assert token not in str(call["input"]["dockerArgs"])
        assert {"key": "HF_TOKEN", "value": token} in call["input"]["env"]
    # One random status token per run, also an environment secret only.
    status_tokens = {
        item["value"]
        for call in created
        for item in call["input"]["env"]
        if item["key"] == "TUNESHIP_STATUS_TOKEN"
    }
    assert len(status_tokens) == 1
    assert all(t not in str(c["input"]["dockerArgs"]) for t in status_tokens for c in created)
