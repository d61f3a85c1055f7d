"""Detect the row format and turn raw rows into one of three canonical shapes.

Accepted formats (``data.format``), and the canonical shape each becomes:

* ``messages``: TRL conversational rows ``{"messages": [{"role", "content"}, ...]}``
  -> ``{"messages": [...]}``.
* ``sharegpt``: ``{"conversations": [{"from", "value"}, ...]}`` with ``human``/``gpt``/
  ``system`` speakers -> ``{"messages": [...]}`` with user/assistant/system roles.
* ``alpaca``: ``{"instruction", "input", "output"}`` (``input`` and ``system`` optional)
  -> ``{"messages": [user: instruction + "\\n\\n" + input, assistant: output]}``.
* ``prompt_completion``: ``{"prompt", "completion"}`` (strings or message lists), kept.
* ``preference``: ``{"prompt", "chosen", "rejected"}`` (strings or message lists), or
  implicit-prompt ``{"chosen", "rejected"}`` message lists whose shared leading messages
  become the prompt.

Problems are split in two kinds: structural ones (a wrong role, a message without
content, a missing field) always fail; content ones (an empty assistant turn, chosen equal
to rejected) fail unless ``data.drop_invalid_rows`` is set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from tuneship.data.rows import Row
from tuneship.errors import DataError

SourceFormat = Literal["messages", "prompt_completion", "preference", "alpaca", "sharegpt"]
Family = Literal["messages", "prompt_completion", "preference"]
Message = dict[str, str]

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
FORMAT_SHAPES: dict[SourceFormat, str] = {
    "messages": "messages: a list of {role, content}",
    "prompt_completion": "prompt + completion (strings or message lists)",
    "preference": "prompt + chosen + rejected (strings or message lists), or chosen + "
    "rejected message lists",
    "alpaca": "instruction + input + output",
    "sharegpt": "conversations: a list of {from, value}",
}
FAMILY: dict[SourceFormat, Family] = {
    "messages": "messages",
    "sharegpt": "messages",
    "alpaca": "messages",
    "prompt_completion": "prompt_completion",
    "preference": "preference",
}


def accepted_formats() -> str:
    """Return a one-line-per-format description of the accepted row shapes."""
    return "\n".join(f"  {name}: {shape}" for name, shape in FORMAT_SHAPES.items())


def match_format(keys: Iterable[str]) -> SourceFormat | None:
    """Return the row format a row's keys match, or None (the one rule for formats).

    Used on source rows (any accepted format) and on the trainer rows the data stage
    writes (messages, prompt_completion or preference).
    """
    found = set(keys)
    if "messages" in found:
        return "messages"
    if "conversations" in found:
        return "sharegpt"
    if {"chosen", "rejected"} <= found:
        return "preference"
    if {"prompt", "completion"} <= found:
        return "prompt_completion"
    if {"instruction", "output"} <= found:
        return "alpaca"
    return None


def detect_format(rows: list[Row]) -> SourceFormat:
    """Detect the format from the keys of the first row.

    Args:
        rows: The rows (at least one).

    Returns:
        The detected format.

    Raises:
        DataError: The keys match no accepted format; the message lists the formats and
            the keys found.
    """
    keys = set(rows[0].data)
    fmt = match_format(keys)
    if fmt is not None:
        return fmt
    raise DataError(
        f"{rows[0].where}: unknown row format; found keys {sorted(keys)}. Accepted formats "
        f"(set data.format to force one):\n{accepted_formats()}"
    )


@dataclass
class Example:
    """A row in canonical form.

    Attributes:
        where: The row's location.
        fields: ``{"messages"}``, ``{"prompt", "completion"}`` or
            ``{"prompt", "chosen", "rejected"}``; text values are strings or message lists.
        invalid: The row has a content problem (listed in ParsedRows) and can be dropped.
    """

    where: str
    fields: dict[str, Any]
    invalid: bool = False


@dataclass
class ParsedRows:
    """Rows parsed into canonical examples, with the problems found.

    Attributes:
        examples: Rows without structural problems, in order (invalid ones flagged).
        errors: Structural problems (``location: why``); these always fail.
        empty_assistant: Locations of rows with an empty assistant turn.
        identical_preference: Locations of preference rows whose chosen equals rejected.
    """

    examples: list[Example] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    empty_assistant: list[str] = field(default_factory=list)
    identical_preference: list[str] = field(default_factory=list)


class _RowError(Exception):
    """A structural problem with one row (internal; collected into ParsedRows.errors)."""


def parse_rows(rows: list[Row], fmt: SourceFormat) -> ParsedRows:
    """Validate rows of format ``fmt`` and convert them to canonical examples.

    Args:
        rows: Raw rows.
        fmt: Their format.

    Returns:
        The examples and every problem found (nothing is raised for bad rows).
    """
    parse = {
        "messages": _parse_messages_row,
        "sharegpt": _parse_sharegpt_row,
        "alpaca": _parse_alpaca_row,
        "prompt_completion": _parse_prompt_completion_row,
        "preference": _parse_preference_row,
    }[fmt]
    out = ParsedRows()
    for row in rows:
        try:
            fields = parse(row.data)
        except _RowError as exc:
            out.errors.append(f"{row.where}: {exc}")
            continue
        example = Example(row.where, fields)
        if _is_identical(fields):
            out.identical_preference.append(f"{row.where}: chosen and rejected are identical")
            example.invalid = True
        elif _has_empty_assistant(fields):
            out.empty_assistant.append(f"{row.where}: the assistant turn is empty")
            example.invalid = True
        out.examples.append(example)
    return out


def _require(data: dict[str, Any], key: str) -> Any:
    if key not in data:
        raise _RowError(f"missing field {key!r} (the row has {sorted(data)})")
    if data[key] is None:
        raise _RowError(f"field {key!r} is null")
    return data[key]


def _as_list(value: Any, name: str) -> list[Any]:
    # CSV cells and some exports hold message lists as JSON text.
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _RowError(f"{name} is not a valid JSON list: {exc.msg}") from None
    if not isinstance(value, list):
        raise _RowError(f"{name} must be a list of messages, got {type(value).__name__}")
    return value


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _RowError(f"{name} must be a string, got {type(value).__name__}")
    return value


def parse_messages(value: Any, name: str) -> list[Message]:
    """Validate a list of ``{role, content}`` messages; keep only role and content."""
    messages = _as_list(value, name)
    if not messages:
        raise _RowError(f"{name} is empty")
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _RowError(f"{name}[{i}] must be an object with role and content")
        role = msg.get("role")
        if role not in ROLES:
            raise _RowError(
                f"{name}[{i}]: role {role!r} is not one of {', '.join(ROLES)}"
                if "role" in msg
                else f"{name}[{i}] has no 'role'"
            )
        if msg.get("content") is None:
            raise _RowError(f"{name}[{i}] ({role}) has no content")
        out.append({"role": role, "content": _string(msg["content"], f"{name}[{i}].content")})
    return out


def _text_or_messages(value: Any, name: str) -> str | list[Message]:
    if isinstance(value, str):
        return _json_messages(value, name) or value
    if isinstance(value, list):
        return parse_messages(value, name)
    raise _RowError(f"{name} must be a string or a list of messages, got {type(value).__name__}")


def _json_messages(text: str, name: str) -> list[Message] | None:
    """Return ``text`` as messages when it is a JSON list of role/content objects (CSV)."""
    if not text.lstrip().startswith("[{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        return parse_messages(value, name)
    return None


def _parse_messages_row(data: dict[str, Any]) -> dict[str, Any]:
    return {"messages": parse_messages(_require(data, "messages"), "messages")}


def _parse_sharegpt_row(data: dict[str, Any]) -> dict[str, Any]:
    turns = _as_list(_require(data, "conversations"), "conversations")
    if not turns:
        raise _RowError("conversations is empty")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise _RowError(f"conversations[{i}] must be an object with from and value")
        speaker = turn.get("from", turn.get("role"))
        if speaker not in SHAREGPT_ROLES:
            raise _RowError(
                f"conversations[{i}]: 'from' {speaker!r} is not one of {', '.join(SHAREGPT_ROLES)}"
            )
        value = turn.get("value", turn.get("content"))
        if value is None:
            raise _RowError(f"conversations[{i}] ({speaker}) has no value")
        content = _string(value, f"conversations[{i}].value")
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": content})
    return {"messages": messages}


def _parse_alpaca_row(data: dict[str, Any]) -> dict[str, Any]:
    instruction = _string(_require(data, "instruction"), "instruction")
    extra = _string(data.get("input") or "", "input")
    output = _string(_require(data, "output"), "output")
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = []
    system = data.get("system")
    if system:
        messages.append({"role": "system", "content": _string(system, "system")})
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _parse_prompt_completion_row(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": _text_or_messages(_require(data, "prompt"), "prompt"),
        "completion": _text_or_messages(_require(data, "completion"), "completion"),
    }


def _parse_preference_row(data: dict[str, Any]) -> dict[str, Any]:
    chosen = _text_or_messages(_require(data, "chosen"), "chosen")
    rejected = _text_or_messages(_require(data, "rejected"), "rejected")
    if data.get("prompt") is not None:
        prompt = _text_or_messages(data["prompt"], "prompt")
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        raise _RowError(
            "missing field 'prompt'; rows without a prompt need chosen and rejected as "
            "message lists that start with the same prompt messages"
        )
    if chosen == rejected:
        return {"prompt": [], "chosen": chosen, "rejected": rejected}
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise _RowError(
            "chosen and rejected share no leading prompt messages; add a 'prompt' field"
        )
    return {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}


def _is_identical(fields: dict[str, Any]) -> bool:
    return "chosen" in fields and fields["chosen"] == fields["rejected"]


def _empty_reply(value: str | list[Message]) -> bool:
    if isinstance(value, str):
        return not value.strip()
    replies = [m["content"] for m in value if m["role"] == "assistant"]
    return not replies or any(not r.strip() for r in replies)


def _has_empty_assistant(fields: dict[str, Any]) -> bool:
    if "messages" in fields:
        return _empty_reply(fields["messages"])
    if "completion" in fields:
        return _empty_reply(fields["completion"])
    return _empty_reply(fields["chosen"]) or _empty_reply(fields["rejected"])
