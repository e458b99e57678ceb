"""The browser call page, served by the app and driven in Debian's headless Chromium via Playwright.

The fixture speech is Chromium's microphone (`--use-file-for-fake-audio-capture`), so the page
does a real call: AudioWorklet capture -> /v1/realtime -> speech engines -> AudioWorklet playback.
No browser is downloaded: without /usr/bin/chromium the test skips (fails under CI=true) with
the install command.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from tests.clients.conftest import JFK_WORDS
from tests.conftest import IN_CI, ROOT, LiveServer, make_settings

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
QUIET_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def test_page_and_static_files_are_served(tmp_path: Path, sqlite_url: str) -> None:
    """GET / serves the page; its modules and worklets come as JavaScript; nothing outside clients/web."""
    with TestClient(create_app(make_settings(tmp_path, sqlite_url))) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'data-testid="call"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for name in ("app.js", "call.js", "records.js", "capture-worklet.js", "playback-worklet.js"):
            r = client.get(f"/web/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript"), name
        assert client.get("/web/style.css").headers["content-type"].startswith("text/css")
        assert client.get("/web/..%2Fcli.py").status_code == 404
        assert client.get("/web/nope.js").status_code == 404


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if IN_CI:
        pytest.fail(f"Chromium is not installed at {CHROMIUM} and CI=true; install it with: {INSTALL}")
    pytest.skip(f"Chromium is not installed at {CHROMIUM}; install it with: {INSTALL}")


@pytest.fixture
def browser_for(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory: launch headless Chromium with extra flags; every browser is closed afterwards."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    browsers: list[Any] = []
    with sync_playwright() as p:

        def launch(*flags: str) -> Any:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*QUIET_FLAGS, *flags])
            browsers.append(browser)
            return browser

        yield launch
        for browser in browsers:
            browser.close()


def open_page(browser: Any, server: LiveServer) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "/")
    return page, errors


def dev_login(page: Any, name: str) -> None:
    page.get_by_test_id("dev-login-name").fill(name)
    page.get_by_test_id("dev-login").click()
    page.get_by_test_id("call").wait_for(state="visible", timeout=10_000)


def english_page_with_mic(
    browser_for: Any, server: LiveServer, speech: Path, name: str
) -> tuple[Any, list[str]]:
    """A logged-in English page in a Chromium whose microphone plays `speech` (a 48 kHz WAV)."""
    browser = browser_for(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={speech}",
    )
    page, errors = open_page(browser, server)
    dev_login(page, name)
    page.get_by_test_id("language").select_option("en")
    return page, errors


def wait_until(page: Any, expression: str, arg: Any = None, timeout_s: float = 30) -> None:
    """Poll `expression` in the page every 100 ms (requestAnimationFrame polling lags in headless)."""
    page.wait_for_function(expression, arg=arg, polling=100, timeout=timeout_s * 1000)


def call_stats(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("window.silvertalk.call.stats"))


@pytest.mark.slow
def test_browser_call_shows_words_plays_reply_and_stops_on_barge_in(
    live_server: LiveServer, speech_wav_48k: Path, browser_for: Any
) -> None:
    """JFK as the mic: his words show, the reply plays, speech over it stops playback; a drop reconnects."""
    from playwright.sync_api import expect

    page, errors = english_page_with_mic(browser_for, live_server, speech_wav_48k, "browser-test")
    page.get_by_test_id("speed").select_option("0.8")  # slower, longer replies: room for the barge-in
    page.get_by_test_id("call").click()
    state = page.get_by_test_id("call-state")
    expect(state).to_have_attribute("data-state", re.compile("listening|hearing"), timeout=30_000)

    # The spoken words, live: the partial (or final) user turn. A pause of his may split the sentence
    # into two turns, so all the words are checked in the call's turn list at the end.
    wait_until(
        page,
        """words => {
            const text = document.querySelector('[data-testid=user-transcript]').textContent.toLowerCase();
            return words.some(w => text.includes(w));
        }""",
        arg=list(JFK_WORDS),
        timeout_s=60,
    )
    # Reply audio actually played (a quarter second at 24 kHz), and its text shown as spoken.
    played = "() => Number(document.querySelector('[data-testid=played-samples]').textContent)"
    wait_until(page, f"{played} > 6000", timeout_s=60)
    expect(page.get_by_test_id("assistant-text")).not_to_be_empty()

    # The fake microphone loops: JFK speaks again over the reply. Playback stops, a truncate goes out.
    wait_until(page, "() => window.silvertalk.call.stats.truncates.length > 0", timeout_s=60)
    truncate = call_stats(page)["truncates"][0]
    assert truncate["audio_end_ms"] > 0, truncate
    # The server may resume a reply whose interruption sounded like a cough (JFK's first short word
    # can), but he goes on talking: the reply ends, and nothing more of it plays. (Played samples
    # as a whole may grow: a pause of his can end a turn and start the next reply.)
    wait_until(
        page,
        "id => [...window.silvertalk.call.replies.values()].some(r => r.itemId === id && r.status)",
        truncate["item_id"],
        timeout_s=20,
    )
    heard = "id => window.silvertalk.call.heard.get(id)"
    before = page.evaluate(heard, truncate["item_id"])
    page.wait_for_timeout(800)
    assert page.evaluate(heard, truncate["item_id"]) == before, (truncate, before)
    after = call_stats(page)
    assert after["sent"].get("conversation.item.truncate", 0) >= 1
    assert after["received"].get("response.done", 0) >= 1
    assert page.get_by_test_id("barge-ins").text_content() != "0"
    # His words after the pause may still be on their way (a turn of their own, or rejoined).
    wait_until(
        page,
        "words => words.every(w => document.querySelector('[data-testid=turns]').textContent"
        ".toLowerCase().includes(w))",
        list(JFK_WORDS),
        timeout_s=30,
    )
    said = page.get_by_test_id("turns").text_content().lower()
    assert all(word in said for word in JFK_WORDS), said

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-call.png"), full_page=True)

    # A dropped connection comes back by itself, without reloading the page.
    page.evaluate("window.silvertalk.call.ws.close(3001, 'test: the network dropped')")
    expect(state).to_have_attribute("data-state", "reconnecting", timeout=5_000)
    wait_until(page, "() => window.silvertalk.call.stats.received['session.updated'] >= 2")
    expect(state).not_to_have_attribute("data-state", re.compile("reconnecting|error|ended"))
    page.get_by_test_id("hangup").click()
    expect(state).to_have_attribute("data-state", "ended")
    assert errors == []

    # The server keeps only what was heard: the stored reply is cut short of what it sent.
    token = page.evaluate("window.silvertalk.token")
    replies = page.evaluate("[...window.silvertalk.call.replies.values()]")
    sent = next(r["text"] for r in replies if r["itemId"] == truncate["item_id"])
    turn = stored_turn(live_server, token, truncate["item_id"])
    assert turn["status"] in ("cancelled", "completed"), turn  # completed: cut in its last 300 ms
    # What was heard: a prefix of what was sent, and shorter (empty when he spoke on within the
    # reply's first word, which the quicker end of turn makes likelier at his 1 s pauses).
    assert sent.strip().startswith(turn["text"].strip()), (turn, sent)
    assert len(turn["text"]) < len(sent.strip()), (turn, sent)


def stored_turn(server: LiveServer, token: str, item_id: str) -> dict[str, Any]:
    """The stored turn for `item_id`, polled until the gateway has written it."""
    import time

    import httpx

    auth = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 15
    with httpx.Client(base_url=server.url, headers=auth, trust_env=False) as http:
        while True:
            for conversation in http.get("/v1/conversations").json()["items"]:
                detail = http.get(f"/v1/conversations/{conversation['id']}").json()
                turns = [t for t in detail["turns"] if t["item_id"] == item_id]
                if turns and turns[0]["status"] != "in_progress":
                    return dict(turns[0])
            assert time.monotonic() < deadline, f"no stored turn for {item_id}"
            time.sleep(0.2)


@pytest.mark.slow
def test_browser_says_so_when_the_microphone_is_denied(live_server: LiveServer, browser_for: Any) -> None:
    """When the microphone permission is denied, pressing Call shows a clear message and no call starts."""
    from playwright.sync_api import expect

    page, errors = open_page(
        browser_for("--use-fake-device-for-media-stream", "--deny-permission-prompts"), live_server
    )
    dev_login(page, "mic-denied")
    page.get_by_test_id("call").click()
    expect(page.get_by_test_id("message")).to_contain_text("Microphone access was denied", timeout=15_000)
    expect(page.get_by_test_id("call-state")).to_have_attribute("data-state", "error")
    expect(page.get_by_test_id("call")).to_be_enabled()
    assert errors == []


@pytest.mark.slow
def test_browser_says_so_when_the_token_is_bad(live_server: LiveServer, browser_for: Any) -> None:
    """A pasted bad token is refused with a message; a token gone bad mid-session sends the user to log in."""
    from playwright.sync_api import expect

    browser = browser_for("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
    page, errors = open_page(browser, live_server)
    page.get_by_test_id("token-input").fill("not-a-token")
    page.get_by_test_id("token-use").click()
    expect(page.get_by_test_id("message")).to_contain_text("log in again", timeout=10_000)
    expect(page.get_by_test_id("dev-login-name")).to_be_visible()

    # Logged in, then the token goes bad: the socket is refused before it opens.
    dev_login(page, "token-test")
    page.evaluate("window.silvertalk.token = 'not-a-token'")
    page.get_by_test_id("call").click()
    expect(page.get_by_test_id("message")).to_contain_text("token was refused", timeout=15_000)
    expect(page.get_by_test_id("dev-login-name")).to_be_visible()
    assert errors == []


@pytest.mark.slow
def test_browser_records_tab_shows_photos_events_and_memories(
    live_server: LiveServer, browser_for: Any
) -> None:
    """The Records tab lists the user's photo (thumbnail fetched with the token), event and memory."""
    import io

    import httpx
    from PIL import Image
    from playwright.sync_api import expect

    png = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(png, format="PNG")
    with httpx.Client(base_url=live_server.url, trust_env=False) as http:
        token = http.post("/v1/auth/dev-login", json={"name": "records-test"}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        r = http.post(
            "/v1/photos",
            headers=auth,
            files={"file": ("a.png", png.getvalue(), "image/png")},
            data={"caption": "Garden in spring"},
        )
        assert r.status_code == 201, r.text
        r = http.post(
            "/v1/events",
            headers=auth,
            json={"title": "Doctor visit", "starts_at": "2030-05-01T10:00:00+09:00"},
        )
        assert r.status_code == 201, r.text
        r = http.post("/v1/memories", headers=auth, json={"title": "Wedding day", "body": "It rained."})
        assert r.status_code == 201, r.text

    page, errors = open_page(browser_for(), live_server)
    dev_login(page, "records-test")
    page.get_by_test_id("tab-records").click()
    expect(page.get_by_test_id("photos")).to_contain_text("Garden in spring", timeout=10_000)
    wait_until(page, "() => document.querySelector('[data-testid=photos] img').naturalWidth > 0")
    expect(page.get_by_test_id("events")).to_contain_text("Doctor visit")
    expect(page.get_by_test_id("memories")).to_contain_text("Wedding day")
    expect(page.get_by_test_id("conversations")).to_contain_text("none yet")
    assert errors == []


@pytest.mark.slow
def test_browser_shows_the_photo_the_companion_shows(
    tmp_path: Path, sqlite_url: str, speech_wav_48k: Path, browser_for: Any
) -> None:
    """The model calls show_photo after the caller's first turn: the page shows that photo large."""
    import httpx
    from playwright.sync_api import expect

    from tests import images
    from tests.fakes.gemini import FakeGemini, Reply

    def answer(body: dict[str, Any]) -> Reply:
        # Every turn shows the photo (speculative replies that are discarded show nothing), then
        # answers once the tool's result is back.
        last = body["contents"][-1]["parts"]
        if any("functionResponse" in part for part in last):
            return Reply(text="Here it is.")
        return Reply.call("show_photo", words="wedding")

    with FakeGemini(reply=answer, ttft_s=0.05) as gemini:
        settings = make_settings(
            tmp_path, sqlite_url, preload_engines=True, llm_engine="gemini",
            gemini_base_url=gemini.url, gemini_api_key=gemini.api_key,
        )  # fmt: skip
        server = LiveServer(settings)
        settings.allowed_origins = [server.url]
        with server, httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
            token = http.post("/v1/auth/dev-login", json={"name": "photo-test"}).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            photo = images.upload_photo(http, auth, images.png(320, 240), caption="Our wedding")
            memory = {"title": "Wedding day", "photo_ids": [photo["id"]]}
            assert http.post("/v1/memories", headers=auth, json=memory).status_code == 201

            page, errors = english_page_with_mic(browser_for, server, speech_wav_48k, "photo-test")
            page.get_by_test_id("call").click()
            shown = page.get_by_test_id("photo-show")
            expect(shown).to_be_visible(timeout=90_000)
            expect(page.get_by_test_id("photo-show-caption")).to_have_text("Wedding day · Our wedding")
            wait_until(page, "() => document.querySelector('[data-testid=photo-show-img]').naturalWidth > 0")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser-photo.png"))
            page.get_by_test_id("hangup").click()
            assert errors == []
