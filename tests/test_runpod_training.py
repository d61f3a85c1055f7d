"""Training on RunPod (compute.provider: runpod) against the fake RunPod API and fake Hub.

Bad inputs are refused before any rental (the fake counts zero pods); the training pod
runs its command for real as a local process on the tiny model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _planning_helpers import fixture_path
from _runpod_helpers import client_for
from fake_runpod import FakeRunPod, fake_runpod  # noqa: F401 - fixture
from pydantic import SecretStr

from tuneship.compute.runpod_plan import check_runpod_training
from tuneship.config import PipelineConfig, build_config
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
