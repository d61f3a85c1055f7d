"""Pre-flight checks that stop a run before anything is downloaded, trained or rented."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneship.config import load_config
from tuneship.errors import ConfigError
from tuneship.validation import check_before_training, check_credentials


def _cfg(tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(
        None,
        [
            f"publish.store_path={tmp_path / 'store'}",
            f"registry.url=sqlite:///{tmp_path / 'r.db'}",
            "publish.vllm_load_check=off",
            *extra,
        ],
    )


def test_runpod_serving_needs_a_hub_publish_target(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = _cfg(tmp_path, "serve.target=runpod-serverless")
    with pytest.raises(ConfigError, match=r"publish\.target must be 'hub'"):
        check_before_training(cfg, tiny_model_dir)


def test_runpod_serving_needs_an_api_key(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_unused_here_000000000000000000")
    cfg = _cfg(tmp_path, "serve.target=runpod-pod", "publish.target=hub")
    with pytest.raises(ConfigError, match="RunPod API key"):
        check_before_training(cfg, tiny_model_dir)


def test_require_improvement_without_eval_is_rejected(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = _cfg(tmp_path, "training.eval_strategy=no", "training.require_improvement=true")
    with pytest.raises(ConfigError, match=r"nothing to compare|no eval loss"):
        check_before_training(cfg, tiny_model_dir)


def test_local_runs_need_no_credentials(tmp_path: Path) -> None:
    assert check_credentials(_cfg(tmp_path)).detail == "none needed"


def test_hub_publish_without_a_token_fails_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="token"):
        check_credentials(_cfg(tmp_path, "publish.target=hub"))


def test_missing_engine_for_local_serving_names_the_install_command(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from tuneship.errors import TuneshipError

    cfg = _cfg(tmp_path, "serve.target=local", f"serve.engine_python={tmp_path / 'nope'}")
    with pytest.raises(TuneshipError, match="setup-vllm-engine"):
        check_before_training(cfg, tiny_model_dir)
