"""Configuration: defaults from the seeds, YAML, --set overrides, errors that name fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuneship.config import PipelineConfig, apply_overrides, config_json_schema, load_config
from tuneship.demo import demo_config_path
from tuneship.errors import ConfigError


def test_defaults_follow_the_seed_notes() -> None:
    cfg = PipelineConfig()
    t = cfg.training
    assert t.per_device_eval_batch_size == 2
    assert t.eval_steps == 500
    assert t.save_steps == 500
    assert t.save_total_limit == 3
    assert cfg.data.eval_fraction == pytest.approx(0.1)
    # Without evaluation the seed's save strategy "epoch" stands as is.
    assert (
        PipelineConfig.model_validate({"training": {"eval_strategy": "no"}}).training.save_strategy
        == "epoch"
    )


def test_user_facing_keys_keep_their_names() -> None:
    cfg = load_config(
        None,
        [
            "model.base=org/base",
            "data.path=x.jsonl",
            "data.format=alpaca",
            "data.eval_fraction=0.2",
            "training.method=dpo",
            "training.max_steps=7",
            "training.eval_strategy=epoch",
            "publish.target=hub",
            "publish.repo_id=me/model",
            "serve.target=none",
        ],
    )
    assert (cfg.model.base, cfg.data.path, cfg.data.format) == ("org/base", "x.jsonl", "alpaca")
    assert cfg.data.eval_fraction == pytest.approx(0.2)
    assert (cfg.training.method, cfg.training.max_steps) == ("dpo", 7)
    assert cfg.training.eval_strategy == "epoch"
    assert (cfg.publish.target, cfg.publish.repo_id, cfg.serve.target) == (
        "hub",
        "me/model",
        "none",
    )


def test_best_model_aligns_default_save_strategy_with_eval() -> None:
    t = load_config(None, ["training.eval_steps=20"]).training
    assert t.load_best_model_at_end
    assert (t.save_strategy, t.save_steps) == ("steps", 20)


def test_conflicting_explicit_save_strategy_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"save_strategy='epoch' must equal"):
        load_config(None, ["training.save_strategy=epoch", "training.load_best_model_at_end=true"])
    with pytest.raises(ConfigError, match="multiple of"):
        load_config(
            None,
            ["training.eval_steps=30", "training.save_strategy=steps", "training.save_steps=40"],
        )


@pytest.mark.parametrize(
    ("override", "path", "reason"),
    [
        ("training.eval_steps=0", "training.eval_steps", "greater than or equal to 1"),
        ("data.eval_fraction=1.5", "data.eval_fraction", "less than 1"),
        ("training.method=ppo", "training.method", "'sft', 'dpo' or 'orpo'"),
        ("publish.repo_id=no-namespace", "publish.repo_id", "pattern"),
        ("training.learnig_rate=0.1", "training.learnig_rate", "unknown field"),
    ],
)
def test_invalid_values_name_the_field(override: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert path in message
    assert reason in message


def test_yaml_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  max_steps: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+"):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("training:\n  max_steps: many\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"wrong\.yaml.*training\.max_steps"):
        load_config(wrong)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_parse_yaml_values_and_reject_malformed_items() -> None:
    data = apply_overrides({}, ["a.b=3", "a.c=true", "a.d=[x, y]", "e=null"])
    assert data == {"a": {"b": 3, "c": True, "d": ["x", "y"]}, "e": None}
    with pytest.raises(ConfigError, match=r"KEY\.PATH=VALUE"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_schema_describes_every_section() -> None:
    schema = config_json_schema()
    assert set(schema["properties"]) >= {
        "model",
        "data",
        "training",
        "compute",
        "publish",
        "serve",
        "registry",
    }
    training = schema["$defs"]["TrainingConfig"]["properties"]
    assert training["method"]["enum"] == ["sft", "dpo", "orpo"]
    assert training["per_device_eval_batch_size"]["default"] == 2


def test_demo_config_is_the_deployments_copy() -> None:
    shipped = yaml.safe_load(demo_config_path().read_text(encoding="utf-8"))
    repo_copy = Path(__file__).parents[1] / "deployments" / "demo.yaml"
    assert shipped == yaml.safe_load(repo_copy.read_text(encoding="utf-8"))
    cfg = load_config(demo_config_path())
    assert cfg.training.evaluates and cfg.training.save_steps % cfg.training.eval_steps == 0


def test_every_deployment_config_is_valid() -> None:
    for file in (Path(__file__).parents[1] / "deployments").glob("*.yaml"):
        load_config(file)


def test_yaml_bare_no_and_off_mean_the_strings(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "training:\n  eval_strategy: no\n  save_strategy: no\n"
        "publish:\n  repo_id: me/m\n  vllm_load_check: off\n",
        encoding="utf-8",
    )
    cfg = load_config(file)
    assert cfg.training.eval_strategy == "no" and cfg.training.save_strategy == "no"
    assert cfg.publish.vllm_load_check == "off"
    assert load_config(None, ["publish.vllm_load_check=on"]).publish.vllm_load_check == "on"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # A typo names the closest fields of the method's own TRL config class.
        ("training.trainer_args.weight_decy=0.1", ["SFTConfig", "weight_decay"]),
        # A field that a typed setting already covers names that setting.
        ("training.trainer_args.warmup_steps=10", ["training.warmup_ratio"]),
        ("training.trainer_args.learning_rate=0.1", ["training.learning_rate"]),
        ("training.trainer_args.output_dir=/x", ["workdir"]),
    ],
)
def test_trainer_args_names_are_checked_at_load(override: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert "training" in message
    for part in expected:
        assert part in message


def test_trainer_args_are_checked_against_the_methods_class() -> None:
    # beta is a DPO field: SFTConfig has none, and for DPO it is the typed training.beta.
    with pytest.raises(ConfigError, match="not a field of TRL's SFTConfig"):
        load_config(None, ["training.trainer_args.label_smoothing=0.1"])
    cfg = load_config(None, ["training.method=dpo", "training.trainer_args.label_smoothing=0.1"])
    assert cfg.training.trainer_args == {"label_smoothing": 0.1}
    with pytest.raises(ConfigError, match=r"training\.beta"):
        load_config(None, ["training.method=dpo", "training.trainer_args.beta=0.5"])


def test_trainer_args_and_report_to_load() -> None:
    cfg = load_config(
        None,
        [
            "training.trainer_args={weight_decay: 0.01, optim: adamw_torch, max_grad_norm: 0.5}",
            "training.report_to=tensorboard",
        ],
    )
    assert cfg.training.trainer_args["optim"] == "adamw_torch"
    assert cfg.training.report_to == ["tensorboard"]
