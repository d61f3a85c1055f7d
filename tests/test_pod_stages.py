"""The training pod's pieces: GPU ranking and rental (spot, cloud fallback, CUDA filter),
the stage jobs after the merge, and the OOM-at-start retry of the training job."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from _planning_helpers import FIXTURES
from _runpod_helpers import client_for, training_config
from _training_helpers import make_spec
from fake_hub import FakeHub, fake_hub  # noqa: F401 - fixture
from fake_runpod import GPU_TYPES, FakeRunPod, fake_runpod  # noqa: F401 - fixture

from tuneship.compute.pod_rental import image_cuda_versions, rank_training_gpus, rent_training_pod
from tuneship.compute.runpod import TrainingPod, container_disk_gb
from tuneship.compute.runpod_plan import check_runpod_training
from tuneship.compute.stage_jobs import LoadCheckJobSpec, run_load_check_job, serving_vllm_version
from tuneship.config import PipelineConfig, ServeConfig
from tuneship.runpod.errors import RunPodCapacityError
from tuneship.training.job import main as job_main
from tuneship.training.job import read_job_result
from tuneship.training.oom_retry import FAULT_OOM_ENV, halve_batch


def _config(tmp_path: Path, *extra: str) -> PipelineConfig:
    return training_config(tmp_path, *extra)


def _rent(fake: FakeRunPod, config: PipelineConfig, model_dir: Path) -> tuple[dict, str, float]:
    client = client_for(fake)
    options = check_runpod_training(config, model_dir, client.api_key, client).options
    pod, choice, _count, price = rent_training_pod(
        client,
        name="tuneship-rp-run-train",
        options=options,
        settings=config.compute.runpod,
        docker_args="",
        ports="8765/http",
        env={},
        disk_gb=30,
    )
    return pod, f"{choice.gpu_type_id}|{choice.cloud_type}", price


def test_ranking_is_whole_nvidia_gpus_by_price(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    config = _config(tmp_path)
    client = client_for(fake_runpod)
    options = check_runpod_training(config, tiny_model_dir, client.api_key, client).options
    ranked = rank_training_gpus(options, client.get_gpu_types(), config.compute.runpod)
    ids = [c.gpu_type_id for c in ranked]
    assert ids and all(i.startswith("NVIDIA") and "MIG" not in i for i in ids)
    prices = [c.usd_per_gpu_hour or 0.0 for c in ranked]
    assert prices == sorted(prices) and {c.cloud_type for c in ranked} == {"SECURE"}
    # ALL: every type in the secure cloud first, then the same types in the community one.
    every = _config(tmp_path, "compute.runpod.cloud_type=ALL").compute.runpod
    both = rank_training_gpus(options, client.get_gpu_types(), every)
    assert [c.cloud_type for c in both] == ["SECURE"] * len(ids) + ["COMMUNITY"] * len(ids)


def test_no_capacity_goes_to_the_next_type_then_the_other_cloud(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    fake_runpod.capacity = {"*|SECURE"}
    with pytest.raises(RunPodCapacityError, match="Nothing was created"):
        _rent(fake_runpod, _config(tmp_path), tiny_model_dir)
    assert fake_runpod.leftovers()["pods"] == []
    refused = len(fake_runpod.calls("podFindAndDeployOnDemand"))
    assert refused > 1  # every fitting type was tried in the secure cloud
    _, chosen, price = _rent(
        fake_runpod, _config(tmp_path, "compute.runpod.cloud_type=ALL"), tiny_model_dir
    )
    assert chosen.endswith("|COMMUNITY") and price > 0
    created = fake_runpod.calls("podFindAndDeployOnDemand")[refused:]
    assert [c["input"]["cloudType"] for c in created[:-1]] == ["SECURE"] * (len(created) - 1)
    # The training image is a CUDA 12.8 build: hosts with a 12.8 driver or newer.
    assert created[-1]["input"]["allowedCudaVersions"] == ["12.8", "12.9", "13.0"]


def test_interruptible_rents_a_spot_pod_at_the_minimum_bid(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    config = _config(tmp_path, "compute.runpod.interruptible=true")
    pod, chosen, price = _rent(fake_runpod, config, tiny_model_dir)
    assert fake_runpod.calls("podFindAndDeployOnDemand") == []
    (call,) = fake_runpod.calls("podRentInterruptable")
    gpu = chosen.split("|")[0]
    row = next(g for g in GPU_TYPES if g["id"] == gpu)
    bid = call["input"]["bidPerGpu"]
    assert bid == round(0.02 * row["memoryInGb"] * 0.4, 2) and price == pytest.approx(bid)
    assert fake_runpod.pods[pod["id"]]["interruptible"] is True


def test_image_cuda_versions() -> None:
    assert image_cuda_versions("runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel") == [
        "12.4",
        "12.5",
        "12.6",
        "12.7",
        "12.8",
        "12.9",
        "13.0",
    ]
    assert image_cuda_versions("ghcr.io/acme/trainer:1.2") is None


def test_load_check_without_vllm_is_skipped_with_the_reason(tmp_path: Path) -> None:
    config = _config(tmp_path)
    spec = LoadCheckJobSpec(
        package_dir=str(tmp_path),
        name="rp-run",
        serve=ServeConfig(engine_python=str(tmp_path / "no-such-python")),
        mode="on",
        max_gib=4.0,
        serving_vllm=serving_vllm_version(config),
    )
    result = run_load_check_job(spec)
    assert not result.ran and result.serving_version == "0.27.1"
    assert "the pod image has no vLLM (the serving image runs vLLM 0.27.1)" in result.note


def test_halve_batch_keeps_the_effective_batch(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, per_device_train_batch_size=4)
    half = halve_batch(spec)
    assert half is not None
    t, h = spec.training, half.training
    assert h.per_device_train_batch_size * h.gradient_accumulation_steps == (
        t.per_device_train_batch_size * t.gradient_accumulation_steps
    )
    assert halve_batch(make_spec(tiny_model_dir, tmp_path, per_device_train_batch_size=1)) is None


@pytest.mark.slow
def test_oom_at_the_first_step_is_retried_once_with_half_the_batch(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(tiny_model_dir, tmp_path, per_device_train_batch_size=4)
    spec_file = tmp_path / "train-spec.json"
    spec_file.write_text(spec.model_dump_json())
    monkeypatch.setenv(FAULT_OOM_ENV, "1")
    assert job_main(["train", str(spec_file), str(tmp_path / "result.json")]) == 0
    result = read_job_result(tmp_path / "result.json", "train")
    assert result.global_step == spec.training.max_steps
    (note,) = [n for n in result.notes if "out of memory" in n]
    assert "batch 4 x 1 accumulation; retried with 2 x 2 (same effective batch)" in note
    # A batch of 1 cannot be halved: the job fails with what to change, not a traceback.
    one = make_spec(tiny_model_dir, tmp_path / "one", per_device_train_batch_size=1)
    (tmp_path / "one-spec.json").write_text(one.model_dump_json())
    assert job_main(["train", str(tmp_path / "one-spec.json"), str(tmp_path / "one.json")]) == 1
    failed = json.loads((tmp_path / "one.json").read_text())
    assert failed["error_type"] == "TrainingError"
    assert "per-device batch of 1" in failed["message"]


def test_deployments_list_shows_live_training_pods(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
) -> None:
    from typer.testing import CliRunner

    from tuneship.cli.deployments import deployments_app

    _rent(fake_runpod, _config(tmp_path), tiny_model_dir)
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    text = CliRunner().invoke(deployments_app, ["list", "--registry", registry])
    assert text.exit_code == 0, text.output
    (line,) = [row for row in text.output.splitlines() if "tuneship-rp-run-train" in row]
    assert "training" in line and "running" in line and "/h" in line and "UTC" in line
    raw = CliRunner().invoke(deployments_app, ["list", "--json", "--registry", registry])
    (pod,) = json.loads(raw.output)
    assert pod["kind"] == "training" and pod["usd_per_hour"] > 0 and pod["since"] > 0


def test_local_serving_fetches_the_revision_the_pod_pushed(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tuneship.publishing.base import PublishResult
    from tuneship.tasks.runpod_training import fetch_published_model

    monkeypatch.setenv("HF_TOKEN", fake_hub.add_token("alice"))
    fake_hub.add_folder("alice/tiny-ft", tiny_model_dir)
    revision = fake_hub.head("alice/tiny-ft")
    published = PublishResult(
        target="hub",
        repo_id="alice/tiny-ft",
        revision=revision,
        location=f"{fake_hub.endpoint}/alice/tiny-ft/tree/{revision}",
        created_new_revision=True,
    )
    config = _config(tmp_path, "serve.target=local", f"publish.hub_endpoint={fake_hub.endpoint}")
    folder = Path(fetch_published_model.fn(config, published, str(tmp_path / "served")))
    fetched = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    for original in (p for p in tiny_model_dir.iterdir() if p.is_file()):
        assert fetched[original.name] == original.read_bytes()


def _waiting_pod(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    *settings: str,
    age_s: float = 0.0,
) -> tuple[PipelineConfig, TrainingPod]:
    """A rented pod that runs nothing (no stage result, no status endpoint), ``age_s`` old,
    and its staging repo: what the flow waits on after training."""
    from pydantic import SecretStr

    from tuneship.hub.client import make_api

    token = fake_hub.add_token("alice")
    monkeypatch.setenv("HF_TOKEN", token)
    config = _config(tmp_path, *settings, f"publish.hub_endpoint={fake_hub.endpoint}")
    rented, _, price = _rent(fake_runpod, config, tiny_model_dir)
    staging = "alice/tuneship-rp-run-staging"
    make_api(SecretStr(token), fake_hub.endpoint).create_repo(staging, repo_type="dataset")
    pod = TrainingPod(
        pod_id=rented["id"],
        name="tuneship-rp-run-train",
        gpu_type_id="NVIDIA A40",
        gpu_count=1,
        usd_per_hour=price,
        staging_repo=staging,
        started_at=time.time() - age_s,
    )
    return config, pod


def test_a_stage_after_training_stops_at_the_budget(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A merge that never finishes on the pod stops spending at max_usd, lost pods included."""
    from tuneship.compute.budget import BudgetExceededError, Spend
    from tuneship.compute.runpod import PodLostError
    from tuneship.tasks.runpod_training import merge_on_pod

    # This pod has cost almost nothing yet.
    config, pod = _waiting_pod(
        tmp_path, tiny_model_dir, fake_runpod, fake_hub, monkeypatch, "compute.runpod.max_usd=5"
    )
    # The lost pods before it spent the rest: the merge's first look stops the wait.
    with pytest.raises(BudgetExceededError, match=r"merge stage .*max_usd=5 reached \(\$5\.\d\d"):
        merge_on_pod.fn(config, pod, Spend(usd=5.0, hours=0.1))
    # Within the budget the wait goes on until the pod itself is lost (here: terminated).
    client_for(fake_runpod).terminate_pod(pod.pod_id)
    with pytest.raises(PodLostError, match="before the merge stage finished"):
        merge_on_pod.fn(config, pod, Spend(usd=0.0, hours=0.0))


