"""Smoke tests of the soak benchmark's measuring and plotting. Nothing here is timed."""

from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path

from PIL import Image

from bench import chart
from bench.soak import gauge, read_proc


def test_read_proc_sees_this_process_grow() -> None:
    """RSS, descriptors and threads come from /proc and follow what the process holds."""
    rss0, fds0, threads0 = read_proc(os.getpid())
    # 64 MB of fresh pages, touched: mapped directly, since malloc may serve a block this size from
    # memory it already holds (glibc keeps up to 64 MB free after earlier large buffers).
    block = mmap.mmap(-1, 64 * 1024 * 1024)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    r, w = os.pipe()
    done = threading.Event()
    t = threading.Thread(target=done.wait)
    t.start()
    try:
        rss1, fds1, threads1 = read_proc(os.getpid())
        assert rss1 - rss0 > 50 and fds1 >= fds0 + 2 and threads1 >= threads0 + 1
    finally:
        done.set()
        t.join()
        os.close(r)
        os.close(w)
        block.close()


def test_gauge_reads_a_prometheus_sample() -> None:
    """A gauge's value is read from the exposition text; a missing one is NaN."""
    text = "# HELP x\nsilvertalk_asyncio_tasks 7.0\nsilvertalk_calls_open 0.0\n"
    assert gauge(text, "silvertalk_asyncio_tasks") == 7.0
    assert gauge(text, "silvertalk_threads") != gauge(text, "silvertalk_threads")  # NaN


def test_line_chart_writes_a_png_with_one_band_per_panel(tmp_path: Path) -> None:
    """Each panel adds its height; the series is drawn in its colour inside the frame."""
    points = [(i / 10, 500 + (i % 7)) for i in range(100)]
    panel = chart.Panel("memory", "MB", {"RSS": points}, {"start": 500.0}, {"start": 2.0})
    one = chart.line_chart(tmp_path / "one.png", "t", [panel])
    two = chart.line_chart(tmp_path / "two.png", "t", [panel, panel])
    h1, h2 = Image.open(one).size[1], Image.open(two).size[1]
    assert h2 - h1 == chart.PANEL_HEIGHT + chart.BOTTOM
    pixels = Image.open(one).convert("RGB").getdata()
    assert any(p == (0x1F, 0x77, 0xB4) for p in pixels)  # the first series colour
