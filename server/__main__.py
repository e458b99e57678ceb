"""`python -m server`: serve the app with uvicorn, configured by SILVERTALK_* variables."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from server.app import create_app
from server.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How we run uvicorn, shared by `python -m server`, the live-server tests and the benchmarks.

    The sans-I/O websockets protocol with permessage-deflate off: base64 audio compresses poorly
    and deflate roughly doubled the per-frame CPU in `python -m bench calls`.
    """
    return {
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "ws_max_size": settings.realtime_max_message_bytes,
        "timeout_graceful_shutdown": 10,
        # The app decides whose X-Forwarded-For to believe (SILVERTALK_TRUSTED_PROXIES); uvicorn's
        # default would believe any client connecting from 127.0.0.1.
        "proxy_headers": False,
    }


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        **uvicorn_options(settings),
    )


if __name__ == "__main__":
    main()
