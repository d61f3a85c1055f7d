"""Credential blocks: Prefect standard suite, save/load, entry point, token resolution, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr

from tuneship.blocks import (
    HuggingFaceCredentials,
    RunPodClientConfig,
    RunPodCredentials,
    load_hf_credentials,
    resolve_hf_token,
    resolve_runpod_api_key,
)
from tuneship.errors import ConfigError

HF_TOKEN = "hf_BlockTestToken0123456789abcdefGHIJ"
RUNPOD_KEY = "rpa_BLOCKTESTKEY0123456789ABCDEFGHIJKLMN"


@pytest.mark.parametrize("block", [HuggingFaceCredentials, RunPodCredentials])
class TestBlockStandards(BlockStandardTestSuite):
    """Prefect's own checks for collection blocks (description, docs URL, example, fields)."""

    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # Prefect's version downloads the logo, which needs the internet (CI has none);
        # check what can be checked offline: an absolute https URL.
        from urllib.parse import urlparse

        logo = urlparse(str(block._logo_url))
        assert logo.scheme == "https" and logo.netloc and logo.path not in ("", "/")


def _name() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_slugs_match_the_documented_load_strings() -> None:
    assert HuggingFaceCredentials.get_block_type_slug() == "huggingface-credentials"
    assert RunPodCredentials.get_block_type_slug() == "runpod-credentials"


def test_secrets_never_show_in_repr_or_dumps() -> None:
    hf = HuggingFaceCredentials(token=SecretStr(HF_TOKEN), namespace="acme")
    rp = RunPodCredentials(api_key=SecretStr(RUNPOD_KEY))
    for text in (
        repr(hf),
        str(hf.model_dump()),
        hf.model_dump_json(),
        repr(rp),
        rp.model_dump_json(),
    ):
        assert HF_TOKEN not in text and RUNPOD_KEY not in text


def test_hf_get_client_is_an_authenticated_hf_api() -> None:
    from huggingface_hub import HfApi

    api = HuggingFaceCredentials(
        token=SecretStr(HF_TOKEN), endpoint="http://127.0.0.1:9/"
    ).get_client()
    assert isinstance(api, HfApi)
    assert api.endpoint == "http://127.0.0.1:9"
    assert api.token == HF_TOKEN


def test_runpod_client_config_is_typed_and_hides_the_key() -> None:
    config = RunPodCredentials(
        api_key=SecretStr(RUNPOD_KEY), api_base_url="http://127.0.0.1:9/"
    ).get_client_config()
    assert isinstance(config, RunPodClientConfig)
    assert config.graphql_url == "http://127.0.0.1:9/graphql"
    assert config.endpoint_url("ep1") == "https://api.runpod.ai/v2/ep1"
    assert config.auth_headers() == {"Authorization": f"Bearer {RUNPOD_KEY}"}
    assert RUNPOD_KEY not in repr(config)


def test_env_var_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("RUNPOD_API_KEY", RUNPOD_KEY)
    token = resolve_hf_token(None)
    assert token is not None and token.get_secret_value() == HF_TOKEN
    key = resolve_runpod_api_key(None)
    assert key is not None and key.get_secret_value() == RUNPOD_KEY
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("MY_HF", "  ")
    assert resolve_hf_token(None) is None
    assert resolve_hf_token(None, env_var="MY_HF") is None


@pytest.mark.slow
def test_save_and_load_round_trip(prefect_harness: None) -> None:
    hf_name, rp_name = _name(), _name()
    HuggingFaceCredentials(
        token=SecretStr(HF_TOKEN), endpoint="http://127.0.0.1:9", namespace="acme"
    ).save(hf_name)
    RunPodCredentials(api_key=SecretStr(RUNPOD_KEY)).save(rp_name)

    loaded = HuggingFaceCredentials.load(hf_name)
    assert loaded.token.get_secret_value() == HF_TOKEN
    assert (loaded.endpoint, loaded.namespace) == ("http://127.0.0.1:9", "acme")
    generic = Block.load(f"huggingface-credentials/{hf_name}")
    assert isinstance(generic, HuggingFaceCredentials)
    assert generic.token.get_secret_value() == HF_TOKEN
    runpod = Block.load(f"runpod-credentials/{rp_name}")
    assert isinstance(runpod, RunPodCredentials)
    assert runpod.api_key.get_secret_value() == RUNPOD_KEY

    # The config names the block (with or without the type prefix); it wins over the env var.
    os.environ["HF_TOKEN"] = "hf_EnvironmentToken0123456789"
    try:
        token = resolve_hf_token(hf_name)
        assert token is not None and token.get_secret_value() == HF_TOKEN
        creds = load_hf_credentials(f"huggingface-credentials/{hf_name}")
        assert creds is not None and creds.endpoint == "http://127.0.0.1:9"
    finally:
        del os.environ["HF_TOKEN"]
    key = resolve_runpod_api_key(rp_name)
    assert key is not None and key.get_secret_value() == RUNPOD_KEY

    with pytest.raises(ConfigError, match=r"publish\.hf_credentials_block='no-such-block'"):
        resolve_hf_token("no-such-block")


@pytest.mark.slow
def test_entry_point_makes_generic_load_work_in_a_fresh_process(prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    name = _name()
    HuggingFaceCredentials(token=SecretStr(HF_TOKEN)).save(name)
    # No tuneship import in the child: Prefect finds the class through the
    # prefect.collections entry point.
    code = (
        "import sys\n"
        "from prefect.blocks.core import Block\n"
        f"b = Block.load('huggingface-credentials/{name}')\n"
        "assert 'tuneship.blocks' in type(b).__module__, type(b)\n"
        f"assert b.token.get_secret_value() == {HF_TOKEN!r}\n"
        "print('loaded', type(b).__name__)\n"
    )
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded HuggingFaceCredentials" in result.stdout


@pytest.mark.slow
def test_cli_register_and_create_never_echo_the_secret(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tuneship.cli.blocks import blocks_app

    runner = CliRunner()
    result = runner.invoke(blocks_app, ["register"])
    assert result.exit_code == 0, result.output
    assert "huggingface-credentials" in result.output and "runpod-credentials" in result.output

    env_name, prompt_name = _name(), _name()
    monkeypatch.setenv("MY_HF_TOKEN", HF_TOKEN)
    result = runner.invoke(
        blocks_app,
        ["create", "huggingface", env_name, "--from-env", "MY_HF_TOKEN", "--namespace", "acme"],
    )
    assert result.exit_code == 0, result.output
    assert HF_TOKEN not in result.output
    assert f"huggingface-credentials/{env_name}" in result.output
    loaded = HuggingFaceCredentials.load(env_name)
    assert loaded.token.get_secret_value() == HF_TOKEN and loaded.namespace == "acme"

    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    result = runner.invoke(blocks_app, ["create", "runpod", prompt_name], input=RUNPOD_KEY + "\n")
    assert result.exit_code == 0, result.output
    assert RUNPOD_KEY not in result.output
    assert RunPodCredentials.load(prompt_name).api_key.get_secret_value() == RUNPOD_KEY

    # Saving over an existing block needs --overwrite; the error names the fix.
    result = runner.invoke(
        blocks_app, ["create", "huggingface", env_name, "--from-env", "MY_HF_TOKEN"]
    )
    assert result.exit_code == 1
    assert "--overwrite" in result.output and HF_TOKEN not in result.output

    result = runner.invoke(blocks_app, ["create", "runpod", _name(), "--no-prompt"])
    assert result.exit_code == 1
    assert "RUNPOD_API_KEY is not set" in result.output
