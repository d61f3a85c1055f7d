"""The flow's side of a training pod: follow it until its training result, live.

:func:`watch_training_pod` polls three things every ``compute.runpod.status_interval_s``:
the staging repo (for the stage's result), RunPod (is the pod still there and RUNNING?)
and the pod's status endpoint through RunPod's proxy (progress; see
:mod:`tuneship.compute.pod_status`). From them it decides:

* **start-up**: until the endpoint first answers, the pod is pulling its image and
  installing; longer than ``startup_timeout_s`` -> :class:`PodStartupTimeoutError`.
* **unresponsive**: once it answered, a RUNNING pod whose endpoint stays silent for longer
  than ``unresponsive_grace_s`` -> :class:`PodUnresponsiveError`.
* **budget**: all pods' cost and hours reach ``max_usd``/``max_hours`` -> the pod is asked
  to push a checkpoint and stop, then :class:`BudgetExceededError` says what was spent and
  where the checkpoint is.

The first two are :class:`~tuneship.compute.runpod.PodLostError`: the flow replaces the
pod and resumes from the newest pushed checkpoint. Nothing here imports Prefect; progress
goes to the ``on_progress`` callback the task passes in.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneship.compute.budget import BudgetExceededError, Spend, budget_exceeded
from tuneship.compute.pod_status import STATUS_PORT, TOKEN_HEADER
from tuneship.compute.runpod import PodLostError, TrainingPod, pod_cost_usd, read_stage_result
from tuneship.config import PipelineConfig, RunPodComputeConfig
from tuneship.runpod.client import RunPodClient

HUB_CHECK_EVERY_S = 60.0
"""While the pod reports training, how often the staging repo is read for its result."""


class PodStartupTimeoutError(PodLostError):
    """The pod did not finish its start-up phase (image pull, install) in time."""


class PodUnresponsiveError(PodLostError):
    """A RUNNING pod's status endpoint stopped answering for longer than the grace period."""


@dataclass(frozen=True)
class LiveProgress:
    """One look at a training pod: phase, step, losses, speed, ETA and cost so far."""

    phase: str
    elapsed_s: float
    cost_usd: float
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None

    @property
    def percent(self) -> float | None:
        """Share of steps done (0-100), or None before training reports."""
        if not self.step or not self.max_steps:
            return None
        return min(100.0, 100.0 * self.step / self.max_steps)

    def describe(self) -> str:
        """One log line."""
        parts = [self.phase]
        if self.step is not None and self.max_steps:
            parts.append(f"step {self.step}/{self.max_steps}")
        for label, value in (("loss", self.loss), ("eval loss", self.eval_loss)):
            if value is not None:
                parts.append(f"{label} {value:.4g}")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:,.0f} tokens/s")
        if self.eta_s is not None:
            parts.append(f"ETA {self.eta_s / 60:.1f} min")
        parts.append(f"${self.cost_usd:.4f} so far")
        return ", ".join(parts)


def read_pod_status(
    client: RunPodClient, pod_id: str, token: str, timeout_s: float = 10.0
) -> dict[str, Any] | None:
    """GET the pod's status endpoint through the proxy; None when it does not answer."""
    request = urllib.request.Request(client.proxy_url(pod_id, STATUS_PORT) + "/status")
    request.add_header(TOKEN_HEADER, token)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except (OSError, ValueError):  # HTTPError is an OSError: 502 while booting, 401...
        return None


def request_pod_stop(client: RunPodClient, pod_id: str, token: str) -> bool:
    """POST the stop action; True when the pod took it."""
    request = urllib.request.Request(
        client.proxy_url(pod_id, STATUS_PORT) + "/stop", data=b"{}", method="POST"
    )
    request.add_header(TOKEN_HEADER, token)
    try:
        with urllib.request.urlopen(request, timeout=10.0) as response:
            return int(response.status) < 300
    except OSError:
        return False


