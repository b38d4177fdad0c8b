"""Charts as inline SVG, drawn on the server: no script, no library, nothing from a CDN.

Every text that reaches the SVG goes through :func:`markupsafe.escape`; colours and
sizes are constants. Gridlines and axis text take their colours from the stylesheet
(classes ``grid`` and ``axis``), so the charts follow the light or dark scheme. The
result is :class:`markupsafe.Markup`, so the templates insert it as it is while still
escaping everything else.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import markupsafe

WIDTH = 720
HEIGHT = 200
PAD_LEFT = 48
PAD_RIGHT = 12
PAD_TOP = 12
PAD_BOTTOM = 28


@dataclasses.dataclass(frozen=True, slots=True)
class Series:
    label: str
    values: Sequence[float]
    colour: str
    dashed: bool = False


def _scale(peak: float, *, whole: bool = True) -> tuple[float, int]:
    """A round top for the y axis and how many gridline steps reach it (1, 2 or 5 x 10^k);
    ``whole``: counts, so no fractional gridlines."""
    if peak <= 0:
        return 1.0, 1
    raw = peak / 4
    step = 1.0 if whole else 10.0 ** math.floor(math.log10(raw))
    while step * 10 <= raw:
        step *= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= raw:
            step *= factor
            break
    if whole:
        step = max(step, 1.0)
    steps = max(1, int(-(-peak // step)))
    return step * steps, steps


def _frame(
    title: str, top: float, steps: int, body: list[str], labels: Sequence[str], unit: str
) -> list[str]:
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{markupsafe.escape(title)}">',
        f"<title>{markupsafe.escape(title)}</title>",
    ]
    for i in range(steps + 1):
        y = PAD_TOP + plot_h * i / steps
        value = top * (steps - i) / steps
        out.append(
            f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH - PAD_RIGHT}" y2="{y:.1f}" '
            'class="grid" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10" '
            f'class="axis">{unit}{_number(value)}</text>'
        )
    out.extend(body)
    n = max(len(labels), 1)
    every = max(1, n // 8)
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = PAD_LEFT + plot_w * (i + 0.5) / n
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="10" '
            f'class="axis">{markupsafe.escape(label)}</text>'
        )
    return out


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def _legend(series: Sequence[Series]) -> markupsafe.Markup:
    items = "".join(
        f'<span class="key"><svg width="10" height="10" aria-hidden="true">'
        f'<rect width="10" height="10" fill="{s.colour}"/></svg> '
        f"{markupsafe.escape(s.label)}</span>"
        for s in series
    )
    # Safe by construction: every label in it went through escape() above.
    return markupsafe.Markup(f'<div class="legend">{items}</div>')  # noqa: S704


def bars_and_line(
    title: str,
    labels: Sequence[str],
    stacked: Sequence[Series],
    lines: Sequence[Series] = (),
    *,
    unit: str = "",
) -> markupsafe.Markup:
    """Stacked bars per bucket, with lines on the same scale (dashed ones for limits).

    ``unit``: "" for counts, "$" for money (fractional gridlines, a $ on the axis).
    """
    n = max(len(labels), 1)
    totals = [sum(s.values[i] for s in stacked) for i in range(len(labels))]
    peak = max([*totals, *(v for line in lines for v in line.values), 0])
    top, steps = _scale(peak, whole=unit == "")
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / n
    bar_w = max(slot * 0.7, 1.0)
    body: list[str] = []
    for i in range(len(labels)):
        base = 0.0
        x = PAD_LEFT + slot * i + (slot - bar_w) / 2
        for s in stacked:
            value = s.values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            y = PAD_TOP + plot_h - plot_h * base / top - h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{s.colour}"><title>{markupsafe.escape(labels[i])} '
                f"{markupsafe.escape(s.label)}: {_number(value)}</title></rect>"
            )
            base += value
    for line in lines:
        points = " ".join(
            f"{PAD_LEFT + slot * (i + 0.5):.1f},{PAD_TOP + plot_h - plot_h * v / top:.1f}"
            for i, v in enumerate(line.values)
        )
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{line.colour}" '
            f'stroke-width="2"{dash}><title>{markupsafe.escape(line.label)}</title></polyline>'
        )
    svg = "\n".join([*_frame(title, top, steps, body, labels, unit), "</svg>"])
    legend = _legend([*stacked, *lines])
    # Safe by construction: every text in it went through escape(); numbers are formatted.
    return markupsafe.Markup(svg) + legend  # noqa: S704
