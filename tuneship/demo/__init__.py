"""The demo: a tiny real model and sample data, so tuneship runs with no account or GPU."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def demo_config_path() -> Path:
    """Return the path of the shipped demo config (the same as deployments/demo.yaml)."""
    return Path(str(resources.files("tuneship.demo") / "demo.yaml"))
