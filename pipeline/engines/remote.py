"""Speech to text and text to speech on another server, over the OpenAI audio API (httpx).

The server is our inference tier (`python -m inference`), vLLM (Whisper; Qwen3-TTS through
vLLM-Omni) or speaches; each base URL ends in `/v1`.

- STT: `POST {url}/audio/transcriptions`, multipart `file` (16 kHz mono WAV), `model`,
  `language`, `temperature=0`, `response_format=json`, and `prompt` when there is one. Finals
  and partials use separate connection pools, so a final never waits for a connection behind
  partials. A final gets one retry after a failure (a 5xx, 429, timeout or lost connection;
  through Serve the retry reaches another replica), then `RetryableEngineError`. Partials
  (`pipeline.engines.base.DECODE_KIND`) are sent with `X-Silvertalk-Priority: partial` (other
  servers ignore the header), never retried, and declined here (`PartialSkipped`) while
  `max_partials` are in flight or recent finals have been slow: under load the gateway thins
  its own partials so finals come first. Near-silent audio is not sent at all.
- TTS: `POST {url}/audio/speech`, JSON `model`, `input`, `voice`, `response_format=pcm`,
  `speed`, and `language` as a name ("Korean": what vLLM-Omni's Qwen3-TTS validates; our tier
  takes names or codes) unless turned off. The pcm stream is yielded as it arrives. A failure
  before the first audio is retried once; one after it raises `RetryableEngineError`.

Nothing here blocks the event loop: the WAV body is a few hundred KB of numpy bytes.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import wave
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np

from pipeline import EngineUnavailable, FatalEngineError, RetryableEngineError
from pipeline.audio import rms_dbfs
from pipeline.engines.base import DECODE_KIND, PCM, Transcript
from pipeline.stt_stream import PartialSkipped

log = logging.getLogger(__name__)

STT_RATE = 16000
#: Below this level (dBFS) nothing was said; Whisper would only invent text (see `whisper`).
SILENCE_DBFS = -50.0
#: Status codes worth one more try: overloaded, a replica gone, a gateway in between failing.
RETRY_STATUS = {408, 429, 500, 502, 503, 504}
LANGUAGE_NAMES = {"ko": "Korean", "en": "English", "ja": "Japanese", "zh": "Chinese"}


def wav_file(pcm: PCM, rate: int) -> bytes:
    """A complete mono 16-bit WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def _probability(value: Any) -> bool:
    """A number from 0 to 1 (a JSON bool is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _client(
    base_url: str, api_key: str | None, timeout_s: float, connections: int | None
) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=min(2.0, timeout_s)),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections or 64),
    )


def _failure(what: str, response: httpx.Response) -> RetryableEngineError | FatalEngineError:
    detail = response.text[:300]
    if response.status_code in RETRY_STATUS:
        return RetryableEngineError(f"{what}: HTTP {response.status_code} {detail}")
    return FatalEngineError(f"{what}: HTTP {response.status_code} {detail}")


class RemoteSTT:
    """A `SpeechToText` over `POST /audio/transcriptions`."""

    sample_rate = STT_RATE

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 8.0,
        partial_timeout_s: float = 2.0,
        max_partials: int = 4,
        partial_max_latency_s: float = 1.5,
        concurrency: int = 16,
    ) -> None:
        self.model = model
        #: Decodes the calls of this process may have in flight at once (`pipeline.scheduler`): the
        #: tier batches concurrent requests, so serialising them here would undo the batching.
        self.concurrency = concurrency
        self.max_partials = max_partials
        self.partial_max_latency_s = partial_max_latency_s
        self._finals = _client(base_url, api_key, timeout_s, None)
        self._partials = _client(base_url, api_key, partial_timeout_s, max(1, max_partials))
        self._partials_in_flight = 0
        #: Smoothed seconds a final took (request to answer): the tier's queue, seen from here.
        self.final_latency_s = 0.0
        self.skipped_partials = 0
        self.retries = 0

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        """Decode one utterance remotely. Raises RetryableEngineError, FatalEngineError, PartialSkipped."""
        if len(audio) < STT_RATE // 10 or rms_dbfs(audio) < SILENCE_DBFS:
            return Transcript(text="", language=language)
        data: dict[str, str] = {
            "model": self.model,
            "language": language.split("-")[0],
            "temperature": "0",
            "response_format": "json",
        }
        if prompt:
            data["prompt"] = prompt
        files = {"file": ("audio.wav", wav_file(audio, STT_RATE), "audio/wav")}
        if DECODE_KIND.get() == "partial":
            return await self._partial(data, files, language)
        return await self._final(data, files, language)

    async def _partial(self, data: dict[str, str], files: dict[str, Any], language: str) -> Transcript:
        if self._partials_in_flight >= self.max_partials or self.final_latency_s > self.partial_max_latency_s:
            self.skipped_partials += 1
            raise PartialSkipped("the transcription server is busy: partial skipped")
        self._partials_in_flight += 1
        try:
            r = await self._partials.post(
                "audio/transcriptions", data=data, files=files, headers={"X-Silvertalk-Priority": "partial"}
            )
        except httpx.HTTPError as e:
            raise RetryableEngineError(f"partial transcription failed: {e!r}") from e
        finally:
            self._partials_in_flight -= 1
        if r.status_code == 429:
            self.skipped_partials += 1
            raise PartialSkipped("the transcription server dropped a stale partial")
        if r.status_code != 200:
            raise _failure("partial transcription", r)
        return self._transcript(r, language)

    async def _final(self, data: dict[str, str], files: dict[str, Any], language: str) -> Transcript:
        started = time.monotonic()
        failure: Exception | None = None
        for attempt in range(2):
            if attempt:
                self.retries += 1
                log.warning("transcription failed (%s); retrying once", failure)
            try:
                r = await self._finals.post("audio/transcriptions", data=data, files=files)
            except httpx.HTTPError as e:
                failure = RetryableEngineError(f"transcription server unreachable or slow: {e!r}")
                continue
            if r.status_code == 200:
                elapsed = time.monotonic() - started
                self.final_latency_s = 0.7 * self.final_latency_s + 0.3 * elapsed
                return self._transcript(r, language)
            failure = _failure("transcription", r)
            if isinstance(failure, FatalEngineError):
                raise failure
        # Two failures in a row: a slow tier counts as slow for the partials' sake too.
        self.final_latency_s = max(self.final_latency_s, time.monotonic() - started)
        assert failure is not None
        raise failure

    def _transcript(self, r: httpx.Response, language: str) -> Transcript:
        try:
            body = r.json()
            text = str(body["text"])
        except (ValueError, KeyError, TypeError) as e:
            raise RetryableEngineError(f"transcription server answered no text: {r.text[:200]!r}") from e
        # Our tier adds how sure Whisper was of the last word and what else it weighed for it
        # (other servers do not); anything malformed there counts as not said.
        text = text.strip()
        end = body.get("end_prob")
        end_prob = float(end) if _probability(end) and text else None
        alternatives = body.get("end_alternatives") if end_prob is not None else None
        return Transcript(
            text=text,
            language=language,
            end_prob=end_prob,
            end_alternatives=tuple(
                (a[0], float(a[1]))
                for a in (alternatives if isinstance(alternatives, list) else [])
                if isinstance(a, list) and len(a) == 2 and isinstance(a[0], str) and _probability(a[1])
            ),
        )

    async def aclose(self) -> None:
        await asyncio.gather(self._finals.aclose(), self._partials.aclose())


class RemoteTTS:
    """A `TextToSpeech` over `POST /audio/speech` with `response_format=pcm`, streamed."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        voice: str,
        api_key: str | None = None,
        timeout_s: float = 8.0,
        sample_rate: int = 24000,
        language: str = "name",
        concurrency: int = 16,
    ) -> None:
        self.model, self.voice, self.language_style = model, voice, language
        #: Sentences the calls of this process may have in flight at once (`pipeline.scheduler`).
        self.concurrency = concurrency
        self.sample_rate = sample_rate
        self._client = _client(base_url, api_key, timeout_s, None)
        self.retries = 0

    def _body(self, text: str, language: str, speed: float) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
            "speed": speed,
        }
        code = language.lower().split("-")[0]
        if self.language_style == "name":
            body["language"] = LANGUAGE_NAMES.get(code, "Auto")
        elif self.language_style == "code":
            body["language"] = code
        return body

    async def synthesize(self, text: str, *, language: str, speed: float = 1.0) -> AsyncIterator[PCM]:
        """Yield int16 chunks at `sample_rate` as the server streams them.

        Raises RetryableEngineError when the server fails twice before any audio or once after
        it, FatalEngineError when it refuses the request (an unknown voice, say).
        """
        if not text.strip():
            return
        body = self._body(text, language, max(0.25, min(speed, 4.0)))
        started = False
        for attempt in range(2):
            try:
                async with self._client.stream("POST", "audio/speech", json=body) as r:
                    if r.status_code != 200:
                        await r.aread()
                        failure = _failure("speech", r)
                        if isinstance(failure, FatalEngineError) or attempt:
                            raise failure
                        self.retries += 1
                        log.warning("speech failed (%s); retrying once", failure)
                        continue
                    rest = b""
                    async for data in r.aiter_bytes():
                        data, n = rest + data, (len(rest) + len(data)) // 2 * 2
                        data, rest = data[:n], data[n:]
                        if n:
                            started = True
                            yield np.frombuffer(data, dtype="<i2").astype(np.int16)
                    return
            except httpx.HTTPError as e:
                if started or attempt:
                    raise RetryableEngineError(f"speech server failed: {e!r}") from e
                self.retries += 1
                log.warning("speech server failed (%r); retrying once", e)

    async def aclose(self) -> None:
        await self._client.aclose()


