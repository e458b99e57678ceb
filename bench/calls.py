"""Calls per core: how many concurrent real-time callers one server process carries.

The server (`python -m bench.serve --ws IMPL`) runs the real gateway, the real VAD and endpointing,
with the benchmark's instant engines (`bench.engines`), so only the per-frame work of a call is
measured. The callers run in a separate process (`bench.callers`). For each N the table gives the
inbound frame lag (probe round trip, see `bench.callers`) p50/p99, the callers' own schedule slip,
and the server's CPU per call, read from /proc over the measuring window.

First the uvicorn WebSocket implementations are compared at one N (and the fastest again without
permessage-deflate); then the ladder runs on the fastest twice: with turn detection off (transport,
JSON, base64 and resampling only) and with the real VAD and endpointing on (turns and instant
replies, as in a real call). A ladder stops once a step saturates.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from typing import Any

from bench import inputs, report
from bench.serve import ROOT, ServerProcess, cpu_seconds
from clients.realtime_client import login, realtime_url

LAG_TARGET_MS = 20.0
WS_IMPLS = ("websockets", "websockets-sansio", "wsproto")
NO_DEFLATE = " no-deflate"  # suffix: the same implementation refusing permessage-deflate


def server_env() -> dict[str, str]:
    return {
        "SILVERTALK_STT_ENGINE": "bench-instant",
        "SILVERTALK_LLM_ENGINE": "bench-instant",
        "SILVERTALK_TTS_ENGINE": "bench-instant",
        "SILVERTALK_PRELOAD_ENGINES": "true",
        "SILVERTALK_REALTIME_MAX_CALLS_PER_USER": "100000",
        "SILVERTALK_LOG_LEVEL": "error",
    }


def step(server: ServerProcess, token: str, n: int, window_s: float, vad: bool = True) -> dict[str, Any]:
    """Run N callers in a fresh client process; returns their measures plus the server's CPU."""
    turns_path = report.RESULTS / "inputs.npz"
    ramp = min(5.0, 0.02 * n + 0.5)
    cmd = [
        sys.executable,
        "-m",
        "bench.callers",
        "--url",
        realtime_url(server.url),
        "--token",
        token,
        "--n",
        str(n),
        "--ramp",
        f"{ramp:.2f}",
        "--warmup",
        "2",
        "--window",
        str(window_s),
        "--turns",
        str(turns_path),
        *(() if vad else ("--no-vad",)),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    cpu0 = t0 = ccpu0 = 0.0
    result: dict[str, Any] = {}
    failures: list[str] = []
    for line in proc.stdout:
        msg = json.loads(line)
        if msg["event"] == "window_start":
            cpu0, ccpu0, t0 = cpu_seconds(server.pid), cpu_seconds(proc.pid), time.monotonic()
        elif msg["event"] == "window_end":
            elapsed = time.monotonic() - t0
            server_cpu = (cpu_seconds(server.pid) - cpu0) / elapsed
            client_cpu = (cpu_seconds(proc.pid) - ccpu0) / elapsed
        elif msg["event"] == "call_failed":
            failures.append(msg["error"])
        elif msg["event"] == "result":
            result = msg
    proc.wait()
    result.pop("event", None)
    result.update(
        server_cpu_cores=server_cpu,
        server_cpu_pct_per_call=100 * server_cpu / n,
        client_cpu_cores=client_cpu,
        failure_examples=failures[:3],
    )
    return result


def row(ws: str, r: dict[str, Any]) -> list[Any]:
    return [
        ws,
        r["n"],
        r["probe_ms"]["p50"],
        r["probe_ms"]["p99"],
        r["slip_ms"]["p99"],
        r["server_cpu_cores"] * 100,
        r["server_cpu_pct_per_call"],
        r["client_cpu_cores"] * 100,
        round(r["replies_per_call_per_min"], 1),
        r["failed_calls"],
        # The callers share the 2 cores: when their own frames leave late, lag is partly theirs.
        r["slip_ms"]["p99"] > LAG_TARGET_MS,
    ]


HEADERS = [
    "ws",
    "N",
    "lag p50 ms",
    "lag p99 ms",
    "client slip p99 ms",
    "server CPU %",
    "CPU % per call",
    "client CPU %",
    "replies/call/min",
    "failed",
    "client-bound",
]


def serve(config: str) -> ServerProcess:
    """The server with one WebSocket configuration: an implementation, maybe without deflate."""
    ws = config.removesuffix(NO_DEFLATE)
    args = ("--ws", ws, "--no-deflate") if config.endswith(NO_DEFLATE) else ("--ws", ws)
    return ServerProcess(f"calls-{ws}", server_env(), module="bench.serve", args=args)


def compare_ws(configs: list[str], n: int, window_s: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for config in configs:
        with serve(config) as server:
            token = asyncio.run(login(server.url, name="bench-calls"))
            r = out[config] = step(server, token, n, window_s)
            print(
                f"  {config}: lag p50/p99 {r['probe_ms']['p50']:.1f}/{r['probe_ms']['p99']:.1f} ms",
                flush=True,
            )
    return out


def fastest(results: dict[str, dict[str, Any]]) -> str:
    return min(results, key=lambda w: (results[w]["probe_ms"]["p99"], results[w]["server_cpu_cores"]))


def run(
    ns: tuple[int, ...] = (10, 50, 100, 200, 400), window_s: float = 6.0, compare_at: int = 100
) -> dict[str, Any]:
    inputs.save(inputs.prepare(), report.RESULTS / "inputs.npz")
    impls = [w for w in WS_IMPLS if importlib.util.find_spec(w.split("-")[0]) is not None]
    skipped = [w for w in WS_IMPLS if w not in impls]
    # uvicorn's default negotiates permessage-deflate, which buys nothing on base64 audio but
    # costs CPU on every frame: the fastest implementation is tried without it too.
    comparison = compare_ws(impls, compare_at, window_s)
    comparison.update(compare_ws([fastest(comparison) + NO_DEFLATE], compare_at, window_s))
    print(
        report.table(
            f"WebSocket implementations at N={compare_at}",
            HEADERS,
            [row(w, r) for w, r in comparison.items()],
            1,
        )
    )
    if skipped:
        print(f"not installed, not compared: {', '.join(skipped)}")
    best = fastest(comparison)
    print(f"fastest: ws={best!r}")
    ladders = {
        "vad-off": ladder(best, ns, window_s, vad=False),
        "vad-on": ladder(best, ns, window_s, vad=True),
    }
    largest: dict[str, int | None] = {}
    for mode, steps in ladders.items():
        title = (
            "real VAD and endpointing on"
            if mode == "vad-on"
            else "turn detection off: transport + resampling"
        )
        print(
            report.table(
                f"Calls per core, {title} (instant engines, ws={best})",
                HEADERS,
                [row(best, r) for r in steps],
                1,
            )
        )
        ok = [r["n"] for r in steps if r["probe_ms"]["p99"] <= LAG_TARGET_MS and r["failed_calls"] == 0]
        largest[mode] = max(ok) if ok else None
        print(f"largest N with p99 inbound lag <= {LAG_TARGET_MS:.0f} ms, {mode}: {largest[mode] or 'none'}")
    data = {
        "ws_comparison": comparison,
        "ws_not_installed": skipped,
        "ws_fastest": best,
        "ladders": ladders,
        "largest_n_within_target": largest,
    }
    print(f"wrote {report.write('calls', data)}")
    return data


def ladder(config: str, ns: tuple[int, ...], window_s: float, *, vad: bool) -> list[dict[str, Any]]:
    """N callers for each N in turn, on one server, until the server saturates."""
    steps: list[dict[str, Any]] = []
    with serve(config) as server:
        token = asyncio.run(login(server.url, name="bench-calls"))
        for n in ns:
            r = step(server, token, n, window_s, vad)
            steps.append(r)
            print(
                f"  VAD {'on' if vad else 'off'} N={n}: lag {r['probe_ms']['p50']:.1f}/"
                f"{r['probe_ms']['p99']:.1f} ms, server CPU {100 * r['server_cpu_cores']:.0f}%",
                flush=True,
            )
            if r["probe_ms"]["p99"] > 1000 or r["failed_calls"] > n // 10:
                print("  saturated: stopping here", flush=True)
                break
    return steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="calls per core")
    p.add_argument("--n", type=int, nargs="+", default=[10, 50, 100, 200, 400])
    p.add_argument("--window", type=float, default=6.0)
    p.add_argument("--compare-at", type=int, default=100)
    a = p.parse_args(argv)
    run(tuple(a.n), a.window, a.compare_at)


if __name__ == "__main__":
    main()
