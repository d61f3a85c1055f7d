"""Pipeline configuration: pydantic models, YAML loading, ``--set`` overrides, JSON Schema.

The models are the single source of truth for every option. They are used as the
flow's parameter (so the Prefect UI renders them as a form), loaded from YAML files in
``deployments/``, and exported with ``tuneship config schema``.

Defaults follow the seed notes (``docs/defaults.md`` lists each one with its reason):
eval batch size 2 (eval OOM), eval every 500 steps when evaluating, save strategy
``epoch``, ``save_steps`` 500, ``save_total_limit`` 3, and a 10 % eval split.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tuneship.errors import ConfigError
from tuneship.secrets import looks_like_token, mask_secrets

DataFormat = Literal["auto", "messages", "prompt_completion", "preference", "alpaca", "sharegpt"]
TrainingMethod = Literal["sft", "dpo", "orpo"]
Strategy = Literal["no", "steps", "epoch"]

DEMO_BASE_MODEL = "tuneship-demo://tiny-llama"
VLLM_OPENAI_IMAGE = "vllm/vllm-openai:v0.27.1"
"""vLLM's official server image at the pinned tag the RunPod pod and Docker targets run."""
"""Sentinel base model: the demo builds a tiny Llama model locally instead of downloading."""
DEMO_PRETRAINED_BASE_MODEL = "tuneship-demo://tiny-llama-pretrained"
"""The tiny Llama pre-trained on the demo data's train split (built once, cached)."""
DEMO_MODEL_PREFIX = "tuneship-demo://"
_MODULE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def is_demo_model(base: str) -> bool:
    """Return True when ``base`` names one of the demo's locally built models."""
    return base.startswith(DEMO_MODEL_PREFIX)


def default_home() -> Path:
    """Return tuneship's home folder (``$TUNESHIP_HOME`` or ``~/.tuneship``)."""
    return Path(os.environ.get("TUNESHIP_HOME", Path.home() / ".tuneship")).expanduser()


LITERAL_API_KEY_MESSAGE = (
    "a literal API key is not accepted: a key in the config is stored with the flow run's "
    "parameters. Give it as a Prefect Secret block (`tuneship blocks create serve-key NAME`, "
    "then serve.api_key_block: NAME), or in $TUNESHIP_SERVE_API_KEY, or leave both unset "
    "and a key is generated per deployment (in a 0600 file under "
    "$TUNESHIP_HOME/deployments/<name>/api-key)"
)


def _reject_token_as_block_name(value: str | None) -> str | None:
    """Refuse a token pasted where a block *name* belongs (it would be stored in clear)."""
    if looks_like_token(value):
        raise PydanticCustomError(
            "token_not_block_name",
            "this looks like a token, not a block name; store the token in a block "
            "(`tuneship blocks create ...` or the Prefect UI) and give the block's name here",
        )
    return value


class _Section(BaseModel):
    """Base for config sections: unknown keys are errors, so typos are caught early."""

    # hide_input_in_errors: pydantic's own message (shown by Prefect for a bad parameter)
    # must not echo a token pasted into the wrong field; format_validation_error masks instead.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)


class ModelConfig(_Section):
    """The base model to fine-tune."""

    base: str = Field(
        DEMO_BASE_MODEL,
        description="Hugging Face model id, local model folder, or the demo's tiny model.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to use.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Dtype to load the base in; 'auto' uses the checkpoint's own dtype."
    )
    trust_remote_code: bool = Field(False, description="Allow custom modelling code from the Hub.")