def load_stt(settings: Any) -> RemoteSTT:
    """Factory for the registry (`stt_engine = "remote"`)."""
    if not settings.stt_remote_url:
        raise EngineUnavailable(
            "SILVERTALK_STT_ENGINE=remote needs SILVERTALK_STT_REMOTE_URL (a base URL ending in /v1)"
        )
    return RemoteSTT(
        settings.stt_remote_url,
        model=settings.stt_remote_model,
        api_key=settings.stt_remote_api_key,
        timeout_s=settings.stt_remote_timeout_s,
        partial_timeout_s=settings.stt_remote_partial_timeout_s,
        max_partials=settings.stt_remote_max_partials,
        partial_max_latency_s=settings.stt_remote_partial_max_latency_s,
        concurrency=settings.stt_remote_concurrency,
    )


def load_tts(settings: Any) -> RemoteTTS:
    """Factory for the registry (`tts_engine = "remote"`)."""
    if not settings.tts_remote_url:
        raise EngineUnavailable(
            "SILVERTALK_TTS_ENGINE=remote needs SILVERTALK_TTS_REMOTE_URL (a base URL ending in /v1)"
        )
    return RemoteTTS(
        settings.tts_remote_url,
        model=settings.tts_remote_model,
        voice=settings.tts_remote_voice,
        api_key=settings.tts_remote_api_key,
        timeout_s=settings.tts_remote_timeout_s,
        sample_rate=settings.tts_remote_sample_rate,
        language=settings.tts_remote_language,
        concurrency=settings.tts_remote_concurrency,
    )
