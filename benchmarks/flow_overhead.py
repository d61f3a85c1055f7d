"""Prefect overhead: the same job through the flow and as plain function calls.

Run on demand (not in CI):

    .venv/bin/python benchmarks/flow_overhead.py [--max-steps N]

It prints the ephemeral API's start-up time, the flow's overhead per task, and the ratio of
the medians of the long runs without start-up. Aim: under 1 s per task and a ratio under
1.05. The default step count (1900) gives about 50 s of training on two idle CPU cores
(measured 2026-12-04; 250 steps took only 8 s, too short for the aim); the
long runs are repeated (``--long-repeats``, default 3) in the order flow, plain, plain,
flow, flow, plain, ... so drifting machine load hits both sides alike, and the load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A loaded machine can take longer than Prefect's 20 s to start its temporary API.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

# credentials, resolve, checks, data, provision, memory plan, train, merge, package, publish,
# register
TASKS_IN_FLOW = 11


def build_config(root: Path, max_steps: int, label: str):  # type: ignore[no-untyped-def]
    from tuneship.config import load_config
    from tuneship.demo import demo_config_path

    return load_config(
        demo_config_path(),
        [
            f"name=bench-{label}",
            f"workdir={root / label / 'run'}",
            f"publish.store_path={root / label / 'store'}",
            f"registry.url=sqlite:///{root / label / 'registry.db'}",
            f"training.max_steps={max_steps}",
            f"training.eval_steps={max(1, max_steps // 4)}",
            "training.require_improvement=false",
            "serve.target=none",
            "publish.vllm_load_check=off",
        ],
    )


def run_plain(config) -> float:  # type: ignore[no-untyped-def]
    """The pipeline's steps as plain calls, in the flow's order; returns seconds."""
    from transformers import AutoTokenizer

    from tuneship.base_model import resolve_base_model
    from tuneship.compute.local import get_provider
    from tuneship.data import prepare_dataset
    from tuneship.evaluation import check_eval_gate
    from tuneship.packaging import package_model
    from tuneship.packaging.run_card import build_card_info
    from tuneship.planning import load_model_facts, plan_training
    from tuneship.publishing.local_store import LocalStorePublisher
    from tuneship.registry import ModelEntry, Registry
    from tuneship.training import run_merge, run_training
    from tuneship.training.specs import build_merge_spec, build_train_spec
    from tuneship.validation import check_before_training, check_credentials

    start = time.perf_counter()
    run_dir = config.run_dir()
    check_credentials(config)
    base = resolve_base_model(config.model)
    check_before_training(config, base)
    prepared = prepare_dataset(
        config.data,
        config.training.method,
        config.training.evaluates,
        run_dir / "data",
        tokenizer=AutoTokenizer.from_pretrained(base),
    )
    handle = get_provider("local").provision(device=config.compute.device, gpu_count=1)
    plan_training(
        load_model_facts(str(base)),
        config.training.adapter,
        seq_len=config.data.max_length,
        batch_size=config.training.per_device_train_batch_size,
    )
    trained = run_training(build_train_spec(config, str(base), prepared, handle))
    check_eval_gate(trained.base_eval_loss, trained.eval_loss, require_improvement=False)
    merged = run_merge(build_merge_spec(config, str(base), trained, prepared))
    package = package_model(
        Path(merged.merged_dir),
        run_dir / "package",
        build_card_info(config, str(base), trained, prepared),
    )
    published = LocalStorePublisher(config.store_dir()).publish(
        Path(package.path), config.publish.repo_id, commit_message="bench"
    )
    Registry(config.registry_url()).upsert_model(
        ModelEntry(
            name=config.publish.repo_id,
            version=published.revision,
        )
    )
    return time.perf_counter() - start


def time_api_startup() -> float:
    """Seconds until the ephemeral API answers a trivial flow (includes its start-up)."""
    from prefect import flow

    @flow
    def noop() -> int:
        return 1

    start = time.perf_counter()
    noop()
    return time.perf_counter() - start


def run_flow(config) -> float:  # type: ignore[no-untyped-def]
    from tuneship.flows.finetune import finetune_and_deploy

    start = time.perf_counter()
    finetune_and_deploy(config)
    return time.perf_counter() - start


def main() -> None:
    """Run both variants and print the comparison."""
    import statistics

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-steps", type=int, default=1900, help="steps of the long job")
    parser.add_argument("--repeats", type=int, default=3, help="short-job pairs for overhead")
    parser.add_argument("--long-repeats", type=int, default=3, help="long-job pairs (median)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tuneship-bench-") as tmp:
        root = Path(tmp)
        os.environ["TUNESHIP_HOME"] = str(root / "home")
        from tuneship.demo.pretrained import ensure_pretrained_demo_model

        ensure_pretrained_demo_model()  # the demo's base, built once, outside every timing
        # A short plain run first, so that no timed run pays the libraries' import and
        # first-call costs (torch, TRL, PEFT, tokenizers) that the others would then skip.
        run_plain(build_config(root, 5, "warmup"))
        startup = time_api_startup()
        # Per-task overhead from short jobs, where training time does not drown it; the
        # pairs alternate so drifting machine load hits both sides alike.
        short_plain, short_flow = [], []
        for i in range(args.repeats):
            short_plain.append(run_plain(build_config(root, 5, f"short-plain-{i}")))
            short_flow.append(run_flow(build_config(root, 5, f"short-flow-{i}")))
        overhead = (statistics.median(short_flow) - statistics.median(short_plain)) / TASKS_IN_FLOW
        long_plain, long_flow = [], []
        for i in range(args.long_repeats):
            for kind in ("flow", "plain") if i % 2 == 0 else ("plain", "flow"):
                config = build_config(root, args.max_steps, f"long-{kind}-{i}")
                times = long_flow if kind == "flow" else long_plain
                times.append(run_flow(config) if kind == "flow" else run_plain(config))
                print(f"long {kind} run {i}: {times[-1]:.2f} s", flush=True)
        flowed, plain = statistics.median(long_flow), statistics.median(long_plain)
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {load_after}")
    print(f"long runs, flow:  {', '.join(f'{t:.2f}' for t in long_flow)}")
    print(f"long runs, plain: {', '.join(f'{t:.2f}' for t in long_plain)}")
    print(f"{'':<40}{'seconds':>10}")
    print(f"{'API start-up (trivial flow)':<40}{startup:>10.2f}")
    print(f"{'short job, plain (median)':<40}{statistics.median(short_plain):>10.2f}")
    print(f"{'short job, flow (median)':<40}{statistics.median(short_flow):>10.2f}")
    print(f"{'overhead per task':<40}{overhead:>10.3f}")
    print(f"{'long job, plain (median)':<40}{plain:>10.2f}")
    print(f"{'long job, flow (median, API already up)':<40}{flowed:>10.2f}")
    print(f"{'ratio flow / plain (long job medians)':<40}{flowed / plain:>10.3f}")


if __name__ == "__main__":
    main()
