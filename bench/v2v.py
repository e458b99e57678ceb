"""Voice-to-voice latency per turn, over the WebSocket, with audio streamed at real-time pace.

The server runs as a subprocess (`python -m server`) with real Whisper and Piper and the fake
Gemini (fixed time to first token) as its LLM. For each labelled turn the caller streams 20 ms
frames on an absolute schedule and goes on streaming silence while the reply plays, like a phone.
Voice-to-voice is measured from the moment the frame holding the labelled last voiced sample is
sent to the moment the first reply audio delta arrives. The server's own `timings` from
`response.done` give the breakdown. A sentence that comes back as two user turns or two replies is
counted as cut in two.

`Call` (the caller side) is shared with the barge-in benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import inputs, report
from bench.inputs import RATE, Turn
from bench.serve import ServerProcess
from clients.realtime_client import RealtimeClient, login, session_config, timings_of

FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000
REPLY = "That sounds lovely. Tell me more about it."
AUDIO_DELTAS = ("response.output_audio.delta", "response.audio.delta")
TARGET_P50_MS = 0.65 * 2600  # issue 7: at most 0.65x Pipecat's p50 on this machine
SLOW_ENDPOINT_MS = 1500.0  # Pipecat's slow turns waited a 3 s fallback; count ours that wait long


@dataclass
class Response:
    """What the caller saw of one response."""

    created_t: float
    first_audio_t: float | None = None
    last_audio_t: float | None = None
    audio_bytes: int = 0
    done_t: float | None = None
    status: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def audio_s(self) -> float:
        return self.audio_bytes / 2 / RATE


@dataclass
class Call:
    """One realtime call: frames sent on a real-time schedule, every server event logged on arrival.

    Audio deltas are logged without their payload (only its size) to keep the log small.
    """

    client: RealtimeClient
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    responses: dict[str, Response] = field(default_factory=dict)
    sent_frames: int = 0
    speech_active: bool = False
    last_activity_t: float = 0.0
    _next_frame_t: float = 0.0
    _reader: asyncio.Task[None] | None = None

    async def start(self, language: str = "en") -> None:
        """Wait for `session.created`, set the session (pcm16 24 kHz, server VAD) and start reading."""
        self._reader = asyncio.create_task(self._read())
        await self.client.update_session(session_config(language))
        await self.wait_for(lambda e: e.get("type") == "session.updated", 30.0)
        self._next_frame_t = time.monotonic()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        async for event in self.client:
            t = time.monotonic()
            kind = event.get("type", "")
            if kind in AUDIO_DELTAS:
                b64 = event.pop("delta", "")
                event["bytes"] = len(b64) * 3 // 4 - b64[-2:].count("=")
            self.events.append((t, event))
            self._track(t, kind, event)

    def _track(self, t: float, kind: str, event: dict[str, Any]) -> None:
        rid = str(event.get("response_id") or (event.get("response") or {}).get("id") or "")
        if kind == "response.created":
            self.responses[rid] = Response(created_t=t)
            self.last_activity_t = t
        elif kind in AUDIO_DELTAS and rid in self.responses:
            r = self.responses[rid]
            r.first_audio_t = r.first_audio_t or t
            r.last_audio_t = t
            r.audio_bytes += int(event["bytes"])
        elif kind == "response.done" and rid in self.responses:
            r = self.responses[rid]
            r.done_t, r.status = t, event["response"].get("status")
            r.timings = timings_of(event)
        elif kind == "input_audio_buffer.speech_started":
            self.speech_active, self.last_activity_t = True, t
        elif kind in ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed"):
            self.speech_active, self.last_activity_t = False, t

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], within_s: float) -> dict[str, Any]:
        """The first logged event (from now on) that matches; raises TimeoutError."""
        seen = len(self.events)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for _, event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            if self._reader is not None and self._reader.done():
                raise ConnectionError(f"the server closed the call: {self._reader.exception()!r}")
            await asyncio.sleep(0.01)
        raise TimeoutError("no matching server event")

    async def frame(self, pcm: np.ndarray) -> float:
        """Send one frame at its scheduled time; returns when it was sent."""
        delay = self._next_frame_t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next_frame_t += FRAME_MS / 1000
        await self.client.append(pcm.astype("<i2").tobytes())
        self.sent_frames += 1
        return time.monotonic()

    async def stream(self, pcm: np.ndarray, label_s: float | None = None) -> tuple[float | None, float]:
        """Stream a clip; returns (send time of the frame holding `label_s`, its stream position in ms)."""
        label_frame = int(max(0.0, label_s - 1e-6) * 1000 // FRAME_MS) if label_s is not None else -1
        label_t, label_pos_ms = None, (self.sent_frames * FRAME_MS + (label_s or 0.0) * 1000)
        n = -(-len(pcm) // FRAME_SAMPLES)
        padded = np.zeros(n * FRAME_SAMPLES, dtype=np.int16)
        padded[: len(pcm)] = pcm
        for i in range(n):
            t = await self.frame(padded[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
            if i == label_frame:
                label_t = t
        return label_t, label_pos_ms

    async def silence(self, seconds: float) -> None:
        zero = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        for _ in range(round(seconds * 1000 / FRAME_MS)):
            await self.frame(zero)

    async def silence_until_settled(self, since: float, *, timeout_s: float, quiet_s: float = 1.2) -> None:
        """Stream silence until every reply begun after `since` is done and has had time to play.

        Settled also needs `quiet_s` without a new turn or reply starting (a late second half).
        """
        zero = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        deadline = since + timeout_s
        while (now := time.monotonic()) < deadline:
            mine = [r for r in self.responses.values() if r.created_t >= since]
            if mine and not self.speech_active and all(r.done_t for r in mine):
                played = max((r.first_audio_t or r.done_t or now) + r.audio_s for r in mine)
                if now >= played + 0.3 and now >= self.last_activity_t + quiet_s:
                    return
            await self.frame(zero)


@dataclass
class TurnResult:
    name: str
    text: str
    v2v_ms: float | None
    endpoint_ms: float | None
    vad_end_error_ms: float | None
    commits: int
    responses: int
    #: Turns the server joined into the next (`conversation.item.deleted`): ended in a pause, then
    #: taken back because the caller spoke on before hearing the answer.
    rejoined: int
    transcripts: list[str]
    timings: dict[str, Any]
    status: str | None
    #: Reply audio that arrived before the last word was sent (ms, negative): the sentence was cut off.
    early_audio_ms: float | None = None

    @property
    def cut(self) -> bool:
        return self.commits > 1 or self.responses > 1

    @property
    def heard_whole(self) -> bool:
        """Cut, but rejoined: the caller got one transcript and one answer for the sentence."""
        return self.cut and self.commits - self.rejoined == 1


def analyse(
    turn: Turn, window: list[tuple[float, dict[str, Any]]], label_t: float, label_pos_ms: float
) -> TurnResult:
    """Read one turn's results from the events that arrived while it was the current turn."""
    kinds = [e.get("type") for _, e in window]
    first_audio = next((t for t, e in window if e.get("type") in AUDIO_DELTAS and t >= label_t), None)
    early_audio = next((t for t, e in window if e.get("type") in AUDIO_DELTAS and t < label_t), None)
    stopped = next(
        ((t, e) for t, e in window if e.get("type") == "input_audio_buffer.speech_stopped" and t >= label_t),
        None,
    )
    rid = next(
        (e.get("response_id") for t, e in window if e.get("type") in AUDIO_DELTAS and t >= label_t), None
    )
    done = next(
        (e for _, e in window if e.get("type") == "response.done" and e["response"].get("id") == rid), None
    )
    resp = (done or {}).get("response") or {}
    end_ms = stopped[1].get("audio_end_ms") if stopped else None
    return TurnResult(
        name=turn.name,
        text=turn.text,
        v2v_ms=(first_audio - label_t) * 1000 if first_audio else None,
        endpoint_ms=(stopped[0] - label_t) * 1000 if stopped else None,
        vad_end_error_ms=float(end_ms) - label_pos_ms if isinstance(end_ms, int | float) else None,
        commits=kinds.count("input_audio_buffer.committed"),
        responses=kinds.count("response.created"),
        rejoined=kinds.count("conversation.item.deleted"),
        transcripts=[
            str(e.get("transcript", ""))
            for _, e in window
            if e.get("type") == "conversation.item.input_audio_transcription.completed"
        ],
        timings=timings_of(done) if done else {},
        status=resp.get("status"),
        early_audio_ms=(early_audio - label_t) * 1000 if early_audio is not None else None,
    )


