"""Barge-in: how fast reply audio stops when the caller starts speaking over it.

Same server as the voice-to-voice benchmark (real Whisper and Piper, fake Gemini). Each trial asks
a question, lets the long reply start, and talks over it the moment its first audio arrives. The
reply must stop: measured from the caller's side as the time from `speech_started` arriving to the
last audio delta of the interrupted reply arriving (over loopback this is the server's own time
give or take a fraction of a millisecond), and from the server's side when `response.done`
carries a barge-in timing. The reply to the interruption is short, so the next trial starts soon.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import numpy as np

from bench import inputs, report
from bench.inputs import LEAD_S, RATE, Turn
from bench.serve import ServerProcess
from bench.v2v import AUDIO_DELTAS, FRAME_MS, Call, server_env
from clients.realtime_client import RealtimeClient, login

LONG_REPLY = (
    "Oh, that is a wonderful question. Let me tell you a little story. "
    "Once upon a time there was a small fishing village by the sea. "
    "Every morning the fishermen went out in their boats before the sun came up. "
    "The children waited on the beach for them to come home. "
    "One day a storm came, and everyone was worried. "
    "But by the evening, every boat had come safely home."
)
SHORT_REPLY = "Of course. Go ahead."
INTERRUPTION = "Sorry, wait a moment please."


def reply_for(body: dict[str, Any]) -> Any:
    """The fake's answer: short to the interruption, long to anything else.

    Chosen from the request, not scripted in order, because speculative replies may ask the LLM
    more than once per turn.
    """
    from tests.fakes.gemini import Reply

    contents = body.get("contents") or [{}]
    said = " ".join(str(p.get("text", "")) for p in contents[-1].get("parts", [])).lower()
    if "wait" in said or "moment" in said:
        return Reply(text=SHORT_REPLY, chunks=1)
    return Reply(text=LONG_REPLY, chunks=6)


def barge_keys(timings: dict[str, Any]) -> dict[str, float]:
    """The server's barge-in timings, if `response.done` reports any."""
    return {
        k: float(v)
        for k, v in timings.items()
        if isinstance(v, int | float) and any(w in k for w in ("barge", "interrupt", "cancel", "stop"))
    }


async def trial(call: Call, question: Turn, interruption: Turn, after_s: float) -> dict[str, Any]:
    """Ask, let the reply play for `after_s`, talk over it; returns what stopped when."""
    begin = time.monotonic()
    await call.stream(question.pcm, question.last_voiced_s)
    zero = np.zeros(RATE * FRAME_MS // 1000, dtype=np.int16)
    deadline = time.monotonic() + 20.0
    reply_id = None
    while reply_id is None and time.monotonic() < deadline:
        reply_id = next(
            (rid for rid, r in call.responses.items() if r.created_t >= begin and r.first_audio_t), None
        )
        if reply_id is None:
            await call.frame(zero)
    if reply_id is None:
        return {"question": question.name, "error": "no reply audio within 20 s"}
    await call.silence(after_s)
    first = len(call.events)
    talk_t = time.monotonic()
    # Speech starts at once: skip most of the clip's lead-in.
    await call.stream(interruption.pcm[int((LEAD_S - 0.05) * RATE) :], None)
    await call.silence_until_settled(talk_t, timeout_s=20.0)
    window = call.events[first:]
    started = next((t for t, e in window if e.get("type") == "input_audio_buffer.speech_started"), None)
    deltas = [
        (t, e) for t, e in call.events if e.get("type") in AUDIO_DELTAS and e.get("response_id") == reply_id
    ]
    last_t = deltas[-1][0] if deltas else None
    after = sum(int(e["bytes"]) for t, e in deltas if started is not None and t > started)
    r = call.responses[reply_id]
    return {
        "question": question.name,
        "speech_start_detected_after_ms": (started - talk_t) * 1000 if started else None,
        "stop_ms": max(0.0, (last_t - started) * 1000) if started and last_t else None,
        # The server holds the reply in the same frame that emits speech_started, so its last audio
        # usually arrives just before that event: this is by how much.
        "last_audio_before_detect_ms": (started - last_t) * 1000 if started and last_t else None,
        "audio_after_detect_ms": after / 2 / RATE * 1000,
        "reply_audio_received_s": r.audio_s,
        "status": r.status,
        "server": barge_keys(r.timings),
    }


def run(trials: int = 5, ttft_s: float = 0.3, after_s: float = 1.0) -> dict[str, Any]:
    from tests.fakes.gemini import FakeGemini

    questions = inputs.piper_turns()
    (interruption,) = inputs.piper_turns((INTERRUPTION,), "interruption")
    results: list[dict[str, Any]] = []
    with (
        FakeGemini(reply=reply_for, ttft_s=ttft_s, chunk_delay_s=0.3) as fake,
        ServerProcess("bargein", server_env(fake.url, fake.api_key)) as server,
    ):

        async def drive() -> None:
            token = await login(server.url, name="bench-bargein")
            async with RealtimeClient.connect(server.url, token) as client:
                call = Call(client)
                await call.start("en")
                try:
                    await call.silence(0.5)
                    for i in range(trials):
                        res = await trial(call, questions[i % len(questions)], interruption, after_s)
                        results.append(res)
                        print(f"  trial {i + 1}: {res}", flush=True)
                finally:
                    await call.close()

        asyncio.run(drive())
    server_keys = sorted({k for r in results for k in r.get("server", {})})
    metrics: dict[str, list[float | None]] = {
        "speech_started -> last reply audio (client)": [r.get("stop_ms") for r in results],
        "reply audio received after speech_started (ms of audio)": [
            r.get("audio_after_detect_ms") for r in results
        ],
        "last reply audio -> speech_started (client)": [
            r.get("last_audio_before_detect_ms") for r in results
        ],
        "interruption start -> speech_started (client)": [
            r.get("speech_start_detected_after_ms") for r in results
        ],
        "reply audio received in all": [1000 * (r.get("reply_audio_received_s") or 0) for r in results],
    }
    metrics.update(
        {f"server timings.{k}": [r.get("server", {}).get(k) for r in results] for k in server_keys}
    )
    print(
        report.table(
            f"Barge-in over {len(results)} trials (ms; target <= 100)",
            ["measure", "n", "p50", "p95", "max"],
            report.stats_rows(metrics),
        )
    )
    statuses = [r.get("status") for r in results]
    print(f"interrupted replies' status: {statuses}")
    if not server_keys:
        print("the server reports no barge-in timing: the figures are the caller's, over loopback")
    data = {
        "trials": results,
        "summary": {k: report.summary(v) for k, v in metrics.items()},
        "source": "server" if server_keys else "client",
    }
    print(f"wrote {report.write('bargein', data)}")
    return data


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="barge-in: time to stop reply audio")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--ttft", type=float, default=0.3)
    p.add_argument("--after", type=float, default=1.0, help="seconds of reply heard before talking over it")
    a = p.parse_args(argv)
    run(a.trials, a.ttft, a.after)


if __name__ == "__main__":
    main()
