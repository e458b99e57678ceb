"""The shared inference tier: Whisper and the TTS engines on Ray Serve, behind the OpenAI audio API.

Gateways (`python -m server` with `SILVERTALK_STT_ENGINE=remote` / `SILVERTALK_TTS_ENGINE=remote`)
send every call's decodes and speech here, so models load once per replica instead of once per
gateway, concurrent calls' decodes run as one batch, and the models can sit on GPU hosts apart from
the sockets. `python -m inference` serves it; see `app` for the HTTP API, `stt` and `tts` for the
deployments, `batching` for how decodes are batched (finals first), `metrics` for what `/metrics`
reports, `audio` for uploads and streamed WAV.
"""

import os

#: Ray Serve settings (environment variables) the tier sets to 0 unless they are set already.
SERVE_ENV = ("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP")


def prefer_serve_loop() -> None:
    """Run the deployments on Serve's own event loop (call before `ray.init`).

    By default each request crosses from a replica's loop to the deployment's own thread and back,
    and a handle's router runs on a loop of its own: hand-offs that cost a few ms a request on a
    small CPU (Ray's "throughput optimized" mode turns both off). Ours keep blocking work off
    their loop (decodes and synthesis run on executors), so they need no thread of their own.
    Every Ray process started after this reads them; on a cluster set them for `ray start`.
    """
    for name in SERVE_ENV:
        os.environ.setdefault(name, "0")
