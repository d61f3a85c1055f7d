"""``tuneship plan serve`` and ``tuneship plan train`` through typer's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from _planning_helpers import fixture_path
from typer.testing import CliRunner

from tuneship.cli.plan import plan_app
from tuneship.planning.render import plan_table_rows
from tuneship.planning.serving import plan_serving
from tuneship.planning.training import plan_training

runner = CliRunner()
LLAMA_70B = str(fixture_path("meta-llama--Llama-3.3-70B-Instruct"))
OPTION_KEYS = {
    "gpu",
    "gpu_count",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "weights_gib",
    "kv_bytes_per_token",
    "kv_cache_gib",
    "kv_tokens",
    "max_concurrency",
    "usd_per_hour",
    "fits",
    "reasons",
}


def test_serve_human_table_shows_choice_and_every_rejection() -> None:
    result = runner.invoke(plan_app, ["serve", LLAMA_70B, "--gpu", "A100 40GB"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Chosen: 4 x A100 40GB, TP 4" in out
    assert "TP 3 does not divide 64 attention heads" in out
    assert "weights 65.71 GiB per GPU exceed the 37.41 GiB budget" in out
    rows = [line for line in out.splitlines() if "A100 40GB" in line and line.lstrip()[:1] in ">A"]
    assert rows[0].startswith(">")  # chosen row first


def test_serve_json_contract() -> None:
    result = runner.invoke(plan_app, ["serve", LLAMA_70B, "--gpu", "a100-40gb", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model"] == LLAMA_70B
    assert data["chosen"]["tensor_parallel_size"] == 4
    assert len(data["options"]) == 8
    for option in data["options"]:
        assert set(option) >= OPTION_KEYS
        assert isinstance(option["reasons"], list)
        assert option["fits"] == (not option["reasons"])


def test_serve_json_nothing_fits_exits_1_with_suggestion() -> None:
    result = runner.invoke(
        plan_app, ["serve", LLAMA_70B, "--gpu", "A100 40GB", "--gpus", "2", "--json"]
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["chosen"] is None
    assert data["suggestion"]["gpu_count"] == 4


def test_serve_checks_a_fraction_against_free_memory(tmp_path: Path) -> None:
    model = tmp_path / "llama-3b"
    model.mkdir()
    shutil.copyfile(fixture_path("meta-llama--Llama-3.2-3B-Instruct"), model / "config.json")
    result = runner.invoke(
        plan_app,
        [
            "serve",
            str(model),
            "--gpu-memory-gib",
            "23.56",
            "--free-gib",
            "17.88",
            "--gpus",
            "1",
            "--gpu-memory-utilization",
            "0.8",
            "--max-model-len",
            "8192",
        ],
    )
    assert result.exit_code == 1
    assert "needs 18.85 GiB free at start but 17.88 of 23.56 GiB is free" in result.output
    auto = runner.invoke(
        plan_app,
        [
            "serve",
            str(model),
            "--gpu-memory-gib",
            "23.56",
            "--free-gib",
            "17.88",
            "--gpus",
            "1",
            "--json",
        ],
    )
    assert auto.exit_code == 0
    chosen = json.loads(auto.output)["chosen"]
    assert chosen["gpu_memory_utilization"] * 23.56 <= 17.88


def test_serve_fp8_and_tp_flags() -> None:
    result = runner.invoke(
        plan_app,
        ["serve", LLAMA_70B, "--gpu", "H100", "--tp", "2", "--kv-cache-dtype", "fp8", "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [o["tensor_parallel_size"] for o in data["options"]] == [2]
    # 80 layers x K and V x (8 KV heads / TP 2) x head_dim 128 x 1 byte (fp8)
    assert data["chosen"]["kv_bytes_per_token"] == 80 * 2 * (8 // 2) * 128 * 1


def test_serve_bad_input_exits_2() -> None:
    bad_len = runner.invoke(plan_app, ["serve", LLAMA_70B, "--max-model-len", "lots"])
    assert bad_len.exit_code == 2
    unknown = runner.invoke(plan_app, ["serve", LLAMA_70B, "--gpu", "Voodoo 5"])
    assert unknown.exit_code == 2
    assert "unknown GPU" in unknown.output
    both = runner.invoke(plan_app, ["serve", LLAMA_70B, "--gpu", "L4", "--gpu-memory-gib", "9"])
    assert both.exit_code == 2
    missing = runner.invoke(plan_app, ["serve", "/no/such/model/config.json"])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_train_human_and_json() -> None:
    model = str(fixture_path("meta-llama--Llama-3.1-8B-Instruct"))
    human = runner.invoke(
        plan_app,
        ["train", model, "--method", "qlora", "--seq-len", "4096", "--gradient-checkpointing"],
    )
    assert human.exit_code == 0, human.output
    assert "Peak on one GPU:" in human.output and "logits" in human.output
    assert "Chosen: 1 x" in human.output
    result = runner.invoke(
        plan_app, ["train", model, "--method", "full", "--batch-size", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["method"] == "full" and data["batch_size"] == 2
    assert data["peak_gib"] > 100
    assert {"base_weights", "optimizer_states", "activations", "logits"} <= set(data["parts"])
    assert data["chosen"]["gpu_count"] > 1


def test_train_bad_method_exits_2() -> None:
    model = str(fixture_path("Qwen--Qwen3-8B"))
    assert runner.invoke(plan_app, ["train", model, "--method", "dora"]).exit_code == 2
    assert runner.invoke(plan_app, ["train", model]).exit_code == 2  # --method is required


def test_table_rows_for_artifacts() -> None:
    from _planning_helpers import fixture_facts

    serving = plan_serving(fixture_facts("Qwen--Qwen3-8B"))
    rows = plan_table_rows(serving)
    assert len(rows) == len(serving.options)
    assert rows[0]["chosen"] is True and all(r["chosen"] is False for r in rows[1:])
    assert all(isinstance(r["reasons"], str) for r in rows)
    training = plan_table_rows(plan_training(fixture_facts("Qwen--Qwen3-8B"), "lora"))
    assert {"gpu", "gpu_count", "peak_gib", "fits", "reasons"} <= set(training[0])
