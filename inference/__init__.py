"""The shared inference tier: Whisper and the TTS engines on Ray Serve, behind the OpenAI audio API.

Gateways (`python -m server` with `SILVERTALK_STT_ENGINE=remote` / `SILVERTALK_TTS_ENGINE=remote`)
send every call's decodes and speech here, so models load once per replica instead of once per
gateway, concurrent calls' decodes run as one batch, and the models can sit on GPU hosts apart from
the sockets. `python -m inference` serves it; see `app` for the HTTP API, `stt` and `tts` for the
deployments, `batching` for how decodes are batched (finals first), `metrics` for what `/metrics`
reports, `audio` for uploads and streamed WAV.
"""
