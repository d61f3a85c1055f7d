"""Checking a base model folder before anything loads it: config, weights, tokenizer.

A folder with only ``config.json`` used to fail deep inside transformers with a 54-line
traceback, and one without weights passed ``validate`` and failed 44 s into training.
:func:`check_model_folder` reads the small files only and reports what is missing in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from tuneship.errors import ConfigError

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _read_json(file: Path) -> dict[str, object]:
    try:
        value = json.loads(file.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"model.base: {file} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"model.base: {file}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"model.base: {file} must hold a JSON object")
    return value


def _check_weights(folder: Path) -> str:
    for name in _INDEX_FILES:
        index = folder / name
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ConfigError(f"model.base: {index} has no weight_map")
            shards = sorted({str(v) for v in weight_map.values()})
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise ConfigError(
                    f"model.base: {folder} is incomplete: {len(missing)} of {len(shards)} weight "
                    f"files named in {name} are missing ({', '.join(missing[:3])}"
                    f"{', ...' if len(missing) > 3 else ''}); download the model again"
                )
            return f"{len(shards)} weight files"
    for name in _WEIGHT_FILES:
        file = folder / name
        if file.is_file():
            if file.stat().st_size == 0:
                raise ConfigError(f"model.base: {file} is empty; download the model again")
            return name
    raise ConfigError(
        f"model.base: {folder} has no weights ({' or '.join(_WEIGHT_FILES)}, or a sharded "
        "index); download the whole model, not only its config"
    )


def check_model_folder(
    folder: Path, *, trust_remote_code: bool = False, weights: bool = True
) -> str:
    """Check that a local base model folder can be loaded, without loading the weights.

    Args:
        folder: The model folder.
        trust_remote_code: Passed to the tokenizer.
        weights: Check the weight files; False when they stay on the Hub (a rented pod
            downloads them).

    Returns:
        A one-line summary (model type, weight files).

    Raises:
        ConfigError: ``config.json`` is missing or malformed, weight files are missing or
            incomplete per the index, or the tokenizer does not load.
    """
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"model.base: {folder} has no config.json")
    config = _read_json(config_file)
    if not config.get("model_type") and not config.get("architectures"):
        raise ConfigError(f"model.base: {config_file} names no model_type or architectures")
    found = _check_weights(folder) if weights else "weights stay on the Hub"
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises many types for a broken tokenizer
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"model.base: the tokenizer in {folder} does not load: {reason[:300]}"
        ) from None
    return f"{folder} ({config.get('model_type', 'unknown type')}, {found}, tokenizer loads)"
