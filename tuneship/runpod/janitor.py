"""Find and remove forgotten ``tuneship-`` pods, endpoints and templates on RunPod.

A crashed process, a killed flow or a lost laptop can leave a rented pod billing. Every
resource tuneship creates is named ``tuneship-...`` and carries its creation time (a pod
in its ``TUNESHIP_CREATED_AT`` env, a template in its readme; an endpoint has its
template's), so this module can list those older than an age and remove them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from tuneship.errors import TuneshipError
from tuneship.runpod.client import RunPodClient, created_at
from tuneship.runpod.specs import RESOURCE_PREFIX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leftover:
    """One ``tuneship-`` resource on the account.

    Attributes:
        kind: ``pod``, ``endpoint`` or ``template``.
        id: RunPod's id (the name for a template, which is deleted by name).
        name: Its name.
        age_s: Seconds since tuneship created it, or None when it carries no stamp.
        usd_per_hour: What a pod costs per hour (None for the others).
    """

    kind: str
    id: str
    name: str
    age_s: float | None
    usd_per_hour: float | None = None

    def describe(self) -> str:
        """One line for the CLI: ``pod tuneship-x (abc) 3.2 h old, $0.48/h``."""
        age = "age unknown" if self.age_s is None else f"{self.age_s / 3600:.1f} h old"
        price = f", ${self.usd_per_hour:.2f}/h" if self.usd_per_hour else ""
        return f"{self.kind} {self.name} ({self.id}) {age}{price}"


def parse_age(text: str) -> float:
    """``90s``, ``30m``, ``2h`` or ``1d`` (or plain seconds) as seconds.

    Raises:
        ValueError: Not such an age.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    value = text.strip().lower()
    factor = units.get(value[-1:])
    number = value[:-1] if factor else value
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not an age such as 90s, 30m, 2h or 1d") from None
    if seconds < 0:
        raise ValueError(f"{text!r}: an age cannot be negative")
    return seconds


def list_leftovers(client: RunPodClient, *, now: float | None = None) -> list[Leftover]:
    """Every ``tuneship-`` pod, endpoint and template with its age (pods first)."""
    now = time.time() if now is None else now

    def age(stamp: float | None) -> float | None:
        return None if stamp is None else max(0.0, now - stamp)

    found: list[Leftover] = []
    for pod in client.list_pods():
        name = str(pod.get("name") or "")
        if name.startswith(RESOURCE_PREFIX):
            price = pod.get("costPerHr")
            found.append(
                Leftover(
                    "pod", str(pod["id"]), name, age(created_at(pod)), float(price or 0) or None
                )
            )
    templates = [
        t for t in client.list_templates() if str(t.get("name") or "").startswith(RESOURCE_PREFIX)
    ]
    template_age = {str(t["id"]): age(created_at(t)) for t in templates}
    for endpoint in client.list_endpoints():
        name = str(endpoint.get("name") or "")
        if name.startswith(RESOURCE_PREFIX):
            found.append(
                Leftover(
                    "endpoint",
                    str(endpoint["id"]),
                    name,
                    template_age.get(str(endpoint.get("templateId"))),
                )
            )
    for template in templates:
        found.append(
            Leftover(
                "template",
                str(template["name"]),
                str(template["name"]),
                template_age[str(template["id"])],
            )
        )
    return found


def select_older(leftovers: list[Leftover], older_than_s: float) -> list[Leftover]:
    """The leftovers known to be older than ``older_than_s`` (unknown ages are kept)."""
    return [r for r in leftovers if r.age_s is not None and r.age_s >= older_than_s]


def remove_leftovers(
    client: RunPodClient, leftovers: list[Leftover]
) -> tuple[list[str], list[str]]:
    """Terminate the pods, delete the endpoints (scaled to 0 first), then the templates.

    Each removal is tried once; one that fails is reported, not retried (RunPod refuses to
    delete a template for about 2 minutes after its endpoint went: run the janitor again).

    Returns:
        ``(removed, failed)``: a line for each.
    """
    removed: list[str] = []
    failed: list[str] = []
    order = {"pod": 0, "endpoint": 1, "template": 2}
    endpoints = {str(e["id"]): e for e in client.list_endpoints()}
    for item in sorted(leftovers, key=lambda r: order[r.kind]):
        try:
            if item.kind == "pod":
                client.terminate_pod(item.id)
            elif item.kind == "endpoint":
                endpoint = endpoints.get(item.id)
                if endpoint is None:
                    continue  # already gone
                if endpoint.get("workersMin") or endpoint.get("workersMax"):
                    client.scale_endpoint_to_zero(endpoint)
                client.delete_endpoint(item.id)
            else:
                client.delete_template(item.name)
        except TuneshipError as exc:
            log.warning("could not remove %s: %s", item.describe(), exc)
            failed.append(f"{item.describe()}: {exc}")
            continue
        removed.append(item.describe())
    return removed, failed
