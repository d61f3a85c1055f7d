"""Before the CLI stops Prefect's temporary API, the logs Prefect still queues are sent."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_queued_log_lines_reach_the_api_before_it_stops() -> None:
    from prefect import flow, get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.runtime import flow_run

    from tuneship.cli.shutdown import flush_to_api

    @flow
    def last_words() -> str:
        get_run_logger().info("the run's last line")
        return str(flow_run.get_id())

    run_id = last_words()
    flush_to_api()

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert "the run's last line" in [log.message for log in logs]
