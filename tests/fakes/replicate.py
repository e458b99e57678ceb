"""A local fake of the Replicate HTTP API (WIRE.md "Replicate"), on 127.0.0.1:<free port>, in a thread.

It speaks the real wire format: `POST /v1/models/{owner}/{name}/predictions` (201 when finished
within `Prefer: wait`, else 202), `GET /v1/predictions/{id}`, `POST /v1/predictions/{id}/cancel`,
`GET /v1/predictions?created_after=&created_before=` (newest first, `{"previous","next","results"}`
with absolute cursor URLs, `page_size` per page, 100 like Replicate's),
RFC 7807 errors (401 bad token, 404 unknown model, 422 invalid input). Predictions advance with time
(starting -> processing -> succeeded | failed) following a queued `Plan`; `completed` webhooks are
delivered back with real Standard-Webhooks signatures. Output files are real: a WebP made by Pillow
and an MP4 encoded by PyAV, served from `/files/...`; `/redirect?to=` answers a 302.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from server.generation.prompts import IMAGE_ASPECT_RATIOS, VIDEO_ASPECT_RATIOS
from server.standard_webhooks import sign
from tests.conftest import LiveServer, dev_login, make_settings

IMAGE_MODEL = "black-forest-labs/flux-schnell"
VIDEO_MODEL = "luma/ray"


@dataclass
class Plan:
    """How the next prediction behaves."""

    outcome: str = "succeeded"  # succeeded | failed
    starting_s: float = 0.1
    processing_s: float = 0.4
    error: str | None = None  # the `error` of a failed prediction
    output: Any = None  # overrides the output URL(s), e.g. to point at a forbidden address
    create_status: int | None = None  # answer the create itself with this RFC 7807 error status


@dataclass
class FakePrediction:
    id: str
    model: str
    input: dict[str, Any]
    plan: Plan
    webhook: str | None
    created: float = field(default_factory=time.monotonic)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    canceled_at: float | None = None
    webhook_sent: bool = False
    start_image_status: int | None = None

    def status(self) -> str:
        if self.canceled_at is not None:
            return "canceled"
        if self.start_image_status not in (None, 200):
            return "failed"
        t = time.monotonic() - self.created
        if t < self.plan.starting_s:
            return "starting"
        if t < self.plan.starting_s + self.plan.processing_s:
            return "processing"
        return self.plan.outcome


def tiny_webp() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (96, 64), (200, 170, 120))
    ImageDraw.Draw(img).ellipse((20, 10, 70, 55), fill=(90, 120, 200))
    out = io.BytesIO()
    img.save(out, "WEBP", quality=80)
    return out.getvalue()


def tiny_mp4() -> bytes:
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(8):
            arr = np.full((48, 64, 3), (30 * i, 120, 200 - 20 * i), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


class FakeReplicate:
    """Use as a context manager; `url` is the base URL to give our client."""

    def __init__(self, *, token: str = "r8_fake_token", webhook_secret: str | None = None) -> None:
        import base64

        self.token = token
        self.webhook_secret = webhook_secret or "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.plans: deque[Plan] = deque()
        self.predictions: dict[str, FakePrediction] = {}
        self.deliver_webhooks = True
        self.deliveries: list[tuple[str, int]] = []  # (webhook-id, status our server answered)
        self.file_requests: list[dict[str, str]] = []  # headers of each output download
        self.creates: list[dict[str, Any]] = []  # create bodies, as received
        self.file_delay_s = 0.0  # hold output downloads this long (time-cap tests)
        # Hold the answer to a create this long after the prediction exists (a crash in between).
        self.create_hold_s = 0.0
        self.page_size = 100
        self.files = {"output.webp": (tiny_webp(), "image/webp"), "output.mp4": (tiny_mp4(), "video/mp4")}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self._threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._webhook_loop, daemon=True),
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeReplicate:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def plan(self, **kw: Any) -> Plan:
        p = Plan(**kw)
        with self.lock:
            self.plans.append(p)
        return p

    # --- the prediction wire shape ---------------------------------------------------------------

    def view(self, p: FakePrediction) -> dict[str, Any]:
        status = p.status()
        done = status in ("succeeded", "failed", "canceled")
        output = None
        if status == "succeeded":
            if p.plan.output is not None:
                output = p.plan.output
            elif p.model == IMAGE_MODEL:
                output = [f"{self.url}/files/{p.id}/output.webp"]
            else:
                output = f"{self.url}/files/{p.id}/output.mp4"
        error = None
        if status == "failed":
            error = p.plan.error or "Prediction failed"
            if p.start_image_status not in (None, 200):
                error = f"could not fetch start_image_url (HTTP {p.start_image_status})"
        logs = "" if status == "starting" else "loading weights\n  0%|          | 0/4\n 50%|#####     | 2/4\n"
        return {
            "id": p.id,
            "model": p.model,
            "version": "fake0000",
            "input": p.input,
            "logs": logs,
            "output": output,
            "error": error,
            "status": status,
            "created_at": p.created_at,
            "started_at": p.created_at if status != "starting" else None,
            "completed_at": datetime.now(UTC).isoformat() if done else None,
            "metrics": {"predict_time": p.plan.processing_s} if done else {},
            "urls": {
                "get": f"{self.url}/v1/predictions/{p.id}",
                "cancel": f"{self.url}/v1/predictions/{p.id}/cancel",
                "web": f"https://replicate.com/p/{p.id}",
            },
        }

    def page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """One page of the list, newest first, filtered like Replicate's `created_after/_before`."""
        after = query.get("created_after", [None])[0]
        before = query.get("created_before", [None])[0]
        cursor = int(query.get("cursor", ["0"])[0] or 0)
        found = sorted(self.predictions.values(), key=lambda p: p.created_at, reverse=True)
        made = {p.id: datetime.fromisoformat(p.created_at) for p in found}
        if after:
            found = [p for p in found if made[p.id] > datetime.fromisoformat(after)]
        if before:
            found = [p for p in found if made[p.id] < datetime.fromisoformat(before)]
        chunk = found[cursor : cursor + self.page_size]

        def link(at: int) -> str:
            q = {k: v[0] for k, v in query.items() if k != "cursor"} | {"cursor": str(at)}
            return f"{self.url}/v1/predictions?{urlencode(q)}"

        results = []
        for p in chunk:
            view = self.view(p)
            view.pop("logs", None)  # the list leaves logs out
            view["source"] = "api"
            results.append(view)
        return {
            "previous": link(max(0, cursor - self.page_size)) if cursor else None,
            "next": link(cursor + self.page_size) if cursor + self.page_size < len(found) else None,
            "results": results,
        }

    # --- webhooks --------------------------------------------------------------------------------

    def send_webhook(
        self,
        prediction_id: str,
        *,
        tamper: bool = False,
        timestamp: int | None = None,
        webhook_id: str | None = None,
    ) -> httpx.Response:
        """POST the prediction to its webhook URL, signed (or tampered after signing)."""
        p = self.predictions[prediction_id]
        assert p.webhook, "prediction was created without a webhook"
        body = json.dumps(self.view(p)).encode()
        wid = webhook_id or f"msg_{uuid.uuid4().hex}"
        ts = int(time.time()) if timestamp is None else timestamp
        signature = sign(self.webhook_secret, wid, ts, body)
        if tamper:
            body = body.replace(b'"status"', b'"status" ', 1)
        headers = {
            "webhook-id": wid,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature,
            "content-type": "application/json",
        }
        r = httpx.post(p.webhook, content=body, headers=headers, timeout=10, trust_env=False)
        with self.lock:
            self.deliveries.append((wid, r.status_code))
        return r

    def answered(self, timeout_s: float = 10.0) -> list[int]:
        """The status codes our server answered the webhook deliveries with, once at least one
        answer is in: the server marks a prediction done while handling the delivery, so a test that
        saw it done may get here before the answer has travelled back."""
        deadline = time.monotonic() + timeout_s
        while not self.deliveries and time.monotonic() < deadline:
            time.sleep(0.01)
        with self.lock:
            return [code for _, code in self.deliveries]

    def _webhook_loop(self) -> None:
        while not self._stop.wait(0.05):
            for p in list(self.predictions.values()):
                if (
                    p.webhook
                    and not p.webhook_sent
                    and self.deliver_webhooks
                    and p.status()
                    in (
                        "succeeded",
                        "failed",
                        "canceled",
                    )
                ):
                    p.webhook_sent = True
                    # Our server down: like Replicate after its retries, give up on this delivery.
                    with contextlib.suppress(httpx.HTTPError):
                        self.send_webhook(p.id)

    # --- create ----------------------------------------------------------------------------------

    def validate(self, model: str, inp: dict[str, Any]) -> str | None:
        if not isinstance(inp.get("prompt"), str) or not inp["prompt"]:
            return "prompt: Invalid type. Expected: string"
        allowed = IMAGE_ASPECT_RATIOS if model == IMAGE_MODEL else VIDEO_ASPECT_RATIOS
        if "aspect_ratio" in inp and inp["aspect_ratio"] not in allowed:
            return f"aspect_ratio: aspect_ratio must be one of the following: {', '.join(allowed)}"
        if model == IMAGE_MODEL:
            if inp.get("output_format", "webp") not in ("webp", "jpg", "png"):
                return "output_format: must be one of webp, jpg, png"
            if not 1 <= int(inp.get("num_outputs", 1)) <= 4:
                return "num_outputs: Must be less than or equal to 4"
        return None

    def create(self, model: str, body: dict[str, Any]) -> FakePrediction:
        with self.lock:
            plan = self.plans.popleft() if self.plans else Plan()
        p = FakePrediction(
            id=uuid.uuid4().hex[:20], model=model, input=body["input"], plan=plan, webhook=body.get("webhook")
        )
        start = body["input"].get("start_image_url")
        if start:
            # Like Luma: fetch the starting image now; a link that does not work fails the prediction.
            try:
                p.start_image_status = httpx.get(start, timeout=10, trust_env=False).status_code
            except httpx.HTTPError:
                p.start_image_status = 599
        self.predictions[p.id] = p
        return p


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {
        "type": f"https://replicate.com/docs/errors/{status}",
        "title": title,
        "status": status,
        "detail": detail,
    }


