"""Plain-text tables for the CLI and the plan renderings (one helper, no terminal codes)."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Collection[int] = (),
    rule: bool = False,
) -> list[str]:
    """Lay out ``rows`` under ``headers`` in aligned columns, two spaces apart.

    Args:
        headers: Column titles.
        rows: Cells as text, one list per row.
        right: Indices of right-aligned (numeric) columns.
        rule: Put a line of dashes under the headers.

    Returns:
        The lines, without trailing spaces.
    """
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    lines = [line(headers)]
    if rule:
        lines.append(line(["-" * w for w in widths]))
    return lines + [line(r) for r in rows]


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
