"""Voice-to-voice under load: N concurrent callers, in-process engines against the remote inference tier.

Each caller is a separate user speaking the ten telephone sentences at real-time pace (the
`bench.v2v` caller: 20 ms frames on an absolute schedule, silence while the reply plays), starts
staggered by `--stagger` seconds; the LLM is the fake Gemini with a fixed time to first token.
Voice-to-voice = the frame holding a turn's last voiced sample sent -> first reply audio received.

Modes: `in-process` (one gateway with its own Whisper and Piper, `make run`) and `remote` (one
gateway with `SILVERTALK_STT_ENGINE=remote` / `SILVERTALK_TTS_ENGINE=remote` in front of
`python -m inference` on the same machine). For the remote tier the batch-size histogram of each
run is read from the tier's `/metrics`.

Capacity = the largest N measured whose v2v p50 stays within `CAPACITY_RATIO` x the single
caller's p50 with every turn answered. `python -m bench load --callers 1,6,16` (the default).
`--rounds 3` has each caller say the sentences three times: at one caller the ten turns of one
round spread more than the tier's overhead on a slow host, thirty steady the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import replace
from typing import Any

import httpx

from bench import inputs, report
from bench.inputs import Turn
from bench.serve import ServerProcess
from bench.v2v import REPLY, SERVER_STAGES, TurnResult, run_call, server_env
from clients.realtime_client import login

CAPACITY_RATIO = 1.3
MODES = ("in-process", "remote")
BATCH_METRIC = "silvertalk_inference_stt_batch_size_bucket"
TABLE = ("mode", "callers", "turns", "unanswered", "v2v_p50_ms", "v2v_p95_ms", "v2v_max_ms")
#: The server's timings shown per load (those of `bench v2v`), with short column titles.
STAGES = {key: key.removesuffix("_ms").replace("_", " ") for key in SERVER_STAGES}


class TierProcess(ServerProcess):
    """`python -m inference` on 127.0.0.1:<free port>, ready when `/health` answers."""

    health_path = "/health"
    stop_timeout_s = 90.0  # Serve drains, then Ray stops its processes

    def __init__(self, num_cpus: int) -> None:
        super().__init__("load-tier", {}, module="inference", start_timeout_s=240.0)
        self.args = ("--host", "127.0.0.1", "--port", str(self.port), "--num-cpus", str(num_cpus))

    def batch_buckets(self) -> dict[tuple[str, str], float]:
        """Cumulative batch-size bucket counts by (kind, le)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10, trust_env=False).text
        found = re.findall(rf'^{BATCH_METRIC}{{kind="(\w+)",le="([^"]+)"}} (\S+)$', text, re.M)
        return {(kind, le): float(n) for kind, le, n in found}


def histogram(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, Any]:
    """Requests per batch size bucket during one run: {kind: {"<=le": count}} (non-cumulative)."""
    out: dict[str, Any] = {}
    for kind in sorted({k for k, _ in after}):
        edges = sorted(
            (le for k, le in after if k == kind), key=lambda le: float("inf") if le == "+Inf" else float(le)
        )
        previous, counts = 0.0, {}
        for le in edges:
            total = after[(kind, le)] - before.get((kind, le), 0.0)
            if total - previous:
                counts[f"<={le}"] = int(total - previous)
            previous = total
        out[kind] = counts
    return out


def caller_turns(sentences: int, rounds: int = 1) -> list[Turn]:
    """What each caller says: the first `sentences` telephone sentences, `rounds` times over (the
    repeats named `osr-01.2`, ...)."""
    said = [t for t in inputs.fixture_turns() if t.name.startswith("osr")][:sentences]
    return [replace(t, name=f"{t.name}.{k + 1}" if k else t.name) for k in range(rounds) for t in said]


async def callers(url: str, n: int, turns: list[Turn], stagger_s: float) -> list[list[TurnResult]]:
    """N callers, each a separate user, starts staggered; every caller's turn results."""
    tokens = [await login(url, name=f"load-{n}-{i}") for i in range(n)]

    async def one(i: int) -> list[TurnResult]:
        await asyncio.sleep(i * stagger_s)
        return await run_call(url, tokens[i], turns, timeout_s=40.0)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def summarise(mode: str, n: int, calls: list[list[TurnResult]]) -> dict[str, Any]:
    results = [r for call in calls for r in call]
    s = report.summary(r.v2v_ms for r in results)
    return {
        "mode": mode,
        "callers": n,
        "turns": len(results),
        "unanswered": sum(1 for r in results if r.v2v_ms is None),
        "cut": sum(1 for r in results if r.cut and not r.heard_whole),
        "v2v_p50_ms": s["p50"],
        "v2v_p95_ms": s["p95"],
        "v2v_max_ms": s["max"],
        # Where the time goes: the server's own timings, ms after the end of speech (p50).
        "stages_p50_ms": {key: report.summary(r.timings.get(key) for r in results)["p50"] for key in STAGES},
    }


