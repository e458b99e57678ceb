"""GPU check for the inference tier's batching: Whisper decode times by batch size, and callers per GPU.

Run on a GPU machine from the repository root: `python3 -m bench.gpu_check --out DIR`. It needs only
torch and transformers (what a CUDA PyTorch image has); no Ray, CTranslate2 or weights.

Why not the tier itself: the PyPI CTranslate2 wheel (what faster-whisper uses) needs CUDA 12's
cuBLAS and cuDNN 9, which are about 1 GB of wheels, and Ray, CTranslate2 and the Whisper base
weights (145 MB) add about 300 MB more: more than can be carried to a GPU machine with no network
in one go. So this measures the same work in PyTorch fp16 with random weights in the real shapes
(compute does not depend on the weights' values): the encoder on the tier's fitted 10 s window
(1000 mel frames), then 20 greedy decoder steps with a KV cache, as for a short sentence. Eager
PyTorch pays a kernel launch per operation that CTranslate2's C++ loop does not, so these decodes
are slower than the tier's would be on the same GPU: the counts are a floor.

Callers: N simulated calls of the `bench load` protocol as the tier sees them (partials while the
caller speaks one of the ten telephone sentences, the final decode 350 ms after it, then the reply
heard out), through the tier's own `BatchScheduler`, so batches form exactly as in a replica.
Reported per N: the final decode's p50/p95 (what the caller waits for), partials' p50, batch
sizes, and the largest N whose final p50 stays within 1.2x one caller's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.batching import BatchScheduler, Job
from pipeline.engines.base import Transcript

WINDOW_FRAMES = 1000  # the tier's minimum fitted window (10 s)
STEPS = 20
#: The largest batch the check lets form. The tier caps its batches at
#: `INFERENCE_STT_MAX_BATCH_SIZE` (8 by default, sized for the CPU); a GPU replica would raise it.
MAX_BATCH = 64
SILENT = np.zeros(16000 * 3, np.int16)  # what is decoded: the work does not depend on it (fixed window)
LABELS = Path(__file__).resolve().parent / "labels.json"
TELEPHONE = "osr_us_000_0034_8k.wav"
# One caller, as `bench load` plays it and the gateway asks the tier (`SttStream`, `EndOfTurn`):
PARTIAL_EVERY_S = 1.0  # a partial decode per second of new speech
END_S = 0.35  # the final decode, once a finished sentence has been quiet this long
LLM_S = 0.3  # the fake LLM's first token
REPLY_S = 2.4  # Piper saying `bench.v2v.REPLY`, heard out before the next sentence
RAMP_S = 6.0  # callers start at random within this, and are counted from its end
MODELS = {
    # Whisper base (what the tier serves on CPU) and large-v3-turbo (what a GPU is for).
    "whisper-base": dict(d_model=512, encoder_layers=6, decoder_layers=6, heads=8, ffn=2048, mels=80),
    "whisper-large-v3-turbo": dict(
        d_model=1280, encoder_layers=32, decoder_layers=4, heads=20, ffn=5120, mels=128
    ),
}


class Decoder:
    """A random-weight Whisper of the given shape on CUDA, fp16, decoding batches of (silent) audio."""

    def __init__(self, name: str, shape: dict[str, int], device: str = "cuda") -> None:
        import torch
        from transformers import WhisperConfig, WhisperForConditionalGeneration

        config = WhisperConfig(
            vocab_size=51866,
            num_mel_bins=shape["mels"],
            d_model=shape["d_model"],
            encoder_layers=shape["encoder_layers"],
            decoder_layers=shape["decoder_layers"],
            encoder_attention_heads=shape["heads"],
            decoder_attention_heads=shape["heads"],
            encoder_ffn_dim=shape["ffn"],
            decoder_ffn_dim=shape["ffn"],
            max_source_positions=WINDOW_FRAMES // 2,
        )
        self.torch, self.name, self.device = torch, name, device
        self.mels = shape["mels"]
        dtype = torch.half if device == "cuda" else torch.float32
        self.model = WhisperForConditionalGeneration(config).to(device, dtype).eval()
        self.dtype = dtype

        self.cached = True

    def decode(self, n: int) -> None:
        torch = self.torch
        decoder = self.model.model.decoder
        with torch.inference_mode():
            feats = torch.randn(n, self.mels, WINDOW_FRAMES, device=self.device, dtype=self.dtype)
            enc = self.model.model.encoder(feats).last_hidden_state
            ids = torch.full((n, 4), 50258, device=self.device, dtype=torch.long)  # a 4-token prompt
            if self.cached:
                try:
                    out = decoder(input_ids=ids, encoder_hidden_states=enc, use_cache=True)
                    for _ in range(STEPS - 1):
                        tok = self.model.proj_out(out.last_hidden_state[:, -1:]).argmax(-1)
                        past = out.past_key_values
                        out = decoder(
                            input_ids=tok, encoder_hidden_states=enc, past_key_values=past, use_cache=True
                        )
                    self.sync()
                    return
                except (TypeError, AttributeError, ValueError) as e:  # another transformers API
                    print("KV-cached decoding failed, decoding without a cache:", repr(e), flush=True)
                    self.cached = False
            for _ in range(STEPS):
                out = decoder(input_ids=ids, encoder_hidden_states=enc, use_cache=False)
                tok = self.model.proj_out(out.last_hidden_state[:, -1:]).argmax(-1)
                ids = torch.cat([ids, tok], dim=1)
            self.sync()

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def jobs(self, jobs: list[Job]) -> list[Transcript]:
        self.decode(len(jobs))
        return [Transcript(text="", language="en") for _ in jobs]

    def time_ms(self, n: int, repeats: int = 10) -> float:
        for _ in range(3):
            self.decode(n)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.decode(n)
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)


@dataclass
class Counts:
    """What the simulated callers saw during one count."""

    finals_ms: list[float] = field(default_factory=list)
    partials_ms: list[float] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)

    def add(self, latencies: list[float], sent: float, result: dict[str, Any]) -> None:
        latencies.append((time.monotonic() - sent) * 1000)
        self.batches.append(result["batch_size"])
        self.compute_ms.append(result["compute_s"] * 1000)

    def row(self, n: int) -> dict[str, float]:
        finals, partials = self.finals_ms, self.partials_ms
        return {
            "callers": n,
            "finals": len(finals),
            "final_p50_ms": statistics.median(finals),
            "final_p95_ms": statistics.quantiles(finals, n=20)[18] if len(finals) > 1 else finals[0],
            "partial_p50_ms": statistics.median(partials) if partials else 0.0,
            "mean_batch": statistics.mean(self.batches),
            "max_batch": max(self.batches),
            "compute_max_ms": max(self.compute_ms),
        }


def sentences_s() -> list[float]:
    """The ten telephone sentences' spoken lengths, from the fixture labels (what `bench load` plays)."""
    labels = json.loads(LABELS.read_text())
    return [s["last_voiced_s"] - s["start_s"] for s in labels[TELEPHONE]["segments"]]