class DataConfig(_Section):
    """Where the training data lives and how to split it."""

    path: str = Field(
        "tuneship-demo://sample",
        description=(
            "A .jsonl, .jsonl.gz, .json, .parquet or .csv file, a datasets.save_to_disk "
            "folder, or a Hub dataset id."
        ),
    )
    format: DataFormat = Field("auto", description="Row format; 'auto' detects it from the keys.")
    subset: str | None = Field(None, description="Hub dataset configuration (subset) name.")
    split: str = Field("train", description="Split to train on, for folders and Hub datasets.")
    eval_split: str | None = Field(
        None,
        description=(
            "Split to evaluate on. When unset, a 'test' or 'validation' split is used if the "
            "data has one, else a seeded split of eval_fraction."
        ),
    )
    eval_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="Share of rows held out for eval."
    )
    seed: int = Field(42, description="Seed for the train/eval split.")
    max_length: int = Field(1024, ge=8, description="Token length at which rows are truncated.")
    max_rows: int | None = Field(None, ge=1, description="Use only the first N rows (for trials).")
    drop_invalid_rows: bool = Field(
        False,
        description=(
            "Drop rows with an empty assistant turn or with chosen equal to rejected (counted "
            "in the data report) instead of failing."
        ),
    )


class LoraSettings(_Section):
    """LoRA adapter settings (ignored for a full fine-tune)."""

    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )
    modules_to_save: list[str] = Field(
        default_factory=list,
        description=(
            "Modules trained in full beside the adapter and merged into the model, e.g. "
            "['embed_tokens', 'norm'] (module names, or dotted paths' ends, of the base model)."
        ),
    )

    @field_validator("modules_to_save")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        """Reject names that cannot be module names, and repeats, before any model loads."""
        bad = [name for name in value if not _MODULE_NAME_RE.fullmatch(name)]
        if bad:
            raise ValueError(
                f"not module names: {bad}; give names such as 'embed_tokens', 'norm' or "
                "'model.norm' (letters, digits and underscores, dot-separated)"
            )
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {repeated}")
        return value


