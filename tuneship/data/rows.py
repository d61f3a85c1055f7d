"""A raw data row with the place it came from, and the message format for lists of problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_LISTED = 10
"""How many problems an error message lists before summarising the rest."""


@dataclass(frozen=True)
class Row:
    """One row as read from the source, before any validation.

    Attributes:
        where: Where the row came from: ``path:LINE`` for line-based files, else
            ``path row N`` (N counts from 1).
        data: The row's fields.
    """

    where: str
    data: dict[str, Any]


def format_problems(
    header: str, problems: list[str], hint: str | None = None, limit: int = MAX_LISTED
) -> str:
    """Build an error message that lists problems, at most ``limit`` of them.

    Args:
        header: First line, saying what is wrong overall.
        problems: One line per problem, each starting with its location.
        hint: A last line saying what to do about it.
        limit: Problems to list before writing "... and N more".

    Returns:
        The message.
    """
    lines = [header]
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    if hint:
        lines.append(hint)
    return "\n".join(lines)