def test_a_replacement_pod_that_never_starts_up_is_lost_in_any_stage(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pod rented during the package stage whose status endpoint never answers counts as
    lost after startup_timeout_s (the flow then rents another), as in training."""
    from tuneship.compute.pod_watch import PodStartupTimeoutError
    from tuneship.tasks.runpod_training import package_on_pod

    config, pod = _waiting_pod(
        tmp_path,
        tiny_model_dir,
        fake_runpod,
        fake_hub,
        monkeypatch,
        "compute.runpod.startup_timeout_s=2",
        age_s=3.0,
    )
    with pytest.raises(PodStartupTimeoutError, match=r"startup_timeout_s=2 s"):
        package_on_pod.fn(config, pod)


def test_a_hub_base_trained_on_runpod_brings_no_weights_here(
    tmp_path: Path,
    tiny_model_dir: Path,
    fake_runpod: FakeRunPod,  # noqa: F811 - the pre-rental checks ask its catalogue
    fake_hub: FakeHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pod downloads the base itself: here only config, index and tokenizer arrive, the
    folder check passes without weights, and the pod's disk is still sized for them."""
    from tuneship.validation import check_before_training, fetch_base_model

    monkeypatch.setenv("HF_TOKEN", fake_hub.add_token("alice"))
    fake_hub.add_folder("acme/tiny-base", tiny_model_dir)
    config = _config(tmp_path, "model.base=acme/tiny-base")
    folder = fetch_base_model(config)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert not list(folder.glob("*.safetensors")), "the weights stayed on the Hub"
    (base,) = [r for r in check_before_training(config, folder) if r.name == "base model"]
    assert "weights stay on the Hub" in base.detail
    # The pod's disk is sized from the config's parameter count instead (8B in bf16: 16 GB,
    # x 3 for base, checkpoints and merged, + 30 GB).
    llama = tmp_path / "llama-8b"
    llama.mkdir()
    shutil.copy(FIXTURES / "meta-llama--Llama-3.1-8B-Instruct.json", llama / "config.json")
    assert 3 * 16 + 30 <= container_disk_gb(llama, config.compute.runpod) <= 3 * 17 + 30
    # Trained here, the same base is downloaded whole.
    local = _config(tmp_path, "model.base=acme/tiny-base", "compute.provider=local")
    assert list(fetch_base_model(local).glob("*.safetensors"))