class TrainingConfig(_Section):
    """How to train."""

    method: TrainingMethod = Field("sft", description="sft, dpo or orpo.")
    adapter: Literal["lora", "qlora", "full"] = Field(
        "lora", description="lora, qlora (4-bit base, CUDA only) or full fine-tuning."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)
    max_steps: int = Field(
        -1, description="Stop after this many steps; -1 trains num_train_epochs."
    )
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs when max_steps is -1.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler_type: str = Field("linear", description="transformers scheduler name.")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps used for warm-up.")
    per_device_train_batch_size: int = Field(4, ge=1, description="Training batch size per device.")
    per_device_eval_batch_size: int = Field(
        2, ge=1, description="Eval batch size per device (small: eval OOMs otherwise)."
    )
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps to accumulate.")
    eval_accumulation_steps: int | None = Field(
        None, ge=1, description="Move eval outputs to CPU every N steps (saves GPU memory)."
    )
    eval_strategy: Strategy = Field("steps", description="When to evaluate: no, steps or epoch.")
    eval_steps: int = Field(500, ge=1, description="Evaluate every N steps (eval_strategy=steps).")
    save_strategy: Strategy = Field("epoch", description="When to save checkpoints.")
    save_steps: int = Field(500, ge=1, description="Save every N steps (save_strategy=steps).")
    save_total_limit: int = Field(3, ge=1, description="Checkpoints kept on disk.")
    load_best_model_at_end: bool = Field(
        True, description="Keep the checkpoint with the lowest eval loss (when evaluating)."
    )
    logging_steps: int = Field(10, ge=1, description="Log metrics every N steps.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    resume_from_checkpoint: str | None = Field(
        None, description="Checkpoint folder to resume from, or 'auto' for the newest one."
    )
    train_on_inputs: bool = Field(
        False,
        description="SFT: false puts the loss on the assistant's tokens (chat) or the "
        "completion (prompt/completion) only; true trains on every token.",
    )
    beta: float = Field(0.1, gt=0, description="DPO beta / ORPO lambda.")
    seed: int = Field(42, description="Training seed.")
    require_improvement: bool = Field(
        False, description="Stop before publishing unless eval loss beats the base model's."
    )
    report_to: list[str] = Field(
        default_factory=list,
        description=(
            "Where to report metrics, e.g. ['tensorboard'] (event files under "
            "<workdir>/train/runs), 'wandb' or 'mlflow' where installed; empty: nowhere."
        ),
    )
    trainer_args: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Any other field of the method's TRL config (SFTConfig, DPOConfig, ORPOConfig), "
            "e.g. {weight_decay: 0.01, optim: adamw_torch, max_grad_norm: 0.5}; checked "
            "against that class when the config loads."
        ),
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_reporter(cls, value: Any) -> Any:
        """Accept a single name (``report_to: tensorboard``) as a one-item list."""
        return [value] if isinstance(value, str) else value

    @field_validator("max_steps")
    @classmethod
    def _positive_or_epochs(cls, value: int) -> int:
        """0 (or below -1) would load the model and then train nothing."""
        if value == 0 or value < -1:
            raise ValueError("must be a positive number of steps, or -1 to train num_train_epochs")
        return value

    @field_validator("eval_strategy", "save_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        """Accept YAML's bare ``no``, which YAML 1.1 parsers read as ``False``."""
        return "no" if value is False else value

    @model_validator(mode="after")
    def _align_checkpointing(self) -> TrainingConfig:
        """Make ``load_best_model_at_end`` workable or reject the combination.

        transformers requires the save strategy to equal the eval strategy (and save_steps
        to be a multiple of eval_steps) when it keeps the best model. When the user left
        the save settings at their defaults they follow the eval settings; when the user
        set both, the conflict is an error that names the fields.
        """
        if self.eval_strategy == "no" or not self.load_best_model_at_end:
            return self
        explicit = self.model_fields_set
        if self.save_strategy != self.eval_strategy:
            if "save_strategy" in explicit and "load_best_model_at_end" in explicit:
                raise ValueError(
                    f"training.save_strategy={self.save_strategy!r} must equal "
                    f"training.eval_strategy={self.eval_strategy!r} when "
                    "training.load_best_model_at_end is true"
                )
            object.__setattr__(self, "save_strategy", self.eval_strategy)
        if self.save_strategy == "steps" and "save_steps" not in explicit:
            # Saving exactly when evaluating keeps a checkpoint for every eval point.
            object.__setattr__(self, "save_steps", self.eval_steps)
        if self.save_strategy == "steps" and self.save_steps % self.eval_steps != 0:
            if "save_steps" in explicit:
                raise ValueError(
                    f"training.save_steps={self.save_steps} must be a multiple of "
                    f"training.eval_steps={self.eval_steps} when "
                    "training.load_best_model_at_end is true"
                )
            object.__setattr__(self, "save_steps", self.eval_steps)
        return self

    @model_validator(mode="after")
    def _check_trainer_args(self) -> TrainingConfig:
        """Reject ``trainer_args`` names the method's TRL config cannot take."""
        if not self.trainer_args:
            return self
        # Imported here: trainer_args imports TRL, which config loading otherwise never needs.
        from tuneship.training.trainer_args import find_trainer_args_problems

        problems = find_trainer_args_problems(self.method, self.trainer_args)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def evaluates(self) -> bool:
        """Whether evaluation is on."""
        return self.eval_strategy != "no"


RUNPOD_TRAINING_IMAGE = "runpod/pytorch:2.8.0-py3.11-cuda12.8.1-cudnn-devel-ubuntu22.04"
"""Pod image for training: a pinned tag with a CUDA build of torch that tuneship accepts."""


class RunPodComputeConfig(_Section):
    """Training on a rented RunPod pod (``compute.provider: runpod``; docs/runpod.md)."""

    credentials_block: str | None = Field(
        None,
        description=(
            "RunPodCredentials block name (default: serve.runpod.credentials_block, else the "
            "RUNPOD_API_KEY variable)."
        ),
    )
    gpu_types: list[str] | None = Field(
        None,
        description=(
            "RunPod GPU type ids to try, in this order, e.g. ['NVIDIA L40S'] (default: every "
            "type the training plan finds fitting, cheapest first)."
        ),
    )
    cloud_type: Literal["ALL", "SECURE", "COMMUNITY"] = Field(
        "SECURE", description="Pod cloud type."
    )
    max_usd: float = Field(
        20.0,
        gt=0,
        description=(
            "Most the run may spend on pods (all restarts together); enforced in every stage."
        ),
    )
    max_hours: float = Field(
        12.0, gt=0, description="Most hours of pod time the run may use (all pods together)."
    )
    max_restarts: int = Field(
        2, ge=0, description="New pods rented after a pod dies, resuming from a checkpoint."
    )
    interruptible: bool = Field(
        False, description="Rent interruptible (spot) pods: cheaper, stopped without notice."
    )
    image: str = Field(
        RUNPOD_TRAINING_IMAGE,
        description="Pod image at a pinned tag, with a CUDA build of torch (never ':latest').",
    )
    container_disk_gb: int | None = Field(
        None, ge=10, description="Container disk (default: base weights x 3 + 30 GB)."
    )
    startup_timeout_s: float = Field(
        1200.0, gt=0, description="Image pull and install time allowed before the first stage."
    )
    keep_staging: bool = Field(
        False, description="Keep the private Hub dataset repo the inputs were staged to."
    )
    unresponsive_grace_s: float = Field(
        300.0,
        gt=0,
        description=(
            "A RUNNING pod whose status endpoint does not answer for this long is treated "
            "as lost (restarted from the newest pushed checkpoint)."
        ),
    )
    status_interval_s: float = Field(
        15.0, gt=0, le=60, description="How often the flow reads the pod's status endpoint."
    )
    stop_timeout_s: float = Field(
        600.0,
        gt=0,
        description="When the budget is reached: how long the pod may take to push a checkpoint.",
    )

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        """Refuse an image without a pinned tag: ``:latest`` changes under a run."""
        name = value.rsplit("/", 1)[-1]
        tag = name.split(":", 1)[1] if ":" in name else ""
        if "@sha256:" not in value and (not tag or tag == "latest"):
            raise ValueError(
                f"{value!r} is not pinned; give a release tag or digest, e.g. "
                f"{RUNPOD_TRAINING_IMAGE!r}"
            )
        return value


class ComputeConfig(_Section):
    """Where training runs."""

    provider: Literal["local", "runpod"] = Field(
        "local", description="Compute provider: this machine, or a rented RunPod pod."
    )
    runpod: RunPodComputeConfig = Field(
        default_factory=lambda: RunPodComputeConfig(),
        description="Settings for compute.provider=runpod.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' uses free GPUs when present, else the CPU."
    )
    gpu_count: int = Field(1, ge=1, description="GPUs to hold for training.")
    concurrency_timeout_s: float = Field(
        3600.0, gt=0, description="How long to wait for a GPU another run is using."
    )


class PublishConfig(_Section):
    """Where the packaged model goes."""

    target: Literal["local", "hub"] = Field(
        "local", description="'local' model store (no account) or the Hugging Face 'hub'."
    )
    repo_id: str = Field(
        "tuneship/demo-model",
        pattern=r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$",
        description="namespace/name of the published model.",
    )
    store_path: str | None = Field(
        None, description="Local model store folder (default: $TUNESHIP_HOME/models)."
    )
    private: bool = Field(True, description="Create Hub repos as private.")
    lock: Literal["wait", "fail"] = Field(
        "wait",
        description=(
            "When another run is publishing to the same repo: 'wait' for it (up to "
            "lock_timeout_s) or 'fail' at once."
        ),
    )
    lock_timeout_s: float = Field(
        1800, gt=0, description="Longest wait for another run's publish to the same repo."
    )
    force: bool = Field(
        False,
        description=(
            "Publish even when the model's eval loss is worse than that of the revision it "
            "replaces (registered for the same repo)."
        ),
    )
    license: str | None = Field(None, description="License for the model card (default: base's).")
    load_check: bool = Field(True, description="Load the packaged model before publishing.")
    vllm_load_check: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "Start vLLM on the packaged folder and send one request before publishing, so a "
            "model vLLM cannot load is never published. 'auto': when a vLLM engine is "
            "installed and the weights are at most vllm_load_check_max_gib."
        ),
    )
    vllm_load_check_max_gib: float = Field(
        2.0, gt=0, description="Largest weights (GiB) the 'auto' vLLM load check starts for."
    )

    _check_block_names = field_validator("hf_credentials_block")(_reject_token_as_block_name)

    @field_validator("vllm_load_check", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        """Accept YAML's ``on``/``off``, which YAML 1.1 parsers read as booleans."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    hf_credentials_block: str | None = Field(
        None,
        description=(
            "Name of a HuggingFaceCredentials Prefect block holding the Hub token; when unset "
            "the HF_TOKEN environment variable is used."
        ),
    )
    hub_endpoint: str | None = Field(
        None, description="Hub endpoint URL (default: the block's endpoint, else huggingface.co)."
    )
    branch: str | None = Field(
        None, description="Hub branch to publish to (created if missing); unset for main."
    )
    tags: list[str] = Field(
        default_factory=list, description="Hub tags to point at the published commit."
    )
    push_checkpoints: bool = Field(
        False,
        description=(
            "Push each training checkpoint to the 'checkpoints' branch of repo_id, so "
            "training.resume_from_checkpoint='auto' can continue on a new machine."
        ),
    )


class RunPodServeConfig(_Section):
    """RunPod serving settings (``docs/runpod.md``): images, GPUs, workers, budget, timeouts."""

    _check_block_names = field_validator("credentials_block", "hf_credentials_block")(
        _reject_token_as_block_name
    )

    credentials_block: str | None = Field(
        None,
        description="RunPodCredentials block name (default: the RUNPOD_API_KEY variable).",
    )
    hf_credentials_block: str | None = Field(
        None,
        description=(
            "HuggingFaceCredentials block for private or gated models (default: HF_TOKEN); "
            "the token is passed to RunPod only when the model repo needs it."
        ),
    )
    worker_image: str = Field(
        "runpod/worker-v1-vllm:v2.25.2",
        description="Serverless worker image at a pinned release tag (vLLM 0.27.1).",
    )
    pod_image: str = Field(VLLM_OPENAI_IMAGE, description="Pod image at a pinned tag (same vLLM).")
    gpu_pools: list[str] | None = Field(
        None,
        description=(
            "Serverless GPU pools in priority order, e.g. ['AMPERE_48', 'ADA_48_PRO'] "
            "(default: every pool the planner finds fitting, cheapest first, up to max_pools)."
        ),
    )
    max_pools: int = Field(
        3, ge=1, description="Most serverless pools on an endpoint, or pod GPU types tried."
    )
    gpu_types: list[str] | None = Field(
        None,
        description=(
            "Pod GPU type ids to try in order, e.g. ['NVIDIA L40S'] (default: the planner's "
            "fitting types, cheapest first)."
        ),
    )
    gpu_count: int | None = Field(
        None, ge=1, description="GPUs per worker or pod = TP (default: the planner's choice)."
    )
    cloud_type: Literal["ALL", "SECURE", "COMMUNITY"] = Field(
        "SECURE", description="Pod cloud type."
    )
    workers_min: int = Field(0, ge=0, description="Serverless workers kept warm (billed).")
    workers_max: int = Field(1, ge=1, description="Most serverless workers at once.")
    idle_timeout_s: int = Field(5, ge=1, description="Seconds an idle worker lives.")
    scaler_type: Literal["QUEUE_DELAY", "REQUEST_COUNT"] = Field(
        "QUEUE_DELAY", description="Serverless autoscaler."
    )
    scaler_value: int = Field(4, ge=1, description="Autoscaler threshold.")
    flashboot: bool = Field(True, description="FlashBoot: faster cold starts.")
    network_volume_id: str | None = Field(
        None, description="Network volume for the model cache (serverless and pods)."
    )
    container_disk_gb: int | None = Field(
        None, ge=5, description="Container disk (default: weights x 1.5 + 20 GB)."
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="MAX_NUM_SEQS / --max-num-seqs (default: vLLM's 256)."
    )
    budget_usd_per_hour: float | None = Field(
        None, gt=0, description="Pods: refuse GPUs that cost more per hour (all GPUs)."
    )
    budget_usd_per_day: float | None = Field(
        None,
        gt=0,
        description="Serverless: refuse when a day at workers_max on the dearest pool costs more.",
    )
    queue_timeout_s: float = Field(
        600.0,
        gt=0,
        description="How long a job may wait in the queue with no worker before it is an error.",
    )


class DockerServeConfig(_Section):
    """The ``docker`` target's settings (``docs/serving.md``): engine, image, mounts."""

    host: str | None = Field(
        None,
        description=(
            "Docker engine URL, e.g. unix:///var/run/docker.sock or ssh://user@gpu-box "
            "(default: $DOCKER_HOST, else the local engine)."
        ),
    )
    image: str = Field(
        VLLM_OPENAI_IMAGE,
        description="Server image (override for a CPU build of vLLM or a registry mirror).",
    )
    entrypoint: list[str] | None = Field(
        None,
        description=(
            "Command that starts vLLM's OpenAI server in the image, options appended "
            "(default: the image's own entrypoint, `vllm serve` in vllm/vllm-openai)."
        ),
    )
    mounts: dict[str, str] = Field(
        default_factory=dict,
        description="More read-only bind mounts, host path -> container path.",
    )
    environment: dict[str, str] = Field(
        default_factory=dict, description="More environment variables for the container."
    )
    shm_size: str = Field(
        "8g", description="Shared memory for tensor_parallel_size > 1 (NCCL) without ipc_host."
    )
    ipc_host: bool = Field(
        False, description="Share the host's IPC namespace (--ipc=host) instead of shm_size."
    )
    health_interval_s: float = Field(
        5.0, gt=0, description="Seconds between the container's health checks."
    )
    hf_cache: str | None = Field(
        None,
        description=(
            "Host folder mounted as the container's Hugging Face cache when a Hub repo is "
            "served (default: $HF_HOME or ~/.cache/huggingface)."
        ),
    )


class ServeConfig(_Section):
    """How the model is served after publishing (``docs/serving.md``)."""

    _check_block_names = field_validator("api_key_block")(_reject_token_as_block_name)

    target: Literal["none", "local", "docker", "runpod-serverless", "runpod-pod"] = Field(
        "none",
        description=(
            "'local' runs vLLM on this machine as a child process; 'docker' runs vLLM's "
            "container on a Docker engine (serve.docker); 'runpod-serverless' and "
            "'runpod-pod' deploy to RunPod (docs/runpod.md); 'none' skips."
        ),
    )
    engine_python: str | None = Field(
        None,
        description=(
            "Python of the venv that has vLLM (default: $TUNESHIP_VLLM_PYTHON, "
            "<repo>/.venv-vllm, $TUNESHIP_HOME/vllm-venv)."
        ),
    )
    engine_command: list[str] | None = Field(
        None,
        description=(
            "Command that starts vLLM's OpenAI server, options appended (overrides "
            "engine_python), e.g. ['/opt/vllm/bin/python', '-m', "
            "'vllm.entrypoints.openai.api_server']."
        ),
    )
    host: str = Field("127.0.0.1", description="Address the server binds to.")
    port: int | None = Field(None, ge=1, le=65535, description="Port; unset picks a free one.")
    # The key itself is never a config value: flow parameters are stored in Prefect's
    # database. The config names where it is; the Prefect layer resolves it.
    api_key_block: str | None = Field(
        None,
        description=(
            "Name of a Prefect Secret block holding the API key clients must send (create it "
            "with `tuneship blocks create serve-key NAME`). Unset: $TUNESHIP_SERVE_API_KEY, "
            "else a new random key per deployment. The key is always saved to a 0600 file "
            "beside the server log."
        ),
    )
    served_model_name: str | None = Field(
        None, description="Model name clients ask for (default: the deployment name)."
    )
    max_model_len: Annotated[int, Field(ge=16)] | Literal["auto"] = Field(
        "auto",
        description="Context length; 'auto' uses the model's, capped to what memory allows.",
    )
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | Literal["auto"] = Field(
        "auto",
        description=(
            "Share of each GPU vLLM may take; never more than is free. 'auto' takes the "
            "highest safe value."
        ),
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs the model is split across.")
    gpu_indices: list[int] | None = Field(
        None, description="GPUs to use (default: the least-loaded tensor_parallel_size GPUs)."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights and activation dtype."
    )
    extra_options: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict,
        description=(
            "More vLLM server options: {enforce_eager: true, max_num_seqs: 8} becomes "
            "--enforce-eager --max-num-seqs 8 (false/null are left out)."
        ),
    )
    startup_timeout_s: float = Field(
        1200.0, gt=0, description="How long loading may take (a 70B model needs 10-15 min)."
    )
    cpu_kvcache_space_gib: int | None = Field(
        None,
        ge=1,
        description="KV cache GiB on the CPU backend (default: a quarter of free RAM, 1-8).",
    )
    keep_serving: bool = Field(
        False, description="Leave the server running after a successful run."
    )
    on_existing: Literal["replace", "refuse"] = Field(
        "replace",
        description=(
            "When a server of the same deployment name is still running: stop it and "
            "'replace' it (said in the log), or 'refuse' to deploy."
        ),
    )
    smoke_prompt: str = Field(
        "What is 4 plus 16? Answer in one short sentence.",
        description="The question the smoke test asks the deployed model.",
    )
    smoke_system_prompt: str | None = Field(
        None, description="System message the smoke test sends before its question."
    )
    smoke_temperature: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description=(
            "Sampling temperature of the smoke test (seeded); 0 shows the model's greedy "
            "answer. Untrained test models may answer only whitespace greedily."
        ),
    )
    smoke_test: bool = Field(
        True, description="Send a chat and a streamed chat request before reporting success."
    )
    runpod: RunPodServeConfig = Field(
        default_factory=RunPodServeConfig, description="RunPod targets' settings."
    )
    docker: DockerServeConfig = Field(
        default_factory=DockerServeConfig, description="The docker target's settings."
    )
    # Set only from code (tests, or a caller that resolved the key itself); a private
    # attribute is never serialised, so it cannot reach Prefect's parameters or the registry.
    _api_key: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _reject_literal_api_key(cls, data: Any) -> Any:
        """Refuse ``serve.api_key``: a key in the config would be stored as a flow parameter."""
        if isinstance(data, dict) and "api_key" in data:
            if data["api_key"] is not None:
                raise PydanticCustomError("literal_secret", LITERAL_API_KEY_MESSAGE)
            data = {k: v for k, v in data.items() if k != "api_key"}  # an empty key is no key
        return data

    def with_api_key(self, key: str | SecretStr | None) -> ServeConfig:
        """Return a copy that serves with ``key`` (kept out of every serialisation).

        Args:
            key: The API key clients must send; None keeps the normal resolution.

        Returns:
            A copy of this section carrying the key.
        """
        copy = self.model_copy(deep=True)
        copy._api_key = SecretStr(key) if isinstance(key, str) else key
        return copy

    @property
    def api_key(self) -> SecretStr | None:
        """The key set with :meth:`with_api_key`, if any (never read from the config)."""
        return self._api_key


