"""What a reader sees of a run: metrics table, loss chart, escaped tables, names and tags."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from tuneship.config import PipelineConfig, build_config
from tuneship.flows.finetune import resolve_flow_config
from tuneship.flows.run_labels import build_run_tags, format_run_name
from tuneship.tables import escape_markdown_cell, format_markdown_table
from tuneship.training.metrics_report import (
    build_metrics_table,
    render_loss_chart_markdown,
    render_loss_chart_svg,
    round_for_readers,
)
from tuneship.training.specs import TrainProgress, TrainResult


def _result() -> TrainResult:
    return TrainResult(
        output_path="out",
        is_adapter=True,
        method="sft",
        adapter="lora",
        global_step=20,
        base_eval_loss=6.276812,
        eval_loss=1.80123,
        loss_history=[(5, 5.123456), (10, 3.0), (15, 2.5), (20, 2.0)],
        eval_loss_history=[(10, 2.512345), (20, 1.80123)],
    )


def test_metrics_table_has_every_column_in_every_row() -> None:
    rows = build_metrics_table(_result())
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert all(list(r) == ["step", "loss", "eval_loss"] for r in rows)
    assert rows[0] == {"step": 5, "loss": 5.123, "eval_loss": ""}
    assert rows[1]["eval_loss"] == 2.512


def test_round_for_readers_keeps_four_significant_digits() -> None:
    assert round_for_readers(0.000123456) == 0.0001235
    assert round_for_readers(12.34567) == 12.35


def test_loss_chart_is_svg_with_both_series_and_the_base_line() -> None:
    result = _result()
    svg = render_loss_chart_svg(
        result.loss_history, result.eval_loss_history, result.base_eval_loss
    )
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f"{ns}polyline")
    assert [len(p.get("points", "").split()) for p in lines] == [4, 2]
    assert any(e.get("stroke-dasharray") for e in root.iter(f"{ns}line"))
    texts = "".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "base eval loss 6.277" in texts and "eval loss" in texts

    # The y axis is labelled with round values that cover every point.
    from tuneship.training.metrics_report import nice_ticks

    values = [v for _, v in [*result.loss_history, *result.eval_loss_history]]
    shown = [*values, result.base_eval_loss]
    ticks = nice_ticks(min(shown), max(shown))
    labels = [t.text for t in root.iter(f"{ns}text") if t.get("text-anchor") == "end"]
    assert labels == [f"{t:g}" for t in ticks]
    assert ticks[0] <= min(values) and ticks[-1] >= result.base_eval_loss

    markdown = render_loss_chart_markdown(result)
    encoded = re.search(r"\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert encoded and base64.b64decode(encoded.group(1)).decode() == svg
    assert "6.277 (base) -> 1.801" in markdown


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.24, 4.893, [0, 1, 2, 3, 4, 5]),
        (0.0012, 0.0049, [0.001, 0.002, 0.003, 0.004, 0.005]),
        (1.0, 1.0, [0.5, 0.75, 1.0, 1.25, 1.5]),
    ],
)
def test_chart_ticks_are_round_and_cover_the_values(
    low: float, high: float, expected: list[float]
) -> None:
    from tuneship.training.metrics_report import nice_ticks

    assert nice_ticks(low, high) == pytest.approx(expected)


def test_markdown_cells_render_as_text() -> None:
    assert escape_markdown_cell("-") == "\\-"
    assert escape_markdown_cell("a|b\nc") == "a\\|b c"
    table = format_markdown_table(("run", "demo"), [("revision", "-")])
    assert table.splitlines()[0] == "| run | demo |"
    assert table.splitlines()[2] == "| revision | \\- |"


def test_run_names_and_tags_come_from_the_config() -> None:
    when = datetime(2026, 12, 3, 15, 4, 5, tzinfo=UTC)
    assert format_run_name("my-run", when) == "my-run-20261203-150405"
    config = build_config({"training": {"method": "dpo", "adapter": "qlora"}})
    tags = build_run_tags(config)
    assert {"method:dpo", "adapter:qlora", "publish:local"} <= set(tags)
    assert f"serve:{config.serve.target}" in tags
    assert f"base:{config.model.base}" in tags


def test_the_config_form_wins_over_a_prefilled_config_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "run.yaml"
    path.write_text("name: from-file\npublish:\n  repo_id: acme/from-file\n", encoding="utf-8")
    assert resolve_flow_config({"name": "from-form"}, str(path), None).name == "from-form"
    form = PipelineConfig(name="model-form")
    assert resolve_flow_config(form, str(path), ["training.max_steps=3"]).training.max_steps == 3
    # An empty form is no form: the file is read.
    assert resolve_flow_config({}, str(path), None).name == "from-file"
    assert resolve_flow_config(None, None, None) == PipelineConfig()


def test_cpu_training_plan_is_a_rent_list() -> None:
    from _planning_helpers import fixture_facts

    from tuneship.planning import plan_table_rows, plan_training
    from tuneship.planning.training_time import planned_tokens_per_gpu

    tokens = planned_tokens_per_gpu(
        300, 1.0, None, batch_size=8, gradient_accumulation_steps=1, seq_len=512
    )
    plan = plan_training(fixture_facts("Qwen--Qwen3-8B"), "lora", tokens_per_gpu=tokens)
    rows = plan_table_rows(plan, rent_list=True)
    assert rows and all("chosen" not in r for r in rows)
    # One row per GPU type: the fewest GPUs of it that fit.
    assert len({r["gpu"] for r in rows}) == len(rows) == len({o.gpu for o in plan.options})
    for row in rows:
        fitting_counts = [o.gpu_count for o in plan.options if o.gpu == row["gpu"] and o.fits]
        if fitting_counts:
            assert row["fits"] and row["gpu_count"] == min(fitting_counts)
    fitting = [r["usd_per_hour"] for r in rows if r["fits"]]
    priced = [p for p in fitting if p != ""]
    # Cheapest first; options without a listed price come after the priced ones.
    assert priced and priced == sorted(priced) and fitting[: len(priced)] == priced
    # Every priced GPU has the time and cost of the planned steps filled in, and the cost
    # is its price for that time.
    by_option = {(o.gpu, o.gpu_count): o for o in plan.options}
    for row in rows:
        if row["usd_per_hour"] == "":
            continue
        option = by_option[(row["gpu"], row["gpu_count"])]
        assert row["estimated_time"] and row["price"] in ("pod", "serverless")
        assert option.estimated_hours and option.estimated_cost_usd
        expected = option.estimated_hours * option.usd_per_hour
        assert option.estimated_cost_usd == pytest.approx(expected, rel=0.01)
        shown = row["estimated_cost_usd"]
        if expected < 0.005:
            assert shown == "under 0.01"
        else:
            assert float(shown.replace(",", "")) == pytest.approx(expected, abs=0.011)
    # N GPUs run the same steps in the same time, at N x the price.
    h100 = {o.gpu_count: o for o in plan.options if o.gpu == "H100 SXM"}
    assert h100[2].estimated_hours == h100[1].estimated_hours
    assert h100[2].estimated_cost_usd == pytest.approx(2 * h100[1].estimated_cost_usd, rel=0.01)


@pytest.mark.parametrize("value", ["hf_abc", "+1", "# h"])
def test_leading_markdown_characters_are_escaped(value: str) -> None:
    assert escape_markdown_cell(value).lstrip("\\") == value


def test_training_progress_prints_plain_lines_off_a_terminal() -> None:
    import io

    from tuneship.cli.progress import show_training_progress
    from tuneship.tasks.training import PROGRESS_LISTENERS, _ProgressReporter

    out = io.StringIO()
    reporter = _ProgressReporter()
    with show_training_progress(out):
        reporter(TrainProgress(step=0, max_steps=0))
        reporter(TrainProgress(step=1, max_steps=4, logs={"loss": 2.5}))
        reporter(TrainProgress(step=4, max_steps=4, logs={"loss": 1.25}))
    assert not PROGRESS_LISTENERS
    assert out.getvalue().splitlines() == [
        "training: step 1/4 loss 2.5",
        "training: step 4/4 loss 1.25",
    ]


def test_training_progress_draws_a_bar_on_a_terminal() -> None:
    import io

    from tuneship.cli.progress import show_training_progress
    from tuneship.tasks.training import _ProgressReporter

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    reporter = _ProgressReporter()
    with show_training_progress(out):
        reporter(TrainProgress(step=2, max_steps=4, logs={"loss": 2.5}))
        reporter(TrainProgress(step=4, max_steps=4, logs={"eval_loss": 1.5}))
    text = out.getvalue()
    assert "4/4" in text and "loss 2.5" in text and "eval_loss 1.5" in text
    assert "ETA" in text


def test_published_model_artifact_names_the_store_it_went_to(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tuneship.publishing.base import PublishResult
    from tuneship.publishing.local_store import LocalStorePublisher
    from tuneship.tasks.publishing import describe_published_model

    folder = tmp_path / "packaged"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    local = LocalStorePublisher(tmp_path / "store").publish(
        folder, "acme/tiny", commit_message="test"
    )
    markdown, description = describe_published_model(local)
    # A file:// link goes nowhere from the UI: the local folder is text to copy.
    assert "file://" not in markdown and f"`{local.location}`" in markdown
    assert description.startswith("The published model in the local store: acme/tiny")
    assert "Hub" not in description.split("(")[0]
    hub = PublishResult(
        target="hub",
        repo_id="acme/tiny",
        revision=local.revision,
        location="https://huggingface.co/acme/tiny",
        url=f"https://huggingface.co/acme/tiny/tree/{local.revision}",
        created_new_revision=True,
    )
    markdown, description = describe_published_model(hub)
    assert markdown == f"[acme/tiny@{local.revision[:12]}]({hub.url})"
    assert description.startswith("The published model on the Hub: acme/tiny")


def test_run_summary_artifact_is_a_list_that_renders_as_written() -> None:
    # Prefect's UI clips table cells that do not fit on one line; list items wrap.
    from tuneship.flows.finetune import RunSummary, render_summary, render_summary_list
    from tuneship.publishing.base import PublishResult

    folder = "/home/a_user/.tuneship/models/acme/my_model/revisions/" + "c" * 40
    summary = RunSummary(
        name="my-run",
        flow_run_id=None,
        base_model="acme/base*model",
        device="cpu",
        n_train=9,
        n_eval=1,
        dataset_fingerprint="ab" * 32,
        base_eval_loss=None,
        eval_loss=None,
        gate="-",
        merge_check="merged model vs float32 base + adapter: max abs logit difference 1e-05 "
        "(tolerance 0.002, float32, 4 rows; unmerged float32 noise 1e-06)",
        merged_dir="/m",
        package_dir="/p",
        published=PublishResult(
            target="local",
            repo_id="acme/my_model",
            revision="c" * 40,
            location=folder,
            created_new_revision=True,
        ),
        registry_url="sqlite:///r.db",
        model_name="acme/my_model",
        model_version="c" * 40,
    )
    markdown = render_summary_list(summary)
    lines = markdown.splitlines()
    assert lines[0] == "**run** my-run"
    items = [line for line in lines if line.startswith("- **")]
    assert [line.split("**")[1] for line in items] == [
        "base model",
        "device",
        "data",
        "dataset fingerprint",
        "eval",
        "merge check",
        "vLLM load check",
        "packaged model",
        "published",
        "revision",
        "registry",
    ]
    # Markdown characters in values are escaped, so they render as the text they are.
    assert r"acme/base\*model" in markdown and r"a\_user" in markdown
    assert "- **eval**: -" in markdown
    # The CLI keeps the table, with a real header row.
    assert render_summary(summary).splitlines()[0] == "| run | my-run |"
    # A stopped server's URL is text (the UI would make a bare URL a dead link); a kept
    # one stays a link.
    from tuneship.flows.finetune import DeploymentSummary

    served = DeploymentSummary(
        name="my-run",
        url="http://127.0.0.1:8123/v1",
        served_model_name="my_run",
        kept_running=False,
        api_key_file=None,
        question="q",
        answer="a",
        latency_s=0.1,
    )
    stopped = render_summary_list(summary.model_copy(update={"deployment": served}))
    assert (
        "- **endpoint**: `http://127.0.0.1:8123/v1` (model my\\_run; stopped at the end of the run)"
        in stopped
    )
    kept = served.model_copy(update={"kept_running": True})
    running = render_summary_list(summary.model_copy(update={"deployment": kept}))
    assert "- **endpoint**: http://127.0.0.1:8123/v1 (model my\\_run; still running)" in running
