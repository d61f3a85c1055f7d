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
from _runpod_helpers import client_for, run_pods_for_real
from fake_hub import FakeHub, HubError, fake_hub  # noqa: F401 - fixture
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture
from pydantic import SecretStr

from tuneship.compute.runpod_plan import check_runpod_training
from tuneship.config import PipelineConfig, build_config, load_config
from tuneship.errors import ConfigError
from tuneship.validation import RunSecrets, check_before_training

POD_MUTATIONS = ("podFindAndDeployOnDemand", "podRentInterruptable")


def _config(tmp_path: Path, *extra: str) -> PipelineConfig:
    return build_config(
        {},
        [
            "name=rp-run",
            "compute.provider=runpod",
            "publish.target=hub",
            "publish.repo_id=alice/tiny-ft",
            "serve.target=none",
            f"workdir={tmp_path / 'run'}",
            f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
            *extra,
        ],
    )


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


def _kill_first_pod_after_a_checkpoint(fake: FakeRunPod, hub: FakeHub) -> None:
    """Play a host lost mid-training: kill the pod once it pushed its first checkpoint."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            pushed = any(
                p.startswith("checkpoint-") for p in hub.files("alice/tiny-ft", "checkpoints")
            )
        except (KeyError, HubError):  # no repo or no checkpoints branch yet
            pushed = False
        if pushed:
            with fake.lock:
                pods = [p for p in fake.pods.values() if p["name"] == "tuneship-rp-flow-train"]
            if pods:
                fake.kill_pod(pods[0]["id"])
                return
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_whole_flow_survives_a_lost_pod_and_leaves_nothing(
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
    fake_runpod.capacity = {"NVIDIA L4"}  # the cheapest fitting type is full: next one
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
            "publish.vllm_load_check=off",
            "serve.target=none",
            f"workdir={tmp_path / 'run'}",
            f"registry.url=sqlite:///{tmp_path / 'registry.db'}",
        ],
    )

    killer = threading.Thread(
        target=_kill_first_pod_after_a_checkpoint, args=(fake_runpod, fake_hub)
    )
    killer.start()
    try:
        summary = finetune_and_deploy(config)
    finally:
        killer.join(timeout=5)

    created = fake_runpod.calls("podFindAndDeployOnDemand")
    # L4 had no capacity each time; the next fitting type was rented twice (one pod lost).
    rented = [c for c in created if c["input"]["gpuTypeId"] != "NVIDIA L4"]
    assert len(rented) == 2 and len(created) == 4
    logs = "".join(p.read_text() for p in (tmp_path / "pods").glob("*/pod.log"))
    assert "resume: fetched checkpoint-" in logs  # the second pod continued, not from 0
    assert summary.device.startswith("runpod 1 x") and "L4" not in summary.device
    assert summary.published.revision == fake_hub.head("alice/tiny-ft")
    assert summary.training_cost_usd is not None and summary.training_cost_usd >= 0
    entry = Registry(config.registry_url()).get_model("alice/tiny-ft", summary.model_version)
    assert entry is not None and "training_cost_usd" in entry.metrics
    assert fake_runpod.leftovers()["pods"] == [] and not fake_runpod.pod_processes
    assert "alice/tuneship-rp-flow-staging" not in fake_hub.repos
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
