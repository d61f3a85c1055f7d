"""Human and table renderings of serving and training plans."""

from __future__ import annotations

from typing import Any

from tuneship.planning.gpus import load_gpu_catalog
from tuneship.planning.serving import ServingOption, ServingPlan
from tuneship.planning.training import TrainingOption, TrainingPlan
from tuneship.tables import format_table


def _num(value: float | int | None, fmt: str = "{:,}") -> str:
    return "-" if value is None else fmt.format(value)


def format_hours(hours: float | None) -> str:
    """A duration for a reader: ``"under 1 s"``, ``"40 s"``, ``"12 min"``, ``"3.5 h"`` or "".

    Args:
        hours: The duration in hours, or None.
    """
    if hours is None:
        return ""
    if hours * 3600 < 1:
        return "under 1 s"
    if hours * 3600 < 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.1f} h"


def format_usd(usd: float | None) -> str:
    """A cost for a reader: ``"12.34"``, ``"under 0.01"``; empty when unknown.

    Args:
        usd: The cost in US dollars, or None.
    """
    if usd is None:
        return ""
    return "under 0.01" if usd < 0.005 else f"{usd:,.2f}"


_PRICE_BASIS_SHORT = {
    "runpod pod": "pod",
    "runpod serverless rate (no pod price known)": "serverless",
    "no price (owned or unpriced GPU)": "none",
}
"""Short names for a plan's price basis: Prefect's UI clips table cells to one line."""


def _fewest_gpus_per_type(options: list[TrainingOption]) -> list[TrainingOption]:
    # Per GPU type, the fewest GPUs that fit; a type that never fits shows its largest count
    # with the reason.
    best: dict[str, TrainingOption] = {}
    for option in options:
        kept = best.get(option.gpu)
        if (
            kept is None
            or (option.fits and (not kept.fits or option.gpu_count < kept.gpu_count))
            or (not option.fits and not kept.fits and option.gpu_count > kept.gpu_count)
        ):
            best[option.gpu] = option
    return list(best.values())


def _serving_cells(option: ServingOption, chosen: bool) -> list[str]:
    return [
        ">" if chosen else "",
        option.gpu,
        str(option.gpu_count),
        str(option.tensor_parallel_size),
        _num(option.gpu_memory_utilization, "{:.2f}"),
        _num(option.max_model_len),
        f"{option.weights_gib:.2f}",
        f"{option.kv_cache_gib:.2f}",
        f"{option.kv_tokens:,}",
        f"{option.max_concurrency:.2f}",
        _num(option.usd_per_hour, "{:.2f}"),
        "yes" if option.fits else "no",
    ]


def render_serving_plan(plan: ServingPlan) -> str:
    """The ``plan serve`` table: model facts, the chosen option first, every rejection's reason.

    Args:
        plan: A serving plan.

    Returns:
        Text for a terminal.
    """
    facts = plan.facts
    catalog = load_gpu_catalog()
    kv_tp1 = plan.options[0].kv_bytes_per_token if plan.options else 0
    attention = (
        f"MLA latent {facts.mla.cache_width} values/layer"
        if facts.mla
        else f"{facts.num_kv_heads} KV heads x head_dim {facts.head_dim}"
    )
    lines = [
        f"Model:  {plan.model}",
        f"        {facts.model_type or '?'}, {facts.param_count / 1e9:.2f} B params, "
        f"weights {facts.weight_gib:.2f} GiB ({facts.weight_bytes_source}), "
        f"dtype {facts.dtype or 'not declared'}",
        f"        {facts.num_layers} layers, {attention}, "
        f"{facts.num_attention_heads} attention heads, "
        f"max context {_num(facts.max_position_embeddings)}",
    ]
    if facts.sliding_layers:
        lines.append(
            f"        {facts.sliding_layers} sliding-window layers (window {facts.sliding_window})"
        )
    if facts.quantization:
        lines.append(f"        pre-quantised: {facts.quantization.method}")
    lines.append(
        f"vLLM:   planned for {plan.vllm_version} (constants calibrated on "
        f"{catalog.vllm['calibrated_for']}); KV cache dtype {plan.kv_cache_dtype}"
    )
    if plan.options:
        first = plan.options[0]
        lines.append(
            f"KV:     {kv_tp1:,} bytes per token per GPU at TP {first.tensor_parallel_size}"
        )
    lines.append("")
    chosen = plan.chosen
    if chosen is not None:
        lines.append(f"Chosen: {chosen.summary()}")
        extra = (
            f"        per GPU: budget {chosen.budget_gib:.2f} GiB"
            f" = weights {chosen.weights_gib:.2f}"
            f" + activations {chosen.activation_gib:.2f} + non-torch {chosen.non_torch_gib:.2f}"
            f" + CUDA graphs {chosen.cuda_graph_gib:.2f} + KV cache {chosen.kv_cache_gib:.2f}"
        )
        lines.append(extra)
        if chosen.serverless_pool:
            lines.append(f"        RunPod: gpuIds {chosen.serverless_pool} ({chosen.price_basis})")
        for note in chosen.notes:
            lines.append(f"        note: {note}")
    else:
        lines.append("Chosen: nothing fits")
        if plan.suggestion is not None:
            lines.append(f"Would fit: {plan.suggestion.summary()}")
    lines.append("")
    headers = [
        "",
        "GPU",
        "N",
        "TP",
        "util",
        "max_len",
        "weights",
        "KV GiB",
        "KV tokens",
        "conc",
        "$/h",
        "fits",
    ]
    rows = [_serving_cells(o, o is chosen) for o in plan.options]
    table = format_table(headers, rows, right={2, 3, 4, 5, 6, 7, 8, 9, 10}, rule=True)
    lines.extend(table[:2])
    for option, row_line in zip(plan.options, table[2:], strict=True):
        lines.append(row_line)
        for reason in option.reasons:
            lines.append(f"      - {reason}")
    return "\n".join(lines)


