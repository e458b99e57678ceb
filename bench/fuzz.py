"""Realtime fuzzing over a real socket: one call takes thousands of seeded messages and must hold.

`fuzz_call(url, token, other_token, messages=N, seed=S)` opens a call for one user and an idle call
for another, sends the `bench.fuzzgen` stream, and checks, message by message, that the call stays
open and that every bad message is answered by an `error` event (echoing its `event_id` when it had a
readable one); that no valid message is refused except for the conversation's state ("no active
response", "no such item"); that no error is an internal one. At the end a text turn in each call
must still get a spoken answer, and the other user's call must have heard nothing of the fuzzing.
The suite runs it with 2,000 messages (tests/server/test_realtime_fuzz.py).

`python -m bench fuzz [--messages 10000] [--seed 1]`: the same against `python -m bench.serve`
(instant STT, the offline companion, espeak-ng), with the rate and error latencies in a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from bench.fuzzgen import Fuzzer, Message

#: Errors a valid message may get: about the conversation's state, not about the message.
STATE_CODES = {
    "input_audio_buffer_commit_empty",
    "conversation_already_has_active_response",
    "response_cancel_not_active",
    "item_truncate_invalid_item_id",
    "item_delete_invalid_item_id",
    "item_create_invalid_call_id",
}
RESET = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "instructions": "",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"language": "en"},
                "turn_detection": None,
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
    },
}


@dataclass
class FuzzReport:
    sent: int = 0
    bad: int = 0
    errors: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    #: Milliseconds from sending a bad message to its error event.
    error_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Server events by type: shows the call was busy (turns, replies), not just refusing.
    server_events: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    answered: bool = False
    other_answered: bool = False


class _Reader:
    """Reads one call's server events, keeping what a check needs; fails on internal errors."""

    def __init__(self, ws: ClientConnection, report: FuzzReport, valid_ids: set[str]) -> None:
        self.ws, self.report, self.valid_ids = ws, report, valid_ids

    async def next(self, timeout_s: float) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
        counts = self.report.server_events
        counts[event["type"]] = counts.get(event["type"], 0) + 1
        if event["type"] == "error":
            self.report.errors += 1
            err = event["error"]
            if err.get("code") == "internal_error":  # the gateway caught a fault of ours
                self.report.failures.append(f"internal error: {err}")
            if err.get("event_id") in self.valid_ids and err.get("code") not in STATE_CODES:
                self.report.failures.append(f"valid message refused: {err}")
        return event

    async def error_for(self, msg: Message, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            event = await self.next(left)
            err = event.get("error") or {}
            if (
                event["type"] == "error"
                and err.get("event_id") == msg.event_id
                and (msg.event_id is not None or err.get("code") not in STATE_CODES)
            ):
                return
        raise TimeoutError


async def fuzz_call(
    ws_url: str, token: str, other_token: str, *, messages: int, seed: int, answer_timeout_s: float = 30
) -> FuzzReport:
    """Fuzz one call with `messages` messages; see the module docstring for what is checked."""
    report, fuzzer, valid_ids = FuzzReport(), Fuzzer(seed), set[str]()
    url = f"{ws_url}/v1/realtime?model=fuzz"
    async with (
        websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None) as ws,
        websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {other_token}"}, max_size=None
        ) as other,
    ):
        reader = _Reader(ws, report, valid_ids)
        for conn in (ws, other):
            assert json.loads(await conn.recv())["type"] == "session.created"
        started = time.monotonic()
        for n in range(messages):
            msg = fuzzer.message(n)
            report.sent += 1
            report.by_kind[msg.kind] = report.by_kind.get(msg.kind, 0) + 1
            if not msg.bad and msg.event_id is not None:
                valid_ids.add(msg.event_id)
            sent_at = time.monotonic()
            try:
                await ws.send(msg.data)
                if msg.bad:
                    report.bad += 1
                    await reader.error_for(msg)
                    report.error_ms.append((time.monotonic() - sent_at) * 1000)
            except TimeoutError:
                report.failures.append(f"message {n} ({msg.kind}) got no error: {_show(msg.data)}")
            except websockets.ConnectionClosed as e:
                report.failures.append(f"the call closed at message {n} ({msg.kind}, {_show(msg.data)}): {e}")
                break
        report.elapsed_s = time.monotonic() - started
        if not report.failures or "closed" not in report.failures[-1]:
            report.answered = await _spoken_answer(ws, reader, answer_timeout_s)
        other_reader = _Reader(other, report, set())
        report.other_answered = await _spoken_answer(other, other_reader, answer_timeout_s, quiet=True)
    return report