async def run_call(url: str, token: str, turns: list[Turn], *, timeout_s: float = 25.0) -> list[TurnResult]:
    """One call: every turn in order, each followed by silence until its reply has played."""
    results = []
    async with RealtimeClient.connect(url, token) as client:
        call = Call(client)
        await call.start("en")
        try:
            await call.silence(0.5)
            for turn in turns:
                first = len(call.events)
                begin = time.monotonic()
                label_t, label_pos_ms = await call.stream(turn.pcm, turn.last_voiced_s)
                assert label_t is not None
                await call.silence_until_settled(begin, timeout_s=timeout_s)
                results.append(analyse(turn, call.events[first:], label_t, label_pos_ms))
                r = results[-1]
                v2v_ms, wait_ms = report.fmt(r.v2v_ms), report.fmt(r.endpoint_ms)
                print(
                    f"  {r.name:9s} v2v {v2v_ms:>5s} ms  endpoint {wait_ms:>5s} ms"
                    f"  turns {r.commits} replies {r.responses} rejoined {r.rejoined}"
                    f"  {' | '.join(r.transcripts)}",
                    flush=True,
                )
        finally:
            await call.close()
    return results


def server_env(fake_url: str, api_key: str) -> dict[str, str]:
    """Real Whisper and Piper, Gemini pointed at the fake."""
    return {
        "SILVERTALK_STT_ENGINE": "whisper",
        "SILVERTALK_LLM_ENGINE": "gemini",
        "SILVERTALK_TTS_ENGINE": "auto",
        "SILVERTALK_GEMINI_BASE_URL": fake_url,
        "SILVERTALK_GEMINI_API_KEY": api_key,
        "SILVERTALK_PRELOAD_ENGINES": "true",
    }


