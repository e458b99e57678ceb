"""A small Replicate HTTP API client: create a prediction, get it, cancel it, find one already made.

Only the API host ever sees the token: output files are fetched by `fetcher.py` with a separate
client that carries no credentials. Errors come back as `ReplicateError` with plain words built
from the RFC 7807 body, and `retryable` set for 429, 5xx and network failures.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from server.generation import ReplicateError

TERMINAL = frozenset({"succeeded", "failed", "canceled"})

# Plain words for the statuses a person might otherwise see as a bare number.
_STATUS_WORDS = {
    401: "Replicate refused our API token",
    403: "Replicate refused access to this model",
    404: "Replicate does not know this model or prediction",
    422: "Replicate refused the request's inputs",
    429: "Replicate is busy (rate limited)",
}


class ReplicateClient:
    """`create` / `get` / `cancel` over one pooled httpx client bound to the API base URL."""

    def __init__(self, *, base_url: str, token: str | None, timeout_s: float = 30.0) -> None:
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,
        )

    @property
    def configured(self) -> bool:
        return bool(self.token)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(
        self,
        model: str,
        input: dict[str, Any],
        *,
        webhook: str | None = None,
        wait_s: int = 0,
    ) -> dict[str, Any]:
        """Create a prediction on an official model ("owner/name"); returns the prediction.

        With `wait_s` the API holds the request up to that long and answers 201 with a finished
        prediction, or 202 with one still running. Raises ReplicateError.
        """
        owner, _, name = model.partition("/")
        body: dict[str, Any] = {"input": input}
        if webhook:
            body["webhook"] = webhook
            body["webhook_events_filter"] = ["completed"]
        headers = {"Prefer": f"wait={max(1, min(60, wait_s))}"} if wait_s > 0 else {}
        # The API may hold the request for the whole wait: give the read that much more time.
        timeout = httpx.Timeout((self._http.timeout.read or 30.0) + wait_s) if wait_s else None
        extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
        return await self._request(
            "POST", f"/v1/models/{owner}/{name}/predictions", json=body, headers=headers, **extra
        )

    async def get(self, prediction_id: str) -> dict[str, Any]:
        """The prediction as it is now. Raises ReplicateError."""
        return await self._request("GET", f"/v1/predictions/{prediction_id}")

    async def find(
        self, model: str, input: dict[str, Any], *, created_after: datetime, max_pages: int = 5
    ) -> dict[str, Any] | None:
        """The newest prediction of `model` with exactly `input`, created after `created_after`.

        Walks `GET /v1/predictions?created_after=...` (newest first, `next` cursor pages). This is
        how a job run again after a crash finds the prediction its first run made but never saved.
        Raises ReplicateError.
        """
        url: str | None = "/v1/predictions?" + urlencode({"created_after": created_after.isoformat()})
        for _ in range(max_pages):
            if url is None:
                return None
            page = await self._request("GET", url, page=True)
            for p in page.get("results") or []:
                if isinstance(p, dict) and p.get("model") == model and p.get("input") == input:
                    return p
            url = _same_host_path(page.get("next"), self._http.base_url)
        return None

    async def cancel(self, prediction_id: str) -> dict[str, Any]:
        """Ask Replicate to stop a prediction; returns it (usually `canceled`). Raises ReplicateError."""
        return await self._request("POST", f"/v1/predictions/{prediction_id}/cancel")

    async def _request(self, method: str, path: str, *, page: bool = False, **kw: Any) -> dict[str, Any]:
        if not self.token:
            raise ReplicateError("Pictures and videos are not set up (no Replicate API token)", status=503)
        try:
            r = await self._http.request(method, path, **kw)
        except httpx.TimeoutException as e:
            raise ReplicateError("Replicate did not answer in time", retryable=True) from e
        except httpx.HTTPError as e:
            raise ReplicateError(
                f"Replicate could not be reached ({type(e).__name__})", retryable=True
            ) from e
        if r.status_code >= 400:
            raise _error(r)
        try:
            data = r.json()
        except ValueError as e:
            raise ReplicateError("Replicate sent an answer we could not read", retryable=True) from e
        if page and not (isinstance(data, dict) and isinstance(data.get("results"), list)):
            raise ReplicateError("Replicate sent a list we could not read", retryable=True)
        if not page and (not isinstance(data, dict) or not isinstance(data.get("id"), str)):
            raise ReplicateError("Replicate sent an answer without a prediction", retryable=True)
        return data


def _error(r: httpx.Response) -> ReplicateError:
    """Plain words from an RFC 7807 body (`title`, `detail`), falling back to the status."""
    detail = ""
    try:
        body = r.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or "").strip()
    except ValueError:
        detail = r.text.strip()[:200]
    words = _STATUS_WORDS.get(r.status_code) or (
        "Replicate had a problem" if r.status_code >= 500 else "Replicate refused the request"
    )
    message = f"{words}: {detail}" if detail else words
    retryable = r.status_code == 429 or r.status_code >= 500
    return ReplicateError(message[:1000], status=r.status_code, retryable=retryable)


def _same_host_path(url: Any, base: httpx.URL) -> str | None:
    """A `next` page URL as a path on our API host (never follow a cursor to another host)."""
    if not isinstance(url, str) or not url:
        return None
    u = httpx.URL(url)
    if u.host and (u.host != base.host or u.port != base.port):
        return None
    return u.raw_path.decode()


def progress_from_logs(logs: str | None) -> float | None:
    """The last tqdm-style percentage in a prediction's logs ("45%|"), as 0..1, if there is one."""
    if not logs:
        return None
    found = re.findall(r"(\d{1,3})%\|", logs)
    if not found:
        return None
    return min(100, int(found[-1])) / 100