def _handler(fake: FakeReplicate) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(
            self, status: int, body: Any, ctype: str = "application/json", extra: dict[str, str] | None = None
        ) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            if ctype == "application/json" and status >= 400:
                ctype = "application/problem+json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            # A client that gave up (the fetcher's time cap) closes first; that is the point.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {fake.token}":
                return True
            self._send(401, _problem(401, "Unauthenticated", "You did not pass a valid authentication token"))
            return False

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            segs = parts.path.strip("/").split("/")
            if segs[0] == "files" and len(segs) == 3:
                fake.file_requests.append({k.lower(): v for k, v in self.headers.items()})
                time.sleep(fake.file_delay_s)
                data, ctype = fake.files.get(segs[2], (b"", ""))
                return self._send(200, data, ctype) if data else self._send(404, b"", "text/plain")
            if segs[0] == "redirect":
                # Without `to` it redirects to itself: a loop.
                to = parse_qs(parts.query).get("to", [""])[0] or self.path
                return self._send(302, b"", "text/plain", {"Location": to})
            if not self._authorized():
                return None
            if segs == ["v1", "predictions"]:
                return self._send(200, fake.page(parse_qs(parts.query)))
            if segs[:2] == ["v1", "predictions"] and len(segs) == 3 and segs[2] in fake.predictions:
                return self._send(200, fake.view(fake.predictions[segs[2]]))
            return self._send(404, _problem(404, "Not found", "The requested resource could not be found"))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not self._authorized():
                return None
            segs = urlsplit(self.path).path.strip("/").split("/")
            if segs[:2] == ["v1", "models"] and len(segs) == 5 and segs[4] == "predictions":
                return self._create(f"{segs[2]}/{segs[3]}", raw)
            if segs[:2] == ["v1", "predictions"] and len(segs) == 4 and segs[3] == "cancel":
                p = fake.predictions.get(segs[2])
                if p is None:
                    return self._send(404, _problem(404, "Not found", "Prediction not found"))
                if p.status() not in ("succeeded", "failed", "canceled"):
                    p.canceled_at = time.monotonic()
                return self._send(200, fake.view(p))
            return self._send(404, _problem(404, "Not found", "The requested resource could not be found"))

        def _create(self, model: str, raw: bytes) -> None:
            if model not in (IMAGE_MODEL, VIDEO_MODEL):
                return self._send(404, _problem(404, "Model not found", f"The model {model} does not exist"))
            body = json.loads(raw or b"{}")
            fake.creates.append(body)
            with fake.lock:
                forced = fake.plans[0].create_status if fake.plans else None
                if forced:
                    fake.plans.popleft()
            if forced:
                return self._send(
                    forced, _problem(forced, "Request failed", "The fake was told to refuse this")
                )
            problem = fake.validate(model, body.get("input") or {})
            if problem:
                return self._send(422, _problem(422, "Input validation failed", problem))
            p = fake.create(model, body)
            time.sleep(fake.create_hold_s)
            prefer = self.headers.get("Prefer", "")
            if prefer.startswith("wait"):
                wait_s = float(prefer.partition("=")[2] or 60)
                deadline = time.monotonic() + wait_s
                while p.status() in ("starting", "processing") and time.monotonic() < deadline:
                    time.sleep(0.05)
            view = fake.view(p)
            return self._send(201 if view["status"] in ("succeeded", "failed", "canceled") else 202, view)

    return Handler