async def _spoken_answer(
    ws: ClientConnection, reader: _Reader, timeout_s: float, quiet: bool = False
) -> bool:
    """Reset the session, say something, ask for a reply: True when it comes back with audio.

    `quiet`: the call must have had no events of its own since session.created (the other user's).
    """
    if quiet:
        try:
            stray = await reader.next(0.2)
            reader.report.failures.append(f"the other user's call got {stray['type']}")
        except TimeoutError:
            pass
    await ws.send(json.dumps({**RESET, "event_id": "reset"}))
    deadline = time.monotonic() + timeout_s
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "How are you?"}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    await ws.send(json.dumps({"type": "response.create", "event_id": "answer"}))
    mine, audio = None, False  # our reply (created after our request) and whether it had audio
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = await reader.next(left)
        except TimeoutError:
            break
        kind = event["type"]
        if kind == "error" and event["error"].get("event_id") == "answer":
            # A reply from the fuzzing is still going: cancel it, then ask again.
            mine = None
            await ws.send(json.dumps({"type": "response.cancel"}))
            await asyncio.sleep(0.2)
            await ws.send(json.dumps({"type": "response.create", "event_id": "answer"}))
        elif kind == "error" and event["error"].get("event_id") == "reset":
            reader.report.failures.append(f"the reset was refused: {event['error']}")
        elif kind == "response.created":
            mine, audio = event["response"]["id"], False
        elif kind == "response.output_audio.delta" and event["response_id"] == mine:
            audio = True
        elif kind == "response.done" and event["response"]["id"] == mine:
            done = event["response"]["status"] == "completed"
            if done and audio:
                return True
    reader.report.failures.append("no spoken answer to a text turn after the fuzzing")
    return False


def _show(data: str | bytes) -> str:
    text = repr(data)
    return text if len(text) <= 160 else text[:160] + "..."


def main(argv: list[str] | None = None) -> None:
    """Fuzz one call with N messages against a server with instant STT, the offline LLM and espeak-ng."""
    parser = argparse.ArgumentParser(prog="python -m bench fuzz", description=main.__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    import httpx

    from bench import report
    from bench.serve import ServerProcess

    env = {
        "SILVERTALK_STT_ENGINE": "bench-instant",
        "SILVERTALK_LLM_ENGINE": "offline",
        "SILVERTALK_TTS_ENGINE": "espeak",
        "SILVERTALK_PRELOAD_ENGINES": "true",
        "SILVERTALK_REALTIME_IDLE_PROMPT_S": "3600",
        "SILVERTALK_REALTIME_IDLE_HANGUP_S": "7200",
    }
    with ServerProcess("fuzz", env, module="bench.serve") as server:
        tokens = [
            httpx.post(f"{server.url}/v1/auth/dev-login", json={"name": name}, trust_env=False).json()[
                "access_token"
            ]
            for name in ("fuzz-a", "fuzz-b")
        ]
        ws_url = server.url.replace("http://", "ws://")
        result = asyncio.run(fuzz_call(ws_url, tokens[0], tokens[1], messages=args.messages, seed=args.seed))
    lat = report.summary(result.error_ms)
    print(
        report.table(
            f"Realtime fuzz: {result.sent} messages (seed {args.seed}) to one call",
            ["messages", "bad", "errors", "msg/s", "error p50 ms", "error p99 ms", "answered", "failures"],
            [
                [
                    result.sent,
                    result.bad,
                    result.errors,
                    result.sent / max(result.elapsed_s, 1e-9),
                    lat["p50"],
                    lat["p99"],
                    result.answered and result.other_answered,
                    len(result.failures),
                ]
            ],
            digits=1,
        )
    )
    busy = ("input_audio_buffer.speech_started", "session.updated", "response.created", "response.done")
    print("server events:", ", ".join(f"{k} {result.server_events.get(k, 0)}" for k in busy))
    for failure in result.failures[:20]:
        print("FAIL", failure)
    report.write("fuzz", {"seed": args.seed, **result.__dict__})
