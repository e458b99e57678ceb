"""The tier's HTTP ingress (the OpenAI audio API) and `build`, which binds it to the STT and TTS deployments.

- `POST /v1/audio/transcriptions`: multipart `file` (any audio PyAV reads; WAV is read directly),
  `model` (accepted, one model is served), `language`, `prompt`, `temperature` (accepted; decoding
  is greedy at 0, as the project tunes Whisper for conversation), `response_format` `json`,
  `text` or `verbose_json` (one segment with `avg_logprob`, `no_speech_prob`,
  `compression_ratio`). The header `X-Silvertalk-Priority: partial` marks a streaming partial:
  it is batched apart from finals, goes after them, and is answered 429 `stale_partial` when it
  waited too long to be worth decoding.
- `POST /v1/audio/speech`: JSON `input`, `voice` (`auto` or an engine name), `model` (accepted),
  `speed` (0.25-4), `response_format` `pcm` (24 kHz mono s16le, as OpenAI) or `wav` (the default
  here: there is no mp3 encoder), optional `language` (a code or an English name: `ko`,
  `Korean`; by default Korean when the text has Hangul, else English). Streamed in chunks as
  the engine speaks.
- `GET /health` (both deployments answer), `GET /metrics` (Prometheus).

Bad input answers 4xx with an OpenAI-style `{"error": {...}}` body; a replica that died or is
overloaded answers 503 (`Retry-After: 0`: another replica can take it), a decode that failed 500.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time.
"""

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from inference.audio import RATE, NotAudio, decode_upload, streaming_wav_header
from inference.metrics import TierMetrics
from inference.stt import STTDeployment
from inference.tts import OUTPUT_RATE, TTSDeployment
from server.settings import Settings

log = logging.getLogger(__name__)

api = FastAPI(title="Silvertalk inference tier", docs_url=None, redoc_url=None)

TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")
SPEECH_FORMATS = {"pcm": "audio/pcm", "wav": "audio/wav"}
LANGUAGE_NAMES = {"korean": "ko", "english": "en", "japanese": "ja", "chinese": "zh"}
#: Failures of a replica rather than of the request: another replica (or a retry) may succeed.
UNAVAILABLE = (RayActorError, ActorUnavailableError, BackPressureError)