class RegistryConfig(_Section):
    """Where runs and models are registered."""

    url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the registry (default: sqlite file $TUNESHIP_HOME/registry.db; "
            "postgresql+psycopg://... works too)."
        ),
    )


class PipelineConfig(BaseModel):
    """Everything one run of ``finetune_and_deploy`` needs."""

    # hide_input_in_errors: pydantic's own message (shown by Prefect for a bad parameter)
    # must not echo a token pasted into the wrong field; format_validation_error masks instead.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)

    name: str = Field(
        "tuneship-demo",
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Run name: lowercase letters, digits and dashes.",
    )
    workdir: str | None = Field(
        None,
        description=(
            "Folder of this config's runs, one sub-folder per run "
            "(default: $TUNESHIP_HOME/runs/<name>)."
        ),
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)

    def run_dir(self) -> Path:
        """Return the folder where this run's outputs go."""
        if self.workdir:
            return Path(self.workdir).expanduser()
        return default_home() / "runs" / self.name

    def store_dir(self) -> Path:
        """Return the local model store folder."""
        if self.publish.store_path:
            return Path(self.publish.store_path).expanduser()
        return default_home() / "models"

    def registry_url(self) -> str:
        """Return the registry's SQLAlchemy URL."""
        if self.registry.url:
            return self.registry.url
        return f"sqlite:///{default_home() / 'registry.db'}"


