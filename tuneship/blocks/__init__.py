"""Prefect blocks shipped by tuneship (registered through the ``prefect.collections`` entry point).

Importing this package registers the block classes with Prefect, which is what makes
``Block.load("huggingface-credentials/NAME")`` and ``Block.load("runpod-credentials/NAME")``
work after ``pip install tuneship``.
"""

from tuneship.blocks.credentials import (
    HuggingFaceCredentials,
    RunPodClientConfig,
    RunPodCredentials,
    load_hf_credentials,
    resolve_hf_token,
    resolve_runpod_api_key,
)

__all__ = [
    "HuggingFaceCredentials",
    "RunPodClientConfig",
    "RunPodCredentials",
    "load_hf_credentials",
    "resolve_hf_token",
    "resolve_runpod_api_key",
]