#: The gateway's `response.done` timings: ms from the end of the caller's speech (server clock).
SERVER_STAGES = {
    "turn_end_ms": "endpointing wait (turn end)",
    "transcript_ms": "end of speech -> final transcript",
    "llm_first_token_ms": "end of speech -> first LLM token",
    "tts_first_audio_ms": "end of speech -> first TTS audio",
    "first_audio_sent_ms": "end of speech -> first audio sent",
}


def stage_rows(results: list[TurnResult]) -> list[list[Any]]:
    """Voice-to-voice and its breakdown: the caller's measures, then the server's timings."""
    metrics: dict[str, list[float | None]] = {
        "voice-to-voice (label -> first audio received)": [r.v2v_ms for r in results],
        "label -> speech_stopped received": [r.endpoint_ms for r in results],
        "server VAD end - label (audio_end_ms)": [r.vad_end_error_ms for r in results],
    }
    for key, title in SERVER_STAGES.items():
        metrics[f"server: {title}"] = [r.timings.get(key) for r in results]
    metrics["label -> server end of speech + delivery"] = [
        r.v2v_ms - r.timings["first_audio_sent_ms"]
        if r.v2v_ms is not None and "first_audio_sent_ms" in r.timings
        else None
        for r in results
    ]
    known = {*SERVER_STAGES, "speculative"}
    for k in sorted({k for r in results for k, v in r.timings.items() if isinstance(v, int | float)} - known):
        metrics[f"server: {k}"] = [r.timings.get(k) for r in results]
    return report.stats_rows(metrics)


