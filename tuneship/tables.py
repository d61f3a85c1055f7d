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