def format_validation_error(error: ValidationError, source: str | None = None) -> str:
    """Turn a pydantic ValidationError into lines of ``field.path: reason``.

    Args:
        error: The pydantic error.
        source: The file the values came from, named in the message when given.

    Returns:
        A message naming every invalid field and why it is invalid.
    """
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(config)"
        reason = item["msg"]
        if item["type"] == "literal_secret":
            path = f"{path}.api_key" if item["loc"] else "api_key"
        if item["type"] == "extra_forbidden":
            reason = "unknown field (check the spelling; `tuneship config schema` lists fields)"
        if (
            "input" in item
            and item["type"] != "extra_forbidden"
            and not isinstance(item["input"], dict)
        ):
            reason += f" (got {item['input']!r})"
        # A token pasted into the wrong field must not be echoed back (logs, Prefect UI).
        lines.append(mask_secrets(f"  {path}: {reason}"))
    where = f" in {source}" if source else ""
    if len(lines) == 1:  # one problem reads best as one line
        return f"invalid configuration{where}: {lines[0].strip()}"
    return f"invalid configuration{where}:\n" + "\n".join(lines)


def _parse_value(raw: str) -> Any:
    """Parse a ``--set`` value as YAML so numbers, booleans, lists and null work."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a nested config dict.

    Args:
        data: The config as a plain dict (changed in place and returned).
        overrides: Items like ``training.max_steps=20``.

    Returns:
        The same dict with the overrides applied.

    Raises:
        ConfigError: An override is not of the form ``key.path=value``.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set {item!r}: expected KEY.PATH=VALUE, e.g. training.max_steps=20"
            )
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = _parse_value(raw)
    return data


def build_config(
    data: dict[str, Any], overrides: list[str] | None = None, source: str | None = None
) -> PipelineConfig:
    """Validate a config dict (plus overrides) into a :class:`PipelineConfig`.

    Args:
        data: Config values.
        overrides: ``a.b=c`` items applied on top.
        source: The file the values came from, for error messages.

    Returns:
        The validated config.

    Raises:
        ConfigError: A value is invalid; the message names each field and the reason.
    """
    merged = apply_overrides(json.loads(json.dumps(data)), overrides or [])
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> PipelineConfig:
    """Load a YAML config file (or the defaults when ``path`` is None) with overrides.

    Args:
        path: A YAML file, or None for the built-in defaults (the demo).
        overrides: ``a.b=c`` items applied on top.

    Returns:
        The validated config.

    Raises:
        ConfigError: The file is missing, is not YAML, or a value is invalid.
    """
    if path is None:
        return build_config({}, overrides)
    from tuneship.config_file import read_config_mapping

    file = Path(path)
    data = read_config_mapping(file)
    config = build_config(data, overrides, source=str(file))
    # The default repo id is the demo's: a user's file that forgot it would publish over it.
    given = "repo_id" in (data.get("publish") or {}) or any(
        item.strip().startswith("publish.repo_id=") for item in overrides or []
    )
    if not given and config.publish.target in ("local", "hub"):
        raise ConfigError(
            f"{file}: publish.repo_id is missing; set where the model is published, "
            "e.g. publish:\n  repo_id: your-name/your-model"
        )
    return config


def config_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of :class:`PipelineConfig`."""
    return PipelineConfig.model_json_schema()