def serve_calls(
    name: str,
    groups: dict[str, list[Turn]],
    ttft_s: float,
    *,
    tool: bool = False,
    log_level: str = "warning",
) -> list[TurnResult]:
    """A server (real Whisper and Piper, the fake Gemini at `ttft_s`) and one call per group, in turn.

    With `tool` every answer first calls the companion's `list_events` (one more LLM round trip,
    plus the tool: a calendar query). The server's log (at `log_level`) is `results/<name>.server.log`."""
    from tests.fakes.gemini import FakeGemini, Reply

    def answer(body: dict[str, Any]) -> Reply:
        last = (body.get("contents") or [{}])[-1].get("parts") or []
        if tool and not any("functionResponse" in p for p in last):
            return Reply.call("list_events")
        return Reply(text=REPLY, chunks=1)

    results: list[TurnResult] = []
    with (
        FakeGemini(reply=answer, ttft_s=ttft_s) as fake,
        ServerProcess(
            name, {**server_env(fake.url, fake.api_key), "SILVERTALK_LOG_LEVEL": log_level}
        ) as server,
    ):

        async def drive() -> None:
            for call_name, group in groups.items():
                if group:
                    # A caller of their own per call: what one call learns of its caller's pauses
                    # starts that caller's next call, and these groups are different speakers.
                    token = await login(server.url, name=f"bench-{name}-{call_name}")
                    print(f"call: {call_name} ({len(group)} turns)", flush=True)
                    results.extend(await run_call(server.url, token, group))

        asyncio.run(drive())
    return results


def run(ttft_s: float = 0.3, turns: list[Turn] | None = None, tool: bool = False) -> dict[str, Any]:
    """Run the benchmark; prints the table and writes `results/v2v.json` (`v2v-tool.json` with
    `tool`: every answer calls one tool first)."""
    turns = turns or inputs.prepare()
    groups: dict[str, list[Turn]] = {}
    for t in turns:
        groups.setdefault(t.name.split("-")[0], []).append(t)
    results = serve_calls("v2v", groups, ttft_s, tool=tool)
    cut = [r.name for r in results if r.cut]
    rejoined = [r.name for r in results if r.heard_whole]
    missed = [r.name for r in results if r.v2v_ms is None]
    print(
        report.table(
            f"Voice-to-voice over {len(results)} turns (ms; fake LLM TTFT {ttft_s * 1000:.0f} ms"
            + ("; each answer calls one tool first)" if tool else ")"),
            ["stage", "n", "p50", "p95", "max"],
            stage_rows(results),
        )
    )
    speculative = sum(1 for r in results if r.timings.get("speculative"))
    print(
        f"sentences cut in two: {len(cut)} {cut} (rejoined into one transcript and one answer: "
        f"{len(rejoined)} {rejoined}); turns without a reply: {len(missed)} {missed}; "
        f"replies prepared speculatively: {speculative}/{len(results)}"
    )
    slow = [r.name for r in results if r.endpoint_ms is not None and r.endpoint_ms > SLOW_ENDPOINT_MS]
    p50 = report.summary(r.v2v_ms for r in results)["p50"]
    print(
        f"turns whose endpointing wait exceeded {SLOW_ENDPOINT_MS:.0f} ms: {len(slow)}/{len(results)}; "
        f"voice-to-voice p50 {report.fmt(p50)} ms against the target {TARGET_P50_MS:.0f} ms "
        "(0.65 x Pipecat's 2.6 s on this machine, issue 7)"
    )
    data = {
        "ttft_s": ttft_s,
        "tool": tool,
        "summary": {
            "v2v_ms": report.summary(r.v2v_ms for r in results),
            "endpoint_ms": report.summary(r.endpoint_ms for r in results),
        },
        "stages": [
            dict(zip(["stage", "n", "p50", "p95", "max"], row, strict=True)) for row in stage_rows(results)
        ],
        "cut_in_two": cut,
        "rejoined": rejoined,
        "speculative_replies": speculative,
        "slow_endpoints": slow,
        "target_p50_ms": TARGET_P50_MS,
        "no_reply": missed,
        "turns": [{**r.__dict__, "cut": r.cut, "heard_whole": r.heard_whole} for r in results],
    }
    print(f"wrote {report.write('v2v-tool' if tool else 'v2v', data)}")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="voice-to-voice latency per turn")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake Gemini time to first token, seconds")
    parser.add_argument(
        "--tool", action="store_true", help="every answer calls one tool (list_events) before speaking"
    )
    args = parser.parse_args(argv)
    run(args.ttft, tool=args.tool)


if __name__ == "__main__":
    main()
