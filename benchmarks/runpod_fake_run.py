"""The RunPod training path against the fakes: time to training start, steps lost to a dead pod.

Run on demand (not in CI):

    .venv/bin/python benchmarks/runpod_fake_run.py [--max-steps 40] [--save-steps 10]

It runs the whole flow with ``compute.provider: runpod`` against the fake RunPod API and
the fake Hub of ``tests/`` (the "pod" is a local process on the CPU running the staged
tuneship), kills the first pod mid-way between two checkpoints (``--kill-at-step``), and
prints:

* seconds from flow start to the pod's train stage starting, and to its first training
  step (the first progress line in the pod's log);
* the step the lost pod had reached, the checkpoint the replacement pod resumed from, and
  so the steps repeated after the pod loss (at most one save interval is the aim);
* the whole run's wall time and each pod's share.

On real RunPod the start-up adds the image pull and the pip install; the fake measures
tuneship's own part (staging, renting, fetching the staging repo, stage start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "0"
os.environ["HF_HUB_DISABLE_XET"] = "1"

PROGRESS = "TUNESHIP_PROGRESS "
POD = "tuneship-bench-rp-train"


def _steps(log: str) -> list[int]:
    return [
        int(json.loads(line.split(PROGRESS, 1)[1])["step"])
        for line in log.splitlines()
        if PROGRESS in line
    ]


class Watch:
    """Polls the fake's pods: records when training starts and kills the first pod."""

    def __init__(self, fake, hub, repo: str, kill_at_step: int) -> None:  # type: ignore[no-untyped-def]
        self.fake, self.hub, self.repo = fake, hub, repo
        self.kill_at_step = kill_at_step
        self.train_stage_at: float | None = None
        self.first_step_at: float | None = None
        self.killed_at_step: int | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        from fake_hub import HubError

        while not self.stop.is_set():
            with self.fake.lock:
                pods = [p for p in self.fake.pods.values() if p["name"] == POD]
            log = self.fake.pod_log(pods[0]["id"]) if pods else ""
            now = time.monotonic()
            if self.train_stage_at is None and "pod: stage train starts" in log:
                self.train_stage_at = now
            if self.first_step_at is None and _steps(log):
                self.first_step_at = now
            if self.killed_at_step is None and pods:
                try:
                    pushed = any(
                        p.startswith("checkpoint-")
                        for p in self.hub.files(self.repo, "checkpoints")
                    )
                except (KeyError, HubError):
                    pushed = False
                if pushed and max(_steps(log), default=0) >= self.kill_at_step:
                    self.fake.kill_pod(pods[0]["id"])
                    self.killed_at_step = max(_steps(log), default=0)
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--save-steps", type=int, default=10)
    parser.add_argument(
        "--kill-at-step",
        type=int,
        help="kill the first pod once it reported this step (default: 1.5 save intervals, "
        "mid-way between two checkpoints)",
    )
    args = parser.parse_args()
    kill_at = args.kill_at_step or args.save_steps + args.save_steps // 2

    from fake_hub import FakeHub
    from fake_runpod import FakeRunPod
    from prefect.testing.utilities import prefect_test_harness

    from tuneship.compute.pod_status import STATUS_PORT, STATUS_PORT_ENV
    from tuneship.config import load_config
    from tuneship.demo import demo_config_path
    from tuneship.demo.tiny_model import build_tiny_model

    root = Path(tempfile.mkdtemp(prefix="tuneship-bench-rp-"))
    hub = FakeHub().start()
    fake = FakeRunPod().start()
    os.environ.update(
        {
            "HF_ENDPOINT": hub.endpoint,
            "HF_TOKEN": hub.add_token("alice"),
            "RUNPOD_API_KEY": fake.api_key,
            "RUNPOD_API_BASE_URL": fake.url,
            "RUNPOD_ENDPOINT_BASE_URL": fake.endpoint_base,
            "TUNESHIP_RUNPOD_POD_PROXY_URL": fake.proxy_template,
            "TUNESHIP_HOME": str(root / "home"),
        }
    )
    from huggingface_hub import constants

    # As tests/fake_hub.py's fixture does: huggingface_hub read these at import.
    constants.ENDPOINT = hub.endpoint
    constants.HUGGINGFACE_CO_URL_TEMPLATE = (
        hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    constants.HF_HUB_OFFLINE = False
    constants.HF_HUB_DISABLE_XET = True
    constants.HF_HUB_CACHE = str(root / "hf-cache")
    os.environ["HF_HUB_CACHE"] = constants.HF_HUB_CACHE
    build_tiny_model(root / "tiny")
    hub.add_folder("acme/tiny-base", root / "tiny")
    fake.run_pod_commands = True
    fake.pod_root = root / "pods"
    # The pod's status endpoint gets a free local port that the fake proxy maps to, as in
    # tests/_runpod_helpers.py: the flow follows training live, as on RunPod.
    fake.pod_port_env = {STATUS_PORT: STATUS_PORT_ENV}
    fake.pod_env = {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_CACHE": str(root / "pod-hf-cache"),
        "TUNESHIP_POD_ALLOW_CPU": "1",
        "PYTHONNOUSERSITE": "1",
    }
    config = load_config(
        demo_config_path(),
        [
            "name=bench-rp",
            "model.base=acme/tiny-base",
            "compute.provider=runpod",
            "compute.runpod.status_interval_s=2",
            f"training.max_steps={args.max_steps}",
            f"training.eval_steps={args.save_steps}",
            "training.save_strategy=steps",
            f"training.save_steps={args.save_steps}",
            "training.require_improvement=false",
            "publish.target=hub",
            "publish.repo_id=alice/bench-rp",
            f"publish.hub_endpoint={hub.endpoint}",
            "publish.vllm_load_check=off",
            "serve.target=none",
            f"workdir={root / 'run'}",
            f"registry.url=sqlite:///{root / 'registry.db'}",
        ],
    )
    watch = Watch(fake, hub, "alice/bench-rp", kill_at)
    thread = threading.Thread(target=watch.run, daemon=True)
    with prefect_test_harness():
        from tuneship.flows.finetune import finetune_and_deploy

        thread.start()
        started = time.monotonic()
        summary = finetune_and_deploy(config)
        total = time.monotonic() - started
    watch.stop.set()
    thread.join(timeout=5)
    logs = [p.read_text() for p in sorted((root / "pods").glob("*/pod.log"))]
    resumed = [int(m) for log in logs for m in re.findall(r"fetched checkpoint-(\d+)", log)]
    resumed_from = resumed[0] if resumed else 0
    print(f"flow start -> train stage starts on the pod: {watch.train_stage_at - started:.1f} s")
    print(f"flow start -> first training step reported:  {watch.first_step_at - started:.1f} s")
    print(f"pod lost at step {watch.killed_at_step}; the new pod resumed from step {resumed_from}")
    print(
        f"steps repeated after the pod loss: {(watch.killed_at_step or 0) - resumed_from} "
        f"(save interval {args.save_steps})"
    )
    print(f"whole run: {total:.1f} s, {summary.training_cost_detail}")
    fake.stop()
    hub.stop()


if __name__ == "__main__":
    main()
