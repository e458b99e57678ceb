"""The model floor: each engine alone on the voice-to-voice inputs, and what the pipeline adds on top.

For every turn: the STT decode of its audio (the real Whisper engine, as the server loads it), the
time to the first text delta of the real Gemini engine against the fake (same TTFT as the
voice-to-voice run), and the time to the first audio chunk of the reply's first sentence from the
real TTS engine. floor = STT + LLM first token + TTS first chunk, the least any pipeline could do
with these engines and no speculation.

With `results/v2v.json` from a voice-to-voice run it reports, per turn, voice-to-voice minus the
floor (target <= 100 ms p50: speculative decoding hides the endpointing wait) and minus the floor
and the endpointing wait (what the pipeline adds; target <= 15 ms p50).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench import inputs, report
from bench.inputs import RATE, TAIL_S, Turn
from bench.v2v import REPLY
from pipeline.audio import resample
from pipeline.engines.base import ChatContext, Message, TextDelta

TARGET_V2V_MINUS_FLOOR_MS = 100.0
TARGET_OVERHEAD_MS = 15.0


def first_sentence(text: str) -> str:
    """The first piece the server's sentence segmenter hands to TTS."""
    from pipeline.sentences import SentenceSegmenter

    segmenter = SentenceSegmenter()
    return (segmenter.push(text) + segmenter.flush())[0]


async def measure(turns: list[Turn], fake_url: str, api_key: str) -> list[dict[str, Any]]:
    """Time each engine alone, turn by turn (engines loaded the way the server loads them)."""
    from bench.serve import ROOT
    from pipeline.engines.registry import load_engines
    from server.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        stt_engine="whisper",
        llm_engine="gemini",
        tts_engine="auto",
        gemini_base_url=fake_url,
        gemini_api_key=api_key,
        stt_model_dir=ROOT / "models" / "whisper-base",
    )
    engines = await asyncio.to_thread(load_engines, settings)
    stt, llm, tts = engines.stt, engines.llm, engines.tts_for("en")
    sentence = first_sentence(REPLY)
    context = ChatContext(system_prompt="You are a kind companion.", language="en")
    rows = []
    # One warm-up of each engine: the server has served calls before the measured turns too.
    await stt.transcribe(resample(turns[0].pcm, RATE, stt.sample_rate), language="en")
    async for _ in tts.synthesize(sentence, language="en"):
        break
    for turn in turns:
        audio = resample(turn.pcm[: int((turn.last_voiced_s + TAIL_S) * RATE)], RATE, stt.sample_rate)
        t0 = time.perf_counter()
        heard = await stt.transcribe(audio, language="en")
        stt_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        llm_ms = None
        async for out in llm.stream([Message(role="user", text=turn.text)], context):
            if isinstance(out, TextDelta) and out.text and llm_ms is None:
                llm_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        tts_ms = None
        async for _chunk in tts.synthesize(sentence, language="en"):
            tts_ms = (time.perf_counter() - t0) * 1000
            break
        floor = stt_ms + (llm_ms or 0.0) + (tts_ms or 0.0)
        rows.append(
            {
                "name": turn.name,
                "stt_ms": stt_ms,
                "llm_ttft_ms": llm_ms,
                "tts_first_ms": tts_ms,
                "floor_ms": floor,
                "heard": heard.text,
            }
        )
        print(
            f"  {turn.name:9s} STT {stt_ms:6.0f}  LLM {llm_ms or 0:5.0f}  TTS {tts_ms or 0:5.0f}  "
            f"floor {floor:6.0f} ms  {heard.text}",
            flush=True,
        )
    await engines.aclose()
    return rows


