"""The account's live training pods (``tuneship-<run>-train``), for ``deployments list``.

Training pods are not deployments in the registry (they live only while a run trains),
so they are read from RunPod itself: what runs now, its price per hour and since when
(the ``TUNESHIP_CREATED_AT`` stamp every tuneship pod carries).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from tuneship.runpod.client import RunPodClient, created_at
from tuneship.runpod.specs import RESOURCE_PREFIX

TRAINING_SUFFIX = "-train"


@dataclass(frozen=True)
class TrainingPodRow:
    """One live training pod.

    Attributes:
        name: ``tuneship-<run>-train``.
        pod_id: RunPod's id.
        gpu: ``<count> x <GPU type>``.
        usd_per_hour: RunPod's price for the whole pod (all GPUs), or None.
        since: When tuneship created it (epoch seconds), or None without a stamp.
        usd_so_far: Price x time since creation, or None when either is unknown.
        status: RunPod's ``desiredStatus``.
    """

    name: str
    pod_id: str
    gpu: str
    usd_per_hour: float | None
    since: float | None
    usd_so_far: float | None
    status: str

    def as_json(self) -> dict[str, Any]:
        """The row for ``deployments list --json`` (``kind: training``)."""
        return {"kind": "training", **asdict(self)}


def list_training_pods(client: RunPodClient, *, now: float | None = None) -> list[TrainingPodRow]:
    """Every ``tuneship-*-train`` pod on the account, oldest first."""
    now = time.time() if now is None else now
    rows = []
    for pod in client.list_pods():
        name = str(pod.get("name") or "")
        if not (name.startswith(RESOURCE_PREFIX) and name.endswith(TRAINING_SUFFIX)):
            continue
        price = float(pod.get("costPerHr") or 0) or None
        since = created_at(pod)
        so_far = None
        if price is not None and since is not None:
            so_far = round(price * max(now - since, 0.0) / 3600, 4)
        gpu = (pod.get("machine") or {}).get("gpuDisplayName") or pod.get("gpuTypeId") or "?"
        rows.append(
            TrainingPodRow(
                name=name,
                pod_id=str(pod.get("id")),
                gpu=f"{pod.get('gpuCount') or 1} x {gpu}",
                usd_per_hour=price,
                since=since,
                usd_so_far=so_far,
                status=str(pod.get("desiredStatus") or "?"),
            )
        )
    return sorted(rows, key=lambda r: r.since or 0.0)
