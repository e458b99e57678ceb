"""Keeping a generation's output when two checks finish it at once (a webhook and a sweep)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from server.app import create_app
from server.generation import outputs
from server.security import decode_access_token
from storage.models import Generation
from tests import images
from tests.conftest import dev_login, make_settings


def test_a_check_that_loses_the_race_never_shows_its_picture(tmp_path: Path, postgres_url: str) -> None:
    """While the winner holds the row, the loser's photo is not in the gallery; afterwards it is gone.

    This failed on CI as two photos for one finished generation: the loser's photo was committed
    before it learned it had lost, and was deleted only afterwards.
    """
    settings = make_settings(tmp_path, postgres_url)
    dsn = postgres_url.replace("+psycopg", "")
    with TestClient(create_app(settings)) as client:
        auth = dev_login(client)
        services = client.app.state.services  # type: ignore[attr-defined]
        user_id = decode_access_token(settings, auth["Authorization"].split()[1])
        gen = Generation(user_id=user_id, kind="image", status="running", prompt="바닷가", prediction_id="p1")

        async def add() -> None:
            async with services.sessions() as session:
                session.add(gen)
                await session.commit()

        assert client.portal is not None
        client.portal.call(add)
        with psycopg.connect(dsn) as winner, psycopg.connect(dsn, autocommit=True) as reader:
            # The other check has the row (as its own UPDATE would) and is about to say "succeeded".
            winner.execute("SELECT 1 FROM generation WHERE id = %s FOR UPDATE", (gen.id,))
            loser = client.portal.start_task_soon(outputs.store_image, services, gen, images.webp())
            deadline = time.monotonic() + 20
            while not reader.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            ).fetchone()[0]:  # type: ignore[index]
                assert not loser.done(), loser.result()
                assert time.monotonic() < deadline, "the second store never reached the row"
                time.sleep(0.02)
            photos = reader.execute("SELECT count(*) FROM photo WHERE user_id = %s", (user_id,))
            assert photos.fetchone()[0] == 0  # type: ignore[index]
            winner.execute("UPDATE generation SET status = 'succeeded' WHERE id = %s", (gen.id,))
            winner.commit()
            assert loser.result(timeout=20) is False
            photos = reader.execute("SELECT count(*) FROM photo WHERE user_id = %s", (user_id,))
            assert photos.fetchone()[0] == 0  # type: ignore[index]
        media = settings.media_dir
        assert not [p for p in media.rglob("*") if p.is_file()] if media.exists() else True
        assert client.get("/v1/photos", headers=auth).json()["items"] == []


def test_the_winner_keeps_one_photo_linked_to_the_generation(tmp_path: Path, postgres_url: str) -> None:
    settings = make_settings(tmp_path, postgres_url)
    with TestClient(create_app(settings)) as client:
        auth = dev_login(client)
        services = client.app.state.services  # type: ignore[attr-defined]
        user_id = decode_access_token(settings, auth["Authorization"].split()[1])
        gen = Generation(user_id=user_id, kind="image", status="running", prompt="바닷가", prediction_id="p1")

        async def run() -> tuple[bool, bool, uuid.UUID | None]:
            async with services.sessions() as session:
                session.add(gen)
                await session.commit()
            first = await outputs.store_image(services, gen, images.webp())
            second = await outputs.store_image(services, gen, images.webp())
            async with services.sessions() as session:
                row = await session.get(Generation, gen.id)
                assert row is not None
                return first, second, row.result_photo_id

        assert client.portal is not None
        first, second, photo_id = client.portal.call(run)
        assert (first, second) == (True, False)
        assert [p["id"] for p in client.get("/v1/photos", headers=auth).json()["items"]] == [str(photo_id)]
        assert len([p for p in settings.media_dir.rglob("*") if p.is_file()]) == 3
