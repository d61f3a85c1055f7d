"""The serving targets, found by name: one registry for the flows, hooks and the CLI.

Each target is one module under ``tuneship/serving`` and implements
:class:`~tuneship.serving.base.ServingTarget`. Built-in targets are registered here by
name (the names ``serve.target`` takes, and the names deployments are recorded under);
:func:`register_target` adds another (a Docker target, say) without touching callers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneship.errors import ConfigError
from tuneship.serving.base import ServingTarget

TargetFactory = Callable[..., ServingTarget]

_FACTORIES: dict[str, TargetFactory] = {}


def register_target(factory: TargetFactory, *names: str) -> None:
    """Make ``factory(**kwargs)`` the target for each of ``names``."""
    for name in names:
        _FACTORIES[name] = factory


def target_names() -> list[str]:
    """Every registered target name, sorted."""
    return sorted(_FACTORIES)


def get_target(name: str, **kwargs: Any) -> ServingTarget:
    """The target registered as ``name``, made with ``kwargs`` (e.g. ``client=``).

    Raises:
        ConfigError: No target has that name; the message lists the known ones.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(
            f"serve.target={name!r}: no such serving target; use one of {target_names()}"
        )
    return factory(**kwargs)


def _local(**kwargs: Any) -> ServingTarget:
    from tuneship.serving.local_vllm import LocalVllmTarget

    return LocalVllmTarget(**kwargs)


def _runpod_serverless(**kwargs: Any) -> ServingTarget:
    from tuneship.serving.runpod_serverless import RunPodServerlessTarget

    return RunPodServerlessTarget(**kwargs)


def _runpod_pod(**kwargs: Any) -> ServingTarget:
    from tuneship.serving.runpod_pod import RunPodPodTarget

    return RunPodPodTarget(**kwargs)


# "local" is the config's name, "local-vllm" the recorded one.
register_target(_local, "local", "local-vllm")
register_target(_runpod_serverless, "runpod-serverless")
register_target(_runpod_pod, "runpod-pod")
