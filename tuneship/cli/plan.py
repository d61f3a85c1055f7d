"""``tuneship plan``: GPU and memory plans for serving (vLLM) and training.

Exit status: 0 when an option fits, 1 when none does (the plan is still printed), 2 when
the input is wrong (the message says which flag or file).
"""

from __future__ import annotations

import json
from typing import Annotated, Literal, cast

import typer

from tuneship.errors import TuneshipError
from tuneship.planning.gpus import GpuSpec, custom_gpu, find_gpu
from tuneship.planning.model_facts import load_model_facts
from tuneship.planning.render import render_serving_plan, render_training_plan
from tuneship.planning.serving import ServeRequest, ServingPlan, plan_serving
from tuneship.planning.training import TrainingPlan, plan_training

plan_app = typer.Typer(
    help="Plan GPUs, tensor parallelism and memory before anything is rented.",
    no_args_is_help=True,
)


def _auto_or_int(value: str, flag: str) -> int | Literal["auto"]:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = int(value.replace("_", "").replace(",", ""))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a whole number or 'auto'", param_hint=flag
        ) from None
    if number < 1:
        raise typer.BadParameter(f"{number} must be at least 1", param_hint=flag)
    return number


def _auto_or_fraction(value: str, flag: str) -> float | Literal["auto"]:
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number or 'auto'", param_hint=flag) from None
    if not 0 < number <= 1:
        raise typer.BadParameter(f"{number} must be in (0, 1]", param_hint=flag)
    return number


def _fail(exc: TuneshipError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _print_plan(plan: ServingPlan | TrainingPlan, text: str, as_json: bool) -> None:
    """Print a plan as JSON or as its table; exit 1 when no option fits."""
    typer.echo(json.dumps(plan.to_dict(), indent=2) if as_json else text)
    if plan.chosen is None:
        raise typer.Exit(1)


@plan_app.command("serve")
def serve(
    model: Annotated[str, typer.Argument(help="Hub id, local model folder, or config.json.")],
    gpu: Annotated[
        str | None, typer.Option("--gpu", help="GPU name, e.g. 'A100 40GB', 'RTX 4090', 'H100'.")
    ] = None,
    gpu_memory_gib: Annotated[
        float | None,
        typer.Option("--gpu-memory-gib", help="Plan for any other GPU with this much memory."),
    ] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", min=1, help="Number of GPUs.")] = None,
    tp: Annotated[int | None, typer.Option("--tp", min=1, help="Tensor-parallel size.")] = None,
    max_model_len: Annotated[
        str, typer.Option("--max-model-len", help="Context length to check, or 'auto'.")
    ] = "auto",
    gpu_memory_utilization: Annotated[
        str,
        typer.Option(
            "--gpu-memory-utilization", help="Fraction of GPU memory to check, or 'auto'."
        ),
    ] = "auto",
    free_gib: Annotated[
        float | None,
        typer.Option(
            "--free-gib",
            help="Free memory per GPU at start as vLLM reports it (nvidia-smi's free less "
            "about 0.6 GiB for vLLM's CUDA context). Default: the GPU is idle.",
        ),
    ] = None,
    kv_cache_dtype: Annotated[
        str, typer.Option("--kv-cache-dtype", help="auto (16-bit) or fp8.")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Plan vLLM serving: GPU type and count, TP, max_model_len and memory fraction."""
    if gpu and gpu_memory_gib is not None:
        raise typer.BadParameter("give --gpu or --gpu-memory-gib, not both", param_hint="--gpu")
    if kv_cache_dtype not in ("auto", "fp8"):
        raise typer.BadParameter("must be auto or fp8", param_hint="--kv-cache-dtype")
    length = _auto_or_int(max_model_len, "--max-model-len")
    util = _auto_or_fraction(gpu_memory_utilization, "--gpu-memory-utilization")
    try:
        candidates: list[GpuSpec] | None = None
        if gpu:
            candidates = [find_gpu(gpu)]
        elif gpu_memory_gib is not None:
            candidates = [custom_gpu(gpu_memory_gib)]
        facts = load_model_facts(model)
        request = ServeRequest(
            max_model_len=length,
            gpu_memory_utilization=util,
            tensor_parallel_size=tp,
            kv_cache_dtype=cast(Literal["auto", "fp8"], kv_cache_dtype),
        )
        plan = plan_serving(facts, request, gpus=candidates, gpu_count=gpus, free_gib=free_gib)
    except TuneshipError as exc:
        raise _fail(exc) from None
    _print_plan(plan, render_serving_plan(plan), as_json)


@plan_app.command("train")
def train(
    model: Annotated[str, typer.Argument(help="Hub id, local model folder, or config.json.")],
    method: Annotated[
        str, typer.Option("--method", help="lora, qlora or full.", show_default=False)
    ],
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="Tokens per sequence.")] = 2048,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Sequences per GPU per step.")
    ] = 1,
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="Recompute activations in backward.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Plan a fine-tuning run: peak memory by part and the cheapest GPU that holds it."""
    if method not in ("lora", "qlora", "full"):
        raise typer.BadParameter("must be lora, qlora or full", param_hint="--method")
    try:
        facts = load_model_facts(model)
        plan = plan_training(
            facts,
            cast(Literal["lora", "qlora", "full"], method),
            seq_len=seq_len,
            batch_size=batch_size,
            gradient_checkpointing=gradient_checkpointing,
        )
    except TuneshipError as exc:
        raise _fail(exc) from None
    _print_plan(plan, render_training_plan(plan), as_json)
