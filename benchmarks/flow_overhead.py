"""Prefect overhead: the same job through the flow and as plain function calls.

Run on demand (not in CI):

    .venv/bin/python benchmarks/flow_overhead.py [--max-steps N]

It prints the ephemeral API's start-up time, the flow's overhead per task, and the ratio of
the two runs without start-up. Aim: under 1 s per task and a ratio under 1.05. The default
step count gives about two minutes of training on two CPU cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASKS_IN_FLOW = 9  # resolve, check, data, provision, train, merge, package, publish, register


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
        ],
    )


def run_plain(config) -> float:  # type: ignore[no-untyped-def]
    """The pipeline's steps as plain calls, in the flow's order; returns seconds."""
    from transformers import AutoTokenizer

    from tuneship.base_model import resolve_base_model
    from tuneship.compute.local import get_provider
    from tuneship.data import prepare_dataset
    from tuneship.evaluation import check_eval_gate
    from tuneship.packaging import CardInfo, package_model
    from tuneship.publishing.local_store import LocalStorePublisher
    from tuneship.registry import ModelEntry, Registry
    from tuneship.training import MergeJobSpec, TrainJobSpec, run_merge, run_training
    from tuneship.validation import check_before_training

    start = time.perf_counter()
    run_dir = config.run_dir()
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
    trained = run_training(
        TrainJobSpec(
            model_path=str(base),
            train_path=prepared.train_path,
            eval_path=prepared.eval_path,
            trainer_format=prepared.trainer_format,
            output_dir=str(run_dir / "train"),
            training=config.training,
            max_length=config.data.max_length,
            device=handle.device,
        )
    )
    check_eval_gate(trained.base_eval_loss, trained.eval_loss, require_improvement=False)
    merged = run_merge(
        MergeJobSpec(
            base_model_path=str(base),
            adapter_path=trained.output_path,
            is_adapter=trained.is_adapter,
            output_dir=str(run_dir / "merged"),
            eval_path=prepared.eval_path,
            train_path=prepared.train_path,
            max_length=128,
        )
    )
    package = package_model(
        Path(merged.merged_dir),
        run_dir / "package",
        CardInfo(
            repo_id=config.publish.repo_id,
            base_model="tiny",
            method="sft",
            adapter="lora",
        ),
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-steps", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tuneship-bench-") as tmp:
        root = Path(tmp)
        os.environ["TUNESHIP_HOME"] = str(root / "home")
        from tuneship.base_model import ensure_demo_model

        ensure_demo_model()  # built once, outside both timings
        plain = run_plain(build_config(root, args.max_steps, "plain"))
        startup = time_api_startup()
        flowed = run_flow(build_config(root, args.max_steps, "flow"))
    overhead = flowed - plain
    print(f"{'':<34}{'seconds':>10}")
    print(f"{'API start-up (trivial flow)':<34}{startup:>10.2f}")
    print(f"{'plain function calls':<34}{plain:>10.2f}")
    print(f"{'flow (API already up)':<34}{flowed:>10.2f}")
    print(f"{'overhead per task':<34}{overhead / TASKS_IN_FLOW:>10.3f}")
    print(f"{'ratio flow / plain':<34}{flowed / plain:>10.3f}")


if __name__ == "__main__":
    main()
