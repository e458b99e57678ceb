"""The browser call page: `GET /` and its static files under `/web/` (from `clients/web`, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

import clients

WEB_DIR = (Path(clients.__file__).parent / "web").resolve()
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # ES modules and worklets need a JavaScript MIME type
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
# Same-origin everything; blob: for photo thumbnails fetched with the bearer token. (nosniff, no
# referrer and no framing come with every response: server.middleware.SecurityHeadersMiddleware.)
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    # The page changes with the server; never run a stale copy against a newer gateway.
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["web"], include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = (WEB_DIR / name).resolve()
    media_type = MEDIA_TYPES.get(path.suffix)
    if path.parent != WEB_DIR or media_type is None or not path.is_file():
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(path, media_type=media_type, headers=PAGE_HEADERS)


@router.get("/")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/web/{name}")
async def static_file(name: str) -> FileResponse:
    return _file(name)
