"""REST throughput and latency against PostgreSQL, with wrk.

A fresh database is created on 127.0.0.1:5432 (and dropped afterwards), the server runs as a
subprocess (`python -m server`) on it, a user logs in with dev login, and wrk drives two
authenticated endpoints: `GET /v1/home` and `POST /v1/photos` (a 640x480 JPEG as multipart
`file`). Each runs at 1 connection (latency alone) and at 16 (throughput). wrk's Lua `done()`
hook prints the figures as JSON, so nothing is scraped from its text output.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.serve import ServerProcess
from clients.realtime_client import login

PG_ADMIN_DSN = os.environ.get("SILVERTALK_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BOUNDARY = "silvertalkbench7MA4YWxkTrZu0gW"

DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def lua_string(data: bytes) -> str:
    """A Lua string literal holding any bytes (decimal escapes for everything unsafe)."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.:;=/()[]{}")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in data) + '"'


def sample_jpeg() -> bytes:
    """A 640x480 photo-like JPEG (a gradient with noise, so it compresses like a photo)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([x * 255 // 640, y * 255 // 480, (x + y) * 255 // 1120], axis=-1)
    noisy = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def multipart(jpeg: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="bench.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def scripts(token: str, folder: Path) -> dict[str, Path]:
    """The two wrk scripts: authenticated GET /v1/home and POST /v1/photos."""
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    home = folder / "home.lua"
    home.write_text(auth + DONE_HOOK)
    photos = folder / "photos.lua"
    photos.write_text(
        auth
        + 'wrk.method = "POST"\n'
        + f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n'
        + f"wrk.body = {lua_string(multipart(sample_jpeg()))}\n"
        + DONE_HOOK
    )
    return {"GET /v1/home": home, "POST /v1/photos": photos}


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, Any]:
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    seconds_run = data["duration_us"] / 1e6
    return {
        "connections": connections,
        "rps": data["requests"] / seconds_run,
        "p50_ms": data["p50_us"] / 1000,
        "p90_ms": data["p90_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "max_ms": data["max_us"] / 1000,
        "requests": data["requests"],
        "non_2xx": data["status_errors"],
        "socket_errors": data["socket_errors"],
    }


def check(url: str, token: str, jpeg: bytes) -> list[str]:
    """One request each, so a broken endpoint is reported plainly rather than as a fast 4xx rate."""
    problems = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30, trust_env=False) as http:
        r = http.get("/v1/home")
        if r.status_code != 200:
            problems.append(f"GET /v1/home: HTTP {r.status_code} {r.text[:200]}")
        r = http.post("/v1/photos", files={"file": ("bench.jpg", jpeg, "image/jpeg")})
        if r.status_code not in (200, 201):
            problems.append(f"POST /v1/photos: HTTP {r.status_code} {r.text[:200]}")
    return problems


def run(seconds: int = 8, connections: tuple[int, ...] = (1, 16)) -> dict[str, Any]:
    import psycopg

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    name = f"silvertalk_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].split("://", 1)[1]
    env = {
        "SILVERTALK_DATABASE_URL": f"postgresql+psycopg://{base}/{name}",
        "SILVERTALK_PRELOAD_ENGINES": "false",
        "SILVERTALK_LOG_LEVEL": "warning",
    }
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        with ServerProcess("rest", env) as server, tempfile.TemporaryDirectory() as tmp:
            token = asyncio.run(login(server.url, name="bench-rest"))
            problems = check(server.url, token, sample_jpeg())
            for p in problems:
                print(f"  problem: {p}")
            for endpoint, script in scripts(token, Path(tmp)).items():
                path = endpoint.split(" ", 1)[1]
                for c in connections:
                    r = wrk(server.url + path, script, c, seconds)
                    rows.append({"endpoint": endpoint, **r})
                    print(f"  {endpoint} c={c}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms", flush=True)
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    headers = ["endpoint", "conns", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx", "errors"]
    print(
        report.table(
            f"REST on PostgreSQL (wrk, {seconds} s each)",
            headers,
            [
                [
                    r["endpoint"],
                    r["connections"],
                    r["rps"],
                    r["p50_ms"],
                    r["p90_ms"],
                    r["p99_ms"],
                    r["max_ms"],
                    r["non_2xx"],
                    r["socket_errors"],
                ]
                for r in rows
            ],
            1,
        )
    )
    data = {"seconds": seconds, "problems": problems, "runs": rows}
    print(f"wrote {report.write('rest', data)}")
    return data


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="REST throughput and latency on PostgreSQL")
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    a = p.parse_args(argv)
    run(a.seconds, tuple(a.connections))


if __name__ == "__main__":
    main()
