"""Soak: calls opened and closed at a steady rate for a long time; does the server give back what they took?

The server runs as a subprocess (`python -m server`) with real Whisper base and Piper and the fake
Gemini (300 ms to first token), as in the voice-to-voice benchmark. A new call starts every
`--interval` seconds: it logs in, sets the session, speaks one of the benchmark's turns at real-time
pace, streams silence until the spoken reply has played, and hangs up. Every `--sample` seconds
the server process's resident memory, open file descriptors and threads are read from /proc, and
its live asyncio tasks and open calls from `/metrics`.

Phases: warm-up calls (`--warmup-minutes`: model arenas, caches and pools reach their working
size), then no calls until the server is quiet: the *start* level; then `--minutes` of calls; then
quiet again: the *end* level. The server passes when memory and open tasks at the end are within
5% of the start. Writes `results/soak.json` and a plot of memory, tasks, descriptors and threads
over time, `results/soak.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import chart, inputs, report
from bench.inputs import Turn
from bench.serve import ServerProcess
from bench.v2v import REPLY, Call, server_env
from clients.realtime_client import RealtimeClient, login

TOLERANCE = 0.05  # memory and tasks at the end may exceed the start by this fraction
USERS = 4  # callers take turns among these accounts (at most 2 open calls each)


@dataclass
class Sample:
    t: float  # seconds since the benchmark began
    rss_mb: float
    fds: int
    threads: int
    tasks: float
    calls_open: float


@dataclass
class Soak:
    pid: int
    url: str
    began: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    answered: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    durations_s: list[float] = field(default_factory=list)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # name -> (token, obtained)

    async def token(self, name: str) -> str:
        """A dev-login token for `name`, renewed before the 15-minute access token expires."""
        # No default time: monotonic() counts from boot, so "obtained at 0" is not "long ago".
        if name not in self.tokens or time.monotonic() - self.tokens[name][1] > 600:
            self.tokens[name] = (await login(self.url, name=name), time.monotonic())
        return self.tokens[name][0]


def read_proc(pid: int) -> tuple[float, int, int]:
    """Resident memory (MB), open file descriptors and threads of a process, from /proc (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def gauge(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else float("nan")


async def sample(soak: Soak, http: httpx.AsyncClient) -> Sample:
    metrics = (await http.get(f"{soak.url}/metrics")).text
    rss, fds, threads = read_proc(soak.pid)
    s = Sample(
        round(time.monotonic() - soak.began, 2),
        round(rss, 1),
        fds,
        threads,
        gauge(metrics, "silvertalk_asyncio_tasks"),
        gauge(metrics, "silvertalk_calls_open"),
    )
    soak.samples.append(s)
    return s


async def sampler(soak: Soak, every_s: float) -> None:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                await sample(soak, http)
            await asyncio.sleep(every_s)


async def one_call(soak: Soak, n: int, turn: Turn) -> None:
    """One caller: speak `turn`, wait until the reply has played, hang up."""
    started = time.monotonic()
    soak.calls += 1
    try:
        token = await soak.token(f"soak-{n % USERS}")
        async with RealtimeClient.connect(soak.url, token) as client:
            call = Call(client)
            await call.start("en")
            try:
                await call.silence(0.3)
                begin = time.monotonic()
                await call.stream(turn.pcm, turn.last_voiced_s)
                await call.silence_until_settled(begin, timeout_s=40.0)
                if any(r.status == "completed" and r.audio_bytes for r in call.responses.values()):
                    soak.answered += 1
                else:
                    soak.failures["no spoken reply"] = soak.failures.get("no spoken reply", 0) + 1
            finally:
                await call.close()
    except Exception as e:  # counted and reported: a soak goes on through a failed call
        key = f"{type(e).__name__}: {e}"[:120]
        soak.failures[key] = soak.failures.get(key, 0) + 1
    soak.durations_s.append(time.monotonic() - started)


async def calls_for(soak: Soak, seconds: float, interval_s: float, turns: list[Turn]) -> None:
    """Start a call every `interval_s` for `seconds`, then wait for the last one to hang up."""
    tasks: set[asyncio.Task[None]] = set()
    end = time.monotonic() + seconds
    next_t = time.monotonic()
    while next_t < end:
        task = asyncio.create_task(one_call(soak, soak.calls, turns[soak.calls % len(turns)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_t += interval_s
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))
    if tasks:
        await asyncio.gather(*tasks)


async def quiet_level(soak: Soak, settle_s: float, every_s: float) -> dict[str, float]:
    """Wait until no call is open and `settle_s` has passed; the median of the last samples."""
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        deadline = time.monotonic() + 120
        while (await sample(soak, http)).calls_open > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(every_s)  # the server's gauge, polled: nothing here to wait on
        await asyncio.sleep(settle_s)
        window = [await sample(soak, http)]
        for _ in range(4):
            await asyncio.sleep(every_s)
            window.append(await sample(soak, http))
    return {
        key: statistics.median(getattr(s, key) for s in window)
        for key in ("rss_mb", "tasks", "fds", "threads", "calls_open")
    } | {"t": window[-1].t}


async def drive(
    soak: Soak, turns: list[Turn], minutes: float, warmup_minutes: float, interval_s: float, every_s: float
) -> dict[str, dict[str, float]]:
    watcher = asyncio.create_task(sampler(soak, every_s))
    try:
        print(f"warm-up: {warmup_minutes:g} min of calls", flush=True)
        await calls_for(soak, warmup_minutes * 60, interval_s, turns)
        start = await quiet_level(soak, 10.0, every_s)
        soak.events["start"] = start["t"]
        print(f"start level: {start}", flush=True)
        warm_calls = soak.calls
        print(f"soak: {minutes:g} min, a call every {interval_s:g} s", flush=True)
        await calls_for(soak, minutes * 60, interval_s, turns)
        soak.events["last call"] = time.monotonic() - soak.began
        end = await quiet_level(soak, 10.0, every_s)
        soak.events["end"] = end["t"]
        print(f"end level: {end} ({soak.calls - warm_calls} calls in the soak)", flush=True)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return {"start": start, "end": end}


def plot(soak: Soak, levels: dict[str, dict[str, float]], path: Path) -> Path:
    minutes = [s.t / 60 for s in soak.samples]
    events = {k: v / 60 for k, v in soak.events.items()}

    def series(key: str) -> list[tuple[float, float]]:
        return [(m, float(getattr(s, key))) for m, s in zip(minutes, soak.samples, strict=True)]

    start, end = levels["start"], levels["end"]
    panels = [
        chart.Panel(
            "server resident memory",
            "MB",
            {"RSS": series("rss_mb")},
            {
                f"start {start['rss_mb']:.0f} MB": start["rss_mb"],
                f"+5% {start['rss_mb'] * (1 + TOLERANCE):.0f} MB": start["rss_mb"] * (1 + TOLERANCE),
            },
            events,
        ),
        chart.Panel(
            "asyncio tasks and open calls",
            "count",
            {"tasks": series("tasks"), "calls open": series("calls_open")},
            {},
            events,
        ),
        chart.Panel(
            "descriptors and threads",
            "count",
            {"open fds": series("fds"), "threads": series("threads")},
            {},
            events,
        ),
    ]
    title = (
        f"Soak: {soak.calls} calls; memory {start['rss_mb']:.0f} -> {end['rss_mb']:.0f} MB, "
        f"tasks {start['tasks']:.0f} -> {end['tasks']:.0f}"
    )
    return chart.line_chart(path, title, panels)


def run(
    minutes: float = 20.0,
    warmup_minutes: float = 2.0,
    interval_s: float = 5.0,
    every_s: float = 2.0,
    ttft_s: float = 0.3,
) -> dict[str, Any]:
    """Run the soak; prints the levels and writes `results/soak.json` and `results/soak.png`."""
    from tests.fakes.gemini import FakeGemini, Reply

    turns = inputs.prepare()
    with (
        FakeGemini(reply=Reply(text=REPLY, chunks=1), ttft_s=ttft_s) as fake,
        ServerProcess("soak", server_env(fake.url, fake.api_key)) as server,
    ):
        soak = Soak(server.pid, server.url)
        levels = asyncio.run(drive(soak, turns, minutes, warmup_minutes, interval_s, every_s))
    start, end = levels["start"], levels["end"]
    growth = {
        k: (end[k] - start[k]) / start[k] if start[k] else 0.0 for k in ("rss_mb", "tasks", "fds", "threads")
    }
    ok = {k: growth[k] <= TOLERANCE for k in ("rss_mb", "tasks")}
    rows = [[k, start[k], end[k], f"{growth[k] * 100:+.1f}%"] for k in ("rss_mb", "tasks", "fds", "threads")]
    print(
        report.table(
            f"Soak: {soak.calls} calls over {minutes:g} min (+ {warmup_minutes:g} min warm-up)",
            ["measure", "start", "end", "change"],
            rows,
            digits=1,
        )
    )
    print(
        f"answered {soak.answered}/{soak.calls}; failures {soak.failures or 'none'}; "
        f"peak RSS {max(s.rss_mb for s in soak.samples):.0f} MB; "
        f"memory back within 5%: {'yes' if ok['rss_mb'] else 'NO'}, tasks: {'yes' if ok['tasks'] else 'NO'}"
    )
    data = {
        "minutes": minutes,
        "warmup_minutes": warmup_minutes,
        "interval_s": interval_s,
        "ttft_s": ttft_s,
        "calls": soak.calls,
        "answered": soak.answered,
        "failures": soak.failures,
        "call_s": report.summary(soak.durations_s),
        "start": start,
        "end": end,
        "growth": growth,
        "within_tolerance": ok,
        "tolerance": TOLERANCE,
        "peak_rss_mb": max(s.rss_mb for s in soak.samples),
        "events_s": soak.events,
        "samples": [asdict(s) for s in soak.samples],
    }
    print(f"wrote {report.write('soak', data)} and {plot(soak, levels, report.RESULTS / 'soak.png')}")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="calls opened and closed for a long time: memory and tasks")
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the soak (after warm-up)")
    parser.add_argument("--warmup-minutes", type=float, default=2.0, help="calls before the start level")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between call starts")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake Gemini time to first token, seconds")
    args = parser.parse_args(argv)
    run(args.minutes, args.warmup_minutes, args.interval, args.sample, args.ttft)


if __name__ == "__main__":
    main()