def render_training_plan(plan: TrainingPlan) -> str:
    """The ``plan train`` table: peak memory by part, then the options, chosen first.

    Args:
        plan: A training plan.

    Returns:
        Text for a terminal.
    """
    lines = [
        f"Model:  {plan.model}",
        f"Method: {plan.method}, seq_len {plan.seq_len:,}, batch {plan.batch_size}, gradient "
        f"checkpointing {'on' if plan.gradient_checkpointing else 'off'}, "
        f"trainable params {plan.trainable_params:,}",
        f"Peak on one GPU: {plan.peak_gib:.2f} GiB",
    ]
    for part, gib in plan.parts.items():
        lines.append(f"  {part.replace('_', ' '):<18} {gib:>9.2f} GiB")
    for note in plan.notes:
        lines.append(f"note: {note}")
    lines.append("")
    chosen = plan.chosen
    if chosen is not None:
        cost = (
            f", about ${chosen.estimated_cost_usd:,.2f} for {chosen.estimated_hours:.2f} h"
            if chosen.estimated_cost_usd is not None and chosen.estimated_hours is not None
            else ""
        )
        lines.append(
            f"Chosen: {chosen.gpu_count} x {chosen.gpu}, peak {chosen.peak_gib:.2f} GiB per GPU"
            f"{cost}"
        )
    else:
        lines.append("Chosen: nothing fits")
    lines.append("")
    headers = ["", "GPU", "N", "peak GiB", "usable GiB", "$/h", "est. $", "fits"]
    rows = [
        [
            ">" if o is chosen else "",
            o.gpu,
            str(o.gpu_count),
            f"{o.peak_gib:.2f}",
            f"{o.usable_gib:.2f}",
            _num(o.usd_per_hour, "{:.2f}"),
            _num(o.estimated_cost_usd, "{:,.2f}"),
            "yes" if o.fits else "no",
        ]
        for o in plan.options
    ]
    table = format_table(headers, rows, right={2, 3, 4, 5, 6}, rule=True)
    lines.extend(table[:2])
    for option, row_line in zip(plan.options, table[2:], strict=True):
        lines.append(row_line)
        for reason in option.reasons:
            lines.append(f"      - {reason}")
    return "\n".join(lines)


def plan_table_rows(
    plan: ServingPlan | TrainingPlan, rent_list: bool = False
) -> list[dict[str, Any]]:
    """Rows for a Prefect table artifact (``create_table_artifact(table=rows)``).

    Args:
        plan: A serving or training plan.
        rent_list: For a training plan made where no GPU was given (a CPU run): list what
            could be rented, one row per GPU type (the fewest GPUs that fit), cheapest per
            hour first, with no option marked chosen, each with its estimated time and cost
            (empty where the plan has none).

    Returns:
        One flat dict per option, chosen first, with reasons joined by ``"; "``.
    """
    if isinstance(plan, TrainingPlan) and rent_list:
        options = sorted(
            _fewest_gpus_per_type(plan.options),
            key=lambda o: (not o.fits, o.usd_per_hour is None, o.usd_per_hour or 0.0),
        )
        return [
            {
                "gpu": o.gpu,
                "gpu_count": o.gpu_count,
                "fits": o.fits,
                "usd_per_hour": "" if o.usd_per_hour is None else o.usd_per_hour,
                "estimated_time": format_hours(o.estimated_hours),
                "estimated_cost_usd": format_usd(o.estimated_cost_usd),
                "price": _PRICE_BASIS_SHORT.get(o.price_basis, o.price_basis),
                "peak_gib": o.peak_gib,
                "usable_gib": o.usable_gib,
                "reasons": "; ".join(o.reasons),
            }
            for o in options
        ]
    if isinstance(plan, TrainingPlan):
        return [
            {
                "chosen": o is plan.chosen,
                "gpu": o.gpu,
                "gpu_count": o.gpu_count,
                "peak_gib": o.peak_gib,
                "usable_gib": o.usable_gib,
                "usd_per_hour": o.usd_per_hour,
                "estimated_cost_usd": o.estimated_cost_usd,
                "fits": o.fits,
                "reasons": "; ".join(o.reasons),
            }
            for o in plan.options
        ]
    return [
        {
            "chosen": o is plan.chosen,
            "gpu": o.gpu,
            "gpu_count": o.gpu_count,
            "tensor_parallel_size": o.tensor_parallel_size,
            "gpu_memory_utilization": o.gpu_memory_utilization,
            "max_model_len": o.max_model_len,
            "weights_gib": o.weights_gib,
            "kv_cache_gib": o.kv_cache_gib,
            "kv_tokens": o.kv_tokens,
            "max_concurrency": o.max_concurrency,
            "usd_per_hour": o.usd_per_hour,
            "fits": o.fits,
            "reasons": "; ".join(o.reasons),
        }
        for o in plan.options
    ]
