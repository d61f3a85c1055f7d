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