async def caller(
    scheduler: BatchScheduler, counts: Counts, lengths: list[float], counted: float, until: float
) -> None:
    """One caller of the `bench load` protocol, as the tier sees it.

    Says a sentence at real-time pace, with a partial decode for every `PARTIAL_EVERY_S` of new
    audio (never two at once, as `SttStream` does), then the final decode `END_S` after the last
    word; then listens to the reply (the fake LLM's first token, then the reply's audio) and says
    the next sentence.
    """
    await asyncio.sleep(random.random() * RAMP_S)
    for length in itertools.cycle(random.sample(lengths, len(lengths))):
        start = time.monotonic()
        while (spoken := time.monotonic() - start) < length - PARTIAL_EVERY_S:
            await asyncio.sleep(max(0.0, PARTIAL_EVERY_S - (spoken % PARTIAL_EVERY_S)))
            t = time.monotonic()
            (result,) = await scheduler.submit([Job(SILENT, "en", None, True, t)], final=False)
            if t >= counted:
                counts.add(counts.partials_ms, t, result)
        await asyncio.sleep(max(0.0, start + length + END_S - time.monotonic()))
        t = time.monotonic()
        if t > until:
            return
        (result,) = await scheduler.submit([Job(SILENT, "en", None, False, t)], final=True)
        if t >= counted:
            counts.add(counts.finals_ms, t, result)
        await asyncio.sleep(LLM_S + REPLY_S)


