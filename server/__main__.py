"""`python -m server`: serve the app with uvicorn, configured by SILVERTALK_* variables."""

from __future__ import annotations

import logging

import uvicorn

from server.app import create_app
from server.settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws="websockets",
        ws_max_size=settings.realtime_max_message_bytes,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
