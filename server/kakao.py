"""Kakao Login client: exchange a web authorization code, verify an access token, read the profile.

The Kakao user id we return always comes from Kakao's own answer, never from the client. Failures
are split at this edge:

    ServerError
    ├── KakaoRejected     the user's token or code is bad, or was minted for another app -> 401
    └── UpstreamError     Kakao is unreachable (503) or answered something unusable (502);
                          nothing may be written for the user in that case
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from server import ServerError, UpstreamError


class KakaoRejected(ServerError):
    """Kakao refused the credential the client sent (answer 401; retrying will not help)."""


@dataclass(frozen=True, slots=True)
class KakaoProfile:
    """Who Kakao says the token belongs to."""

    kakao_id: int
    nickname: str | None
    profile_image_url: str | None


class KakaoClient:
    """One instance per request is fine: it holds no state beyond the shared HTTP client.

    `auth_url` is Kakao's OAuth host (kauth.kakao.com), `api_url` its API host (kapi.kakao.com);
    tests point both at a local fake.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        app_id: int,
        auth_url: str,
        api_url: str,
        rest_api_key: str | None = None,
        client_secret: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.http = http
        self.app_id = app_id
        self.auth_url = auth_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.rest_api_key = rest_api_key
        self.client_secret = client_secret
        self.timeout_s = timeout_s

    async def exchange_code(self, code: str, redirect_uri: str) -> str:
        """Trade a web-flow authorization code for a Kakao access token (the code is single-use).

        Raises KakaoRejected for an unknown, expired or reused code; UpstreamError otherwise.
        """
        if not self.rest_api_key:
            raise UpstreamError("Kakao web login is not configured (no REST API key)", status_code=503)
        form = {
            "grant_type": "authorization_code",
            "client_id": self.rest_api_key,
            "redirect_uri": redirect_uri,
            "code": code,
        }
        if self.client_secret:
            form["client_secret"] = self.client_secret
        response = await self._send("POST", f"{self.auth_url}/oauth/token", data=form)
        body = _json(response)
        if response.status_code == 400 and body.get("error") == "invalid_grant":
            raise KakaoRejected(
                "Kakao authorization code is invalid, expired or already used "
                f"({body.get('error_code', 'invalid_grant')}); start the login again"
            )
        if response.status_code != 200:
            # invalid_client and friends mean *our* configuration is wrong, not the user's code.
            raise UpstreamError(
                f"Kakao token endpoint answered {response.status_code} "
                f"({body.get('error_code') or body.get('error') or 'no error code'})"
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise UpstreamError("Kakao token endpoint answered without an access_token")
        return token

    async def verify(self, access_token: str) -> KakaoProfile:
        """Check that the token is live and ours (app_id), then fetch the profile it belongs to."""
        info = await self._get_api("/v1/user/access_token_info", access_token)
        if info.get("app_id") != self.app_id:
            raise KakaoRejected("This Kakao token was issued for another app")
        me = await self._get_api("/v2/user/me", access_token)
        kakao_id = me.get("id")
        if not isinstance(kakao_id, int) or isinstance(kakao_id, bool):
            raise UpstreamError("Kakao /v2/user/me answered without a user id")
        if info.get("id") not in (None, kakao_id):
            raise KakaoRejected("Kakao token and profile disagree about the user")
        account = _obj(me.get("kakao_account"))
        profile = _obj(account.get("profile"))
        properties = _obj(me.get("properties"))
        nickname = _str(profile.get("nickname")) or _str(properties.get("nickname"))
        image = _str(profile.get("profile_image_url")) or _str(properties.get("profile_image"))
        return KakaoProfile(kakao_id=kakao_id, nickname=nickname, profile_image_url=image)

    async def _get_api(self, path: str, access_token: str) -> dict[str, Any]:
        response = await self._send(
            "GET", f"{self.api_url}{path}", headers={"Authorization": f"Bearer {access_token}"}
        )
        body = _json(response)
        if response.status_code in (400, 401):
            # -401: token does not exist or expired; -2: malformed. Both are the client's token.
            raise KakaoRejected(f"Kakao refused the access token ({body.get('msg') or 'invalid token'})")
        if response.status_code != 200:
            raise UpstreamError(f"Kakao {path} answered {response.status_code} (code {body.get('code')})")
        return body

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.http.request(method, url, timeout=self.timeout_s, **kwargs)
        except httpx.TimeoutException as e:
            raise UpstreamError("Kakao did not answer in time; try again shortly", status_code=503) from e
        except httpx.TransportError as e:
            raise UpstreamError("Kakao is unreachable; try again shortly", status_code=503) from e


def _json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object Kakao answered, or {} for anything else (5xx pages are often HTML)."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        if response.status_code == 200:
            raise UpstreamError("Kakao answered 200 with a body that is not JSON") from None
        return {}
    if not isinstance(body, dict):
        if response.status_code == 200:
            raise UpstreamError("Kakao answered 200 with JSON that is not an object")
        return {}
    return body


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