def compare(floor: list[dict[str, Any]], v2v: dict[str, Any]) -> list[dict[str, Any]]:
    """Per turn: voice-to-voice minus the floor, and minus the floor and the endpointing wait."""
    by_name = {t["name"]: t for t in v2v.get("turns", [])}
    out = []
    for f in floor:
        t = by_name.get(f["name"])
        if not t or t.get("v2v_ms") is None:
            continue
        minus_floor = t["v2v_ms"] - f["floor_ms"]
        wait = t.get("endpoint_ms")
        out.append(
            {
                "name": f["name"],
                "v2v_ms": t["v2v_ms"],
                "minus_floor_ms": minus_floor,
                "minus_floor_and_wait_ms": minus_floor - wait if wait is not None else None,
                # With a fully speculative reply the engines run during the endpointing wait, so
                # the critical path is the longer of the two; the rest is the pipeline's own cost.
                "overhead_ms": t["v2v_ms"] - max(f["floor_ms"], wait) if wait is not None else None,
            }
        )
    return out


def run(ttft_s: float = 0.3, turns: list[Turn] | None = None) -> dict[str, Any]:
    from tests.fakes.gemini import FakeGemini, Reply

    turns = turns or inputs.prepare()
    with FakeGemini(reply=Reply(text=REPLY, chunks=1), ttft_s=ttft_s) as fake:
        rows = asyncio.run(measure(turns, fake.url, fake.api_key))
    metrics: dict[str, list[float | None]] = {
        "STT decode of the turn": [r["stt_ms"] for r in rows],
        "LLM first token (fake)": [r["llm_ttft_ms"] for r in rows],
        "TTS first chunk": [r["tts_first_ms"] for r in rows],
        "floor (sum)": [r["floor_ms"] for r in rows],
    }
    v2v_path = report.RESULTS / "v2v.json"
    diffs: list[dict[str, Any]] = []
    if v2v_path.exists():
        v2v = json.loads(v2v_path.read_text())
        diffs = compare(rows, v2v)
        metrics["voice-to-voice"] = [d["v2v_ms"] for d in diffs]
        metrics[f"v2v - floor (target p50 <= {TARGET_V2V_MINUS_FLOOR_MS:.0f})"] = [
            d["minus_floor_ms"] for d in diffs
        ]
        metrics["v2v - floor - endpointing wait"] = [d["minus_floor_and_wait_ms"] for d in diffs]
        metrics[f"pipeline: v2v - max(floor, wait) (target p50 <= {TARGET_OVERHEAD_MS:.0f})"] = [
            d["overhead_ms"] for d in diffs
        ]
    else:
        print("no results/v2v.json: run `python -m bench v2v` first for the differences")
    print(
        report.table(
            f"Model floor over {len(rows)} turns (ms)",
            ["measure", "n", "p50", "p95", "max"],
            report.stats_rows(metrics),
        )
    )
    data = {
        "ttft_s": ttft_s,
        "turns": rows,
        "differences": diffs,
        "summary": {k: report.summary(v) for k, v in metrics.items()},
    }
    print(f"wrote {report.write('floor', data)}")
    return data


def profile_stt(repeats: int = 3) -> None:
    """Profile the slowest stage, the Whisper decode, with pyinstrument; writes results/stt-profile.html.

    The decode runs in the engine's private thread, which pyinstrument does not follow, so the
    engine's own decode function is called here on the main thread.
    """
    from pyinstrument import Profiler

    from bench.serve import ROOT
    from pipeline.engines.whisper import WhisperSTT

    stt = WhisperSTT(ROOT / "models" / "whisper-base", device="cpu", cpu_threads=2)
    audio = resample(inputs.fixture_turns()[0].pcm, RATE, stt.sample_rate)
    stt._decode(audio, "en", None)  # warm-up
    profiler = Profiler(interval=0.001)
    profiler.start()
    for _ in range(repeats):
        stt._decode(audio, "en", None)
    profiler.stop()
    stt.close()
    print(profiler.output_text(unicode=False, color=False))
    report.RESULTS.mkdir(parents=True, exist_ok=True)
    (report.RESULTS / "stt-profile.html").write_text(profiler.output_html())
    print(f"wrote {report.RESULTS / 'stt-profile.html'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="model floor and pipeline overhead")
    p.add_argument("--ttft", type=float, default=0.3)
    p.add_argument("--profile", action="store_true", help="profile one Whisper decode instead")
    a = p.parse_args(argv)
    if a.profile:
        profile_stt()
    else:
        run(a.ttft)


if __name__ == "__main__":
    main()