async def count_callers(decoder: Decoder, ns: tuple[int, ...], seconds: float) -> list[dict[str, float]]:
    """Callers per GPU: final-decode latency at each N until its p50 passes 1.2x one caller's.

    One scheduler (one decode thread, as in a replica) for every count: each batch size's first use
    on that thread (cuBLAS handles, kernel choice per shape) is paid before counting. The last run
    of this check built a scheduler, and so a thread, per count, and its p95s reached 2-3 s.
    """
    scheduler = BatchScheduler(decoder.jobs, max_batch=MAX_BATCH, stale_s=60.0)
    for b in range(1, min(MAX_BATCH, max(ns)) + 1):
        await scheduler.submit([Job(SILENT, "en", None, False, time.monotonic())] * b, final=True)
    gc.collect()
    gc.freeze()  # the long-lived model objects out of the collector's way while counting
    lengths = sentences_s()
    rows: list[dict[str, float]] = []
    for n in ns:
        counts = Counts()
        counted = time.monotonic() + RAMP_S
        # One caller asks for a final every ~3.5 s: its count runs longer, for a steady baseline.
        until = counted + (seconds * 4 if n == 1 else seconds)
        await asyncio.gather(*(caller(scheduler, counts, lengths, counted, until) for _ in range(n)))
        rows.append(counts.row(n))
        print(decoder.name, {k: round(v, 1) for k, v in rows[-1].items()}, flush=True)
        if rows[-1]["final_p50_ms"] > 1.2 * rows[0]["final_p50_ms"] and n >= 64:
            break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=20.0, help="per caller count, after the ramp")
    parser.add_argument("--callers", default="1,8,16,32,64,128,256", help="caller counts, in order")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to try the script out")
    args = parser.parse_args()
    cycle_s = max(sentences_s()) + END_S + LLM_S + REPLY_S
    if args.seconds < 2 * cycle_s:  # else a count may see no final at all
        parser.error(f"--seconds must be at least {2 * cycle_s:.0f}: two of a caller's turns")
    import torch

    ns = tuple(int(n) for n in args.callers.split(","))
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else args.device,
        "torch": torch.__version__,
        "window_frames": WINDOW_FRAMES,
        "decoder_steps": STEPS,
        "caller": {"partial_every_s": PARTIAL_EVERY_S, "end_s": END_S, "llm_s": LLM_S, "reply_s": REPLY_S},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        try:
            result[name] = measure(Decoder(name, MODELS[name], args.device), ns, args.seconds)
        except Exception as e:  # report what failed and go on to the next model
            result[name] = {"error": repr(e)}
            print(name, "failed:", repr(e), flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
        if args.device == "cuda":
            torch.cuda.empty_cache()


def measure(decoder: Decoder, ns: tuple[int, ...], seconds: float) -> dict[str, Any]:
    """Decode times by batch size, then callers until the final decode's p50 passes 1.2x one caller's."""
    timings = {b: decoder.time_ms(b) for b in (1, 8, 16, 32, 64) if b <= max(ns)}
    print(decoder.name, "decode ms by batch:", {b: round(t, 1) for b, t in timings.items()}, flush=True)
    rows = asyncio.run(count_callers(decoder, ns, seconds))
    one = rows[0]["final_p50_ms"]
    held = max((r["callers"] for r in rows if r["final_p50_ms"] <= 1.2 * one), default=0)
    print(decoder.name, "callers held at a final p50 <= 1.2x one caller's:", held, flush=True)
    return {
        "kv_cache": decoder.cached,
        "decode_ms_by_batch": timings,
        "callers": rows,
        "callers_within_1.2x": held,
    }


if __name__ == "__main__":
    main()