# --- a live app wired to the fake ----------------------------------------------------------------


@contextlib.contextmanager
def live_app(
    tmp_path: Path, db_url: str, fake: FakeReplicate, *, public: bool = True, **overrides: Any
) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """Our app on a real socket, pointed at `fake`, with loopback outputs allowed (test mode).

    With `public` the app's public_base_url is its own URL, so the fake can deliver webhooks and
    fetch signed photo links. Yields the server and an httpx client on it.
    """
    values: dict[str, Any] = {
        "replicate_api_token": fake.token,
        "replicate_base_url": fake.url,
        "replicate_webhook_secret": fake.webhook_secret,
        "replicate_allow_loopback_outputs": True,
        "replicate_prefer_wait_s": 0,
        "generation_poll_interval_s": 0.2,
        "generation_poll_max_interval_s": 1.0,
        "jobs_sweep_interval_s": 0.3,
    }
    values.update(overrides)
    settings = make_settings(tmp_path, db_url, **values)
    live = LiveServer(settings)
    if public:
        settings.public_base_url = live.url
    with live, httpx.Client(base_url=live.url, trust_env=False, timeout=30) as client:
        yield live, client


def login(client: httpx.Client, name: str) -> tuple[dict[str, str], uuid.UUID]:
    """Dev-login headers and the user's id."""
    headers = dev_login(client, name)
    me = client.get("/v1/users/me", headers=headers)
    assert me.status_code == 200, me.text
    return headers, uuid.UUID(me.json()["id"])


def add_memory(db_url: str, user_id: uuid.UUID, **fields: Any) -> uuid.UUID:
    """Insert a memory row directly (the memories API is another feature's)."""
    from storage import db
    from storage.models import Memory

    async def insert() -> uuid.UUID:
        engine = db.create_engine(db_url)
        try:
            async with db.session_factory(engine)() as session:
                memory = Memory(user_id=user_id, **fields)
                session.add(memory)
                await session.commit()
                return memory.id
        finally:
            await engine.dispose()

    return asyncio.run(insert())


def upload_photo(client: httpx.Client, headers: dict[str, str]) -> str:
    """Upload a small real JPEG through the photos API; returns its id."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (180, 140, 90)).save(buf, "JPEG")
    r = client.post("/v1/photos", headers=headers, files={"file": ("sea.jpg", buf.getvalue(), "image/jpeg")})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def wait_for(
    client: httpx.Client, headers: dict[str, str], generation_id: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    """Poll our API until the generation reaches one of `statuses`; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/v1/generations/{generation_id}", headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, f"still {body['status']} after {timeout}s: {body}"
        time.sleep(0.1)
