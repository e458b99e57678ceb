"""The one settings object: read from `SILVERTALK_*` environment variables and `.env`.

Nothing reads the environment but this module; everything else gets a `Settings` passed in.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "dev-secret-change-me"}


class Settings(BaseSettings):
    """Every knob of the service. Defaults are the embedded, single-machine development set-up."""

    model_config = SettingsConfigDict(env_prefix="SILVERTALK_", env_file=".env", extra="ignore")

    # Serving
    environment: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = None
    log_level: str = "info"
    # On SIGTERM/SIGINT: seconds open calls may go on (each ends with close code 1012 at its first
    # quiet moment, or when this runs out) before the process stops. /readyz says 503 meanwhile.
    shutdown_grace_s: float = 30.0

    # Storage
    data_dir: Path = Path("./data")
    database_url: str | None = None
    redis_url: str | None = None
    # Namespace for every Redis key and pub/sub channel we add (channels are not per-database, so
    # services sharing one Redis must differ here).
    redis_prefix: str = "silvertalk:"
    migrate_on_start: bool = True
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    # glibc malloc arenas for the process's threads (0: glibc's default, 8 per core); set at start
    # by `python -m server`. Each arena keeps its own peak; see server.allocator.
    malloc_arena_max: int = Field(default=2, ge=0)

    # Auth
    jwt_secret: str = "dev-secret-change-me"
    jwt_issuer: str = "silvertalk"
    jwt_audience: str = "silvertalk-app"
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    # Log in by name alone, no password: for development and tests. Unset means on in development
    # and test, off otherwise; production refuses to start with it on.
    dev_login: bool | None = None
    kakao_app_id: int | None = None
    kakao_rest_api_key: str | None = None
    kakao_client_secret: str | None = None
    kakao_auth_url: str = "https://kauth.kakao.com"
    kakao_api_url: str = "https://kapi.kakao.com"
    kakao_timeout_s: float = 5.0

    # Limits
    rate_limit_per_minute: int = 300
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"]
    )

    # Doors without an account, and who may see what (issue 10)
    # Per client address per minute: logins (kakao, dev-login) and refreshes together; 0 turns it off.
    login_rate_limit_per_minute: int = 30
    # Per client address per minute: WebSocket upgrades to /v1/realtime; 0 turns it off.
    realtime_rate_limit_per_minute: int = 60
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For names the client. Empty: no
    # proxy is believed and the client is the peer (a forged header changes nothing).
    trusted_proxies: list[str] = Field(default_factory=list)
    # Bearer token for GET /metrics. Unset: open in development and test, 404 in production.
    metrics_token: str | None = None
    # Memory one image decode may take (pixels x bytes per pixel, read from the header before any
    # pixel is decoded; an image with alpha briefly needs twice this), and decodes at once per process.
    max_image_decode_bytes: int = 200 * 1024 * 1024
    image_decode_slots: int = 2

    # Realtime calls
    realtime_max_message_bytes: int = 1024 * 1024
    realtime_max_call_s: int = 60 * 60
    realtime_max_calls_per_user: int = 2
    # With Redis, each open call holds a slot that its process renews every lease/4 seconds; a
    # crashed process's slots free themselves after this long.
    realtime_call_lease_s: float = 20.0
    realtime_idle_prompt_s: float = 45.0
    realtime_idle_hangup_s: float = 90.0
    # End of turn (pipeline.turn_end): the learned silence's bounds (the maximum is also the wait for
    # unfinished words), the silence when words and sound both say finished, the wait when they
    # disagree, and the audio end-of-turn model ("smart_turn", or "none": words and pauses only).
    realtime_min_silence_ms: int = 700
    realtime_max_silence_ms: int = 2500
    realtime_finished_silence_ms: int = 350
    realtime_doubt_silence_ms: int = 1600
    # Per language: below this probability of how Whisper ended the transcript (its last word and
    # closing mark), words that read finished are doubted (the turn waits the doubt silence).
    # Measured on English only; a language not listed does without. JSON in the environment.
    realtime_end_word_p: dict[str, float] = {"en": 0.55}
    # Per language: from this probability, another word Whisper weighed for the last one that would
    # make the words read unfinished ("went to the" behind "went to them.") doubts them too.
    # Measured on English only; a language not listed does without. JSON in the environment.
    realtime_end_alt_p: dict[str, float] = {"en": 0.12}
    turn_engine: str = "smart_turn"
    # The Smart Turn ONNX file; empty: the one inside the pipecat-ai wheel.
    turn_model_path: str | None = None
    # Decode and start the reply when the caller pauses, before the turn is confirmed over (off:
    # only after the endpointing wait; for latency comparisons).
    realtime_speculative: bool = True
    # ... and start it after this much silence (ms) instead of 160 while no call of this process
    # is decoding, so the decode costs nobody anything (0: always 160).
    realtime_early_pause_ms: int = 80
    # Reply audio the server lets the client buffer ahead of playback.
    realtime_audio_lead_ms: int = 300
    # How long a call keeps retrying to store its turns while the database is unreachable (they
    # wait in memory meanwhile); past it they are logged and dropped.
    realtime_store_retry_s: float = 120.0
    # No reply waits longer than this for a transcript: a decode not back by then fails its turn
    # (transcription failed event), so one lost transcript cannot stall a call.
    realtime_transcript_timeout_s: float = Field(default=30.0, gt=0)
    # Caller audio one call may hold uncommitted (turn detection off), and the longest turn (on):
    # past it the excess is refused with an `input_audio_buffer_full` error / the turn is committed.
    realtime_max_input_audio_s: float = Field(default=120.0, gt=0, le=3600)

    # Engines
    stt_engine: str = "whisper"
    stt_model_dir: Path = Path("./models/whisper-base")
    stt_device: str = "auto"
    stt_cpu_threads: int = 2
    # Compiled CPU kernels Whisper keeps (oneDNN's cache, 8 per audio window length; its own default
    # of 1024 grew the server about 1 MB per new utterance length, see pipeline.engines.whisper).
    stt_kernel_cache: int = Field(default=16, ge=0)
    # The shortest audio window Whisper encodes (an utterance's window is fitted to it, at least
    # this long). Shorter is quicker; below 7-8 s Whisper began to loop and to drop words here
    # (README, Performance: 10 s 190 ms, 8 s 154 ms, 7 s 114 ms a decode).
    stt_min_window_s: float = Field(default=8.0, ge=5.0, le=30.0)
    llm_engine: str = "auto"
    llm_timeout_s: float = 20.0
    gemini_api_key: str | None = None
    gemini_base_url: str | None = None
    gemini_api_version: str | None = None
    gemini_model: str = "gemini-2.5-flash"
    # 0 turns 2.5-flash "thinking" off (seconds before the first word); None leaves the model default.
    gemini_thinking_budget: int | None = 0
    openai_compat_base_url: str | None = None
    openai_compat_api_key: str | None = None
    openai_compat_model: str = "llama3.1"
    tts_engine: str = "auto"
    tts_voice_en: str = "piper"
    tts_voice_ko: str = "espeak"
    xtts_model_dir: Path | None = None
    xtts_speaker_wav: Path | None = None
    xtts_device: str = "cuda"
    # Remote engines (stt_engine / tts_engine = "remote"): the OpenAI audio API of the inference
    # tier (`python -m inference`), vLLM or speaches. URLs are base URLs ending in /v1.
    stt_remote_url: str | None = None
    stt_remote_model: str = "whisper-base"
    stt_remote_api_key: str | None = None
    # Per attempt of a final transcript (one retry follows a failure), and of a partial (no retry).
    stt_remote_timeout_s: float = 8.0
    stt_remote_partial_timeout_s: float = 2.0
    # Partials in flight at once from this process; more are skipped (finals have their own pool).
    stt_remote_max_partials: int = 4
    # Partials are skipped while recent finals took longer than this (the tier is queueing).
    stt_remote_partial_max_latency_s: float = 1.5
    # Decodes this gateway's calls may have in flight at once on the remote tier (which batches them).
    stt_remote_concurrency: int = Field(default=16, ge=1, le=256)
    tts_remote_url: str | None = None
    tts_remote_model: str = "silvertalk-tts"
    # `auto` on our tier picks the per-language voice; vLLM-Omni Qwen3-TTS: e.g. "vivian".
    tts_remote_voice: str = "auto"
    tts_remote_api_key: str | None = None
    # Until the first audio byte (per attempt; one retry before any audio), then between chunks.
    tts_remote_timeout_s: float = 8.0
    # The `pcm` rate the server sends: 24 kHz for OpenAI, our tier, Qwen3-TTS and speaches' Kokoro.
    tts_remote_sample_rate: int = 24000
    # Send the language as a name ("Korean", what vLLM-Omni validates), a code ("ko") or not at all.
    tts_remote_language: Literal["name", "code", "none"] = "name"
    # Sentences this gateway's calls may have being spoken on the remote server at once; past that,
    # a reply's first sentence goes before others' later ones (`pipeline.scheduler`).
    tts_remote_concurrency: int = Field(default=16, ge=1, le=256)

    # Inference tier (python -m inference, Ray Serve): deployment sizes. Autoscaling runs between
    # *_replicas and *_max_replicas when the latter is larger.
    inference_stt_replicas: int = 1
    inference_stt_max_replicas: int = 0
    inference_stt_num_cpus: float = 1.0
    inference_stt_num_gpus: float = 0.0
    # Requests decoded together, and how long a batch waits for company once one request is in:
    # none by default, as requests that arrive while the model is busy merge into the next batch
    # anyway (`inference.batching`); a wait only delays a request that finds the model idle.
    inference_stt_max_batch_size: int = 8
    inference_stt_batch_wait_s: float = Field(default=0.0, ge=0.0, le=1.0)
    # A partial that waited longer than this is not decoded (its caller has spoken on since).
    inference_stt_partial_stale_s: float = 1.0
    inference_tts_replicas: int = 1
    inference_tts_max_replicas: int = 0
    inference_tts_num_cpus: float = 0.5
    inference_tts_num_gpus: float = 0.0
    # The TTS engines each replica loads (registry names): what `voice` may name.
    inference_tts_voices: list[str] = Field(default_factory=lambda: ["piper", "espeak"])
    inference_max_audio_s: float = 120.0
    inference_max_input_chars: int = 4096

    # Load the speech engines at start (a missing model then fails the start, clearly). Off in
    # REST-only tests and tools; the gateway then loads them on the first call.
    preload_engines: bool = True

    # Generation (Replicate)
    replicate_api_token: str | None = None
    replicate_base_url: str = "https://api.replicate.com"
    replicate_webhook_secret: str | None = None
    replicate_image_model: str = "black-forest-labs/flux-schnell"
    replicate_video_model: str = "luma/ray"
    replicate_output_hosts: list[str] = Field(
        default_factory=lambda: ["replicate.delivery", "*.replicate.delivery"]
    )
    replicate_allow_loopback_outputs: bool = False
    generation_images_per_day: int = 20
    generation_videos_per_day: int = 3
    # Predictions in flight at once, across every worker (counted in the database).
    generation_max_concurrent: int = 4
    generation_max_output_bytes: int = 100 * 1024 * 1024
    replicate_timeout_s: float = 30.0
    # Seconds an image create waits for the result (`Prefer: wait=N`); 0 sends no Prefer header.
    replicate_prefer_wait_s: int = 5
    generation_fetch_timeout_s: float = 120.0
    generation_poll_interval_s: float = 2.0
    generation_poll_max_interval_s: float = 30.0
    generation_timeout_s: float = 20 * 60
    generation_signed_url_ttl_s: int = 15 * 60

    # Background jobs (server/jobs). With `redis_url` they go to Dramatiq worker processes; without
    # it they run inline in the server process (the embedded set-up).
    # Worker processes `python -m server` starts and restarts when `redis_url` is set (0: run
    # `python -m server.jobs worker` yourself, as compose.yaml does).
    jobs_workers: int = 1
    # Jobs one worker process runs at once (Dramatiq worker threads sharing one event loop).
    jobs_worker_threads: int = 4
    # A worker silent this long is dead: the jobs it held are delivered again.
    jobs_redelivery_s: float = 30.0
    # How often the scheduler runs the sweeps (late webhooks, stuck jobs, queued work).
    jobs_sweep_interval_s: float = 5.0

    # Voice messages (POST /v1/chat/messages)
    chat_max_audio_bytes: int = 10 * 1024 * 1024
    chat_max_audio_s: float = 120.0
    chat_max_text_chars: int = 2000
    # Turns of earlier calls and messages the companion is given with a new message.
    chat_history_turns: int = 20
    # A job holds its message this long, renewed while it works; a dead worker's message is taken
    # over by the sweep once it runs out.
    chat_job_lease_s: float = 30.0
    chat_max_attempts: int = 3

    # Companion: after each call the LLM writes a summary and saves new memories from it (off:
    # the call keeps its first words as the summary; tests whose fake LLM follows a script).
    call_summaries: bool = True
    # Companion: emergencies and the caregiver webhook
    # Said to the caller when they speak of an emergency ("call 119 now").
    emergency_number: str = Field(default="119", max_length=16)
    # Where alerts are POSTed (Standard Webhooks, signed with the secret below); none: stored only.
    caregiver_webhook_url: str | None = None
    # `whsec_<base64>`; required when the URL is set (deliveries are always signed).
    caregiver_webhook_secret: str | None = None
    # Tries per alert, the first wait between them (doubling, at most 60 s), and each try's timeout.
    caregiver_webhook_attempts: int = Field(default=8, ge=1, le=50)
    caregiver_webhook_backoff_s: float = Field(default=1.0, gt=0)
    caregiver_webhook_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.environment == "production" and self.jwt_secret.strip().lower() in PLACEHOLDER_SECRETS | {
            "dev-secret-change-me"
        }:
            raise ValueError("SILVERTALK_JWT_SECRET must be set to a real secret outside development")
        if self.environment == "production" and len(self.jwt_secret) < 32:
            raise ValueError("SILVERTALK_JWT_SECRET must be at least 32 characters in production")
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"SILVERTALK_TRUSTED_PROXIES: {entry!r} is not an address or network"
                ) from None
        if self.dev_login is None:
            self.dev_login = self.environment in ("development", "test")
        if self.environment == "production" and self.dev_login:
            raise ValueError("SILVERTALK_DEV_LOGIN must be off in production (it hands out tokens by name)")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'silvertalk.db').resolve()}"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"
