"""What a reader sees of a training run's metrics: a filled table and an SVG loss chart."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from html import escape

from tuneship.training.specs import TrainResult

SIGNIFICANT_DIGITS = 4
"""Losses are shown to four significant digits: enough to compare runs, short to read."""


def round_for_readers(value: float) -> float:
    """Round ``value`` to ``SIGNIFICANT_DIGITS`` significant digits (``1.234567`` -> ``1.235``)."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def build_metrics_table(result: TrainResult) -> list[dict[str, float | int | str]]:
    """One row per logged step with every metric column present in every row.

    Prefect's table artifact takes its columns from the first row, so a metric first logged
    later (the eval loss) would not show; missing cells are filled with an empty string.

    Args:
        result: The training result with its loss series.

    Returns:
        Rows sorted by step, keys ``step``, ``loss``, ``eval_loss`` (only series that exist).
    """
    series = {"loss": result.loss_history, "eval_loss": result.eval_loss_history}
    columns = [name for name, points in series.items() if points]
    rows: dict[int, dict[str, float | int | str]] = {}
    for name in columns:
        for step, value in series[name]:
            row = rows.setdefault(int(step), {"step": int(step), **dict.fromkeys(columns, "")})
            row[name] = round_for_readers(float(value))
    return [rows[k] for k in sorted(rows)]


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Evenly spaced round axis values (steps of 1, 2, 2.5 or 5 x 10^k) that cover the range.

    Args:
        low: The smallest value to show.
        high: The largest value to show.
        most: At most this many ticks.

    Returns:
        Ascending tick values; the first is at most ``low``, the last at least ``high``.
    """
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    magnitude = 10 ** math.floor(math.log10((high - low) / (most - 1)))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = factor * magnitude
        first, last = math.floor(low / step), math.ceil(high / step)
        if last - first + 1 <= most:
            break
    # Rounded so that 0.1 x 3 reads 0.3, not 0.30000000000000004.
    return [round(i * step, 10) for i in range(first, last + 1)]


def render_loss_chart_svg(
    loss: Sequence[tuple[int, float]],
    eval_loss: Sequence[tuple[int, float]],
    base_eval_loss: float | None = None,
    width: int = 640,
    height: int = 320,
) -> str:
    """Draw train and eval loss against step as a standalone SVG document.

    Args:
        loss: ``(step, training loss)`` points.
        eval_loss: ``(step, eval loss)`` points.
        base_eval_loss: The base model's eval loss, drawn as a dashed reference line.
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        The SVG text (no scripts, no external references).
    """
    left, right, top, bottom = 56, 16, 28, 40
    values = [v for _, v in loss] + [v for _, v in eval_loss]
    if base_eval_loss is not None:
        values.append(base_eval_loss)
    steps = [s for s, _ in loss] + [s for s, _ in eval_loss]
    y_ticks = nice_ticks(*((min(values), max(values)) if values else (0.0, 1.0)))
    y_min, y_max = y_ticks[0], y_ticks[-1]
    x_min, x_max = (min(steps), max(steps)) if steps else (0, 1)
    if x_max == x_min:
        x_max = x_min + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(step: float) -> float:
        return left + plot_w * (step - x_min) / (x_max - x_min)

    def y(value: float) -> float:
        return top + plot_h * (1 - (value - y_min) / (y_max - y_min))

    def polyline(points: Sequence[tuple[int, float]], colour: str) -> str:
        coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in points)
        dots = "".join(
            f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>' for s, v in points
        )
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>' + (
            dots if len(points) <= 50 else ""
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>',
    ]
    for value in y_ticks:
        parts.append(
            f'<line x1="{left}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" '
            'stroke="#e5e5e5"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{round_for_readers(value):g}</text>"
        )
    for step in sorted({x_min, (x_min + x_max) // 2, x_max}):
        parts.append(
            f'<text x="{x(step):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{step}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">step</text>'
    )
    legend = [("train loss", "#1f77b4"), ("eval loss", "#ff7f0e")]
    if base_eval_loss is not None:
        parts.append(
            f'<line x1="{left}" y1="{y(base_eval_loss):.1f}" x2="{left + plot_w}" '
            f'y2="{y(base_eval_loss):.1f}" stroke="#888" stroke-dasharray="6 4"/>'
        )
        legend.append((f"base eval loss {round_for_readers(base_eval_loss):g}", "#888"))
    if loss:
        parts.append(polyline(loss, "#1f77b4"))
    if eval_loss:
        parts.append(polyline(eval_loss, "#ff7f0e"))
    cursor = left
    for label, colour in legend:
        parts.append(
            f'<rect x="{cursor}" y="8" width="12" height="12" fill="{colour}"/>'
            f'<text x="{cursor + 16}" y="18">{escape(label)}</text>'
        )
        cursor += 24 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def render_loss_chart_markdown(result: TrainResult) -> str:
    """The loss chart as Markdown: an image with the SVG inlined as a data URI.

    Prefect's UI renders Markdown images but not raw HTML, so the SVG travels as a
    base64 ``data:image/svg+xml`` URI and needs no file server.

    Args:
        result: The training result with its loss series.

    Returns:
        Markdown with a heading, the image and a one-line caption.
    """
    svg = render_loss_chart_svg(
        result.loss_history, result.eval_loss_history, result.base_eval_loss
    )
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    caption = f"{result.method} ({result.adapter}), {result.global_step} steps"
    if result.base_eval_loss is not None and result.eval_loss is not None:
        caption += (
            f"; eval loss {round_for_readers(result.base_eval_loss):g} (base) -> "
            f"{round_for_readers(result.eval_loss):g}"
        )
    return f"### Loss by step\n\n![loss chart](data:image/svg+xml;base64,{data})\n\n{caption}\n"
