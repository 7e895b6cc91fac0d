"""Bar charts drawn on the server as inline SVG: no script, nothing fetched, readable by a
screen reader (a `<title>` and `<desc>` the `<svg>` is labelled by, one `<title>` per bar).

Pure functions from numbers to markup. A bar's length is its value over the chart's scale,
which is the largest value rounded up to 1, 2 or 5 times a power of ten, so bars compare
with each other and with the gridlines. Every text that comes from data (a store's name) is
escaped. The drawing scales to its container (`viewBox`, `width="100%"`): one drawing serves
a 360 px phone and a desktop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

BAR_FILL = "#2563eb"
_INK = "#1d1d1f"
_GRID = "#d2d2d7"
_MUTED = "#6e6e73"
# Drawing units: the viewBox is WIDTH wide; a 360 px screen shows it at about half size.
WIDTH = 480
FONT = 15
_LEFT = 48  # room for the value axis's labels
_RIGHT = 22  # room for half of the last column's label
_TOP = 10
_BOTTOM = 28  # room for the category labels
_COLUMNS_HEIGHT = 220
_ROW = 26  # one horizontal bar and its gap
# Names left of the horizontal bars: at most LABEL_CHARS characters, which fit in
# LABEL_WIDTH at 0.6 em a character (wider than system-ui's average letter).
LABEL_WIDTH = 190
LABEL_CHARS = 20


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: `label` on the axis ("" for none), `value` its length, `title` what a
    pointer or screen reader is told of it."""

    label: str
    value: int
    title: str


def scale_of(largest: int) -> int:
    """The scale's top: `largest` rounded up to 1, 2 or 5 times a power of ten (1 at least)."""
    if largest <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(largest))
    for step in (1, 2, 5, 10):
        if largest <= step * power:
            return step * power
    raise AssertionError("unreachable: 10 * power exceeds largest")


def columns(chart_id: str, title: str, description: str, bars: Sequence[Bar]) -> str:
    """Vertical bars left to right (a time series): the scale on the left, gridlines at its
    half and top, and the labels that fit under the bars (every n-th when they are many)."""
    plot_width = WIDTH - _LEFT - _RIGHT
    plot_height = _COLUMNS_HEIGHT - _TOP - _BOTTOM
    baseline = _TOP + plot_height
    parts = [_open(chart_id, title, description, _COLUMNS_HEIGHT)]
    if not bars:
        parts.append(_empty(_COLUMNS_HEIGHT))
        return "".join([*parts, "</svg>"])
    top = scale_of(max(bar.value for bar in bars))
    parts.append(_value_axis(top, plot_height, baseline))
    slot = plot_width / len(bars)
    gap = min(slot * 0.2, 4)
    # One label per ~60 units, so that "14:00" never overlaps its neighbour.
    every = max(1, math.ceil(60 / slot))
    for index, bar in enumerate(bars):
        height = plot_height * bar.value / top
        x = _LEFT + index * slot + gap / 2
        parts.append(
            _rect(x, baseline - height, slot - gap, height, bar)
            + (_text(x + (slot - gap) / 2, baseline + 18, bar.label, "middle")
               if bar.label and index % every == 0 else "")
        )  # fmt: skip
    return "".join([*parts, "</svg>"])


def rows(chart_id: str, title: str, description: str, bars: Sequence[Bar]) -> str:
    """Horizontal bars top to bottom (categories with long names): the name left of each bar,
    its value right of it."""
    height = _TOP + max(len(bars), 1) * _ROW + _BOTTOM
    parts = [_open(chart_id, title, description, height)]
    if not bars:
        parts.append(_empty(height))
        return "".join([*parts, "</svg>"])
    top = scale_of(max(bar.value for bar in bars))
    plot_width = WIDTH - LABEL_WIDTH - 60  # room right of the longest bar for its value
    for index, bar in enumerate(bars):
        y = _TOP + index * _ROW
        length = plot_width * bar.value / top
        middle = y + (_ROW - 6) / 2 + FONT / 3
        parts.append(
            _text(LABEL_WIDTH - 8, middle, _shortened(bar.label), "end")
            + _rect(LABEL_WIDTH, y, length, _ROW - 6, bar)
            + _text(LABEL_WIDTH + length + 6, middle, f"{bar.value:,}", "start")
        )
    axis_y = _TOP + len(bars) * _ROW
    parts.append(
        f'<line x1="{LABEL_WIDTH}" y1="{axis_y}" x2="{LABEL_WIDTH + plot_width}"'
        f' y2="{axis_y}" stroke="{_GRID}"/>'
        + _text(LABEL_WIDTH, axis_y + 18, "0", "middle", _MUTED)
        + _text(LABEL_WIDTH + plot_width, axis_y + 18, f"{top:,}", "middle", _MUTED)
    )
    return "".join([*parts, "</svg>"])


def _open(chart_id: str, title: str, description: str, height: int) -> str:
    ids = escape(f"{chart_id}-title {chart_id}-desc")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}"'
        f' viewBox="0 0 {WIDTH} {height}" width="100%" role="img"'
        f' aria-labelledby="{ids}" aria-label="{escape(title)}"'
        f' font-family="system-ui, sans-serif" font-size="{FONT}">'
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>'
    )


def _empty(height: int) -> str:
    """What a chart of no data shows: a baseline and the words, never a broken drawing."""
    baseline = height - _BOTTOM
    return (
        f'<line x1="{_LEFT}" y1="{baseline}" x2="{WIDTH - _RIGHT}" y2="{baseline}"'
        f' stroke="{_GRID}"/>'
        + _text(WIDTH / 2, baseline / 2 + FONT / 2, "No redemptions to show", "middle", _MUTED)
    )


def _value_axis(top: int, plot_height: float, baseline: float) -> str:
    """Gridlines at 0, half and the top of the scale, each with its value at the left."""
    lines = []
    for share in (0, 0.5, 1):
        y = baseline - plot_height * share
        value = top * share
        label = f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
        lines.append(
            f'<line x1="{_LEFT}" y1="{_number(y)}" x2="{WIDTH - _RIGHT}" y2="{_number(y)}"'
            f' stroke="{_GRID}"/>' + _text(_LEFT - 6, y + FONT / 3, label, "end", _MUTED)
        )
    return "".join(lines)


def _rect(x: float, y: float, width: float, height: float, bar: Bar) -> str:
    return (
        f'<rect class="bar" x="{_number(x)}" y="{_number(y)}" width="{_number(width)}"'
        f' height="{_number(height)}" fill="{BAR_FILL}" data-value="{bar.value}">'
        f"<title>{escape(bar.title)}</title></rect>"
    )


def _text(x: float, y: float, words: str, anchor: str, fill: str = _INK) -> str:
    return (
        f'<text x="{_number(x)}" y="{_number(y)}" text-anchor="{anchor}" fill="{fill}">'
        f"{escape(words)}</text>"
    )


def _shortened(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _number(value: float) -> str:
    """Coordinates to two decimals: exact enough, and short."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
