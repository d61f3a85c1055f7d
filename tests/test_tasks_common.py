"""The shared task rules: which errors are transient, and how pipeline_task retries."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tuneship.errors import ConfigError, TransientError, is_transient
from tuneship.tasks._common import NO_RETRY, RetryPolicy, pipeline_task


def _http_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://hub.example/api")
    response = httpx.Response(status, request=request)
    return httpx.HTTPStatusError(f"HTTP {status}", request=request, response=response)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_rate_limits_and_server_errors_are_transient(status: int) -> None:
    assert is_transient(_http_error(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_transient(status: int) -> None:
    assert not is_transient(_http_error(status))


def test_network_and_own_transient_errors_are_transient() -> None:
    assert is_transient(TransientError("busy"))
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert is_transient(httpx.ConnectError("refused"))
    assert not is_transient(ConfigError("bad value"))
    assert not is_transient(ValueError("bad"))


@pytest.mark.usefixtures("prefect_harness")
def test_pipeline_task_retries_only_transient_errors() -> None:
    calls: list[str] = []

    @pipeline_task("flaky", RetryPolicy(2, (0,)))
    def flaky(error: str) -> str:
        calls.append(error)
        if len(calls) == 1:
            raise TransientError("busy") if error == "transient" else ConfigError("bad")
        return "ok"

    assert flaky("transient") == "ok"
    assert calls == ["transient", "transient"]
    calls.clear()
    with pytest.raises(ConfigError):
        flaky("config")
    assert calls == ["config"]


@pytest.mark.usefixtures("prefect_harness")
def test_pipeline_task_never_caches_and_no_retry_runs_once() -> None:
    calls: list[Any] = []

    @pipeline_task("once", NO_RETRY)
    def once(value: int) -> int:
        calls.append(value)
        if value < 0:
            raise TransientError("busy")
        return value

    assert once(1) == 1 and once(1) == 1
    assert calls == [1, 1]
    with pytest.raises(TransientError):
        once(-1)
    assert calls == [1, 1, -1]
