"""A fake Kakao (kauth + kapi) on 127.0.0.1:<free port>, speaking Kakao Login's wire format.

Real HTTP in a thread (`http.server`), so the real `KakaoClient` and httpx are exercised end to end.
Tokens and codes are minted by the test; `fail_with` makes every endpoint answer that status, and
`stop()` closes the port (connection refused), to play "Kakao is down".
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

APP_ID = 1_234_567
REST_API_KEY = "fake-rest-api-key"


@dataclass
class KakaoUser:
    kakao_id: int
    nickname: str | None = "김영희"
    profile_image_url: str | None = "http://k.kakaocdn.net/dn/profile_640x640.jpg"


@dataclass
class _Code:
    user: KakaoUser
    redirect_uri: str
    used: bool = False


@dataclass
class FakeKakao:
    """Context manager; `url` serves both the auth and the API paths."""

    app_id: int = APP_ID
    rest_api_key: str = REST_API_KEY
    client_secret: str | None = None
    fail_with: int | None = None
    delay_s: float = 0.0
    tokens: dict[str, tuple[KakaoUser, int]] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], dict[str, list[str]]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeKakao:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the listening socket: later requests get connection refused."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    # --- minting, as Kakao would for a logged-in user ---------------------------------------

    def mint_token(self, user: KakaoUser, *, app_id: int | None = None) -> str:
        """An access token the way Kakao's SDK would hand it to the app (for `app_id`, default ours)."""
        token = secrets.token_urlsafe(40)
        with self._lock:
            self.tokens[token] = (user, self.app_id if app_id is None else app_id)
        return token

    def mint_code(self, user: KakaoUser, redirect_uri: str) -> str:
        """An authorization code as Kakao appends it to `redirect_uri` after the user consents."""
        code = secrets.token_urlsafe(60)
        with self._lock:
            self.codes[code] = _Code(user, redirect_uri)
        return code

    def paths(self) -> list[str]:
        with self._lock:
            return [path for _, path, _, _ in self.requests]

    # --- the wire ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        form = parse_qs(raw.decode()) if raw else {}
        with self._lock:
            self.requests.append((method, url.path, dict(h.headers.items()), form))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_with is not None:
            self._send(h, self.fail_with, {"msg": "internal server error", "code": -1})
            return
        if method == "POST" and url.path == "/oauth/token":
            self._token(h, form)
        elif method == "GET" and url.path == "/v1/user/access_token_info":
            self._token_info(h)
        elif method in ("GET", "POST") and url.path == "/v2/user/me":
            self._me(h)
        else:
            self._send(h, 404, {"msg": "not found", "code": -1})

    def _token(self, h: BaseHTTPRequestHandler, form: dict[str, list[str]]) -> None:
        one = {k: v[0] for k, v in form.items()}
        if one.get("grant_type") != "authorization_code":
            self._send(h, 400, _oauth_error("unsupported_grant_type", "KOE310", "grant_type mismatched"))
            return
        if one.get("client_id") != self.rest_api_key:
            self._send(h, 401, _oauth_error("invalid_client", "KOE101", "wrong client_id"))
            return
        if self.client_secret is not None and one.get("client_secret") != self.client_secret:
            self._send(h, 401, _oauth_error("invalid_client", "KOE010", "Bad client credentials"))
            return
        with self._lock:
            entry = self.codes.get(one.get("code", ""))
            usable = entry is not None and not entry.used and entry.redirect_uri == one.get("redirect_uri")
            if entry is not None:
                entry.used = True  # a code is spent even by a failed attempt, as Kakao does
        if not usable or entry is None:
            self._send(
                h, 400, _oauth_error("invalid_grant", "KOE320", "authorization code not found for code=...")
            )
            return
        token = self.mint_token(entry.user)
        self._send(
            h,
            200,
            {
                "token_type": "bearer",
                "access_token": token,
                "expires_in": 21599,
                "refresh_token": secrets.token_urlsafe(40),
                "refresh_token_expires_in": 5183999,
                "scope": "profile_image profile_nickname",
            },
        )

    def _bearer(self, h: BaseHTTPRequestHandler) -> tuple[KakaoUser, int] | None:
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        with self._lock:
            return self.tokens.get(auth.removeprefix("Bearer "))

    def _token_info(self, h: BaseHTTPRequestHandler) -> None:
        found = self._bearer(h)
        if found is None:
            self._send(h, 401, {"msg": "this access token does not exist", "code": -401})
            return
        user, app_id = found
        self._send(h, 200, {"id": user.kakao_id, "expires_in": 7199, "app_id": app_id})

    def _me(self, h: BaseHTTPRequestHandler) -> None:
        found = self._bearer(h)
        if found is None:
            self._send(h, 401, {"msg": "this access token does not exist", "code": -401})
            return
        user, _ = found
        profile: dict[str, Any] = {"is_default_image": user.profile_image_url is None}
        properties: dict[str, Any] = {}
        if user.nickname is not None:
            profile["nickname"] = properties["nickname"] = user.nickname
        if user.profile_image_url is not None:
            profile["profile_image_url"] = properties["profile_image"] = user.profile_image_url
            profile["thumbnail_image_url"] = properties["thumbnail_image"] = user.profile_image_url
        self._send(
            h,
            200,
            {
                "id": user.kakao_id,
                "connected_at": "2024-05-01T02:03:04Z",
                "properties": properties,
                "kakao_account": {
                    "profile_nickname_needs_agreement": False,
                    "profile_image_needs_agreement": False,
                    "profile": profile,
                },
            },
        )

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json;charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def _oauth_error(error: str, code: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": description, "error_code": code}
