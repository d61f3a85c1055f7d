"""Reading a YAML config file strictly: one clear line for each way a file can be wrong.

PyYAML on its own accepts an empty file (as None, which ran the full default config),
keeps the last of two duplicate keys without a word, and reports invalid UTF-8 without a
line. Here each of those is a :class:`~tuneship.errors.ConfigError` naming ``file:line``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuneship.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys in a mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(
                f"{loader.name}:{line}: duplicate key {key!r} (first at line {seen[key]}); keep one"
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def decode_text(raw: bytes, name: str) -> str:
    """Decode UTF-8 (a leading BOM is accepted); name the line and byte of a bad byte.

    Raises:
        ConfigError: The bytes are not UTF-8.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{name}:{line}: not UTF-8 (byte {exc.start} of the file is "
            f"{raw[exc.start : exc.start + 1]!r}); save the file as UTF-8"
        ) from None


def read_config_mapping(file: Path) -> dict[str, Any]:
    """Read a config file into a dict of sections.

    Args:
        file: The YAML file.

    Returns:
        The top-level mapping.

    Raises:
        ConfigError: The file is missing, not UTF-8, not YAML, empty (or only comments),
            has a duplicate key, or its top level is not a mapping.
    """
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    text = decode_text(file.read_bytes(), str(file))
    loader = _StrictLoader(text)
    loader.name = str(file)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]
    if data is None:
        raise ConfigError(
            f"{file}: the config file is empty (or only comments); a run needs at least "
            "name, model.base, data.path and publish.repo_id (see deployments/demo.yaml)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections")
    return data
