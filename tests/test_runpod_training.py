"""Training on RunPod (compute.provider: runpod) against the fake RunPod API and fake Hub.

Bad inputs are refused before any rental (the fake counts zero pods); the training pod
runs its command for real as a local process on the tiny model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from _planning_helpers import fixture_path
from _runpod_helpers import client_for
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture
from pydantic import SecretStr

from tuneship.compute.runpod import (
    TrainingPod,
    container_disk_gb,
    delete_staging,
    download_merged_model,
    rent_training_pod,
    stage_training_inputs,
    terminate_training_pods,
    training_pod_name,
    wait_for_stage,
)
from tuneship.compute.runpod_plan import check_runpod_training
from tuneship.config import PipelineConfig, build_config
from tuneship.errors import ConfigError
from tuneship.hub.client import make_api
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


def _write_rows(path: Path, n: int) -> str:
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
    return str(path)


@pytest.mark.slow
def test_pod_runs_train_and_merge_for_real(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
) -> None:
    """The staged job runs in the fake's pod process: train, merge, results on the Hub."""
    token = fake_hub.add_token("alice")
    fake_runpod.run_pod_commands = True
    fake_runpod.pod_root = tmp_path / "pods"
    fake_runpod.pod_env = {
        "HF_ENDPOINT": fake_hub.endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_CACHE": str(tmp_path / "pod-hf-cache"),
        "TUNESHIP_POD_ALLOW_CPU": "1",
        # The staged source runs; this checkout's dependencies stand in for the image's.
        "PYTHONNOUSERSITE": "1",
    }
    config = _config(
        tmp_path,
        "training.max_steps=4",
        "training.eval_steps=2",
        "training.require_improvement=false",
    )
    api = make_api(SecretStr(token), fake_hub.endpoint)
    data = tmp_path / "data"
    data.mkdir()
    repo = stage_training_inputs(
        api,
        config,
        tiny_model_dir,
        _write_rows(data / "train.jsonl", 16),
        _write_rows(data / "eval.jsonl", 4),
        "messages",
    )
    assert repo == "alice/tuneship-rp-run-staging"
    client = client_for(fake_runpod)
    choice = check_runpod_training(config, tiny_model_dir, client.api_key, client)
    created, option = rent_training_pod(
        client,
        name=training_pod_name(config.name),
        options=choice.options,
        settings=config.compute.runpod,
        env={"HF_TOKEN": token, "TUNESHIP_STAGING_REPO": repo},
        disk_gb=container_disk_gb(tiny_model_dir, config.compute.runpod),
    )
    pod = TrainingPod(
        pod_id=created["id"],
        name=training_pod_name(config.name),
        gpu_type_id=str(option.runpod_gpu_id),
        gpu_count=option.gpu_count,
        usd_per_hour=float(option.usd_per_hour or 0),
        staging_repo=repo,
        started_at=time.time(),
    )
    try:
        view = fake_runpod.pods[pod.pod_id]
        assert token not in view["dockerArgs"]
        trained = wait_for_stage(client, api, pod, "train", timeout_s=600, poll_s=1)
        assert trained.global_step == 4 and trained.eval_loss is not None
        merged = wait_for_stage(client, api, pod, "merge", timeout_s=600, poll_s=1)
        assert merged.max_abs_logit_diff <= merged.tolerance
        local = download_merged_model(api, repo, tmp_path / "merged")
        assert (local / "config.json").is_file()
    except BaseException:
        print(fake_runpod.pod_log(pod.pod_id))
        raise
    finally:
        terminate_training_pods(client, config.name)
        delete_staging(api, repo)
    assert fake_runpod.leftovers()["pods"] == []
    assert not fake_runpod.pod_processes
