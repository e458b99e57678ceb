"""The server's logging: the sweeps' timer does not write two lines every few seconds."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from server import logs


@pytest.fixture
def restored() -> Iterator[None]:
    apscheduler = logging.getLogger("apscheduler")
    level = apscheduler.level
    yield
    apscheduler.setLevel(level)


@pytest.mark.usefixtures("restored")
@pytest.mark.parametrize(("level", "ticks_logged"), [("info", False), ("debug", True)])
def test_timer_ticks_are_quiet_unless_debugging(
    level: str, ticks_logged: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(root, "handlers", [])  # basicConfig configures a root without handlers
    logs.configure(level)
    apscheduler = logging.getLogger("apscheduler.executors.default")
    assert apscheduler.isEnabledFor(logging.INFO) is ticks_logged
    assert apscheduler.isEnabledFor(logging.WARNING)  # a missed or failed job still shows
    assert logging.getLogger("pipeline.conversation").isEnabledFor(logging.INFO)
