"""The inference tier's OpenAI audio API on a real local Ray cluster: real Whisper base and Piper."""

from __future__ import annotations

import asyncio
import io
import re
import wave

import httpx
import numpy as np
import pytest

from pipeline.audio import resample
from pipeline.engines.remote import wav_file
from tests.conftest import FIXTURES
from tests.inference.conftest import Tier
from tests.pipeline.conftest import JFK_TEXT, load_audio, word_error_rate

pytestmark = pytest.mark.slow

BLIP = ("a.wav", wav_file(np.zeros(1600, np.int16), 16000))


def transcribe(tier: Tier, data: bytes, name: str = "clip.wav", **fields: str) -> httpx.Response:
    files = {"file": (name, data, "application/octet-stream")}
    form = {"model": "whisper-1", **fields}
    return httpx.post(f"{tier.url}/audio/transcriptions", files=files, data=form, timeout=60, trust_env=False)


def metric(tier: Tier, name: str) -> dict[str, float]:
    """Samples of one metric from /metrics: 'labels' -> value."""
    text = httpx.get(f"{tier.base}/metrics", trust_env=False).text
    found = re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)
    return {labels: float(value) for labels, value in found}


def test_jfk_json_is_exact(tier: Tier) -> None:
    """The JFK recording (FLAC upload) comes back word for word as `json`."""
    r = transcribe(tier, (FIXTURES / "jfk.flac").read_bytes(), "jfk.flac", language="en")
    assert r.status_code == 200, r.text
    assert word_error_rate(JFK_TEXT, r.json()["text"]) == 0.0, r.json()
    assert int(r.headers["x-silvertalk-batch-size"]) >= 1
    assert 0.0 < r.json()["end_prob"] <= 1.0  # ours, for the gateways' end of turn


def test_verbose_json_has_segments_and_text_is_plain(tier: Tier) -> None:
    """`verbose_json` has language, duration and a segment with Whisper's scores; `text` is plain text."""
    jfk = load_audio("jfk.flac")
    r = transcribe(tier, wav_file(jfk, 16000), language="en", response_format="verbose_json", prompt="JFK")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"] == "en" and abs(body["duration"] - 11.0) < 0.1
    (segment,) = body["segments"]
    assert segment["text"] == body["text"] and segment["end"] == body["duration"]
    assert segment["no_speech_prob"] < 0.5 and segment["avg_logprob"] < 0
    r = transcribe(tier, wav_file(jfk, 16000), language="en", response_format="text")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "ask not what your country" in r.text


def test_speech_streams_wav_and_pcm_that_whisper_understands(tier: Tier) -> None:
    """Piper's speech arrives in several chunks, as a 24 kHz WAV or raw pcm, and Whisper hears the words."""
    text = "The weather is lovely today. My daughter is coming to visit me on Sunday."
    body = {"model": "tts-1", "input": text, "voice": "piper", "response_format": "wav"}
    with httpx.stream("POST", f"{tier.url}/audio/speech", json=body, timeout=60, trust_env=False) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        chunks = list(r.iter_raw())
    assert len(chunks) >= 2  # one per sentence at least: streamed as made, not at the end
    data = b"".join(chunks)
    assert data[:4] == b"RIFF" and int.from_bytes(data[24:28], "little") == 24000
    body["response_format"] = "pcm"
    r = httpx.post(f"{tier.url}/audio/speech", json=body, timeout=60, trust_env=False)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
    pcm = np.frombuffer(r.content, dtype="<i2")
    # Piper samples its durations (VITS noise), so the two renderings differ a little in length.
    assert len(pcm) > 24000 * 3 and abs(len(data) - 44 - len(r.content)) < 0.1 * len(r.content)
    heard = transcribe(tier, wav_file(resample(pcm.astype(np.int16), 24000, 16000), 16000), language="en")
    assert word_error_rate(text, heard.json()["text"]) <= 0.15, heard.json()


