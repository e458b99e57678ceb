"""The page's voice-message mode in headless Chromium: hold to record (JFK as the microphone),
release to send, and the spoken answer plays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import JFK_WORDS
from tests.clients.test_browser import ARTIFACTS, browser_for, english_page_with_mic, wait_until
from tests.conftest import LiveServer

__all__ = ["browser_for"]  # the fixture, shared


@pytest.mark.slow
def test_hold_to_record_release_to_send_hear_the_answer(
    live_server: LiveServer, speech_wav_48k: Path, browser_for: Any
) -> None:
    """Holding the button records JFK; letting go sends it; his words, the answer and its audio show up."""
    page, errors = english_page_with_mic(browser_for, live_server, speech_wav_48k, "browser-vm")
    page.get_by_test_id("tab-messages").click()
    button = page.get_by_test_id("vm-record")
    box = button.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    wait_until(
        page, "() => document.querySelector('[data-testid=vm-record]').classList.contains('recording')"
    )
    page.wait_for_timeout(11_500)  # the whole sentence
    page.mouse.up()
    wait_until(
        page, "() => document.querySelector('[data-testid=vm-item]')?.dataset.status === 'done'", timeout_s=90
    )
    item = page.get_by_test_id("vm-item").first
    said = item.locator(".turn-user").inner_text().lower()
    assert any(w in said for w in JFK_WORDS), said
    assert item.locator(".turn-assistant").inner_text().startswith("말벗 · Companion: ")
    # The answer's audio is loaded and plays.
    wait_until(
        page,
        "() => { const a = document.querySelector('[data-testid=vm-item] audio'); "
        "return a && a.duration > 1 && (a.currentTime > 0 || a.ended); }",
        timeout_s=30,
    )
    assert page.evaluate("window.silvertalk.messages.pushed") >= 3  # queued .. done came on the stream
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-voice-message.png"), full_page=True)
    assert errors == []