class BadRequest(Exception):
    """A request we refuse with a 4xx and this message."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


def error(status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None) -> Any:
    headers = {"Retry-After": "0"} if status in (429, 503) else None
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


@api.exception_handler(BadRequest)
async def _bad_request(request: Request, exc: BadRequest) -> Any:
    return error(exc.status, str(exc), param=exc.param)


def whisper_language(value: str | None, param: str = "language") -> str | None:
    """A language code Whisper knows ("en-US" -> "en", "Korean" -> "ko"), None for auto."""
    if not value or value.lower() == "auto":
        return None
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    code = LANGUAGE_NAMES.get(value.lower(), value.lower().split("-")[0].split("_")[0])
    if code not in _LANGUAGE_CODES:
        raise BadRequest(f"unknown language {value!r}", param=param)
    return code


def speech_language(value: Any, text: str) -> str:
    if isinstance(value, str) and value and value.lower() != "auto":
        return whisper_language(value) or "en"
    return "ko" if re.search("[\uac00-\ud7a3]", text) else "en"


def verbose(result: dict[str, Any]) -> dict[str, Any]:
    """The `verbose_json` body: one segment covering the clip (the decode runs without timestamps)."""
    from faster_whisper.transcribe import get_compression_ratio

    text = result["text"]
    segment = {
        "id": 0,
        "seek": 0,
        "start": 0.0,
        "end": round(result["duration_s"], 3),
        "text": text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": result["avg_logprob"],
        "compression_ratio": get_compression_ratio(text) if text else 0.0,
        "no_speech_prob": result["no_speech_prob"],
    }
    return {
        "task": "transcribe",
        "language": result["language"],
        "duration": round(result["duration_s"], 3),
        "text": text,
        "segments": [segment] if text else [],
    }


# The ingress only waits on other deployments: it takes every call in flight, or batches would
# be capped at its (small) default.
@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=512)
@serve.ingress(api)
class Ingress:
    """Parses and checks requests, calls the STT and TTS deployments, records the metrics."""

    def __init__(self, stt: DeploymentHandle, tts: DeploymentHandle, settings: Settings) -> None:
        self.stt, self.tts, self.settings = stt, tts, settings
        self.meters = TierMetrics()
        self._voices: list[str] | None = None

    @api.post("/v1/audio/transcriptions")
    async def transcriptions(self, request: Request) -> Any:
        size = int(request.headers.get("content-length") or 0)
        if size > self.settings.max_upload_bytes:
            raise BadRequest(f"the upload is over {self.settings.max_upload_bytes} bytes", status=413)
        try:
            form = await request.form(max_files=1, max_fields=20)
        except Exception as e:  # starlette raises its own errors for a malformed body
            raise BadRequest(f"the body must be multipart/form-data ({e})") from e
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise BadRequest("`file` (the audio, as a multipart file) is required", param="file")
        fmt = str(form.get("response_format") or "json")
        if fmt not in TRANSCRIPTION_FORMATS:
            raise BadRequest(
                f"response_format {fmt!r} is not served: use {', '.join(TRANSCRIPTION_FORMATS)}",
                param="response_format",
            )
        language = whisper_language(str(form.get("language") or "") or None)
        prompt = str(form.get("prompt") or "") or None
        try:
            float(str(form.get("temperature") or 0))
        except ValueError:
            raise BadRequest("temperature must be a number", param="temperature") from None
        data = await upload.read()
        if len(data) > self.settings.max_upload_bytes:
            raise BadRequest(f"the upload is over {self.settings.max_upload_bytes} bytes", status=413)
        try:
            pcm = await asyncio.to_thread(decode_upload, data)
        except NotAudio as e:
            raise BadRequest(str(e), param="file") from e
        limit = self.settings.inference_max_audio_s
        if len(pcm) > limit * RATE:
            seconds = len(pcm) / RATE
            raise BadRequest(f"the audio is {seconds:.0f} s long; at most {limit:.0f} s", param="file")
        partial = request.headers.get("x-silvertalk-priority", "").lower() == "partial"
        try:
            result: dict[str, Any] = await self.stt.transcribe.remote(pcm, language, prompt, partial)
        except UNAVAILABLE as e:
            self.meters.requests.labels("transcriptions", "unavailable").inc()
            log.warning("an STT replica is unavailable: %s", e)
            return error(503, "no speech-to-text replica could take the request", kind="unavailable")
        except RayTaskError as e:
            self.meters.requests.labels("transcriptions", "failed").inc()
            log.error("transcription failed: %s", e)
            return error(500, f"the decode failed: {type(e.cause).__name__}", kind="server_error")
        self.meters.transcribed(result, partial=partial)
        if result["stale"]:
            return error(429, "partial dropped: it waited longer than it is worth", kind="stale_partial")
        headers = {
            "X-Silvertalk-Batch-Size": str(result["batch_size"]),
            "X-Silvertalk-Queue-Ms": f"{result['queue_s'] * 1000:.0f}",
            "X-Silvertalk-Compute-Ms": f"{result['compute_s'] * 1000:.0f}",
        }
        if fmt == "text":
            return PlainTextResponse(result["text"], headers=headers)
        if fmt == "json":
            # `end_prob` and `end_alternatives` (not in OpenAI's API; clients ignore them): how sure
            # the decoder was of the transcript's last word and what else it weighed for it, which
            # the gateways' end-of-turn decision uses.
            body: dict[str, Any] = {"text": result["text"]}
            if result.get("end_prob") is not None:
                body["end_prob"] = round(float(result["end_prob"]), 4)
            if result.get("end_alternatives"):
                body["end_alternatives"] = result["end_alternatives"]  # rounded where read
            return JSONResponse(body, headers=headers)
        return JSONResponse(verbose(result), headers=headers)

    @api.post("/v1/audio/speech")
    async def speech(self, request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("`input` (the text to speak) is required", param="input")
        if len(text) > self.settings.inference_max_input_chars:
            raise BadRequest(
                f"`input` is {len(text)} characters; at most {self.settings.inference_max_input_chars}",
                param="input",
            )
        fmt = str(body.get("response_format") or "wav")
        if fmt not in SPEECH_FORMATS:
            message = f"response_format {fmt!r} is not served: use pcm or wav"
            raise BadRequest(message, param="response_format")
        speed = body.get("speed", 1.0)
        if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            raise BadRequest("speed must be a number from 0.25 to 4.0", param="speed")
        voice = str(body.get("voice") or "auto")
        language = speech_language(body.get("language"), text)
        if voice.lower() != "auto" and voice.lower() not in await self._voice_names():
            names = ", ".join(["auto", *await self._voice_names()])
            raise BadRequest(f"unknown voice {voice!r}: choose one of {names}", param="voice")
        started = time.monotonic()
        stream = self.tts.options(stream=True).synthesize.remote(text, voice, language, float(speed))
        chunks = cast(DeploymentResponseGenerator, stream).__aiter__()
        try:
            first = await anext(chunks, b"")
        except UNAVAILABLE as e:
            self.meters.requests.labels("speech", "unavailable").inc()
            log.warning("a TTS replica is unavailable: %s", e)
            return error(503, "no text-to-speech replica could take the request", kind="unavailable")
        except RayTaskError as e:
            self.meters.requests.labels("speech", "failed").inc()
            log.error("speech failed: %s", e)
            return error(500, f"synthesis failed: {type(e.cause).__name__}", kind="server_error")
        self.meters.tts_first_chunk.observe(time.monotonic() - started)
        self.meters.requests.labels("speech", "ok").inc()

        async def body_stream() -> AsyncIterator[bytes]:
            yield (streaming_wav_header(OUTPUT_RATE) if fmt == "wav" else b"") + first
            async for chunk in chunks:
                yield chunk

        headers = {"X-Silvertalk-Sample-Rate": str(OUTPUT_RATE)}
        return StreamingResponse(body_stream(), media_type=SPEECH_FORMATS[fmt], headers=headers)

    @api.get("/health")
    async def health(self) -> Any:
        try:
            stt = await asyncio.wait_for(self.stt.info.remote(), 10)
            voices = await asyncio.wait_for(self._voice_names(), 10)
        except (TimeoutError, *UNAVAILABLE, RayTaskError) as e:
            return error(503, f"a deployment does not answer: {type(e).__name__}", kind="unavailable")
        return {"status": "ok", "stt": stt, "tts": {"voices": ["auto", *voices]}}

    @api.get("/metrics")
    async def metrics(self) -> Any:
        return Response(generate_latest(self.meters.registry), media_type=CONTENT_TYPE_LATEST)

    async def _voice_names(self) -> list[str]:
        if self._voices is None:
            self._voices = list(await self.tts.voice_names.remote())
        return self._voices


def _scaling(replicas: int, max_replicas: int, target: float) -> dict[str, Any]:
    """Fixed replicas, or Serve autoscaling between `replicas` and `max_replicas` when that is larger."""
    if max_replicas > replicas:
        return {
            "autoscaling_config": {
                "min_replicas": replicas,
                "max_replicas": max_replicas,
                "target_ongoing_requests": target,
            }
        }
    return {"num_replicas": replicas}


def build(settings: Settings) -> Any:
    """The Serve application: ingress -> STT and TTS deployments, sized from `settings`."""
    s = settings
    batch = s.inference_stt_max_batch_size
    stt = STTDeployment.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": s.inference_stt_num_cpus, "num_gpus": s.inference_stt_num_gpus},
        # enough requests in the replica for full batches of finals and of partials to wait
        max_ongoing_requests=max(64, 8 * batch),
        **_scaling(s.inference_stt_replicas, s.inference_stt_max_replicas, batch),
    ).bind(s)
    tts = TTSDeployment.options(  # type: ignore[attr-defined]
        ray_actor_options={"num_cpus": s.inference_tts_num_cpus, "num_gpus": s.inference_tts_num_gpus},
        max_ongoing_requests=32,
        **_scaling(s.inference_tts_replicas, s.inference_tts_max_replicas, 8),
    ).bind(s)
    return Ingress.bind(stt, tts, s)  # type: ignore[attr-defined]
