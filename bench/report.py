"""Benchmark results: percentiles, plain-text tables, and JSON files under `bench/results/`.

Every benchmark ends with `write(name, data)` and prints `table(...)`s; nothing here judges speed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    xs = sorted(v for v in values if not math.isnan(v))
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(values: Iterable[float | None]) -> dict[str, float]:
    """n, p50, p95, p99 and max of the values that are present."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return {
        "n": len(xs),
        "p50": percentile(xs, 50),
        "p95": percentile(xs, 95),
        "p99": percentile(xs, 99),
        "max": max(xs) if xs else math.nan,
    }


def fmt(value: Any, digits: int = 0) -> str:
    """A cell: numbers rounded, NaN and None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 0) -> str:
    """A Markdown table (readable in a terminal, pasteable into the README)."""
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(parts: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                p.rjust(w) if i else p.ljust(w) for i, (p, w) in enumerate(zip(parts, widths, strict=True))
            )
            + " |"
        )

    out = [f"### {title}", "", line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out) + "\n"


def stats_rows(metrics: Mapping[str, Iterable[float | None]]) -> list[list[Any]]:
    """One row per metric: name, n, p50, p95, max."""
    rows = []
    for name, values in metrics.items():
        s = summary(values)
        rows.append([name, s["n"], s["p50"], s["p95"], s["max"]])
    return rows


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write(name: str, data: Mapping[str, Any], results: Path = RESULTS) -> Path:
    """Write `results/<name>.json` with the machine and time added; returns the path."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    payload = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }
    payload.update(data)
    path.write_text(json.dumps(_clean(payload), indent=1, ensure_ascii=False) + "\n")
    return path
