"""The generation worker: one task per unfinished generation, from `queued` to a stored result.

A task waits for a slot (at most `generation_max_concurrent` predictions in flight per process),
creates the prediction, then follows it: a webhook wakes it at once, and polling with backoff
(`generation_poll_interval_s` growing to `generation_poll_max_interval_s`) is the safety net for
webhooks that never arrive or when there is no public URL. On a terminal status it downloads the
output with the fetcher and stores it. Every status change is a conditional UPDATE (`WHERE status
IN ...`), so a cancel and the task never overwrite each other. On stop the tasks are cancelled and
the rows stay `queued`/`running`: the next start resumes them from the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col

from server.generation import OutputRefused, ReplicateError, prompts, signing
from server.generation.fetcher import OutputFetcher
from server.generation.public import generation_public, updated_event
from server.generation.replicate import TERMINAL, ReplicateClient, progress_from_logs
from storage.models import Generation, Memory, MemoryPhoto, utcnow

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("silvertalk.generation")

CREATE_ATTEMPTS = 4
POLL_ERRORS_TOLERATED = 20
ACTIVE = ("queued", "running")
NOUN = {"image": "picture", "video": "video"}


class Slots:
    """A counting cap; work already in flight at start is counted in even when over the cap."""

    def __init__(self, cap: int) -> None:
        self.cap = max(1, cap)
        self.used = 0
        self._changed = asyncio.Event()

    async def acquire(self) -> None:
        while self.used >= self.cap:
            self._changed.clear()
            await self._changed.wait()
        self.used += 1

    def take(self) -> None:
        self.used += 1

    def release(self) -> None:
        self.used -= 1
        self._changed.set()


class GenerationWorker:
    """Owns the tasks. The router calls `submit` and `cancel`; the webhook calls `deliver`."""

    def __init__(self, services: Services, client: ReplicateClient, fetcher: OutputFetcher) -> None:
        self.services = services
        self.settings = services.settings
        self.client = client
        self.fetcher = fetcher
        self.slots = Slots(self.settings.generation_max_concurrent)
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake: dict[uuid.UUID, asyncio.Event] = {}
        self._updates: dict[uuid.UUID, dict[str, Any]] = {}
        self._stopping = False

    # --- control -------------------------------------------------------------------------------

    async def resume(self) -> None:
        """Pick up every unfinished generation: running ones first (they already hold a prediction)."""
        async with self.services.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(col(Generation.id), col(Generation.status))
                    .where(col(Generation.status).in_(ACTIVE))
                    .order_by(col(Generation.created_at))
                )
            ).all()
        running = [gid for gid, st in rows if st == "running"]
        queued = [gid for gid, st in rows if st == "queued"]
        for gid in running + queued:
            self.submit(gid)
        if rows:
            log.info("generation: resumed %d running and %d queued", len(running), len(queued))

    def submit(self, generation_id: uuid.UUID) -> None:
        """Start following a generation (no-op when it is already followed or the worker stops)."""
        if self._stopping or generation_id in self._tasks or not self.client.configured:
            return
        self._wake.setdefault(generation_id, asyncio.Event())
        task = asyncio.create_task(self._run(generation_id), name=f"generation-{generation_id}")
        self._tasks[generation_id] = task

    def deliver(self, generation_id: uuid.UUID, prediction: dict[str, Any]) -> None:
        """A webhook's prediction: wake the task following it (start one if none is)."""
        self._updates[generation_id] = prediction
        self.submit(generation_id)
        event = self._wake.get(generation_id)
        if event is not None:
            event.set()

    async def cancel(self, generation_id: uuid.UUID) -> bool:
        """Cancel a queued or running generation; False when it had already finished."""
        async with self.services.sessions() as session:
            gen = await session.get(Generation, generation_id)
        if gen is None:
            return False
        if not await self._transition(generation_id, ACTIVE, status="canceled", completed_at=utcnow()):
            return False
        if gen.prediction_id:
            await self._cancel_upstream(gen.prediction_id)
        event = self._wake.get(generation_id)
        if event is not None:
            event.set()
        await self._push(generation_id)
        return True

    async def stop(self) -> None:
        """Cancel every task; their rows stay unfinished for the next start to resume."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- one generation --------------------------------------------------------------------------

    async def _run(self, generation_id: uuid.UUID) -> None:
        holding = False
        try:
            gen = await self._load(generation_id)
            if gen is None or gen.status not in ACTIVE:
                return
            if gen.status == "running":
                self.slots.take()
            else:
                await self.slots.acquire()
            holding = True
            gen = await self._load(generation_id)
            if gen is None or gen.status not in ACTIVE:
                return
            prediction = self._updates.pop(generation_id, None)
            if gen.prediction_id is None:
                prediction = await self._create(gen)
                if prediction is None:
                    return
            await self._follow(generation_id, prediction)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("generation %s: unexpected failure", generation_id)
            await self._fail(generation_id, "Something went wrong on our side; please try again")
        finally:
            if holding:
                self.slots.release()
            self._tasks.pop(generation_id, None)
            self._wake.pop(generation_id, None)

    async def _create(self, gen: Generation) -> dict[str, Any] | None:
        """Create the prediction and mark the row running; None when it failed or was cancelled."""
        noun = NOUN[gen.kind]
        if gen.kind == "image":
            model = self.settings.replicate_image_model
            inputs = prompts.image_input(gen.prompt, gen.aspect_ratio or prompts.IMAGE_DEFAULT_ASPECT_RATIO)
            wait_s = self.settings.replicate_prefer_wait_s
        else:
            if gen.photo_id is None:
                await self._fail(gen.id, "The starting photo was deleted, so the video cannot be made")
                return None
            model = self.settings.replicate_video_model
            start_url = signing.signed_photo_url(self.settings, gen.photo_id)
            ratio = gen.aspect_ratio or prompts.VIDEO_DEFAULT_ASPECT_RATIO
            inputs = prompts.video_input(gen.prompt, ratio, start_url)
            wait_s = 0  # a video takes minutes; waiting only ties up a connection
        base = self.settings.public_base_url
        webhook = f"{base.rstrip('/')}/v1/webhooks/replicate" if base else None
        for attempt in range(CREATE_ATTEMPTS):
            try:
                prediction = await self.client.create(model, inputs, webhook=webhook, wait_s=wait_s)
                break
            except ReplicateError as e:
                if not e.retryable or attempt == CREATE_ATTEMPTS - 1:
                    await self._fail(gen.id, f"The {noun} could not be started. {e}")
                    return None
                await asyncio.sleep(self.settings.generation_poll_interval_s * 2**attempt)
        if not await self._transition(
            gen.id, ("queued",), status="running", prediction_id=prediction["id"], attempts=gen.attempts + 1
        ):
            # Cancelled while we were creating it: stop it upstream too, so it costs nothing more.
            await self._cancel_upstream(prediction["id"])
            return None
        await self._push(gen.id)
        return prediction

    async def _follow(self, generation_id: uuid.UUID, prediction: dict[str, Any] | None) -> None:
        delay = self.settings.generation_poll_interval_s
        deadline = time.monotonic() + self.settings.generation_timeout_s
        errors = 0
        last_progress: float | None = None
        while True:
            gen = await self._load(generation_id)
            if gen is None or gen.status != "running" or gen.prediction_id is None:
                return  # cancelled (or gone) meanwhile
            if prediction is None:
                try:
                    prediction = await self.client.get(gen.prediction_id)
                    errors = 0
                except ReplicateError as e:
                    errors += 1
                    if not e.retryable or errors > POLL_ERRORS_TOLERATED:
                        await self._fail(generation_id, f"We lost track of the {NOUN[gen.kind]}. {e}")
                        return
            if prediction is not None:
                if prediction.get("status") in TERMINAL:
                    await self._finish(gen, prediction)
                    return
                progress = progress_from_logs(prediction.get("logs"))
                if progress is not None and progress != last_progress:
                    last_progress = progress
                    if await self._transition(generation_id, ("running",), progress=progress):
                        await self._push(generation_id)
            if time.monotonic() > deadline:
                await self._cancel_upstream(gen.prediction_id)
                await self._fail(generation_id, f"The {NOUN[gen.kind]} took too long and was stopped")
                return
            event = self._wake.setdefault(generation_id, asyncio.Event())
            try:
                async with asyncio.timeout(delay):
                    await event.wait()
            except TimeoutError:
                delay = min(delay * 1.5, self.settings.generation_poll_max_interval_s)
            event.clear()
            prediction = self._updates.pop(generation_id, None)

    async def _finish(self, gen: Generation, prediction: dict[str, Any]) -> None:
        noun = NOUN[gen.kind]
        status = prediction.get("status")
        if status == "canceled":
            if await self._transition(gen.id, ("running",), status="canceled", completed_at=utcnow()):
                await self._push(gen.id)
            return
        if status == "failed":
            reason = str(prediction.get("error") or "no reason was given").strip()
            await self._fail(gen.id, f"The {noun} could not be made: {reason[:500]}")
            return
        url = _first_url(prediction.get("output"))
        if url is None:
            await self._fail(gen.id, f"The {noun} finished without a file")
            return
        try:
            data = await self.fetcher.fetch(url)
            if gen.kind == "image":
                await asyncio.to_thread(self.fetcher.inspect_image, data)
                await self._store_image(gen, data)
            else:
                poster = await asyncio.to_thread(self.fetcher.inspect_video, data)
                await self._store_video(gen, data, poster)
        except OutputRefused as e:
            log.warning("generation %s: output refused: %s", gen.id, e)
            await self._fail(gen.id, f"The finished {noun} could not be kept: {e}")
            return
        await self._push(gen.id)

    async def _store_image(self, gen: Generation, data: bytes) -> None:
        from server.photostore import ImageRejected, delete_photo_files, save_photo

        async with self.services.sessions() as session:
            memory = await session.get(Memory, gen.memory_id) if gen.memory_id else None
            caption = memory.title if memory is not None else gen.prompt[:200]
            try:
                photo = await save_photo(
                    self.services, session, gen.user_id, data, caption=caption, source="generated"
                )
            except ImageRejected as e:
                raise OutputRefused(f"the picture was not accepted ({e})") from e
            if memory is not None:
                last = await session.scalar(
                    sa.select(sa.func.max(col(MemoryPhoto.position))).where(
                        col(MemoryPhoto.memory_id) == memory.id
                    )
                )
                session.add(MemoryPhoto(memory_id=memory.id, photo_id=photo.id, position=(last or 0) + 1))
            done = await session.execute(
                sa.update(Generation)
                .where(col(Generation.id) == gen.id, col(Generation.status) == "running")
                .values(
                    status="succeeded",
                    result_photo_id=photo.id,
                    progress=1.0,
                    error=None,
                    completed_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                await session.commit()
                return
            # Cancelled while we stored it: keep nothing.
            await session.rollback()
            await session.delete(photo)
            await session.commit()
        await delete_photo_files(self.services, photo)

    async def _store_video(self, gen: Generation, data: bytes, poster: bytes) -> None:
        video_key = f"generations/{gen.id}/video.mp4"
        poster_key = f"generations/{gen.id}/poster.jpg"
        await self.services.media.put(video_key, data)
        await self.services.media.put(poster_key, poster)
        stored = await self._transition(
            gen.id,
            ("running",),
            status="succeeded",
            result_media_key=video_key,
            poster_media_key=poster_key,
            progress=1.0,
            error=None,
            completed_at=utcnow(),
        )
        if not stored:
            await self.services.media.delete(video_key)
            await self.services.media.delete(poster_key)

    # --- helpers ---------------------------------------------------------------------------------

    async def _load(self, generation_id: uuid.UUID) -> Generation | None:
        async with self.services.sessions() as session:
            return await session.get(Generation, generation_id)

    async def _transition(
        self, generation_id: uuid.UUID, from_statuses: tuple[str, ...], **values: Any
    ) -> bool:
        """Change a row only if it is still in one of `from_statuses`; True when it changed."""
        values.setdefault("updated_at", utcnow())
        async with self.services.sessions() as session:
            result = await session.execute(
                sa.update(Generation)
                .where(col(Generation.id) == generation_id, col(Generation.status).in_(from_statuses))
                .values(**values)
            )
            await session.commit()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def _fail(self, generation_id: uuid.UUID, message: str) -> None:
        if await self._transition(
            generation_id, ACTIVE, status="failed", error=message[:2000], completed_at=utcnow()
        ):
            await self._push(generation_id)

    async def _cancel_upstream(self, prediction_id: str) -> None:
        try:
            await self.client.cancel(prediction_id)
        except ReplicateError as e:
            # Best effort: the prediction may have just finished; it will not be stored either way.
            log.info("generation: cancel of prediction %s: %s", prediction_id, e)

    async def _push(self, generation_id: uuid.UUID) -> None:
        """Tell the user's open calls, if the realtime registry is there."""
        calls = self.services.calls
        if calls is None:
            return
        async with self.services.sessions() as session:
            gen = await session.get(Generation, generation_id)
            if gen is None:
                return
            event = updated_event(await generation_public(session, gen))
        try:
            await calls.push(gen.user_id, event)
        except Exception:  # a broken call must not break the generation
            log.warning("generation %s: realtime push failed", generation_id, exc_info=True)


def _first_url(output: Any) -> str | None:
    if isinstance(output, str) and output:
        return output
    if isinstance(output, list):
        for item in output:
            if isinstance(item, str) and item:
                return item
    return None
