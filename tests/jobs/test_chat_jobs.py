"""Voice messages through real job worker processes, on PostgreSQL and Redis, with real Whisper and
Piper and the fake Gemini: the happy path, a worker killed mid-job, and two workers on duplicates."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import FIXTURES
from tests.fakes.gemini import FakeGemini
from tests.jobs.cluster import Cluster, wait_until
from tests.updates import UpdatesReader

pytestmark = pytest.mark.slow


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(reply="I remember that speech. It still moves people today.", ttft_s=0.3) as fake:
        yield fake


def gemini_settings(gemini: FakeGemini) -> dict[str, Any]:
    return {"llm_engine": "gemini", "gemini_base_url": gemini.url, "gemini_api_key": gemini.api_key}


def rows(db_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def turns_of(db_url: str, message_id: str) -> list[tuple[str, str]]:
    hexid = message_id.replace("-", "")[:24]
    return [
        (r[0], r[1])
        for r in rows(
            db_url,
            "SELECT role, text FROM turn WHERE item_id LIKE %s ORDER BY started_at",
            f"msg_{hexid}%",
        )
    ]


def message(cluster: Cluster, headers: dict[str, str], mid: str) -> dict[str, Any]:
    r = cluster.client.get(f"/v1/chat/messages/{mid}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def finished(cluster: Cluster, headers: dict[str, str], mid: str, timeout: float) -> dict[str, Any]:
    body: dict[str, Any] = wait_until(
        lambda: (m := message(cluster, headers, mid))["status"] in ("done", "failed") and m,
        timeout,
        f"message {mid} to finish\n{cluster.output()}",
    )
    return body


def test_wav_message_gets_a_spoken_reply(
    tmp_path: Path, postgres_url: str, redis_url: str, gemini: FakeGemini
) -> None:
    """A WAV recording goes through a worker process: transcript, the companion's answer, reply audio."""
    with Cluster(tmp_path, postgres_url, redis_url, **gemini_settings(gemini)) as cluster:
        cluster.start("worker")
        headers = cluster.login("jobs-kim")
        wav = (FIXTURES / "osr_us_000_0034_8k.wav").read_bytes()
        with UpdatesReader(cluster.server.url, headers) as page:
            r = cluster.client.post(
                "/v1/chat/messages",
                headers=headers,
                files={"audio": ("hello.wav", wav, "audio/wav")},
                data={"language": "en"},
            )
            assert r.status_code == 202, r.text
            assert r.json()["status"] == "queued" and r.json()["input"] == "audio"
            done = finished(cluster, headers, r.json()["id"], timeout=120)
            assert done["status"] == "done", done
            # The worker's status changes reached the page through Redis.
            wait_until(lambda: "done" in page.statuses(done["id"]), 10, f"the page to hear: {page.events}")
        assert page.statuses(done["id"]) == ["queued", "transcribing", "thinking", "speaking", "done"]
        assert len(done["transcript"].split()) > 5
        assert done["reply_text"] == "I remember that speech. It still moves people today."
        assert {"upload_ms", "queued_ms", "transcribe_ms", "first_token_ms", "tts_ms", "total_ms"} <= set(
            done["timings"]
        )
        # The companion was asked with its persona and the words that were heard.
        sent = gemini.requests[-1].body
        assert "Silvertalk" in str(sent.get("systemInstruction") or sent.get("system_instruction"))
        audio = cluster.client.get(done["reply_audio_url"], headers=headers)
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        (tmp_path / "reply.wav").write_bytes(audio.content)
        with wave.open(str(tmp_path / "reply.wav"), "rb") as w:
            assert w.getnframes() / w.getframerate() > 1.5  # a spoken sentence, not a click
        opus = cluster.client.get(done["reply_audio_url"], headers=headers | {"Accept": "audio/ogg"})
        assert opus.headers["content-type"].startswith("audio/ogg") and opus.content[:4] == b"OggS"
        assert turns_of(postgres_url, done["id"]) == [
            ("user", done["transcript"]),
            ("assistant", done["reply_text"]),
        ]


def test_worker_killed_mid_job_finishes_once(
    tmp_path: Path, postgres_url: str, redis_url: str, gemini: FakeGemini
) -> None:
    """SIGKILL while the companion thinks: the queue delivers the job again, the message is answered once.

    No scheduler runs here, so only the redelivery of the unacknowledged message can finish it. The
    lease (renewed every 0.5 s while a run lives) is shorter than the redelivery wait (2 s).
    """
    gemini.ttft_s = 4.0
    opts = gemini_settings(gemini) | {"chat_job_lease_s": 1.5}
    with Cluster(tmp_path, postgres_url, redis_url, **opts) as cluster:
        first = cluster.start("worker")
        headers = cluster.login("jobs-lee")
        r = cluster.client.post(
            "/v1/chat/messages", headers=headers, json={"text": "Tell me about Busan.", "language": "en"}
        )
        assert r.status_code == 202, r.text
        mid = r.json()["id"]
        wait_until(
            lambda: len(gemini.requests) == 1, 90, f"the first worker to ask Gemini\n{cluster.output()}"
        )
        assert message(cluster, headers, mid)["status"] == "thinking"
        cluster.kill(first)
        gemini.ttft_s = 0.3
        cluster.start("worker")
        done = finished(cluster, headers, mid, timeout=90)
        assert done["status"] == "done", done
        assert len(gemini.requests) == 2  # the killed run's question, and the one that finished
        assert turns_of(postgres_url, mid) == [
            ("user", "Tell me about Busan."),
            ("assistant", done["reply_text"]),
        ]
        [(attempts, key)] = rows(
            postgres_url, "SELECT attempts, reply_media_key FROM chatmessage WHERE id = %s", mid
        )
        assert attempts == 2 and key.endswith("reply-2.wav")
        assert sorted(p.name for p in (tmp_path / "data" / "media" / "chat" / mid).iterdir()) == [
            "reply-2.wav"
        ]


def test_two_workers_never_run_one_job_twice(
    tmp_path: Path, postgres_url: str, redis_url: str, gemini: FakeGemini
) -> None:
    """Every message sent three times to two workers is answered once: one LLM call, one pair of turns."""
    with Cluster(tmp_path, postgres_url, redis_url, **gemini_settings(gemini)) as cluster:
        headers = cluster.login("jobs-park")
        ids = []
        for i in range(6):
            r = cluster.client.post(
                "/v1/chat/messages", headers=headers, json={"text": f"Message number {i}.", "language": "en"}
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        # The same jobs twice more, as a redelivery or a sweep would send them, before any worker runs.
        from server.jobs.broker import QueueJobs

        jobs = QueueJobs(cluster.settings)
        try:
            for _ in range(2):
                for mid in ids:
                    jobs.send_now("chat.process", mid)
        finally:
            jobs.close()
        cluster.start("worker")
        cluster.start("worker")
        for mid in ids:
            assert finished(cluster, headers, mid, timeout=120)["status"] == "done"
        assert len(gemini.requests) == len(ids)
        for i, mid in enumerate(ids):
            assert [role for role, _ in turns_of(postgres_url, mid)] == ["user", "assistant"], i
        assert rows(postgres_url, "SELECT DISTINCT attempts FROM chatmessage") == [(1,)]
