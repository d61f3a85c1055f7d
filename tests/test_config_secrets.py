"""Secrets stay out of the config: no literal serve key, tokens never echoed in errors."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from tuneship.config import PipelineConfig, ServeConfig, build_config, load_config
from tuneship.errors import ConfigError, ServingError, TuneshipError
from tuneship.serving.api_keys import API_KEY_ENV, choose_api_key, write_api_key_file

HF_TOKEN = "hf_PastedToken0123456789abcdefGHIJKL"
RUNPOD_KEY = "rpa_PASTEDKEY0123456789ABCDEFGHIJKLMN"
OPENAI_KEY = "sk-proj-Pasted_Key-0123456789abcdefGHIJ"


def test_a_literal_serve_key_is_rejected_with_how_to_give_it(tmp_path: Path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("serve:\n  target: local\n  api_key: my-very-secret-key-42\n")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    message = str(info.value)
    assert "serve.api_key" in message and str(file) in message
    assert "serve.api_key_block" in message and "TUNESHIP_SERVE_API_KEY" in message
    assert "tuneship blocks create serve-key" in message and "0600" in message
    assert "my-very-secret-key-42" not in message

    with pytest.raises(ConfigError) as info:
        load_config(None, [f"serve.api_key={OPENAI_KEY}"])
    assert OPENAI_KEY not in str(info.value) and "serve.api_key_block" in str(info.value)

    # An empty key is no key: older configs with `api_key:` (null) still load.
    assert build_config({"serve": {"api_key": None}}).serve.api_key is None


@pytest.mark.parametrize(
    ("override", "path", "token"),
    [
        (f"serve.port={HF_TOKEN}", "serve.port", HF_TOKEN),
        (f"publish.hf_credentials_block={HF_TOKEN}", "publish.hf_credentials_block", HF_TOKEN),
        (
            f"serve.runpod.credentials_block={RUNPOD_KEY}",
            "serve.runpod.credentials_block",
            RUNPOD_KEY,
        ),
        (f"serve.api_key_block={OPENAI_KEY}", "serve.api_key_block", OPENAI_KEY),
        (f"training.lr_scheduler_type={HF_TOKEN}", None, HF_TOKEN),
    ],
)
def test_tokens_in_the_wrong_field_are_never_echoed(
    override: str, path: str | None, token: str
) -> None:
    if path is None:
        # A free-text field accepts any string; the token simply stays in the config.
        assert load_config(None, [override]).training.lr_scheduler_type == token
        return
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert f"{path}:" in message
    assert token not in message
    assert token[:3] in message  # the prefix is kept so the user sees what was pasted
    if "block" in path:
        assert "looks like a token, not a block name" in message


def test_tuneship_errors_mask_token_shaped_values() -> None:
    error = ServingError(f"cannot load block {HF_TOKEN!r} or {RUNPOD_KEY} / {OPENAI_KEY}")
    text = str(error)
    for token in (HF_TOKEN, RUNPOD_KEY, OPENAI_KEY):
        assert token not in text
    assert "hf_***" in text and "rpa_***" in text and "sk-***" in text
    assert isinstance(error, TuneshipError)
    # Ordinary identifiers survive.
    plain = "set hf_transfer and task-runner"
    assert str(TuneshipError(plain)) == plain


def test_the_flow_parameter_form_has_no_key_and_a_code_key_is_never_serialised() -> None:
    schema_text = str(PipelineConfig.model_json_schema())
    assert "api_key_block" in schema_text
    assert "'api_key':" not in schema_text
    serve = ServeConfig().with_api_key("code-given-key-0123")
    assert serve.api_key is not None and serve.api_key.get_secret_value() == "code-given-key-0123"
    config = PipelineConfig(serve=serve)
    assert "code-given-key-0123" not in config.model_dump_json()
    assert "code-given-key-0123" not in repr(config)
    # pydantic's own error text (what Prefect shows for a bad parameter) hides inputs too.
    with pytest.raises(ValidationError) as info:
        ServeConfig.model_validate({"port": HF_TOKEN})
    assert HF_TOKEN not in str(info.value)
    # The original section is unchanged.
    assert ServeConfig().api_key is None


def test_key_resolution_order_and_the_0600_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    first, second = choose_api_key(ServeConfig()), choose_api_key(ServeConfig())
    assert first != second and len(first) >= 32  # generated per deployment

    monkeypatch.setenv(API_KEY_ENV, "env-key-0123456789")
    assert choose_api_key(ServeConfig()) == "env-key-0123456789"
    assert choose_api_key(ServeConfig().with_api_key("code-key-0123")) == "code-key-0123"

    path = write_api_key_file(tmp_path / "deployments" / "demo", "env-key-0123456789")
    assert path.read_text() == "env-key-0123456789\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    write_api_key_file(path.parent, "other-key-0123456789")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.slow
def test_serve_key_block_from_the_cli_is_used_and_a_missing_one_is_named(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tuneship.cli.blocks import blocks_app
    from tuneship.tasks.credentials import load_run_secrets, resolve_serve_api_key

    runner = CliRunner()
    name = f"serve-key-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(API_KEY_ENV, "block-key-0123456789abcdef")
    result = runner.invoke(blocks_app, ["create", "serve-key", name])
    assert result.exit_code == 0, result.output
    assert "block-key-0123456789abcdef" not in result.output
    assert f"serve.api_key_block: {name}" in result.output
    monkeypatch.delenv(API_KEY_ENV)

    # The block wins over the environment and is what the deployment serves with.
    monkeypatch.setenv(API_KEY_ENV, "env-key-should-not-win")
    serve = ServeConfig(api_key_block=name)
    # Domain code never loads the block: the Prefect layer resolves it and hands it down.
    with pytest.raises(ServingError, match="not resolved"):
        choose_api_key(serve)
    assert choose_api_key(resolve_serve_api_key(serve)) == "block-key-0123456789abcdef"
    assert choose_api_key(resolve_serve_api_key(ServeConfig(api_key_block=f"secret/{name}"))) == (
        "block-key-0123456789abcdef"
    )

    generated = f"gen-{uuid.uuid4().hex[:8]}"
    result = runner.invoke(blocks_app, ["create", "serve-key", generated, "--generate"])
    assert result.exit_code == 0, result.output
    assert len(choose_api_key(resolve_serve_api_key(ServeConfig(api_key_block=generated)))) >= 32

    result = runner.invoke(blocks_app, ["create", "runpod", "x", "--generate"])
    assert result.exit_code == 1 and "--generate only makes serve-key" in result.output

    # A missing block fails where the run's secrets are loaded (the checks before training)
    # and says how to create it.
    config = build_config({"serve": {"target": "local", "api_key_block": "no-such-key"}})
    with pytest.raises(ConfigError, match="tuneship blocks create serve-key no-such-key"):
        load_run_secrets(config)
