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
