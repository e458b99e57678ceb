"""Simulated callers for the calls-per-core benchmark, in their own process (`python -m bench.callers`).

N callers each open a realtime call and stream 20 ms pcm16 frames at real-time pace, on their own
absolute schedule with a random phase: speech (the Piper turns, looped) then silence, so the
server's real VAD finds turns and its instant engines answer them.

Inbound frame lag is measured with a probe: once a second each caller sends an event the server
does not know (`bench.probe`) right after an audio frame. The server handles a call's events in
order and answers an unknown one with an `error`, so the probe's round trip is the time the
server took to get through every frame sent before it (plus the loopback, about 0.1 ms). The
caller's own schedule slip is reported too: if it grows, the client, not the server, is saturated.

Prints JSON lines: {"event": "window_start"}, {"event": "window_end"}, then {"event": "result", ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from bench import inputs
from bench.report import summary
from clients.realtime_client import session_config

FRAME_MS = 20
FRAME_SAMPLES = inputs.RATE * FRAME_MS // 1000
PROBE_EVERY_S = 1.0
PAUSE_S = 2.0  # silence after each sentence: the endpointing wait and the (instant) reply


class Stats:
    """What one process of callers measured inside the window."""

    def __init__(self) -> None:
        self.probe_ms: list[float] = []
        self.slip_ms: list[float] = []
        self.replies = 0
        self.errors = 0
        self.failed_calls = 0
        self.measuring = False


def frames_of(turns: list[inputs.Turn]) -> list[bytes]:
    """The looped caller audio, as ready-to-send base64 frames (speech, then PAUSE_S of silence)."""
    out: list[bytes] = []
    silence = np.zeros(int(PAUSE_S * inputs.RATE), dtype=np.int16)
    for t in turns:
        pcm = np.concatenate([t.pcm, silence])
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME_SAMPLES, dtype=np.int16)])
        for i in range(0, len(pcm), FRAME_SAMPLES):
            out.append(base64.b64encode(pcm[i : i + FRAME_SAMPLES].astype("<i2").tobytes()))
    return out


async def caller(
    url: str, token: str, frames: list[bytes], stats: Stats, stop: asyncio.Event, delay: float, vad: bool
) -> None:
    """One call until `stop`: frames on schedule, a probe a second, replies counted."""
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    probes: deque[float] = deque()
    try:
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            max_size=16 * 1024 * 1024,
            proxy=None,
        ) as ws:
            session = session_config("en")
            if not vad:  # no turn detection: the server only buffers the audio
                session["audio"]["input"]["turn_detection"] = None
            await ws.send(json.dumps({"type": "session.update", "session": session}))

            async def read() -> None:
                async for raw in ws:
                    # Parse only the few events we count; audio deltas are skipped unparsed.
                    head = raw[:100] if isinstance(raw, str) else ""
                    if '"error"' in head:
                        if probes:
                            rtt = (time.monotonic() - probes.popleft()) * 1000
                            if stats.measuring:
                                stats.probe_ms.append(rtt)
                        elif stats.measuring:
                            stats.errors += 1
                    elif '"response.done"' in head and stats.measuring:
                        stats.replies += 1

            reader = asyncio.create_task(read())
            i = random.randrange(len(frames))
            start = time.monotonic()
            n = 0
            next_probe = start + random.random() * PROBE_EVERY_S
            prefix = b'{"type":"input_audio_buffer.append","audio":"'
            while not stop.is_set() and not reader.done():
                due = start + n * FRAME_MS / 1000
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                if stats.measuring:  # how late this frame leaves (0 when on time)
                    stats.slip_ms.append(max(0.0, time.monotonic() - due) * 1000)
                await ws.send((prefix + frames[i] + b'"}').decode("ascii"))
                i, n = (i + 1) % len(frames), n + 1
                if time.monotonic() >= next_probe:
                    probes.append(time.monotonic())
                    await ws.send('{"type":"bench.probe"}')
                    next_probe += PROBE_EVERY_S
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
    except Exception as e:
        stats.failed_calls += 1
        print(json.dumps({"event": "call_failed", "error": f"{type(e).__name__}: {e}"[:300]}), flush=True)


async def run(
    url: str, token: str, n: int, ramp_s: float, warmup_s: float, window_s: float, turns_path: Path, vad: bool
) -> dict[str, Any]:
    frames = frames_of([t for t in inputs.load(turns_path) if t.name.startswith("piper")])
    stats, stop = Stats(), asyncio.Event()
    tasks = [
        asyncio.create_task(caller(url, token, frames, stats, stop, ramp_s * i / max(1, n), vad))
        for i in range(n)
    ]
    await asyncio.sleep(ramp_s + warmup_s)
    stats.measuring = True
    print(json.dumps({"event": "window_start"}), flush=True)
    t0 = time.monotonic()
    await asyncio.sleep(window_s)
    stats.measuring = False
    elapsed = time.monotonic() - t0
    print(json.dumps({"event": "window_end"}), flush=True)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "n": n,
        "window_s": elapsed,
        "probe_ms": summary(stats.probe_ms),
        "slip_ms": summary(stats.slip_ms),
        "replies_per_call_per_min": stats.replies / max(1, n) / elapsed * 60,
        "unexpected_errors": stats.errors,
        "failed_calls": stats.failed_calls,
    }


def main() -> None:
    p = argparse.ArgumentParser(description="simulated realtime callers")
    p.add_argument("--url", required=True, help="ws://host:port/v1/realtime?model=...")
    p.add_argument("--token", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--ramp", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--window", type=float, default=8.0)
    p.add_argument("--turns", type=Path, required=True, help="prepared turns (bench.inputs.save)")
    p.add_argument("--no-vad", action="store_true", help="turn detection off: audio is only buffered")
    a = p.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop  # the server runs on uvloop too (uvicorn's default when installed)

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(run(a.url, a.token, a.n, a.ramp, a.warmup, a.window, a.turns, not a.no_vad))
    print(json.dumps({"event": "result", **result}), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
