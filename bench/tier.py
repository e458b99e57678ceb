"""Where the inference tier's time goes, asked alone: in-process, through a Serve handle, over HTTP.

One request at a time on an idle machine, each path in turn (so a drift of the machine's speed
falls on all three alike):

- STT: a 3 s clip of JFK decoded by Whisper in this process (`WhisperSTT`), by the tier's STT
  replica through a `DeploymentHandle` (one Ray hop each way), and as a gateway asks it,
  `POST /v1/audio/transcriptions` (Serve's HTTP proxy, the ingress replica, then the same hop).
  The replica reports its own decode time, so each path's overhead over the decode is shown.
- TTS: the first chunk of a two-sentence reply from Piper in this process, from the TTS replica
  through a streaming handle, and over `POST /v1/audio/speech` (`pcm`).

`python -m bench tier` (about a minute: Ray, two model loads, 120 requests). What a call adds on
top, the two cores shared with Ray's processes and the gateway, is `python -m bench load --modes
in-process,remote --callers 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from bench import inputs, report
from bench.serve import free_port
from inference import prefer_serve_loop
from pipeline.engines.remote import wav_file
from server.settings import Settings

#: The bench's reply (`bench.v2v.REPLY` starts alike): the first chunk is its first sentence.
TEXT = "That sounds lovely. Tell me more about your garden."
CLIP_S = 3.0


#: What one request returns: when its answer (or a stream's first chunk) came (`perf_counter`),
#: and the server's own decode time in ms where it says.
Done = tuple[float, float | None]


async def _timed(fn: Callable[[], Awaitable[Done]]) -> tuple[float, float | None]:
    """(wall ms to the answer or first chunk, the server's own decode ms or None) of one request."""
    started = time.perf_counter()
    done_at, compute = await fn()
    return (done_at - started) * 1000, compute


async def _first_chunk(chunks: AsyncIterator[Any]) -> Done:
    """Read a stream to its end (so no work is left running to slow the next request down);
    done when its first chunk came."""
    first: float | None = None
    async for _ in chunks:
        if first is None:
            first = time.perf_counter()
    if first is None:
        raise RuntimeError("the stream ended without audio")
    return first, None


def run(requests: int = 20, num_cpus: int = 2) -> dict[str, Any]:
    """Start a private Ray with the tier, measure, shut it down; prints the table, writes
    `results/tier.json`."""
    prefer_serve_loop()
    import ray
    from ray import serve

    from inference.app import build
    from pipeline.engines.piper import load as load_piper
    from pipeline.engines.whisper import load as load_whisper

    settings = Settings()
    clip = inputs.read_any(inputs.FIXTURES / "jfk.flac", 16000)[: int(CLIP_S * 16000)]
    whisper = load_whisper(settings)
    piper = load_piper(settings)
    port = free_port()
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build(settings), name="tier-bench", route_prefix="/")

        async def measure() -> dict[str, list[tuple[float, float | None]]]:
            # The handles route on this loop (`prefer_serve_loop`): Serve is shut down on it too.
            try:
                stt = serve.get_deployment_handle("STT", app_name="tier-bench")
                tts = serve.get_deployment_handle("TTS", app_name="tier-bench")
                return await _measure(requests, port, clip, whisper, piper, stt, tts)
            finally:
                await serve.shutdown_async()

        results = asyncio.run(measure())
    finally:
        ray.shutdown()
        whisper.close()
        piper.close()

    paths = {
        name: {
            "wall_ms": report.summary(w for w, _ in samples),
            "over_decode_ms": report.summary(w - c for w, c in samples if c is not None),
        }
        for name, samples in results.items()
    }
    rows = [
        [name, p["wall_ms"]["n"], p["wall_ms"]["p50"], p["wall_ms"]["p95"], p["over_decode_ms"]["p50"]]
        for name, p in paths.items()
    ]
    print(
        report.table(
            f"The tier asked alone ({requests} requests a path)",
            ["path", "n", "p50 ms", "p95 ms", "over its decode, p50 ms"],
            rows,
        )
    )
    data = {"requests": requests, "num_cpus": num_cpus, "clip_s": CLIP_S, "text": TEXT, "paths": paths}
    print(f"wrote {report.write('tier', data)}")
    return data


async def _measure(
    requests: int, port: int, clip: Any, whisper: Any, piper: Any, stt: Any, tts: Any
) -> dict[str, list[tuple[float, float | None]]]:
    body = wav_file(clip, 16000)
    form = {"model": "whisper-1", "language": "en", "response_format": "json"}
    speech = {"model": "tts-1", "input": TEXT, "voice": "auto", "response_format": "pcm"}
    base = f"http://127.0.0.1:{port}/v1/"
    async with httpx.AsyncClient(base_url=base, timeout=60, trust_env=False) as client:

        async def stt_local() -> Done:
            await whisper.transcribe(clip, language="en")
            return time.perf_counter(), None

        async def stt_handle() -> Done:
            result = await stt.transcribe.remote(clip, "en", None, False)
            return time.perf_counter(), float(result["compute_s"]) * 1000

        async def stt_http() -> Done:
            files = {"file": ("clip.wav", body, "audio/wav")}
            r = await client.post("audio/transcriptions", files=files, data=form)
            r.raise_for_status()
            return time.perf_counter(), float(r.headers["x-silvertalk-compute-ms"])

        async def tts_local() -> Done:
            return await _first_chunk(piper.synthesize(TEXT, language="en", speed=1.0))

        async def tts_handle() -> Done:
            stream = tts.options(stream=True).synthesize.remote(TEXT, "auto", "en", 1.0)
            return await _first_chunk(stream)

        async def tts_http() -> Done:
            async with client.stream("POST", "audio/speech", json=speech) as r:
                r.raise_for_status()
                return await _first_chunk(r.aiter_bytes())

        paths: dict[str, Callable[[], Awaitable[Done]]] = {
            "STT in-process": stt_local,
            "STT handle": stt_handle,
            "STT HTTP": stt_http,
            "TTS first chunk in-process": tts_local,
            "TTS first chunk handle": tts_handle,
            "TTS first chunk HTTP": tts_http,
        }
        for fn in paths.values():  # warm every path: kernels, connections, replicas' first runs
            for _ in range(2):
                await _timed(fn)
        out: dict[str, list[tuple[float, float | None]]] = {name: [] for name in paths}
        for _ in range(requests):
            for name, fn in paths.items():
                out[name].append(await _timed(fn))
                await asyncio.sleep(0.05)
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per path")
    parser.add_argument("--num-cpus", type=int, default=2, help="cores of the private Ray instance")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    run(args.requests, args.num_cpus)
