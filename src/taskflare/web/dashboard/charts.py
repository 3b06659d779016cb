"""Small line charts as inline SVG, rendered on the server (no script, no library).

Every text that reaches the SVG goes through `markupsafe.escape`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH = 560
HEIGHT = 160
PAD_LEFT = 48
PAD_BOTTOM = 22
PAD_TOP = 10
PAD_RIGHT = 10


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return float(factor * magnitude)
    return value


def _label(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    return f"{value:g}"


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    start: float,
    step: float,
    unit: str = "",
) -> Markup:
    """An SVG chart of `series` (name, one value per `step` seconds from `start`; None: no
    data), with a y axis from 0 and time labels in UTC. `unit` "s" labels durations."""
    points = max((len(values) for _, values in series), default=0)
    top = max((v for _, values in series for v in values if v is not None), default=0.0)
    y_max = _nice_max(top)
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="none">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = PAD_TOP + inner_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" '
            f'y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{PAD_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_label(y_max * fraction, unit))}</text>"
        )
    if points > 1:
        for index, anchor in ((0, "start"), (points // 2, "middle"), (points - 1, "end")):
            x = PAD_LEFT + inner_w * index / (points - 1)
            moment = datetime.fromtimestamp(start + index * step, UTC).strftime("%H:%M")
            parts.append(
                f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                f"{escape(moment)}</text>"
            )
    for number, (name, values) in enumerate(series):
        path: list[str] = []
        for index, value in enumerate(values):
            if value is None:
                continue
            x = PAD_LEFT + (inner_w * index / (points - 1) if points > 1 else inner_w / 2)
            y = PAD_TOP + inner_h * (1 - value / y_max)
            # "l0,0" after a move: a lone minute (no neighbour to join) shows as a dot.
            path.append(f"M{x:.1f},{y:.1f} l0,0" if not path else f"L{x:.1f},{y:.1f}")
        if path:
            parts.append(
                f'<path class="series s{number % 6}" d="{" ".join(path)}">'
                f"<title>{escape(name)}</title></path>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key s{n % 6}">{escape(name)}</span>' for n, (name, _) in enumerate(series)
    )
    return Markup(
        f'<figure class="chart-box"><figcaption>{escape(title)} '
        f'<span class="legend">{legend}</span></figcaption>{"".join(parts)}</figure>'
    )
