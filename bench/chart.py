"""A plain line chart written as a PNG with Pillow (already a dependency): one or more panels over time.

`line_chart(path, title, panels)` draws each panel (a title, a y-axis label and its series of
(x, y) points, plus optional horizontal reference lines) one above the other with a shared x axis.
Enough for a benchmark's figure; no styling beyond legible axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
WIDTH, PANEL_HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 1000, 260, 80, 20, 40, 40


@dataclass
class Panel:
    title: str
    y_label: str
    #: name -> points (x, y); drawn as lines in the order given.
    series: dict[str, Sequence[tuple[float, float]]]
    #: label -> y value: dashed horizontal reference lines (a baseline, a limit).
    marks: dict[str, float] = field(default_factory=dict)
    #: label -> x value: dotted vertical lines (the end of warm-up, the last call).
    events: dict[str, float] = field(default_factory=dict)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if step * m >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def line_chart(path: Path, title: str, panels: Sequence[Panel], x_label: str = "minutes") -> Path:
    height = TOP + len(panels) * (PANEL_HEIGHT + BOTTOM) + 10
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((LEFT, 10), title, fill="black", font=font)
    xs = [x for p in panels for pts in p.series.values() for x, _ in pts] or [0.0, 1.0]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1e-9)
    right = WIDTH - RIGHT
    for i, panel in enumerate(panels):
        top = TOP + i * (PANEL_HEIGHT + BOTTOM)
        bottom = top + PANEL_HEIGHT
        ys = [y for pts in panel.series.values() for _, y in pts] + list(panel.marks.values())
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        pad = (y1 - y0) * 0.1 or max(abs(y1) * 0.05, 1.0)
        y0, y1 = y0 - pad, y1 + pad

        def px(
            x: float, y: float, top: int = top, bottom: int = bottom, lo: float = y0, hi: float = y1
        ) -> tuple[float, float]:
            return (
                LEFT + (x - x0) / (x1 - x0) * (right - LEFT),
                bottom - (y - lo) / (hi - lo) * (bottom - top),
            )

        draw.rectangle((LEFT, top, right, bottom), outline="black")
        draw.text((LEFT + 5, top + 4), f"{panel.title} ({panel.y_label})", fill="black", font=font)
        for t in _ticks(y0, y1):
            _, y = px(x0, t)
            draw.line((LEFT - 4, y, LEFT, y), fill="black")
            draw.text((4, y - 6), f"{t:g}", fill="black", font=font)
        for t in _ticks(x0, x1, 10):
            x, _ = px(t, y0)
            draw.line((x, bottom, x, bottom + 4), fill="black")
            draw.text((x - 8, bottom + 6), f"{t:g}", fill="black", font=font)
        for j, (label, value) in enumerate(panel.marks.items()):
            _, y = px(x0, value)
            for x in range(LEFT, right, 12):
                draw.line((x, y, min(x + 6, right), y), fill="#888888")
            draw.text((LEFT + 120 + 160 * j, y - 14), label, fill="#555555", font=font)
        for label, value in panel.events.items():
            x, _ = px(value, y0)
            for y in range(top, bottom, 8):
                draw.line((x, y, x, min(y + 3, bottom)), fill="#aaaaaa")
            draw.text((x + 3, bottom - 16), label, fill="#555555", font=font)
        for j, (name, points) in enumerate(panel.series.items()):
            colour = COLOURS[j % len(COLOURS)]
            if len(points) > 1:
                draw.line([px(x, y) for x, y in points], fill=colour, width=2)
            draw.text((right - 160, top + 4 + 12 * j), name, fill=colour, font=font)
        if i == len(panels) - 1:
            draw.text(((LEFT + right) // 2, bottom + 22), x_label, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
