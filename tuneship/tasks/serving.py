"""Tasks: choose GPUs/TP for serving (the plan) and smoke-test a started endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tuneship.config import PipelineConfig, ServeConfig
from tuneship.serving.engine_check import EngineComparison
from tuneship.serving.placement import LocalPlan
from tuneship.serving.smoke import SmokeResult
from tuneship.tasks._common import ENDPOINT_RETRY, artifact_key, get_logger, pipeline_task


@pipeline_task("choose-gpus-and-tp", run_name="plan-serving-{run_name}")
def plan_local_serving(model_dir: str, serve: ServeConfig, run_name: str) -> LocalPlan:
    """Choose backend, GPUs, TP, memory share and context length before starting vLLM.

    A request that cannot fit (e.g. a context longer than the KV cache can hold, or a
    memory share above what is free) fails here, before any server starts.

    Args:
        model_dir: The packaged model folder.
        serve: The ``serve`` config section.
        run_name: The run's name, for the artifact key.

    Returns:
        The plan the server is started with (the target does not plan again).
    """
    from tuneship.serving.placement import plan_local_server

    plan = plan_local_server(model_dir, serve)
    rows: list[dict[str, Any]] = [
        {"setting": "backend", "value": plan.backend},
        {"setting": "dtype", "value": plan.dtype},
        {"setting": "GPUs", "value": ",".join(map(str, plan.gpu_indices)) or "-"},
        {"setting": "tensor_parallel_size", "value": plan.tensor_parallel_size},
        {"setting": "gpu_memory_utilization", "value": plan.gpu_memory_utilization or "-"},
        {"setting": "max_model_len", "value": plan.max_model_len or "vLLM default"},
        {"setting": "cpu_kvcache_space_gib", "value": plan.cpu_kvcache_space_gib or "-"},
        *({"setting": "note", "value": note} for note in plan.notes),
    ]
    create_table_artifact(
        table=rows,
        key=artifact_key(run_name, "serving-plan"),
        description="How the model will be served, and why",
    )
    get_logger().info(
        "serving plan: %s, dtype %s, TP %d, max_model_len %s",
        plan.backend,
        plan.dtype,
        plan.tensor_parallel_size,
        plan.max_model_len,
    )
    return plan


@pipeline_task("smoke-test-endpoint", ENDPOINT_RETRY, run_name="smoke-test-{served_model_name}")
def smoke_test_endpoint(
    url: str,
    api_key_file: str,
    served_model_name: str,
    run_name: str,
    prompt: str | None = None,
    temperature: float = 0.0,
    system_prompt: str | None = None,
) -> SmokeResult:
    """Send one chat completion and one streamed one; fail on an error or an empty answer.

    The API key is read from its 0600 file here, so it never becomes a task parameter
    (parameters are stored by the Prefect API).

    Args:
        url: The endpoint's OpenAI base URL.
        api_key_file: File holding the endpoint's API key.
        served_model_name: The model name clients send.
        run_name: The run's name, for the artifact key.
        prompt: The question to ask (default: the smoke test's own).
        temperature: Sampling temperature; 0 is the greedy answer.
        system_prompt: A system message sent before the question.

    Returns:
        Latencies, token counts and the answers.
    """
    from tuneship.serving.smoke import run_smoke_test

    api_key = Path(api_key_file).read_text(encoding="utf-8").strip()
    extra: dict[str, Any] = {"temperature": temperature, "system_prompt": system_prompt}
    if prompt:
        extra["prompt"] = prompt
    result = run_smoke_test(url, api_key, served_model_name, **extra)
    create_markdown_artifact(
        markdown="\n".join(
            [
                f"Endpoint `{url}` (model `{served_model_name}`)",
                "",
                "| measure | value |",
                "|---|---|",
                f"| latency (s) | {result.latency_s:.3f} |",
                f"| time to first token (s) | {result.time_to_first_token_s:.3f} |",
                f"| prompt tokens | {result.prompt_tokens} |",
                f"| completion tokens | {result.completion_tokens} |",
                f"| answer | {result.answer[:200]!r} |",
            ]
        ),
        key=artifact_key(run_name, "smoke-test"),
        description="Smoke test of the deployed endpoint",
    )
    get_logger().info("smoke test: %.2fs, answer %r", result.latency_s, result.answer[:80])
    return result


def should_check_with_vllm(config: PipelineConfig, package_dir: str) -> bool:
    """Decide whether the pre-publish vLLM load check runs (``publish.vllm_load_check``).

    Raises:
        ServingError: The check is ``on`` but no vLLM engine is installed (the message has
            the install command).
    """
    from tuneship.serving.engine import EngineNotFoundError, find_engine_python

    mode = config.publish.vllm_load_check
    if mode == "off":
        return False
    if mode == "on":
        find_engine_python(config.serve.engine_python)
        return True
    weights = sum(p.stat().st_size for p in Path(package_dir).glob("*.safetensors"))
    if weights > config.publish.vllm_load_check_max_gib * 1024**3:
        return False
    try:
        find_engine_python(config.serve.engine_python)
    except EngineNotFoundError:
        return False
    return True


@pipeline_task("load-check-with-vllm", run_name="vllm-load-check-{config.name}")
def check_loads_in_vllm(
    config: PipelineConfig, package_dir: str, eval_path: str | None = None
) -> list[EngineComparison]:
    """Serve the packaged folder with vLLM and check it answers as transformers does.

    The engine's greedy continuations of the smoke question and a few eval prompts are
    scored by transformers (float32) on the same folder, before anything is published.
    The server is always stopped at the end (and on any failure).

    Args:
        config: The run's configuration (its ``serve`` section says how to start vLLM).
        package_dir: The packaged model folder.
        eval_path: The run's eval rows, whose prompts are also checked.

    Returns:
        Per prompt: the engine's and transformers' answers and the log-probability gap.

    Raises:
        EngineMismatchError: The engine's answers are not transformers' (both are quoted,
            with the likely cause).
        ServingError: vLLM could not load or serve the model; its own message is quoted.
    """
    from tuneship.serving.engine_check import raise_on_mismatch
    from tuneship.serving.load_check import run_load_check

    comparisons, dtype = run_load_check(config.serve, package_dir, config.name, eval_path)
    create_table_artifact(
        table=[
            {
                "prompt": c.prompt[:80],
                "vLLM": c.engine_answer,
                "transformers": c.reference_answer,
                "max log-prob gap": round(c.max_gap, 3),
            }
            for c in comparisons
        ],
        key=artifact_key(config.name, "engine-check"),
        description=f"vLLM ({dtype}) against transformers on the packaged folder",
    )
    raise_on_mismatch(comparisons, dtype)
    for c in comparisons:
        if c.engine_answer.strip() != c.reference_answer.strip():
            # A near-tie (within the gap) resolved differently by rounding: worth seeing.
            get_logger().warning(
                "vLLM and transformers took different near-tied paths for %r: vLLM %r, "
                "transformers %r (largest log-prob gap %.3f)",
                c.prompt[:80],
                c.engine_answer,
                c.reference_answer,
                c.max_gap,
            )
    get_logger().info(
        "vLLM load check passed (%s): %d prompts answered as transformers does, largest "
        "log-prob gap %.3f; e.g. %r",
        dtype,
        len(comparisons),
        max(c.max_gap for c in comparisons),
        comparisons[0].engine_answer[:80],
    )
    return comparisons


@pipeline_task("reference-answer")
def answer_with_transformers(model_dir: str, serve: ServeConfig) -> str:
    """Return transformers' greedy answer to the smoke question on the served folder.

    The smoke test reports it next to the served answer, so a reader sees at once whether
    the endpoint serves the model that was trained.

    Args:
        model_dir: The served (packaged) model folder.
        serve: The ``serve`` section (its smoke question and system prompt).

    Returns:
        The answer transformers generates greedily in float32.
    """
    from tuneship.serving.engine_check import reference_chat_answer

    return reference_chat_answer(model_dir, serve.smoke_prompt, serve.smoke_system_prompt)


def wants_base_answer(config: PipelineConfig) -> bool:
    """Whether the run asks the base model the smoke question before training.

    Only where the fine-tune's answer is also computed with transformers on this machine
    (a local or Docker server, greedy smoke test, local training), so before and after
    answer the same question the same way and no large remote base is loaded here.
    """
    from tuneship.tasks.credentials import RUNPOD_TARGETS

    return (
        config.serve.target not in ("none", *RUNPOD_TARGETS)
        and config.serve.smoke_test
        and config.serve.smoke_temperature == 0
        and config.compute.provider == "local"
    )


@pipeline_task("base-model-answer")
def answer_with_base_model(base_dir: str, serve: ServeConfig) -> str:
    """Return the base model's greedy answer to the smoke question, before training.

    The summary shows it beside the fine-tune's answer, so a reader sees what training
    changed.

    Args:
        base_dir: The base model folder.
        serve: The ``serve`` section (its smoke question and system prompt).

    Returns:
        The answer transformers generates greedily in float32 on the base model.
    """
    from tuneship.serving.engine_check import reference_chat_answer

    answer = reference_chat_answer(base_dir, serve.smoke_prompt, serve.smoke_system_prompt)
    get_logger().info("before training, the base model answers %r", answer[:200])
    return answer
