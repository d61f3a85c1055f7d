"""The stages after the merge as serialised jobs: package, vLLM load check, push to the Hub.

A RunPod training pod runs them (``python -m tuneship.training.job package|load_check|
publish SPEC RESULT``) so that the merged weights never leave the data centre; each calls
the same function the local flow's task calls (``package_model``, ``run_load_check``,
``HubPublisher.publish``). The Hub token is ``HF_TOKEN`` from the environment (the pod's
secret), never a spec field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from tuneship.config import PipelineConfig, ServeConfig
from tuneship.errors import PublishError
from tuneship.packaging import CardInfo, PackageResult
from tuneship.publishing.base import PublishResult
from tuneship.serving.engine_check import EngineComparison

_VLLM_TAG = re.compile(r"vllm[-/\w]*:v?(\d+\.\d+\.\d+)")


class PackageJobSpec(BaseModel):
    """Package a merged model folder (card, .gitattributes, verification)."""

    merged_dir: str = Field(description="The merged model folder.")
    output_dir: str = Field(description="Where the package goes.")
    card: CardInfo = Field(description="What the model card says.")
    load_check: bool = Field(True, description="Load the weights and generate one token.")


class LoadCheckJobSpec(BaseModel):
    """Serve the package with vLLM briefly and compare it with transformers."""

    package_dir: str
    name: str = Field(description="The run's name.")
    serve: ServeConfig = Field(description="How to start vLLM, and the smoke question.")
    eval_path: str | None = None
    mode: Literal["auto", "on", "off"] = Field(description="publish.vllm_load_check.")
    max_gib: float = Field(description="'auto' skips packages with more weights than this.")
    serving_vllm: str | None = Field(
        None, description="vLLM version of the serving image, when its tag says it."
    )


class LoadCheckResult(BaseModel):
    """Whether the load check ran, with which vLLM, and what it found."""

    ran: bool
    note: str = Field(description="One line for the run summary.")
    engine_version: str | None = None
    serving_version: str | None = None
    comparisons: list[EngineComparison] = Field(default_factory=list)


class PublishJobSpec(BaseModel):
    """Push a package folder to a Hub model repo."""

    package_dir: str
    repo_id: str
    endpoint: str | None = None
    private: bool = True
    branch: str | None = None
    tags: list[str] = Field(default_factory=list)
    commit_message: str


def serving_vllm_version(config: PipelineConfig) -> str | None:
    """The vLLM version the model will be served with, read from the serving image's tag.

    ``serve.runpod.pod_image`` (``vllm/vllm-openai:v0.27.1`` by default) names it; the
    pinned serverless worker image is built on the same vLLM (docs/runpod.md).
    """
    found = _VLLM_TAG.search(config.serve.runpod.pod_image or "")
    return found.group(1) if found else None


def run_package_job(spec: PackageJobSpec) -> PackageResult:
    """Package the merged folder (``package_model``, as the local task does)."""
    from tuneship.packaging import package_model

    return package_model(
        Path(spec.merged_dir), Path(spec.output_dir), spec.card, load_check=spec.load_check
    )


def run_load_check_job(spec: LoadCheckJobSpec) -> LoadCheckResult:
    """Run the vLLM load check where this process runs, or say why it was skipped.

    A pod image without vLLM skips the check (with the reason) rather than failing the
    run: the model is still verified by the package stage's transformers load. When the
    engine here is another vLLM version than the serving image's, the note says so.

    Raises:
        EngineMismatchError: vLLM answered differently from transformers.
        ServingError: vLLM could not load or serve the model.
    """
    from tuneship.serving.engine import EngineNotFoundError, find_engine_python, probe_engine
    from tuneship.serving.engine_check import raise_on_mismatch
    from tuneship.serving.load_check import run_load_check

    serving = spec.serving_vllm
    if spec.mode == "off":
        return LoadCheckResult(
            ran=False, note="skipped (publish.vllm_load_check=off)", serving_version=serving
        )
    weights = sum(p.stat().st_size for p in Path(spec.package_dir).glob("*.safetensors"))
    if spec.mode == "auto" and weights > spec.max_gib * 1024**3:
        return LoadCheckResult(
            ran=False,
            note=f"skipped: weights above publish.vllm_load_check_max_gib={spec.max_gib:g}",
            serving_version=serving,
        )
    try:
        python = find_engine_python(spec.serve.engine_python)
    except EngineNotFoundError:
        return LoadCheckResult(
            ran=False,
            note=(
                "skipped: the pod image has no vLLM"
                + (f" (the serving image runs vLLM {serving})" if serving else "")
                + "; the package stage's transformers load check passed"
            ),
            serving_version=serving,
        )
    version = probe_engine(str(python))
    comparisons, dtype = run_load_check(spec.serve, spec.package_dir, spec.name, spec.eval_path)
    raise_on_mismatch(comparisons, dtype)
    note = f"passed with vLLM {version} ({dtype}, {len(comparisons)} prompts)"
    if serving and version and version != serving:
        note += (
            f"; the pod image's vLLM {version} is not the serving image's {serving}, "
            "so it does not prove the served engine loads the model"
        )
    return LoadCheckResult(
        ran=True,
        note=note,
        engine_version=version,
        serving_version=serving,
        comparisons=comparisons,
    )


def run_publish_job(spec: PublishJobSpec) -> PublishResult:
    """Push the package to the Hub with ``HF_TOKEN`` (``HubPublisher``, as the local task).

    Raises:
        PublishError: No token in the environment, or the Hub refused.
    """
    from tuneship.publishing.hub import HubPublisher

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise PublishError("the publish job needs HF_TOKEN in its environment")
    publisher = HubPublisher(
        token=SecretStr(token),
        endpoint=spec.endpoint or os.environ.get("HF_ENDPOINT"),
        private=spec.private,
        branch=spec.branch,
        tags=tuple(spec.tags),
    )
    return publisher.publish(
        Path(spec.package_dir), spec.repo_id, commit_message=spec.commit_message
    )
