"""Generation jobs: from `queued` to a stored result, in short steps on the job queue.

- `start` (job "generation.start"): claim one of `generation_max_concurrent` slots, counted over
  the whole database (under a PostgreSQL advisory lock, so two workers never both take the last
  one), store the exact input, create the prediction, save its id. The message is acknowledged
  only after that, so a worker killed in between has the job run again; that run finds the row
  `running` without a prediction id and first asks Replicate for a prediction already made with
  the stored input (`ReplicateClient.find`) before creating one: a crash never makes the same
  picture twice.
- `check` (job "generation.check"): a webhook's prediction, or a fresh GET; a terminal status is
  finished (output fetched with our own fetcher, stored), otherwise progress is saved and the next
  check is planned with backoff (`generation_poll_interval_s` growing to `..._max_interval_s`).
- `sweep` (periodic): checks the predictions whose webhook never came, starts again creates whose
  job was lost, and sends queued generations to the slots that are free.

Every status change is a conditional UPDATE (`WHERE status IN ...`), so a cancel, a repeated
delivery and a sweep never overwrite each other; a finished slot sends the next queued generation.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col

from server.generation import OutputRefused, ReplicateError, outputs, prompts, signing
from server.generation.fetcher import OutputFetcher
from server.generation.public import generation_public, updated_event
from server.generation.replicate import TERMINAL, ReplicateClient, progress_from_logs
from server.jobs import JobsUnavailable
from server.jobs.push import push_to_user
from storage.models import Generation, WebhookDelivery, utcnow

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("silvertalk.generation")

CREATE_ATTEMPTS = 4
POLL_ERRORS_TOLERATED = 20
ACTIVE = ("queued", "running")
NOUN = {"image": "picture", "video": "video"}
#: Any process's lock id for "counting the slots" (pg_advisory_xact_lock).
SLOTS_LOCK = 0x5117E6
#: Replicate's clock and ours may differ a little: look back this much further for a lost create.
CLOCK_SLACK = timedelta(minutes=2)
#: Webhook ids are kept to refuse repeats; past the 5-minute timestamp tolerance they cannot repeat.
WEBHOOK_IDS_KEPT = timedelta(hours=1)


def runner(services: Services) -> GenerationRunner:
    """The process's runner (built on first use in a job worker; by `generation.start` in the server)."""
    found = services.generation
    if found is None:
        settings = services.settings
        client = ReplicateClient(
            base_url=settings.replicate_base_url,
            token=settings.replicate_api_token,
            timeout_s=settings.replicate_timeout_s,
        )
        found = GenerationRunner(services, client, OutputFetcher(settings))
        services.generation = found
        stack = services.stack
        if stack is not None:
            stack.push_async_callback(client.aclose)
            stack.push_async_callback(found.fetcher.aclose)
    return found


