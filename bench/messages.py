"""Voice messages: upload to reply audio ready, and messages per minute one job worker handles.

`python -m server` runs on a fresh PostgreSQL database with Redis, so it starts and supervises one
job worker process (`SILVERTALK_JOBS_WORKERS=1`) and the scheduler, as `make run` does with Redis.
Real Whisper base and Piper; the LLM is the local fake Gemini at 300 ms to first token. The inputs
are the fixture turns (the ten telephone sentences and JFK) as 16 kHz WAV uploads.

- Latency: one message at a time; ms from the start of the upload to the reply audio being ready
  (the client sees `done`; polled every 20 ms), with the server's own stage timings.
- Throughput: `--burst` messages posted at once; messages per minute from the first upload to the
  last reply ready.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import httpx

from bench import report
from bench.inputs import RATE, fixture_turns
from bench.serve import ServerProcess
from clients.realtime_client import login

PG_ADMIN_DSN = os.environ.get("SILVERTALK_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SILVERTALK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
REPLY = "That sounds lovely. Tell me a little more about it, please."
STAGES = ("upload_ms", "queued_ms", "transcribe_ms", "first_token_ms", "llm_ms", "tts_ms", "total_ms")


async def send(
    client: httpx.AsyncClient, headers: dict[str, str], wav: bytes
) -> tuple[dict[str, Any], float]:
    """Post one recording and wait for its reply audio; the message and the client's ms."""
    started = time.perf_counter()
    r = await client.post(
        "/v1/chat/messages",
        headers=headers,
        files={"audio": ("turn.wav", wav, "audio/wav")},
        data={"language": "en"},
    )
    r.raise_for_status()
    mid = r.json()["id"]
    while True:
        m: dict[str, Any] = (await client.get(f"/v1/chat/messages/{mid}", headers=headers)).json()
        if m["status"] in ("done", "failed"):
            return m, (time.perf_counter() - started) * 1000
        await asyncio.sleep(0.02)


def turn_wavs() -> list[tuple[str, bytes]]:
    from server.chat.audio import to_wav

    return [(t.name, to_wav(t.pcm, RATE)) for t in fixture_turns()]


async def run_client(url: str, rounds: int, burst: int) -> dict[str, Any]:
    wavs = turn_wavs()
    token = await login(url, name="bench-messages")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as client:
        await send(client, headers, wavs[0][1])  # warm: engines loaded, worker polling
        latency: list[dict[str, Any]] = []
        for _ in range(rounds):
            for name, wav in wavs:
                m, client_ms = await send(client, headers, wav)
                latency.append({"turn": name, "status": m["status"], "client_ms": client_ms, **m["timings"]})
                print(f"  {name}: {m['status']} {client_ms:.0f} ms  {m['transcript']!r}", flush=True)
        started = time.perf_counter()
        batch = await asyncio.gather(*(send(client, headers, wavs[i % len(wavs)][1]) for i in range(burst)))
        elapsed = time.perf_counter() - started
    done = sum(1 for m, _ in batch if m["status"] == "done")
    return {
        "latency": latency,
        "burst": {"messages": burst, "done": done, "seconds": elapsed, "per_minute": done / elapsed * 60},
    }


def run(rounds: int = 1, burst: int = 11) -> dict[str, Any]:
    import psycopg

    from tests.fakes.gemini import FakeGemini, Reply

    name = f"silvertalk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].split("://", 1)[1]
    try:
        with FakeGemini(reply=Reply(text=REPLY, chunks=1), ttft_s=0.3) as fake:
            env = {
                "SILVERTALK_DATABASE_URL": f"postgresql+psycopg://{base}/{name}",
                "SILVERTALK_REDIS_URL": REDIS_URL,
                "SILVERTALK_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:",
                "SILVERTALK_JOBS_WORKERS": "1",
                "SILVERTALK_LLM_ENGINE": "gemini",
                "SILVERTALK_GEMINI_BASE_URL": fake.url,
                "SILVERTALK_GEMINI_API_KEY": fake.api_key,
                "SILVERTALK_PRELOAD_ENGINES": "true",
                "SILVERTALK_LOG_LEVEL": "warning",
            }
            with ServerProcess("messages", env) as server:
                data = asyncio.run(run_client(server.url, rounds, burst))
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ok = [row for row in data["latency"] if row["status"] == "done"]
    metrics = {"upload -> reply audio ready (client)": [r["client_ms"] for r in ok]}
    metrics |= {f"server: {s}": [r.get(s) for r in ok] for s in STAGES}
    print(
        report.table(
            "Voice messages, one at a time (ms)",
            ["stage", "n", "p50", "p95", "max"],
            report.stats_rows(metrics),
        )
    )
    b = data["burst"]
    rate = f"{b['per_minute']:.1f} messages per minute"
    print(f"burst: {b['done']}/{b['messages']} done in {b['seconds']:.1f} s: {rate}")
    print(f"wrote {report.write('messages', data)}")
    return data


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="voice messages: latency and messages per minute")
    p.add_argument("--rounds", type=int, default=1, help="times each fixture turn is sent one at a time")
    p.add_argument("--burst", type=int, default=11, help="messages posted at once for throughput")
    args = p.parse_args(argv)
    run(args.rounds, args.burst)
