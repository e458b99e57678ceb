"""The server's logging: the sweeps' timer does not write two lines every few seconds."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from server import logs


@contextmanager
def unconfigured() -> Iterator[None]:
    """Logging as a fresh process has it (a root logger without handlers: basicConfig does nothing
    otherwise), put back as it was afterwards, pytest's own capture handlers included."""
    root, apscheduler = logging.getLogger(), logging.getLogger("apscheduler")
    levels, handlers = (root.level, apscheduler.level), root.handlers[:]
    root.handlers[:] = []
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(levels[0])  # setLevel also clears every logger's cached answers
        apscheduler.setLevel(levels[1])


@pytest.mark.parametrize(("level", "ticks_logged"), [("info", False), ("debug", True)])
def test_timer_ticks_are_quiet_unless_debugging(level: str, ticks_logged: bool) -> None:
    with unconfigured():
        logs.configure(level)
        apscheduler = logging.getLogger("apscheduler.executors.default")
        assert apscheduler.isEnabledFor(logging.INFO) is ticks_logged
        assert apscheduler.isEnabledFor(logging.WARNING)  # a missed or failed job still shows
        assert logging.getLogger("pipeline.conversation").isEnabledFor(logging.INFO)
    assert not any(type(h) is logging.StreamHandler for h in logging.getLogger().handlers)
