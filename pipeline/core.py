"""What the parts of one call share: its configuration, engines, items, output queue and tasks.

`Conversation` (the facade), `Floor` (turn-taking), `Transcripts` and `Replies` each hold the one
`CallCore` of their call, so none of them reaches into another for these.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from pipeline.engines.base import ChatContext
from pipeline.events import ErrorEvent, OutputEvent
from pipeline.stt_stream import StreamingTranscriber
from pipeline.tools import ClientTools, ToolRunner
from pipeline.turns import CallConfig, CallEngines, Item

log = logging.getLogger(__name__)
T = TypeVar("T")


class CallCore:
    """One call's shared state. Use from one event loop."""

    def __init__(
        self,
        engines: CallEngines,
        context: ChatContext,
        config: CallConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tools: ToolRunner | None = None,
    ) -> None:
        self.engines, self.context, self.config = engines, context, config
        #: Runs the model's tool calls (the gateway's, over the caller's own data); None: no tools.
        self.tools = tools
        #: The client's own tools (the session's), offered to the model in every reply.
        self.client_tools = ClientTools()
        self.clock, self.sleep = clock, sleep
        self.out: asyncio.Queue[OutputEvent] = asyncio.Queue()
        #: The conversation so far, in order (user turns, text items, assistant replies).
        self.items: list[Item] = []
        self.stt = StreamingTranscriber(
            engines.stt, config.language, clock=clock, min_utterance_s=config.partial_after_s
        )
        self.tasks: set[asyncio.Task[Any]] = set()
        #: When anything last happened (a turn, a reply ending), and when the caller last spoke or
        #: sent something: `Conversation.idle_for` reads them.
        self.last_activity = self.last_caller_activity = clock()

    def emit(self, event: OutputEvent) -> None:
        self.out.put_nowait(event)

    def error(
        self,
        message: str,
        code: str,
        event_id: str | None,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
    ) -> None:
        self.emit(ErrorEvent(message, type=type, code=code, event_id=event_id, param=param))

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run `coro` as a task of this call: referenced until done, cancelled by `aclose`."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("conversation task failed", exc_info=task.exception())

    def previous_id(self) -> str | None:
        """The id of the last item, which a new item follows."""
        return self.items[-1].id if self.items else None

    def find(self, item_id: str) -> Item | None:
        return next((i for i in self.items if i.id == item_id), None)

    async def aclose(self) -> None:
        """Cancel every task of the call and wait for them; then the transcriber's own."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.stt.aclose()
