"""Secret masking: the regexes, registered values, the logging filter, and Prefect run logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from tuneship.secrets import (
    SecretMaskingFilter,
    clear_registered_secrets,
    install_secret_filter,
    mask_secrets,
    register_secret,
)

HF_TOKEN = "hf_TuneshipLeakCanary0123456789abcdEF"
RUNPOD_KEY = "rpa_TUNESHIPLEAKCANARY0123456789ABCDEFGH"


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    clear_registered_secrets()
    yield
    clear_registered_secrets()


def test_mask_secrets_masks_token_shapes_but_keeps_identifiers() -> None:
    text = (
        f"token={HF_TOKEN} key={RUNPOD_KEY} via hf_hub_download and hf_transfer, "
        "org key api_org_ABCDEFGH12345678"
    )
    masked = mask_secrets(text)
    assert HF_TOKEN not in masked
    assert RUNPOD_KEY not in masked
    assert "api_org_ABCDEFGH12345678" not in masked
    assert "token=hf_***" in masked and "key=rpa_***" in masked
    # Names of functions and packages stay readable.
    assert "hf_hub_download" in masked and "hf_transfer" in masked


def test_registered_and_extra_secrets_are_masked() -> None:
    plain = "s3cr3t-password-value"
    register_secret(SecretStr(plain))
    register_secret("abc")  # too short to mask safely: ignored
    assert mask_secrets(f"pw={plain} abc") == "pw=*** abc"
    assert mask_secrets("one-off-secret!", "one-off-secret!") == "***"
    assert mask_secrets("nothing to see") == "nothing to see"


def test_filter_masks_messages_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tuneship.test_secrets")
    install_secret_filter(extra_loggers=("tuneship.test_secrets",))
    register_secret("registered-value-123")
    with caplog.at_level(logging.INFO, logger="tuneship.test_secrets"):
        logger.info("token %s and %s", HF_TOKEN, "registered-value-123")
        try:
            raise RuntimeError(f"auth failed for {RUNPOD_KEY}")
        except RuntimeError:
            logger.exception("upload failed")
    assert HF_TOKEN not in caplog.text
    assert RUNPOD_KEY not in caplog.text
    assert "registered-value-123" not in caplog.text
    assert "token hf_*** and ***" in caplog.text
    assert "auth failed for rpa_***" in caplog.text  # the traceback was masked too


def test_install_is_idempotent() -> None:
    install_secret_filter(extra_loggers=("tuneship.idempotent",))
    install_secret_filter(extra_loggers=("tuneship.idempotent",))
    for name in ("prefect.flow_runs", "prefect.task_runs", "tuneship.idempotent"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, SecretMaskingFilter) for f in filters) == 1
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, SecretMaskingFilter) for f in handler.filters) == 1


@pytest.mark.slow
def test_prefect_run_logs_stored_in_the_api_are_masked(prefect_harness: None) -> None:
    from prefect import flow, get_client, get_run_logger, task
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    @task
    def leaky_task(token: str) -> str:
        get_run_logger().warning("task sees %s", token)
        return "done"

    @flow(log_prints=True)
    def leaky_flow(token: SecretStr) -> str:
        install_secret_filter()
        raw = token.get_secret_value()  # a careless flow that formats the raw token
        get_run_logger().info(f"flow got token {raw}")
        print(f"printing {RUNPOD_KEY}")
        return leaky_task(raw)

    state = leaky_flow(SecretStr(HF_TOKEN), return_state=True)
    assert state.is_completed()
    APILogHandler().flush()  # ship queued run logs to the API before reading them back
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    messages = [log.message for log in logs]
    assert any("flow got token hf_***" in m for m in messages), messages
    assert any("task sees hf_***" in m for m in messages), messages
    assert any("printing rpa_***" in m for m in messages), messages
    for message in messages:
        assert HF_TOKEN not in message
        assert RUNPOD_KEY not in message
