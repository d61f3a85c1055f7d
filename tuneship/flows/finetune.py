"""The main flow: data → compute → train with eval → gate → merge → package → publish → register."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, tags
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from tuneship.config import PipelineConfig, build_config, default_home, load_config
from tuneship.data import PreparedData
from tuneship.evaluation import GateResult, check_eval_gate
from tuneship.flows.run_labels import build_run_tags, name_flow_run, tag_current_flow_run
from tuneship.packaging import CardInfo
from tuneship.packaging.run_card import build_card_info, build_model_entry
from tuneship.publishing.base import PublishResult
from tuneship.registry import ModelEntry
from tuneship.runs import (
    check_not_worse_than_published,
    config_for_run_folder,
    new_run_dir,
    publish_journal,
    publish_lock,
    read_interrupted_publish,
)
from tuneship.tables import escape_markdown_text, format_markdown_table
from tuneship.tasks._common import artifact_key, get_logger
from tuneship.tasks.compute import hold_gpu_slots, provision_compute
from tuneship.tasks.credentials import RUNPOD_TARGETS, load_target
from tuneship.tasks.data import prepare_dataset_split
from tuneship.tasks.planning import plan_training_memory
from tuneship.tasks.preflight import (
    check_before_training_task,
    check_credentials_task,
    resolve_base_model_task,
)
from tuneship.tasks.publishing import package_merged_model, publish_model, register_model
from tuneship.tasks.serving import (
    answer_with_base_model,
    answer_with_transformers,
    check_loads_in_vllm,
    plan_local_serving,
    should_check_with_vllm,
    smoke_test_endpoint,
    wants_base_answer,
)
from tuneship.tasks.training import merge_adapter, train_model
from tuneship.training.merge import describe_merge_check
from tuneship.training.specs import (
    MergeResult,
    TrainResult,
    build_merge_spec,
    build_train_spec,
)


class DeploymentSummary(BaseModel):
    """Where the model is served (or was, when the server was stopped at the end)."""

    name: str
    url: str
    served_model_name: str
    kept_running: bool
    api_key_file: str | None
    question: str
    answer: str
    latency_s: float
    reference_answer: str = ""


class RunSummary(BaseModel):
    """What one pipeline run produced; small, JSON-friendly."""

    name: str
    flow_run_id: str | None
    base_model: str
    device: str
    n_train: int
    n_eval: int
    dataset_fingerprint: str
    base_eval_loss: float | None
    eval_loss: float | None
    gate: str
    merge_check: str | None = None
    load_check: str | None = None
    training_notes: list[str] = []
    base_answer: str = ""
    merged_dir: str
    package_dir: str
    published: PublishResult
    registry_url: str
    model_name: str
    model_version: str
    deployment: DeploymentSummary | None = None
    training_cost_usd: float | None = None
    training_cost_detail: str | None = None


def resolve_flow_config(
    config: PipelineConfig | dict[str, Any] | None,
    config_file: str | None,
    overrides: list[str] | None,
) -> PipelineConfig:
    """Pick the run's config from the flow's parameters: ``config`` wins when given.

    A deployment's form shows ``config_file`` pre-filled from the deployment and ``config``
    as a form; a user who fills in the form means the form, so a non-empty ``config``
    is used and ``config_file`` is ignored. Without ``config``, ``config_file`` is read;
    without either, the defaults (the demo) run. ``overrides`` apply on top.

    Args:
        config: The config object, or its JSON form (a deployment's parameters).
        config_file: A YAML config file.
        overrides: ``a.b=c`` items.

    Returns:
        The validated config.

    Raises:
        ConfigError: A value is invalid or the file cannot be read.
    """
    if isinstance(config, dict):
        config = build_config(config, []) if config else None
    if config is not None:
        if overrides:
            return build_config(config.model_dump(mode="json", exclude_unset=True), overrides)
        return config
    if config_file:
        return load_config(config_file, overrides or [])
    if overrides:
        return build_config({}, overrides)
    return PipelineConfig()


def cleanup_pipeline_run(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (``on_crashed``, ``on_cancellation``): delete the run's RunPod resources
    or its container.

    Hooks can run in another process, so the resources are found by their deterministic
    name (``tuneship-<config.name>``), read from the flow run's parameters.
    """
    from prefect.logging.loggers import flow_run_logger

    from tuneship.errors import TuneshipError

    logger = flow_run_logger(flow_run, flow)
    params = dict(getattr(flow_run, "parameters", None) or {})
    try:
        config = resolve_flow_config(
            params.get("config"), params.get("config_file"), params.get("overrides")
        )
    except TuneshipError as exc:
        logger.error("cleanup: cannot read the run's config (%s); check RunPod by hand", exc)
        return
    from tuneship.tasks.deploy import delete_run_resources

    if config.compute.provider == "runpod":
        from tuneship.tasks.runpod_training import release_training_pod

        try:
            release_training_pod(config, None)
        except TuneshipError as exc:
            logger.error(
                "cleanup: could not terminate pod tuneship-%s-train (%s); check RunPod by hand",
                config.name,
                exc,
            )

    delete_run_resources(
        logger,
        config.serve.target,
        config.serve.runpod.credentials_block,
        config.name,
        state.name,
        config.serve.docker,
    )


def _current_flow_run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


# log_prints stays off: it replaces print(), which breaks libraries that capture their own
# printed output (dill reads dis.dis output this way while datasets hashes functions).
@flow(
    name="finetune-and-deploy",
    flow_run_name=name_flow_run,
    log_prints=False,
    on_crashed=[cleanup_pipeline_run],
    on_cancellation=[cleanup_pipeline_run],
)
def finetune_and_deploy(
    config: PipelineConfig | None = None,
    config_file: str | None = None,
    overrides: list[str] | None = None,
) -> RunSummary:
    """Fine-tune a base model on a dataset and publish, register (and later serve) it.

    Args:
        config: The whole run's configuration (the UI renders it as a form); the defaults
            run the demo.
        config_file: A YAML config (e.g. ``deployments/demo.yaml``), read when ``config``
            is not given (a filled-in ``config`` form wins); relative paths are relative to
            the working directory.
        overrides: ``a.b=c`` items applied on top of ``config_file`` or ``config``.

    Returns:
        A summary of what the run produced.

    Raises:
        ConfigError: A config value is invalid or the config file cannot be read.
    """
    from tuneship.secrets import install_secret_filter

    install_secret_filter()
    form_given = config is not None and config != {}
    resolved = resolve_flow_config(config, config_file, overrides)
    if form_given and config_file:
        get_logger().info(
            "the config parameter was given, so config_file %s was not read", config_file
        )
    run_tags = build_run_tags(resolved)
    tag_current_flow_run(run_tags)
    with tags(*run_tags):
        return run_pipeline(resolved)


def run_pipeline(config: PipelineConfig) -> RunSummary:
    """The pipeline's steps for a resolved config (inside ``finetune_and_deploy``).

    Args:
        config: The run's configuration.

    Returns:
        A summary of what the run produced.
    """
    logger = get_logger()
    run_id = _current_flow_run_id()
    # Every run gets its own folder, so same-name runs never overwrite each other's files.
    run_dir = new_run_dir(config.run_dir(), run_id)
    config, resume_note = config_for_run_folder(config, run_dir)
    logger.info("run folder: %s", run_dir)
    if resume_note:
        logger.info("%s", resume_note)

    check_credentials_task(config)
    base_dir = resolve_base_model_task(config)
    check_before_training_task(config, base_dir)
    prepared = prepare_dataset_split(config, base_dir)
    # The base model's answer to the smoke question, shown beside the fine-tune's.
    base_answer = ""
    if wants_base_answer(config):
        base_answer = answer_with_base_model(base_dir, config.serve)
    if config.compute.provider == "runpod":
        stages = run_weight_stages_on_runpod(config, base_dir, prepared, run_id)
    else:
        stages = run_weight_stages_locally(config, base_dir, prepared, run_dir, run_id)
    trained, merged, published, entry = (
        stages.trained,
        stages.merged,
        stages.published,
        stages.entry,
    )
    package_path = stages.package_dir
    # A kept server serves the published copy, which no later run overwrites.
    serve_dir = published.location if config.publish.target == "local" else package_path
    if config.compute.provider == "runpod" and config.serve.target in ("local", "docker"):
        from tuneship.tasks.runpod_training import fetch_published_model

        # The package stayed on the pod: serving here needs the pushed revision.
        serve_dir = fetch_published_model(config, published, str(run_dir / "served"))
    deployment = None
    if config.serve.target in RUNPOD_TARGETS:
        # RunPod serves the pushed Hub revision; every other target a local folder.
        deployment = deploy_published_to_runpod(config, published, entry.name, entry.version)
    elif config.serve.target != "none":
        deployment = serve_and_smoke_test(config, serve_dir, entry.name, entry.version)

    summary = RunSummary(
        name=config.name,
        flow_run_id=run_id,
        base_model=stages.card.base_model,
        device=stages.device,
        n_train=prepared.n_train,
        n_eval=prepared.n_eval,
        dataset_fingerprint=prepared.fingerprint,
        base_eval_loss=trained.base_eval_loss,
        eval_loss=trained.eval_loss,
        gate=stages.gate.message,
        merge_check=describe_merge_check(merged),
        load_check=stages.load_check,
        training_notes=trained.notes,
        base_answer=base_answer,
        merged_dir=merged.merged_dir,
        package_dir=package_path,
        published=published,
        registry_url=config.registry_url(),
        model_name=entry.name,
        model_version=entry.version,
        deployment=deployment,
        training_cost_usd=stages.training_cost_usd,
        training_cost_detail=stages.training_cost_detail,
    )
    create_markdown_artifact(
        markdown=render_summary_list(summary),
        key=artifact_key(config.name, "run-summary"),
        description="What this run produced",
    )
    return summary


class WeightStages(BaseModel):
    """What the weight-touching stages produced, wherever they ran (here or on a pod)."""

    model_config = {"arbitrary_types_allowed": True}

    device: str
    trained: TrainResult
    gate: GateResult
    card: CardInfo
    merged: MergeResult
    package_dir: str
    load_check: str
    published: PublishResult
    entry: ModelEntry
    training_cost_usd: float | None = None
    training_cost_detail: str | None = None


def _publish_and_register(
    config: PipelineConfig,
    trained: TrainResult,
    card: CardInfo,
    run_id: str | None,
    publish: Callable[[str], PublishResult],
    extra_metrics: Callable[[], dict[str, float]] | None = None,
) -> tuple[PublishResult, ModelEntry]:
    """Publish (``publish(run_label)``) and register, under the publish lock and gate.

    The lock and the gate sit around publish+register, so two same-name runs can neither
    push to one repo at once nor move it to a worse model than the one it replaces.
    """
    lock_dir = config.store_dir() if config.publish.target == "local" else default_home() / "locks"
    with publish_lock(
        lock_dir,
        config.publish.repo_id,
        wait=config.publish.lock == "wait",
        timeout_s=config.publish.lock_timeout_s,
    ):
        interrupted = read_interrupted_publish(lock_dir, config.publish.repo_id)
        if interrupted is not None:
            get_logger().warning(
                "an earlier publish to %s (%s) was killed before the registry recorded it: "
                "the repo may serve that model now; `tuneship models list` does not show it",
                config.publish.repo_id,
                interrupted.get("run"),
            )
        get_logger().info(
            "publish gate: %s",
            check_not_worse_than_published(
                config.registry_url(),
                config.publish.repo_id,
                trained.eval_loss,
                force=config.publish.force,
                interrupted=interrupted,
            ),
        )
        label = f"run {config.name} ({run_id or 'local'})"
        # Kept if this run dies between moving the target and registering it.
        with publish_journal(
            lock_dir, config.publish.repo_id, label, trained.eval_loss
        ) as mark_published:
            published = publish(label)
            mark_published()
            model_entry = build_model_entry(card, trained, published, run_id, config.data.path)
            model_entry.metrics.update(extra_metrics() if extra_metrics else {})
            entry = register_model(config.registry_url(), model_entry)
    return published, entry


def _gate(config: PipelineConfig, trained: TrainResult) -> GateResult:
    gate: GateResult = check_eval_gate(
        trained.base_eval_loss,
        trained.eval_loss,
        require_improvement=config.training.require_improvement,
    )
    get_logger().info("eval gate: %s", gate.message)
    return gate


def run_weight_stages_locally(
    config: PipelineConfig,
    base_dir: str,
    prepared: PreparedData,
    run_dir: Path,
    run_id: str | None,
) -> WeightStages:
    """Train, gate, merge, package, load-check, publish and register on this machine."""
    logger = get_logger()
    handle = provision_compute(config.compute)
    plan_training_memory(config, base_dir, handle, prepared.n_train)
    with hold_gpu_slots(handle, config.compute.concurrency_timeout_s):
        trained = train_model(
            build_train_spec(config, base_dir, prepared, handle), config.name, config.publish
        )
    gate = _gate(config, trained)
    merged = merge_adapter(build_merge_spec(config, base_dir, trained, prepared))
    card = build_card_info(config, base_dir, trained, prepared)
    package = package_merged_model(
        merged.merged_dir, str(run_dir / "package"), card, config.publish.load_check
    )
    if should_check_with_vllm(config, package.path):
        comparisons = check_loads_in_vllm(config, package.path, prepared.eval_path)
        load_check = f"passed ({len(comparisons)} prompts)"
    else:
        load_check = f"skipped (publish.vllm_load_check={config.publish.vllm_load_check})"
        logger.info("vLLM load check %s", load_check)
    published, entry = _publish_and_register(
        config,
        trained,
        card,
        run_id,
        lambda label: publish_model(config, package.path, label),
    )
    return WeightStages(
        device=handle.device,
        trained=trained,
        gate=gate,
        card=card,
        merged=merged,
        package_dir=package.path,
        load_check=load_check,
        published=published,
        entry=entry,
    )


def run_weight_stages_on_runpod(
    config: PipelineConfig, base_dir: str, prepared: PreparedData, run_id: str | None
) -> WeightStages:
    """Every weight-touching stage on a rented RunPod pod; the pod is terminated however
    this ends, and no weights come back here (the registry points at the Hub revision).

    One Prefect task per stage finishes when the pod reports that stage; a lost pod is
    replaced and the new one resumes at the stage that was running.
    """
    from tuneship.compute.budget import tokens_per_step
    from tuneship.tasks.runpod_training import (
        PodStages,
        load_check_on_pod,
        merge_on_pod,
        package_on_pod,
        provision_runpod_gpu,
        publish_on_pod,
        release_training_pod,
        send_package_spec,
    )

    pods: PodStages | None = None
    costs: list[float] = []

    def publish_and_release(label: str) -> PublishResult:
        assert pods is not None
        published = pods.run(publish_on_pod, label)
        # Released before registering, so the cost recorded with the model is final.
        costs.extend(cost for _, cost in pods.lost)
        costs.append(release_training_pod(config, pods.pod) or 0.0)
        return published

    try:
        pods = PodStages(config, base_dir, provision_runpod_gpu(config, base_dir, prepared))
        # Live progress and the budget (over every pod of the run, lost ones included).
        trained = pods.train(tokens_per_step(config, prepared.report.mean_row_tokens))
        gate = _gate(config, trained)
        card = build_card_info(config, base_dir, trained, prepared)
        send_package_spec(config, pods.pod, card)
        merged = pods.run(merge_on_pod)
        package = pods.run(package_on_pod)
        checked = pods.run(load_check_on_pod)
        published, entry = _publish_and_register(
            config,
            trained,
            card,
            run_id,
            publish_and_release,
            lambda: {"training_cost_usd": round(sum(costs), 4)},
        )
    finally:
        if not costs:  # failed before the publish: terminate and clean up all the same
            release_training_pod(config, pods.pod if pods else None)
    pod = pods.pod
    all_pods = [*(p for p, _ in pods.lost), pod]
    total = round(sum(costs), 4)
    detail = f"${total:.4f} for {len(all_pods)} pod(s): " + ", ".join(
        f"{p.gpu_count} x {p.gpu_type_id} at ${p.usd_per_hour:.2f}/h" for p in all_pods
    )
    where = f"on pod {pod.name} (terminated; weights not downloaded)"
    return WeightStages(
        device=f"runpod {pod.gpu_count} x {pod.gpu_type_id}",
        trained=trained,
        gate=gate,
        card=card,
        merged=merged.model_copy(update={"merged_dir": f"{merged.merged_dir} {where}"}),
        package_dir=f"{package.path} {where}",
        load_check=f"on the pod: {checked.note}",
        published=published,
        entry=entry,
        training_cost_usd=total,
        training_cost_detail=detail,
    )


def serve_and_smoke_test(
    config: PipelineConfig, model_dir: str, model_name: str, model_version: str
) -> DeploymentSummary:
    """Plan, start vLLM, smoke-test it, and stop it unless ``serve.keep_serving`` is set.

    The server runs inside ``managed_deployment`` in the flow's own thread, so a failure,
    a timeout, Ctrl-C or SIGTERM after the start stops the whole process group and marks
    the deployment stopped in the registry.

    Args:
        config: The run's configuration.
        model_dir: The packaged model folder.
        model_name: Registered model name.
        model_version: Registered model version.

    Returns:
        The endpoint and the smoke test's answer.
    """
    from tuneship.serving.existing import make_way_for
    from tuneship.serving.lifecycle import managed_deployment
    from tuneship.tasks.credentials import resolve_serve_api_key

    replaced = make_way_for(config.name, config.registry_url(), config.serve.on_existing)
    if replaced:
        get_logger().warning("%s (serve.on_existing=replace)", replaced)
    # The plan fails fast when the request cannot fit; the server starts with this plan.
    plan = plan_local_serving(model_dir, config.serve, config.name)
    target = load_target(
        config.serve.target, hf_credentials_block=config.publish.hf_credentials_block
    )
    with managed_deployment(
        model_dir,
        resolve_serve_api_key(config.serve),
        target=target,
        plan=plan,
        name=config.name,
        model_name=model_name,
        model_version=model_version,
        registry_url=config.registry_url(),
    ) as info:
        get_logger().info("deployed: %s (model %s)", info.url, info.served_model_name)
        question, answer, latency, reference = "", "", 0.0, ""
        logger = get_logger()
        if config.serve.smoke_test:
            smoke = smoke_test_endpoint(
                info.url,
                info.api_key_file or "",
                info.served_model_name,
                config.name,
                config.serve.smoke_prompt,
                config.serve.smoke_temperature,
                config.serve.smoke_system_prompt,
            )
            question, answer, latency = smoke.prompt, smoke.answer, smoke.latency_s
            if config.serve.smoke_temperature == 0:
                reference = answer_with_transformers(model_dir, config.serve)
                logger.info("smoke test: served %r, transformers %r", answer, reference)
        deployment = DeploymentSummary(
            name=info.name,
            url=info.url,
            served_model_name=info.served_model_name,
            kept_running=config.serve.keep_serving,
            api_key_file=info.api_key_file,
            question=question,
            answer=answer,
            latency_s=latency,
            reference_answer=reference,
        )
    # Written after the context: a server that was not kept running is stopped by now.
    create_markdown_artifact(
        markdown=describe_endpoint(deployment, datetime.now(UTC)),
        key=artifact_key(config.name, "endpoint"),
        description="OpenAI-compatible endpoint and whether it still runs",
    )
    return deployment


def describe_endpoint(deployment: DeploymentSummary, checked_at: datetime) -> str:
    """Markdown for the endpoint artifact: the URL, the model, and running or stopped when."""
    state = (
        f"still running; stop it with `tuneship deployments stop {deployment.name}`"
        if deployment.kept_running
        else f"stopped at the end of the run ({checked_at:%Y-%m-%d %H:%M:%S} UTC)"
    )
    link = f"[{deployment.url}]({deployment.url})" if deployment.kept_running else deployment.url
    return f"{link} serving `{deployment.served_model_name}`: {state}"


def deploy_published_to_runpod(
    config: PipelineConfig, published: PublishResult, model_name: str, model_version: str
) -> DeploymentSummary:
    """Serve the pushed revision on RunPod (serverless or a pod) and smoke-test it.

    Args:
        config: The run's configuration.
        published: Where the model was pushed (a Hub repo and commit).
        model_name: Registered model name.
        model_version: Registered model version.

    Returns:
        The endpoint and the smoke test's answer.
    """
    from tuneship.flows.deploy import deploy_to_runpod

    result = deploy_to_runpod(
        published.repo_id,
        config.serve,
        run_name=config.name,
        revision=published.revision,
        registry_url=config.registry_url(),
        keep_serving=config.serve.keep_serving,
        model_name=model_name,
        model_version=model_version,
        register_model=False,
    )
    return DeploymentSummary(
        name=result.name,
        url=result.url,
        served_model_name=result.served_model_name,
        kept_running=result.kept_running,
        api_key_file=None,
        question=config.serve.smoke_prompt if result.answer else "",
        answer=result.answer,
        latency_s=result.latency_s,
    )


def render_summary(summary: RunSummary) -> str:
    """Render a run summary as a Markdown table (the CLI's output)."""
    return format_markdown_table(("run", summary.name), summary_rows(summary))


def render_summary_list(summary: RunSummary) -> str:
    """Render a run summary as a Markdown list (the run-summary artifact).

    Prefect's UI draws table cells on one line and clips what does not fit (the merge check,
    the model folder's path), while list items wrap.
    """
    lines = [f"**run** {escape_markdown_text(summary.name)}", ""]
    dep = summary.deployment
    for key, value in summary_rows(summary):
        text = escape_markdown_text(value)
        if key == "endpoint" and dep is not None and not dep.kept_running:
            # The UI turns a bare URL into a link; a stopped server's is text to read.
            rest = value.removeprefix(dep.url).strip()
            text = f"`{dep.url}` {escape_markdown_text(rest)}"
        lines.append(f"- **{key}**: {text}")
    return "\n".join(lines) + "\n"


def summary_rows(summary: RunSummary) -> list[tuple[str, str]]:
    """The run summary as ``(what, value)`` pairs, in reading order."""
    rows = [
        ("base model", summary.base_model),
        ("device", summary.device),
        ("data", f"{summary.n_train} train / {summary.n_eval} eval rows"),
        ("dataset fingerprint", summary.dataset_fingerprint[:16]),
        ("eval", summary.gate),
        ("merge check", summary.merge_check or "not run"),
        ("vLLM load check", summary.load_check or "not run"),
        ("packaged model", summary.package_dir),
        ("published", f"{summary.published.target}: {summary.published.location}"),
        ("revision", summary.published.revision),
        ("registry", f"{summary.model_name} version {summary.model_version[:12]}"),
    ]
    for note in summary.training_notes:
        rows.append(("training note", note))
    if summary.training_cost_usd is not None:
        rows.append(
            ("training cost", summary.training_cost_detail or f"${summary.training_cost_usd:.4f}")
        )
    if summary.deployment:
        dep = summary.deployment
        state = "still running" if dep.kept_running else "stopped at the end of the run"
        rows.append(("endpoint", f"{dep.url} (model {dep.served_model_name}; {state})"))
        if dep.question:
            if summary.base_answer:
                rows.append(("base model's answer", repr(summary.base_answer)))
            rows.append(("smoke test", f"{dep.question!r}: served {dep.answer!r}"))
        if dep.reference_answer:
            rows.append(("transformers answer", repr(dep.reference_answer)))
    return rows