def capacity(rows: list[dict[str, Any]]) -> int | None:
    """The largest N within CAPACITY_RATIO x the single-caller p50 with every turn answered."""
    single = next((r["v2v_p50_ms"] for r in rows if r["callers"] == 1), None)
    if single is None:
        return None
    ok = [r["callers"] for r in rows if not r["unanswered"] and r["v2v_p50_ms"] <= CAPACITY_RATIO * single]
    return max(ok, default=None)


def run_mode(
    mode: str,
    counts: list[int],
    turns: list[Turn],
    ttft_s: float,
    stagger_s: float,
    log_level: str = "warning",
) -> list[Any]:
    """Every N for one mode, on one gateway (and tier); returns the summary rows. The gateway's log
    (at `log_level`) is `results/load-<mode>.server.log`."""
    from tests.fakes.gemini import FakeGemini, Reply

    rows: list[dict[str, Any]] = []
    with FakeGemini(reply=Reply(text=REPLY, chunks=1), ttft_s=ttft_s) as fake:
        env = server_env(fake.url, fake.api_key) | {"SILVERTALK_LOG_LEVEL": log_level}
        tier = TierProcess(num_cpus=2) if mode == "remote" else None
        if tier is not None:
            tier.__enter__()
            env |= {
                "SILVERTALK_STT_ENGINE": "remote",
                "SILVERTALK_STT_REMOTE_URL": f"{tier.url}/v1",
                "SILVERTALK_TTS_ENGINE": "remote",
                "SILVERTALK_TTS_REMOTE_URL": f"{tier.url}/v1",
            }
        try:
            with ServerProcess(f"load-{mode}", env) as server:
                for n in counts:
                    print(f"--- {mode}: {n} caller(s)", flush=True)
                    before = tier.batch_buckets() if tier else {}
                    calls = asyncio.run(callers(server.url, n, turns, stagger_s))
                    row = summarise(mode, n, calls)
                    if tier is not None:
                        row["batch_sizes"] = histogram(before, tier.batch_buckets())
                    rows.append(row)
                    p50, p95 = report.fmt(row["v2v_p50_ms"]), report.fmt(row["v2v_p95_ms"])
                    print(f"    p50 {p50} ms, p95 {p95} ms", flush=True)
        finally:
            if tier is not None:
                tier.__exit__(None, None, None)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="voice-to-voice with N concurrent callers")
    parser.add_argument("--callers", default="1,6,16", help="comma-separated caller counts (include 1)")
    parser.add_argument("--modes", default=",".join(MODES), help="in-process, remote or both")
    parser.add_argument("--turns", type=int, default=10, help="telephone sentences per caller (1-10)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times each caller says them (more turns a run: one caller's p50 steadies)",
    )
    parser.add_argument("--ttft", type=float, default=0.3, help="fake Gemini time to first token, seconds")
    parser.add_argument("--stagger", type=float, default=1.7, help="seconds between callers' starts")
    parser.add_argument(
        "--log-level", default="warning", help="the gateway's log level (info: every decision)"
    )
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in args.callers.split(",")})
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s) {sorted(unknown)}: choose from {', '.join(MODES)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    turns = caller_turns(args.turns, args.rounds)
    rows = [
        row
        for mode in modes
        for row in run_mode(mode, counts, turns, args.ttft, args.stagger, args.log_level)
    ]
    caps = {mode: capacity([r for r in rows if r["mode"] == mode]) for mode in modes}
    print(
        report.table(
            f"Voice-to-voice under load (ms; {len(turns)} turns of telephone sentences per caller, "
            f"starts {args.stagger} s apart, fake LLM TTFT {args.ttft * 1000:.0f} ms)",
            ["mode", "callers", "turns", "unanswered", "p50", "p95", "max"],
            [[r[k] for k in TABLE] for r in rows],
        )
    )
    print(
        report.table(
            "Where the time goes (server, ms after the end of speech, p50)",
            ["mode", "callers", *STAGES.values()],
            [[r["mode"], r["callers"], *r["stages_p50_ms"].values()] for r in rows],
        )
    )
    for r in rows:
        if "batch_sizes" in r:
            print(f"remote tier, {r['callers']} caller(s): requests by batch size {r['batch_sizes']}")
    for mode, cap in caps.items():
        rule = f"p50 within {CAPACITY_RATIO}x one caller's, every turn answered"
        print(f"capacity ({mode}): {cap} callers ({rule})")
    data = {"ttft_s": args.ttft, "stagger_s": args.stagger, "turns_per_caller": len(turns), "rows": rows}
    print(f"wrote {report.write('load', data | {'capacity': caps})}")


if __name__ == "__main__":
    main()
