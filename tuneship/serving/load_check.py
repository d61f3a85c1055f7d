"""The pre-publish vLLM load check: serve a packaged folder briefly, compare with transformers.

Shared by the flow's ``load-check-with-vllm`` task (on this machine) and the RunPod
training pod's ``load_check`` stage, so both run the same check.
"""

from __future__ import annotations

from pathlib import Path

from tuneship.config import ServeConfig
from tuneship.serving.engine_check import EngineComparison


def run_load_check(
    serve: ServeConfig, package_dir: str | Path, name: str, eval_path: str | None = None
) -> tuple[list[EngineComparison], str]:
    """Serve ``package_dir`` with vLLM and check it answers as transformers does.

    The engine's greedy continuations of the smoke question and a few eval prompts are
    scored by transformers (float32) on the same folder. The server is always stopped.

    Args:
        serve: The ``serve`` section (how to start vLLM, the smoke question).
        package_dir: The packaged model folder.
        name: The run's name (the short-lived server is ``<name>-load-check``).
        eval_path: The run's eval rows, whose prompts are also checked.

    Returns:
        Per prompt: both answers and the log-probability gap; and the engine's dtype.

    The caller judges the comparisons with ``engine_check.raise_on_mismatch`` (after
    showing them).

    Raises:
        ServingError: vLLM could not load or serve the model; its own message is quoted.
    """
    from tuneship.serving.engine_check import (
        ReferenceModel,
        check_prompts,
        compare_with_engine,
    )
    from tuneship.serving.lifecycle import managed_deployment
    from tuneship.serving.placement import plan_local_server

    folder = str(package_dir)
    chats = check_prompts(serve.smoke_prompt, serve.smoke_system_prompt, eval_path)
    reference = ReferenceModel(folder)
    # The load check is tuneship's own short-lived server: a generated key, not the user's.
    options = serve.model_copy(
        update={"target": "local", "keep_serving": False, "api_key_block": None}
    )
    plan = plan_local_server(folder, options)
    with managed_deployment(
        folder, options, name=f"{name}-load-check", keep=False, plan=plan
    ) as info:
        comparisons = compare_with_engine(
            reference, chats, info.url, info.api_key, info.served_model_name
        )
    return comparisons, plan.dtype
