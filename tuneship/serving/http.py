"""The one small HTTP GET the serving targets use for readiness and health probes."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(url: str, api_key: str | None = None, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """GET ``url`` (with a bearer key when given); return the status and body.

    HTTP errors are answers (their status is returned); connection errors raise
    ``OSError`` so a caller can wait and try again.
    """
    request = urllib.request.Request(url)
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def vllm_healthy(url: str, timeout_s: float = 5.0) -> bool:
    """Whether vLLM's ``/health`` answers 200.

    Args:
        url: The deployment's OpenAI base URL (ending in ``/v1``); ``/health`` sits beside it.
        timeout_s: How long to wait for the answer.

    Returns:
        False also when the server cannot be reached (a stopped server is not healthy).
    """
    try:
        status, _ = http_get(url.removesuffix("/v1") + "/health", None, timeout_s)
    except OSError:
        return False
    return status == 200
