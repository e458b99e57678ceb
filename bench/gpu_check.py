"""GPU check for the inference tier's batching: Whisper decode times by batch size, and streams per GPU.

Run on a GPU machine from the repository root: `python3 -m bench.gpu_check --out DIR`. It needs only
torch and transformers (what a CUDA PyTorch image has); no Ray, CTranslate2 or weights.

Why not the tier itself: the PyPI CTranslate2 wheel (what faster-whisper uses) needs CUDA 12's
cuBLAS and cuDNN 9, which are about 1 GB of wheels, and Ray, CTranslate2 and the Whisper base
weights (145 MB) add about 300 MB more: more than can be carried to a GPU machine with no network
in one go. So this measures the same work in PyTorch fp16 with random weights in the real shapes
(compute does not depend on the weights' values): the encoder on the tier's fitted 10 s window
(1000 mel frames), then 20 greedy decoder steps with a KV cache, as for a short sentence.

Streams: N simulated calls, each asking for a decode of its utterance once a second (about what a
speaking caller's partials and finals cost), through the tier's own `BatchScheduler`, so batches
form exactly as in a replica. Reported: p50/p95 request latency per N, and the largest N whose p50
stays within 1.2x one stream's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.batching import BatchScheduler, Job
from pipeline.engines.base import Transcript

WINDOW_FRAMES = 1000  # the tier's minimum fitted window (10 s)
STEPS = 20
MODELS = {
    # Whisper base (what the tier serves on CPU) and large-v3-turbo (what a GPU is for).
    "whisper-base": dict(d_model=512, encoder_layers=6, decoder_layers=6, heads=8, ffn=2048, mels=80),
    "whisper-large-v3-turbo": dict(
        d_model=1280, encoder_layers=32, decoder_layers=4, heads=20, ffn=5120, mels=128
    ),
}


class Decoder:
    """A random-weight Whisper of the given shape on CUDA, fp16, decoding batches of (silent) audio."""

    def __init__(self, shape: dict[str, int]) -> None:
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
        self.torch = torch
        self.mels = shape["mels"]
        self.model = WhisperForConditionalGeneration(config).half().cuda().eval()

        self.cached = True

    def decode(self, n: int) -> None:
        torch = self.torch
        decoder = self.model.model.decoder
        with torch.inference_mode():
            feats = torch.randn(n, self.mels, WINDOW_FRAMES, device="cuda", dtype=torch.half)
            enc = self.model.model.encoder(feats).last_hidden_state
            ids = torch.full((n, 4), 50258, device="cuda", dtype=torch.long)  # a 4-token prompt
            if self.cached:
                try:
                    out = decoder(input_ids=ids, encoder_hidden_states=enc, use_cache=True)
                    for _ in range(STEPS - 1):
                        tok = self.model.proj_out(out.last_hidden_state[:, -1:]).argmax(-1)
                        past = out.past_key_values
                        out = decoder(
                            input_ids=tok, encoder_hidden_states=enc, past_key_values=past, use_cache=True
                        )
                    torch.cuda.synchronize()
                    return
                except (TypeError, AttributeError, ValueError) as e:  # another transformers API
                    print("KV-cached decoding failed, decoding without a cache:", repr(e), flush=True)
                    self.cached = False
            for _ in range(STEPS):
                out = decoder(input_ids=ids, encoder_hidden_states=enc, use_cache=False)
                tok = self.model.proj_out(out.last_hidden_state[:, -1:]).argmax(-1)
                ids = torch.cat([ids, tok], dim=1)
            torch.cuda.synchronize()

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


async def streams(decoder: Decoder, n: int, seconds: float, every_s: float) -> dict[str, float]:
    """N streams each asking for one decode per `every_s`; latency p50/p95 (ms) and mean batch size."""
    scheduler = BatchScheduler(decoder.jobs, max_batch=64, stale_s=60.0)
    latencies: list[float] = []
    batches: list[int] = []
    audio = np.zeros(16000 * 3, np.int16)
    # The scheduler's decode thread is new: its first CUDA call sets up cuBLAS for that thread
    # (about 1.4 s on an H100). Left in, it swamped a 6 s count (the first run of this check).
    await scheduler.submit([Job(audio, "en", None, False, time.monotonic())], final=True)

    async def stream() -> None:
        await asyncio.sleep(random.random() * every_s)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.monotonic()
            (result,) = await scheduler.submit([Job(audio, "en", None, False, t)], final=True)
            latencies.append((time.monotonic() - t) * 1000)
            batches.append(result["batch_size"])
            await asyncio.sleep(max(0.0, every_s - (time.monotonic() - t)))

    await asyncio.gather(*(stream() for _ in range(n)))
    q = statistics.quantiles(latencies, n=20)
    p50, mean_batch = statistics.median(latencies), statistics.mean(batches)
    return {"n": n, "p50_ms": p50, "p95_ms": q[18], "mean_batch": mean_batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0, help="per stream count")
    args = parser.parse_args()
    import torch

    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "window_frames": WINDOW_FRAMES,
        "decoder_steps": STEPS,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, shape in MODELS.items():
        try:
            result[name] = measure(name, shape, args.seconds)
        except Exception as e:  # report what failed and go on to the next model
            result[name] = {"error": repr(e)}
            print(name, "failed:", repr(e), flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
        torch.cuda.empty_cache()


def measure(name: str, shape: dict[str, int], seconds: float) -> dict[str, Any]:
    """Decode times by batch size, then streams until p50 passes 1.2x one stream's."""
    decoder = Decoder(shape)
    timings = {b: decoder.time_ms(b) for b in (1, 8, 16, 32, 64)}
    print(name, "decode ms by batch:", {b: round(t, 1) for b, t in timings.items()}, flush=True)
    # Every batch size the streams may form gets its first-use cost (kernel choice per shape) now,
    # not inside the count: the first run of this check had p95s of 2-3 s from that alone.
    for b in range(1, 65):
        decoder.decode(b)
    rows: list[dict[str, float]] = []
    for n in (1, 8, 16, 32, 64, 128, 256, 512):
        rows.append(asyncio.run(streams(decoder, n, seconds, 1.0)))
        print(name, {k: round(v, 1) for k, v in rows[-1].items()}, flush=True)
        if rows[-1]["p50_ms"] > 1.2 * rows[0]["p50_ms"]:
            break
    held = max((r["n"] for r in rows if r["p50_ms"] <= 1.2 * rows[0]["p50_ms"]), default=0)
    print(name, "streams held at p50 <= 1.2x one stream:", held, flush=True)
    return {
        "kv_cache": decoder.cached,
        "decode_ms_by_batch": timings,
        "streams": rows,
        "streams_within_1.2x": held,
    }


if __name__ == "__main__":
    main()
