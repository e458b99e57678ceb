"""Command-line realtime client: `python -m clients.cli call --wav FILE [--realtime] [--out reply.wav]`.

Logs in (dev login or a token), opens `/v1/realtime` with `Authorization: Bearer`, streams each
audio file (any format; decoded and resampled to pcm16 at 24 kHz) followed by trailing silence so
the server's VAD ends the turn, prints partial and final transcripts and the reply text as they
arrive, prints each turn's timings, saves the reply audio as a WAV file, and exits once every turn
was answered. Exit status: 0 when at least one reply completed, 1 otherwise, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import wave
from pathlib import Path
from typing import Any, TextIO

from clients.realtime_client import (
    PCM_RATE,
    CallLog,
    RealtimeClient,
    RealtimeClientError,
    load_pcm,
    login,
    session_config,
    stream_pcm,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clients.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    call = commands.add_parser("call", help="hold one call: speak audio files, print and save the replies")
    call.add_argument(
        "--wav",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="audio to speak (any format); repeat for one user turn per file",
    )
    call.add_argument(
        "--realtime", action="store_true", help="stream at real-time pace (default: as fast as it goes)"
    )
    call.add_argument("--out", type=Path, help="save the reply audio here as a WAV file")
    call.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (default %(default)s)")
    who = call.add_mutually_exclusive_group()
    who.add_argument("--name", default="cli", help="dev-login name (default %(default)s)")
    who.add_argument("--token", help="an access token instead of the dev login")
    call.add_argument("--language", choices=["ko", "en"], default="ko", help="spoken language (default ko)")
    call.add_argument("--speed", type=float, default=1.0, help="reply voice speed (default 1.0)")
    call.add_argument(
        "--turns", type=int, help="wait for this many replies (default: until each turn is answered)"
    )
    call.add_argument("--frame-ms", type=int, default=40, help="audio frame length in ms (default 40)")
    call.add_argument(
        "--silence-ms",
        type=int,
        default=3000,
        help="silence sent after each file so the server's VAD ends the turn (default 3000)",
    )
    call.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each turn's reply")
    return parser


class Printer:
    """Prints a call as it happens: partial and final transcripts, reply text as spoken, timings."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._reply_open = False

    def _line(self, text: str) -> None:
        if self._reply_open:
            self.out.write("\n")
            self._reply_open = False
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, event: dict[str, Any], log: CallLog) -> None:
        kind = event.get("type", "")
        if kind == "input_audio_buffer.speech_started":
            self._line(f"[speech started at {event.get('audio_start_ms', '?')} ms]")
        elif kind == "input_audio_buffer.speech_stopped":
            self._line(f"[speech stopped at {event.get('audio_end_ms', '?')} ms]")
        elif kind == "conversation.item.input_audio_transcription.delta":
            self._line(f"[hearing] {log.user_turns[str(event.get('item_id') or '')].partial}")
        elif kind == "conversation.item.input_audio_transcription.completed":
            self._line(f"[you] {event.get('transcript', '')}")
        elif kind == "conversation.item.deleted":
            self._line("[joined with what follows: you were only pausing]")
        elif kind in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            if not self._reply_open:
                self.out.write("[companion] ")
                self._reply_open = True
            self.out.write(str(event.get("delta", "")))
            self.out.flush()
        elif kind == "response.done":
            response = event.get("response") or {}
            reply = log.replies.get(str(response.get("id") or ""))
            self._line(f"[reply {response.get('status', '?')}] {response.get('id', '')}")
            if reply is not None and reply.timings:
                self._line("[timings] " + "  ".join(f"{k}={v:g}" for k, v in reply.timings.items()))
        elif kind == "error":
            error = event.get("error") or {}
            self._line(f"[server error] {error.get('type', '')}: {error.get('message', error)}")


async def call(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Hold one call as the arguments say; returns the exit status."""
    for path in args.wav:
        if not path.is_file():
            print(f"no such audio file: {path}", file=out)
            return 2
    try:
        token = await login(args.url, name=args.name, token=args.token)
        pcms = [await asyncio.to_thread(load_pcm, path) for path in args.wav]
    except (RealtimeClientError, OSError) as e:
        print(f"error: {e}", file=out)
        return 1

    log, printer = CallLog(), Printer(out)
    changed = asyncio.Event()

    async def read(client: RealtimeClient) -> None:
        try:
            async for event in client:
                log.feed(event)
                printer.event(event, log)
                changed.set()
        finally:
            changed.set()  # wake the waiter when the socket closes too

    async def wait_for(done: Any, closed: asyncio.Task[None]) -> bool:
        async with asyncio.timeout(args.timeout):
            while not done():
                if closed.done():
                    return False
                changed.clear()
                await changed.wait()
        return True

    try:
        async with RealtimeClient.connect(args.url, token) as client:
            reader = asyncio.create_task(read(client))
            try:
                await client.update_session(session_config(args.language, args.speed))
                for pcm in pcms:
                    commits = log.commits
                    await stream_pcm(
                        client,
                        pcm,
                        realtime=args.realtime,
                        frame_ms=args.frame_ms,
                        trailing_silence_ms=args.silence_ms,
                    )
                    if args.turns is None and not await wait_for(
                        lambda c=commits: log.commits > c and log.answered, reader
                    ):
                        print("error: the server closed the call", file=out)
                        break
                if args.turns is not None:
                    await wait_for(
                        lambda: len(log.done_replies) >= args.turns and not log.in_progress, reader
                    )
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    except RealtimeClientError as e:
        print(f"error: {e}", file=out)
        return 1
    except TimeoutError:
        print(f"error: no answer within {args.timeout:g} s", file=out)

    output_rate = int(
        (((log.session.get("audio") or {}).get("output") or {}).get("format") or {}).get("rate") or PCM_RATE
    )
    audio = log.reply_audio
    if args.out is not None:
        await asyncio.to_thread(write_wav, args.out, audio, output_rate)
        print(f"[saved] {args.out} ({len(audio) / 2 / output_rate:.2f} s of reply audio)", file=out)
    completed = [r for r in log.done_replies if r.status == "completed"]
    print(f"[call over] {len(log.user_turns)} user turn(s), {len(completed)} completed repl(y/ies)", file=out)
    return 0 if completed else 1


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    """Write mono pcm16 as a WAV file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


async def main_async(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    return await call(args, out)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(argv))


if __name__ == "__main__":
    sys.exit(main())
