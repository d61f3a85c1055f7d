"""Text tables for the CLI and the plan renderings: one helper over rich, no terminal codes."""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

_WIDE = 10_000
"""Console width: rows never wrap, so line ``i + header lines`` is always row ``i``."""


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[int] = (),
    rule: bool = False,
) -> list[str]:
    """Lay out ``rows`` under ``headers`` in aligned columns with rich.

    Args:
        headers: Column titles.
        rows: Cells as text, one list per row.
        right: Indices of right-aligned (numeric) columns.
        rule: Put a horizontal line under the headers.

    Returns:
        The lines, without trailing spaces: the header, the rule when asked for, then one
        line per row (callers interleave notes under a row by position).
    """
    table = Table(
        box=box.SIMPLE_HEAD if rule else None,
        show_edge=False,
        pad_edge=False,
        header_style="",
        highlight=False,
    )
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if index in right else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    out = io.StringIO()
    # markup/emoji off: cells are data (a path with [brackets] must print as it is).
    console = Console(
        file=out, width=_WIDE, color_system=None, markup=False, emoji=False, highlight=False
    )
    console.print(table)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def escape_markdown_cell(value: object) -> str:
    """Make ``value`` safe as one Markdown table cell that renders as the text it is.

    A cell holding only ``-`` (or starting with ``-``, ``+``, ``*``, ``#`` or ``>``) would turn
    into a list item or a rule, and ``|`` would end the cell; such characters are escaped,
    and newlines become spaces.
    """
    text = " ".join(str(value).split())
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    if text[:1] in ("-", "+", "*", "#", ">", "="):
        text = "\\" + text
    return text


def escape_markdown_text(value: object) -> str:
    """Make ``value`` safe inside a Markdown paragraph or list item: it renders as written.

    Characters that would start emphasis, code, links or HTML (``\\ * _ ` [ ] < >``) are
    escaped, and newlines become spaces.
    """
    text = " ".join(str(value).split())
    return "".join("\\" + ch if ch in "\\*_`[]<>" else ch for ch in text)


def format_markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a Markdown table whose cells are escaped with ``escape_markdown_cell``.

    Args:
        headers: Column titles (non-empty, so no blank header row is shown).
        rows: One sequence of cell values per row.

    Returns:
        The table as Markdown text.
    """
    lines = [
        "| " + " | ".join(escape_markdown_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(escape_markdown_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