def test_korean_goes_to_espeak_by_default(tier: Tier) -> None:
    """`voice=auto` with Korean text speaks (espeak-ng), as a 24 kHz WAV."""
    body = {"input": "안녕하세요, 반가워요.", "voice": "auto"}
    r = httpx.post(f"{tier.url}/audio/speech", json=body, timeout=60, trust_env=False)
    assert r.status_code == 200, r.text
    with wave.open(io.BytesIO(r.content[:44] + b"")) as w:
        assert w.getframerate() == 24000
    assert len(r.content) > 24000  # half a second at least


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "says"),
    [
        (
            "audio/transcriptions",
            {"files": {"file": ("a.wav", b"not audio at all", "audio/wav")}},
            400,
            "not audio",
        ),
        ("audio/transcriptions", {"data": {"model": "whisper-1"}}, 400, "`file`"),
        (
            "audio/transcriptions",
            {"files": {"file": ("long.wav", wav_file(np.zeros(16000 * 121, np.int16), 16000))}},
            400,
            "at most 120 s",
        ),
        (
            "audio/transcriptions",
            {
                "files": {"file": ("a.wav", wav_file(np.zeros(1600, np.int16), 16000))},
                "data": {"language": "xx"},
            },
            400,
            "unknown language",
        ),
        (
            "audio/transcriptions",
            {
                "files": {"file": ("a.wav", wav_file(np.zeros(1600, np.int16), 16000))},
                "data": {"response_format": "srt"},
            },
            400,
            "srt",
        ),
        ("audio/speech", {"json": {"input": "Hello", "voice": "alloy"}}, 400, "unknown voice"),
        ("audio/speech", {"json": {"input": "Hello", "response_format": "mp3"}}, 400, "pcm or wav"),
        ("audio/speech", {"json": {"input": "Hello", "speed": 9}}, 400, "speed"),
        ("audio/speech", {"json": {"voice": "piper"}}, 400, "`input`"),
        ("audio/speech", {"content": b"{not json"}, 400, "JSON object"),
    ],
)
def test_bad_input_gets_a_clear_4xx(tier: Tier, path: str, kwargs: dict, status: int, says: str) -> None:  # type: ignore[type-arg]
    """Not audio, no file, too long, unknown language/voice/format, bad speed, no input: 400 saying why."""
    r = httpx.post(f"{tier.url}/{path}", timeout=60, trust_env=False, **kwargs)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"]


async def test_concurrent_transcriptions_are_decoded_as_one_batch(tier: Tier) -> None:
    """Eight requests at once are decoded in batches larger than one (headers and the metric agree)."""
    osr = load_audio("osr_us_000_0034_8k.wav")
    clips = [wav_file(osr[i * 16000 * 3 : (i + 1) * 16000 * 3 + 8000], 16000) for i in range(8)]
    before = metric(tier, "silvertalk_inference_stt_batch_size_sum")
    async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
        replies = await asyncio.gather(
            *(
                client.post(
                    f"{tier.url}/audio/transcriptions",
                    files={"file": ("c.wav", clip, "audio/wav")},
                    data={"model": "whisper-1", "language": "en"},
                )
                for clip in clips
            )
        )
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    sizes = [int(r.headers["x-silvertalk-batch-size"]) for r in replies]
    assert max(sizes) > 1, sizes
    after = metric(tier, "silvertalk_inference_stt_batch_size_sum")
    key = '{kind="final"}'
    assert after[key] - before.get(key, 0.0) == sum(sizes) > len(sizes)
    assert "gold ring" in " ".join(r.json()["text"].lower() for r in replies)


def test_health_names_the_device_and_voices(tier: Tier) -> None:
    """/health answers once both deployments do, with Whisper's device and the voices served."""
    r = httpx.get(f"{tier.base}/health", timeout=30, trust_env=False)
    assert r.status_code == 200, r.text
    assert r.json()["stt"] == {"device": "cpu", "compute_type": "int8"}
    assert r.json()["tts"]["voices"] == ["auto", "espeak", "piper"]
