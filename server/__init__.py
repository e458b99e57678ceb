"""The ASGI app: REST routers and the realtime WebSocket gateway.

Exceptions::

    ServerError
    └── UpstreamError          an outside API (Kakao, Replicate) failed or is down
"""


class ServerError(Exception):
    """Root of server-side failures."""


class UpstreamError(ServerError):
    """An outside API failed; REST answers 502 (bad answer) or 503 (unreachable)."""

    def __init__(self, message: str, *, status_code: int = 502) -> None:
        super().__init__(message)
        self.status_code = status_code
