"""The ASGI app: REST routers and the realtime WebSocket gateway.

Exceptions (every one the package raises on purpose; each module defines its own)::

    ServerError
    ├── UpstreamError              an outside API (Kakao, Replicate) failed or is down: 502/503
    ├── KakaoRejected              Kakao refused the client's credential: 401     (server.kakao)
    ├── InvalidToken               a bad, forged or expired access token: 401     (server.security)
    ├── RefreshRefused             an unknown, used or revoked refresh token: 401 (server.auth_tokens)
    ├── BodyTooLarge               a request body over the upload limit: 413      (server.middleware)
    ├── InvalidRule                an event's RRULE or dates we refuse: 422       (server.recurrence)
    ├── ImageError                 an image we refuse to store                    (server.images)
    │   ├── UnsupportedFormat      not JPEG, PNG, WebP or HEIC/HEIF
    │   ├── CorruptImage           looks supported but does not decode
    │   └── TooManyPixels          over max_image_pixels
    ├── ImageRejected              an upload refused, with its status code       (server.photostore)
    ├── ProtocolError              a bad realtime client event: `error` event, the call goes on
    │                                                                     (server.realtime.protocol)
    ├── TooManyCalls               the user's open-call limit: `error`, close 1008 (server.realtime.calls)
    ├── GenerationError            image/video generation failed                  (server.generation)
    │   ├── ReplicateError         the Replicate API answered an error or was unreachable
    │   └── OutputRefused          an output we will not fetch or keep
    ├── InvalidInput               a generation request the model would refuse: 422
    │                                                                   (server.generation.prompts)
    └── BadWebhook                 a webhook delivery we refuse: 401     (server.generation.webhooks)

Engine failures are `pipeline.PipelineError`s; storage failures `storage.StorageError`s.
"""


class ServerError(Exception):
    """Root of server-side failures."""


class UpstreamError(ServerError):
    """An outside API failed; REST answers 502 (bad answer) or 503 (unreachable)."""

    def __init__(self, message: str, *, status_code: int = 502) -> None:
        super().__init__(message)
        self.status_code = status_code