def live_progress(
    status: dict[str, Any], pod: TrainingPod, spent_before: Spend, tokens_per_step: float | None
) -> LiveProgress:
    """Turn a status answer into the numbers shown (cost: earlier pods plus this one)."""
    progress = status.get("progress") or {}
    logs = progress.get("logs") or {}
    step, max_steps = progress.get("step"), progress.get("max_steps")
    rate = status.get("steps_per_s")
    eta = None
    if rate and step is not None and max_steps:
        eta = max(0.0, (max_steps - step) / rate)
    return LiveProgress(
        phase=str(status.get("phase", "?")),
        elapsed_s=round(time.time() - pod.started_at, 1),
        cost_usd=round(spent_before.usd + pod_cost_usd(pod), 4),
        step=step,
        max_steps=max_steps,
        loss=logs.get("loss"),
        eval_loss=logs.get("eval_loss"),
        tokens_per_s=rate * tokens_per_step if rate and tokens_per_step else None,
        eta_s=eta,
    )


class PodHealth:
    """Whether a pod's status endpoint answers as it should: once within the start-up time,
    then never silent for longer than the grace period. One per pod and wait.

    Args:
        client: The RunPod client (its proxy URL reaches the endpoint).
        pod: The pod.
        settings: ``compute.runpod`` (``startup_timeout_s``, ``unresponsive_grace_s``).
        token: The run's status token.
        log: Gets the start-up time and phase changes.
    """

    def __init__(
        self,
        client: RunPodClient,
        pod: TrainingPod,
        settings: RunPodComputeConfig,
        token: str,
        log: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.client = client
        self.pod = pod
        self.settings = settings
        self.token = token
        self.log = log
        self.answered_at: float | None = None
        self.last_phase = ""

    def check(self) -> dict[str, Any] | None:
        """Read the status once; return it (None when silent) or raise if the pod is lost.

        Raises:
            PodStartupTimeoutError: Never answered within ``startup_timeout_s``.
            PodUnresponsiveError: Silent for longer than ``unresponsive_grace_s``.
        """
        pod, settings = self.pod, self.settings
        now = time.time()
        # No need to wait longer for one answer than the silence allowed in total.
        timeout = min(10.0, max(1.0, settings.unresponsive_grace_s / 2))
        status = read_pod_status(self.client, pod.pod_id, self.token, timeout)
        if status is not None:
            if self.answered_at is None:
                self.log(f"pod {pod.pod_id} started up in {now - pod.started_at:.0f} s")
            self.answered_at = now
            phase = str(status.get("phase", "?"))
            if phase != self.last_phase:
                self.log(f"pod phase: {phase}")
                self.last_phase = phase
        elif self.answered_at is None and now - pod.started_at > settings.startup_timeout_s:
            raise PodStartupTimeoutError(
                f"pod {pod.name} ({pod.pod_id}) did not finish its start-up phase (image pull, "
                f"install, input download) within compute.runpod.startup_timeout_s="
                f"{settings.startup_timeout_s:g} s; its status endpoint never answered"
            )
        elif (
            self.answered_at is not None and now - self.answered_at > settings.unresponsive_grace_s
        ):
            raise PodUnresponsiveError(
                f"pod {pod.name} ({pod.pod_id}) is RUNNING but its status endpoint has not "
                f"answered for {now - self.answered_at:.0f} s (compute.runpod.unresponsive_grace_s="
                f"{settings.unresponsive_grace_s:g})"
            )
        return status


def watch_training_pod(
    client: RunPodClient,
    api: Any,
    pod: TrainingPod,
    config: PipelineConfig,
    *,
    token: str,
    spent_before: Spend,
    tokens_per_step: float | None = None,
    on_progress: Callable[[LiveProgress], None] = lambda _p: None,
    log: Callable[[str], None] = lambda _m: None,
) -> Any:
    """Follow the pod's training until its result; enforce start-up, silence and budget.

    Args:
        client: The RunPod client.
        api: An ``HfApi`` that reads the staging repo.
        pod: The rented pod.
        config: The run's configuration (``compute.runpod`` limits).
        token: The run's status token (the pod has it as a secret).
        spent_before: Cost and hours of the run's earlier (lost) pods.
        tokens_per_step: Training tokens per optimizer step, for tokens/s; None hides it.
        on_progress: Gets every status the pod answers with.
        log: Gets phase changes and decisions.

    Returns:
        The training result.

    Raises:
        PodStartupTimeoutError: Start-up took longer than ``startup_timeout_s``.
        PodUnresponsiveError: The endpoint was silent for longer than ``unresponsive_grace_s``.
        PodLostError: The pod went away or exited without a result.
        BudgetExceededError: ``max_usd`` or ``max_hours`` was reached (a checkpoint is pushed).
        TuneshipError: Training failed on the pod (its own error).
    """
    settings = config.compute.runpod
    health = PodHealth(client, pod, settings, token, log)
    hub_checked = 0.0
    status: dict[str, Any] | None = None
    while True:
        # While the pod says it trains, its result cannot be there yet: the Hub is read only
        # now and then (a read per poll would meet its rate limits on a long run).
        busy = status is not None and status.get("phase") in ("starting", "train")
        if not busy or time.monotonic() - hub_checked >= HUB_CHECK_EVERY_S:
            hub_checked = time.monotonic()
            found = read_stage_result(api, pod, "train")
            if found is not None:
                return found
        state = client.get_pod(pod.pod_id)
        if state is None or state.get("desiredStatus") in ("EXITED", "TERMINATED"):
            found = read_stage_result(api, pod, "train")  # it may have landed meanwhile
            if found is not None:
                return found
            gone = "is gone" if state is None else "exited"
            raise PodLostError(
                f"training pod {pod.name} ({pod.pod_id}) {gone} before the train stage "
                "finished; see the pod's logs in the RunPod console"
            )
        status = health.check()
        if status is not None:
            on_progress(live_progress(status, pod, spent_before, tokens_per_step))
        now = time.time()
        spend = Spend(
            usd=spent_before.usd + pod_cost_usd(pod, now),
            hours=spent_before.hours + (now - pod.started_at) / 3600,
        )
        reached = budget_exceeded(config, spend)
        if reached is not None:
            raise stop_for_budget(client, pod, config, token, spent_before, reached, log)
        time.sleep(settings.status_interval_s)


def stop_for_budget(
    client: RunPodClient,
    pod: TrainingPod,
    config: PipelineConfig,
    token: str,
    spent_before: Spend,
    reached: str,
    log: Callable[[str], None] = lambda _m: None,
) -> BudgetExceededError:
    """Ask the pod to push a checkpoint and stop, wait for it, and describe the outcome.

    The pod is not terminated here (the caller's clean-up does that).

    Returns:
        The error to raise: what was spent and where the checkpoint is.
    """
    settings = config.compute.runpod
    log(f"{reached}: asking pod {pod.pod_id} to push a checkpoint and stop")
    asked = request_pod_stop(client, pod.pod_id, token)
    checkpoint = None
    deadline = time.monotonic() + settings.stop_timeout_s
    while asked and time.monotonic() < deadline:
        status = read_pod_status(client, pod.pod_id, token)
        if status is not None and status.get("phase") in ("stopped", "done", "failed"):
            checkpoint = status.get("checkpoint")
            break
        state = client.get_pod(pod.pod_id)
        if state is None or state.get("desiredStatus") != "RUNNING":
            break
        time.sleep(min(settings.status_interval_s, 5.0))
    spent = spent_before.usd + pod_cost_usd(pod)
    repo = config.publish.repo_id
    if checkpoint:
        where = (
            f"the newest checkpoint, {checkpoint}, is on the 'checkpoints' branch of {repo}; "
            "raise the budget and run again to resume from it (training.resume_from_checkpoint"
            "=auto)"
        )
    elif not asked:
        where = (
            "the pod did not take the stop request; the newest checkpoint pushed earlier (if "
            f"any) is on the 'checkpoints' branch of {repo}"
        )
    else:
        where = (
            f"the pod did not confirm a checkpoint within compute.runpod.stop_timeout_s="
            f"{settings.stop_timeout_s:g} s; look on the 'checkpoints' branch of {repo}"
        )
    return BudgetExceededError(
        f"training stopped: {reached}; ${spent:.2f} spent on RunPod pods in total; {where}"
    )