class GenerationRunner:
    """The generation steps. Jobs call `start`, `check`, `sweep`; the router calls `cancel`."""

    def __init__(self, services: Services, client: ReplicateClient, fetcher: OutputFetcher) -> None:
        self.services = services
        self.settings = services.settings
        self.client = client
        self.fetcher = fetcher
        self._slots_lock = asyncio.Lock()  # SQLite (one process): the advisory lock's stand-in

    # --- control -------------------------------------------------------------------------------

    async def cancel(self, generation_id: uuid.UUID) -> bool:
        """Cancel a queued or running generation; False when it had already finished."""
        gen = await self._load(generation_id)
        if gen is None:
            return False
        if not await self._transition(generation_id, ACTIVE, status="canceled", completed_at=utcnow()):
            return False
        if gen.prediction_id:
            await self._cancel_upstream(gen.prediction_id)
        await self._push(generation_id)
        await self._send_queued()
        return True

    async def send_start(self, generation_id: uuid.UUID) -> None:
        """Queue the start of a new generation (the router's side)."""
        await self._send("generation.start", generation_id)

    async def deliver(self, generation_id: uuid.UUID, prediction: dict[str, Any]) -> None:
        """A webhook's prediction: queue a check with it (the webhook's side)."""
        from server.jobs import get_jobs

        try:
            await get_jobs(self.services).send("generation.check", str(generation_id), prediction)
        except JobsUnavailable as e:  # the sweep will ask Replicate instead
            log.warning("generation %s: webhook not queued: %s", generation_id, e)

    async def sweep(self) -> None:
        """Check overdue predictions, restart lost creates, fill free slots with queued work, and
        forget webhook ids too old to come again (a delivery over five minutes old is refused)."""
        now = utcnow()
        async with self.services.sessions() as session:
            await session.execute(
                sa.delete(WebhookDelivery).where(col(WebhookDelivery.received_at) < now - WEBHOOK_IDS_KEPT)
            )
            await session.commit()
        stuck_before = now - self._create_lease()
        async with self.services.sessions() as session:
            due = (
                await session.scalars(
                    sa.select(col(Generation.id)).where(
                        col(Generation.status) == "running",
                        col(Generation.prediction_id).is_not(None),
                        # NULL: running when this version was installed; check it now.
                        sa.or_(col(Generation.next_check_at) <= now, col(Generation.next_check_at).is_(None)),
                    )
                )
            ).all()
            if due:
                # Planned a little ahead now, so the next sweep does not send the same check again.
                await session.execute(
                    sa.update(Generation)
                    .where(col(Generation.id).in_(due))
                    .values(next_check_at=now + timedelta(seconds=self.settings.generation_poll_interval_s))
                )
                await session.commit()
            lost = (
                await session.scalars(
                    sa.select(col(Generation.id)).where(
                        col(Generation.status) == "running",
                        col(Generation.prediction_id).is_(None),
                        col(Generation.updated_at) < stuck_before,
                    )
                )
            ).all()
        for gid in due:
            await self._send("generation.check", gid)
        for gid in lost:
            await self._send("generation.start", gid)
        await self._send_queued()

    # --- start ---------------------------------------------------------------------------------

    async def start(self, generation_id: str) -> None:
        gid = uuid.UUID(generation_id)
        gen = await self._load(gid)
        if gen is None or gen.status not in ACTIVE or not self.client.configured:
            return
        prediction: dict[str, Any] | None = None
        if gen.status == "queued":
            claimed = await self._claim(gid)
            if claimed is None:
                return  # no free slot: a finishing generation or the sweep sends it again
            gen = claimed
        elif gen.prediction_id:
            await self.check(generation_id)
            return
        else:
            # Running without a prediction id: another run is creating it, or died doing so.
            if gen.updated_at > utcnow() - self._create_lease():
                return  # alive (or not known dead yet): the sweep sends it again once the lease is over
            prediction = await self._find_made(gen)
            if prediction is None and gen.prediction_input is not None:
                log.info("generation %s: no prediction was made before the crash; creating it", gid)
        if prediction is None:
            prediction = await self._create(gen)
            if prediction is None:
                return
        next_check = utcnow() + timedelta(seconds=self.settings.generation_poll_interval_s)
        if not await self._transition(
            gid,
            ("running",),
            prediction_id=prediction["id"],
            next_check_at=next_check,
            checks=0,
            guard_no_prediction=True,
        ):
            # Cancelled while we were creating it: stop it upstream too, so it costs nothing more.
            await self._cancel_upstream(prediction["id"])
            return
        await self._push(gid)
        if prediction.get("status") in TERMINAL:
            await self.check(generation_id, prediction)

    async def _claim(self, gid: uuid.UUID) -> Generation | None:
        """Take a slot and mark the generation running; None when every slot is taken."""
        async with self._slots_lock, self.services.sessions() as session:
            if self.services.engine.dialect.name == "postgresql":
                await session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SLOTS_LOCK})
            running = await session.scalar(
                sa.select(sa.func.count()).where(col(Generation.status) == "running")
            )
            if (running or 0) >= max(1, self.settings.generation_max_concurrent):
                await session.rollback()
                return None
            done = await session.execute(
                sa.update(Generation)
                .where(col(Generation.id) == gid, col(Generation.status) == "queued")
                .values(
                    status="running",
                    started_at=utcnow(),
                    updated_at=utcnow(),
                    attempts=Generation.attempts + 1,  # type: ignore[operator]
                )
            )
            await session.commit()
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return None
        return await self._load(gid)

    def _create_lease(self) -> timedelta:
        """How long one create may take (its HTTP timeout and wait, and a margin)."""
        s = self.settings
        return timedelta(seconds=s.replicate_timeout_s + s.replicate_prefer_wait_s + 5)

    async def _find_made(self, gen: Generation) -> dict[str, Any] | None:
        """The prediction an earlier create made with the stored input, if Replicate has one.

        Raises ReplicateError when Replicate cannot say (the job is retried; creating blindly
        might make a second one).
        """
        if gen.prediction_input is None or gen.started_at is None:
            return None  # the earlier run died before it sent anything
        found = await self.client.find(
            self._model(gen), gen.prediction_input, created_after=gen.started_at - CLOCK_SLACK
        )
        if found is not None:
            log.info("generation %s: found prediction %s made before a crash", gen.id, found["id"])
        return found

    def _model(self, gen: Generation) -> str:
        if gen.kind == "image":
            return self.settings.replicate_image_model
        return self.settings.replicate_video_model

    async def _create(self, gen: Generation) -> dict[str, Any] | None:
        """Store the input, then create the prediction; None when it failed or was cancelled."""
        noun = NOUN[gen.kind]
        if gen.kind == "image":
            inputs = prompts.image_input(gen.prompt, gen.aspect_ratio or prompts.IMAGE_DEFAULT_ASPECT_RATIO)
            wait_s = self.settings.replicate_prefer_wait_s
        else:
            if gen.photo_id is None:
                await self._fail(gen.id, "The starting photo was deleted, so the video cannot be made")
                return None
            start_url = signing.signed_photo_url(self.settings, gen.photo_id)
            ratio = gen.aspect_ratio or prompts.VIDEO_DEFAULT_ASPECT_RATIO
            inputs = prompts.video_input(gen.prompt, ratio, start_url)
            wait_s = 0  # a video takes minutes; waiting only ties up a connection
        if not await self._transition(
            gen.id, ("running",), prediction_input=inputs, guard_no_prediction=True
        ):
            return None
        base = self.settings.public_base_url
        webhook = f"{base.rstrip('/')}/v1/webhooks/replicate" if base else None
        for attempt in range(CREATE_ATTEMPTS):
            try:
                if attempt > 0:
                    # The last try may have made it before failing (a timeout): never make two.
                    await self._transition(gen.id, ("running",), guard_no_prediction=True)  # lease
                    gen.prediction_input = inputs
                    found = await self._find_made(gen)
                    if found is not None:
                        return found
                return await self.client.create(self._model(gen), inputs, webhook=webhook, wait_s=wait_s)
            except ReplicateError as e:
                if not e.retryable or attempt == CREATE_ATTEMPTS - 1:
                    await self._fail(gen.id, f"The {noun} could not be started. {e}")
                    return None
                await asyncio.sleep(self.settings.generation_poll_interval_s * 2**attempt)
        return None

    # --- check ---------------------------------------------------------------------------------

    async def check(self, generation_id: str, prediction: dict[str, Any] | None = None) -> None:
        gid = uuid.UUID(generation_id)
        gen = await self._load(gid)
        if gen is None or gen.status != "running" or gen.prediction_id is None:
            return  # cancelled, finished or not created yet
        if prediction is None or prediction.get("id") != gen.prediction_id:
            try:
                prediction = await self.client.get(gen.prediction_id)
            except ReplicateError as e:
                if not e.retryable or gen.checks > POLL_ERRORS_TOLERATED:
                    await self._fail(gid, f"We lost track of the {NOUN[gen.kind]}. {e}")
                else:
                    await self._plan_next_check(gen)
                return
        if prediction.get("status") in TERMINAL:
            await self._finish(gen, prediction)
            await self._send_queued()
            return
        started = gen.started_at or gen.created_at
        if utcnow() - started > timedelta(seconds=self.settings.generation_timeout_s):
            await self._cancel_upstream(gen.prediction_id)
            await self._fail(gid, f"The {NOUN[gen.kind]} took too long and was stopped")
            await self._send_queued()
            return
        progress = progress_from_logs(prediction.get("logs"))
        if (
            progress is not None
            and progress != gen.progress
            and await self._transition(gid, ("running",), progress=progress)
        ):
            await self._push(gid)
        await self._plan_next_check(gen)

    async def _plan_next_check(self, gen: Generation) -> None:
        s = self.settings
        delay = min(s.generation_poll_interval_s * 1.5**gen.checks, s.generation_poll_max_interval_s)
        await self._transition(
            gen.id, ("running",), next_check_at=utcnow() + timedelta(seconds=delay), checks=gen.checks + 1
        )

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
        url = outputs.first_url(prediction.get("output"))
        if url is None:
            await self._fail(gen.id, f"The {noun} finished without a file")
            return
        try:
            data = await self.fetcher.fetch(url)
            if gen.kind == "image":
                await asyncio.to_thread(self.fetcher.inspect_image, data)
                await outputs.store_image(self.services, gen, data)
            else:
                poster = await asyncio.to_thread(self.fetcher.inspect_video, data)
                await outputs.store_video(self.services, gen, data, poster)
        except OutputRefused as e:
            log.warning("generation %s: output refused: %s", gen.id, e)
            await self._fail(gen.id, f"The finished {noun} could not be kept: {e}")
            return
        await self._push(gen.id)

    # --- helpers ---------------------------------------------------------------------------------

    async def _load(self, generation_id: uuid.UUID) -> Generation | None:
        async with self.services.sessions() as session:
            return await session.get(Generation, generation_id)

    async def _transition(
        self,
        generation_id: uuid.UUID,
        from_statuses: tuple[str, ...],
        *,
        guard_no_prediction: bool = False,
        **values: Any,
    ) -> bool:
        """Change a row only if it is still in one of `from_statuses` (and, with
        `guard_no_prediction`, has no prediction id yet); True when it changed."""
        values.setdefault("updated_at", utcnow())
        where = [col(Generation.id) == generation_id, col(Generation.status).in_(from_statuses)]
        if guard_no_prediction:
            where.append(col(Generation.prediction_id).is_(None))
        async with self.services.sessions() as session:
            result = await session.execute(sa.update(Generation).where(*where).values(**values))
            await session.commit()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def _fail(self, generation_id: uuid.UUID, message: str) -> None:
        if await self._transition(
            generation_id, ACTIVE, status="failed", error=message[:2000], completed_at=utcnow()
        ):
            await self._push(generation_id)
            await self._send_queued()

    async def _cancel_upstream(self, prediction_id: str) -> None:
        try:
            await self.client.cancel(prediction_id)
        except ReplicateError as e:
            # Best effort: the prediction may have just finished; it will not be stored either way.
            log.info("generation: cancel of prediction %s: %s", prediction_id, e)

    async def _push(self, generation_id: uuid.UUID) -> None:
        """Tell the user's open calls and pages, in every process (`server.jobs.push`)."""
        async with self.services.sessions() as session:
            gen = await session.get(Generation, generation_id)
            if gen is None:
                return
            event = updated_event(await generation_public(session, gen))
        await push_to_user(self.services, gen.user_id, event)

    async def _send(self, task: str, gid: uuid.UUID) -> None:
        from server.jobs import get_jobs

        try:
            await get_jobs(self.services).send(task, str(gid))
        except JobsUnavailable as e:  # the row says what is left to do; the next sweep sends it
            log.warning("generation %s: %s", gid, e)

    async def _send_queued(self) -> None:
        """Send the oldest queued generations to the slots that are free now."""
        async with self.services.sessions() as session:
            running = await session.scalar(
                sa.select(sa.func.count()).where(col(Generation.status) == "running")
            )
            free = max(1, self.settings.generation_max_concurrent) - (running or 0)
            if free <= 0:
                return
            queued = (
                await session.scalars(
                    sa.select(col(Generation.id))
                    .where(col(Generation.status) == "queued")
                    .order_by(col(Generation.created_at))
                    .limit(free)
                )
            ).all()
        for gid in queued:
            await self._send("generation.start", gid)
