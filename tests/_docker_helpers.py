"""Helpers for the Docker target's tests: the engine, a local base image, vLLM mounts.

No image can be pulled here, so the base image is a Debian root file system made with
``mmdebstrap`` from the package archive apt is configured with, imported through the SDK
and tagged locally. vLLM's CPU build is not in it: it runs from the project's own engine
venv, mounted read-only together with the Python installation its interpreter links to
(both at their host paths, so the venv's ``pyvenv.cfg`` and the ``libpython`` link resolve).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _serving_helpers import tiny_serve_options

from tuneship.config import ServeConfig
from tuneship.serving.engine import SERVER_MODULE

if TYPE_CHECKING:
    from docker import DockerClient

REQUIRE_ENV = "TUNESHIP_REQUIRE_DOCKER"
SUITE = "bookworm"
# Shared libraries that the mounted Python and vLLM's CPU wheels load and minbase lacks.
PACKAGES = (
    "libssl3",
    "libsqlite3-0",
    "libexpat1",
    "libreadline8",
    "libncursesw6",
    "libgomp1",
    "libnuma1",
)
IMAGE_REPO = "tuneship-test/debian"


def docker_client_or_skip() -> DockerClient:
    """Return a client of the engine at ``$DOCKER_HOST``; skip (fail in CI) without one."""
    from tuneship.serving.docker import DockerEngineError, docker_client

    try:
        return docker_client(os.environ.get("DOCKER_HOST"))
    except DockerEngineError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but no Docker engine answers: {exc}")
        pytest.skip(
            f'no Docker engine (start one: eval "$(bash scripts/test-dockerd.sh start)"): {exc}'
        )


def _sources_file() -> str | None:
    """The apt sources this machine uses (mmdebstrap reads them instead of a mirror URL)."""
    for candidate in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        if Path(candidate).is_file() and Path(candidate).read_text().strip():
            return candidate
    return None


def base_image(client: DockerClient) -> str:
    """Return the tag of the test base image, importing it (and building its tarball) once.

    The tarball is cached under ``~/.cache/tuneship/docker``, keyed by suite and packages.
    """
    from docker.errors import ImageNotFound

    key = hashlib.sha256(f"{SUITE} {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    tag = f"{IMAGE_REPO}:{SUITE}-{key}"
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tuneship" / "docker"
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"debian-{SUITE}-{key}.tar"
    if not tarball.is_file():
        tool = shutil.which("mmdebstrap")
        if tool is None:
            pytest.fail("mmdebstrap is missing: apt-get install -y mmdebstrap")
        partial = tarball.with_suffix(".partial.tar")
        partial.unlink(missing_ok=True)  # left by an interrupted run
        command = [tool, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE]
        command += [str(partial)]
        sources = _sources_file()
        if sources:
            command.append(sources)
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"mmdebstrap failed:\n{done.stderr[-3000:]}")
        partial.rename(tarball)
    repo, _, version = tag.partition(":")
    client.api.import_image_from_file(str(tarball), repository=repo, tag=version)
    client.images.get(tag)  # raises when the import did not produce it
    return tag


def engine_mounts(engine_python: Path) -> tuple[Path, dict[str, str]]:
    """The engine venv's interpreter and the read-only mounts that make it run in a container.

    Returns:
        The interpreter path inside the container and ``{host path: container path}``.
    """
    venv = engine_python.parent.parent.resolve()
    prefix = (venv / "bin" / "python").resolve().parent.parent
    return venv / "bin" / "python", {str(venv): str(venv), str(prefix): str(prefix)}


def docker_serve_options(engine_python: Path, image: str, **changes: Any) -> ServeConfig:
    """Serve options for the tiny model in a container running vLLM CPU from the mounts."""
    python, mounts = engine_mounts(engine_python)
    base = tiny_serve_options(engine_python).model_dump(mode="json")
    base.update(
        target="docker",
        engine_python=None,
        docker={
            "image": image,
            "entrypoint": [str(python), "-m", SERVER_MODULE],
            "mounts": mounts,
            "shm_size": "1g",
            "health_interval_s": 1.0,
        },
    )
    for key, value in changes.items():
        if key == "docker":
            base["docker"].update(value)
        else:
            base[key] = value
    return ServeConfig.model_validate(base)


def tuneship_containers(client: DockerClient) -> list[Any]:
    """Every container (running or not) that carries tuneship's run label."""
    from tuneship.serving.docker import LABEL_RUN

    return list(client.containers.list(all=True, filters={"label": LABEL_RUN}))
