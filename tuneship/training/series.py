"""Shrink metric series so results and registry rows stay small."""

from __future__ import annotations

from collections.abc import Sequence


def downsample_series(
    points: Sequence[tuple[int, float]], max_points: int = 200
) -> list[tuple[int, float]]:
    """Pick at most ``max_points`` evenly spaced points, always keeping the first and last.

    Args:
        points: ``(step, value)`` pairs in step order.
        max_points: Largest number of points to return (at least 2).

    Returns:
        The selected points, in their original order.

    Raises:
        ValueError: ``max_points`` is below 2.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    items = [(int(step), float(value)) for step, value in points]
    n = len(items)
    if n <= max_points:
        return items
    # Evenly spaced indices from 0 to n-1 inclusive; rounding never repeats an index
    # because the spacing (n-1)/(max_points-1) is above 1 here.
    last = n - 1
    indices = [round(i * last / (max_points - 1)) for i in range(max_points)]
    return [items[i] for i in indices]
