"""A real inference tier for the tests: a local Ray instance serving Whisper base and Piper/espeak.

Started once per module (Ray takes seconds to start): two STT replicas, so that one can be
killed while the other answers, and one TTS replica, all within `ray.init(num_cpus=2)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.settings import Settings
from tests.conftest import free_port, make_settings

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "whisper-base"
APP = "silvertalk-test"


@dataclass(frozen=True)
class Tier:
    """Where the tier listens and the settings it was built from."""

    base: str  # http://127.0.0.1:PORT
    settings: Settings

    @property
    def url(self) -> str:
        """The OpenAI API base URL (what SILVERTALK_*_REMOTE_URL takes)."""
        return f"{self.base}/v1"


def stt_replicas() -> list[str]:
    """The names of the live STT replica actors (in Serve's namespace)."""
    import ray

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and f"{APP}#STT#" in a["name"]
    ]


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    """The tier on 127.0.0.1:<free port>, shut down (Serve, then Ray) after the module."""
    import ray
    from ray import serve

    from inference import prefer_serve_loop
    from inference.app import build
    from pipeline.engines.assemble import assemble

    assemble(MODEL_DIR)
    tmp = tmp_path_factory.mktemp("tier")
    settings = make_settings(
        tmp,
        f"sqlite+aiosqlite:///{tmp / 'unused.db'}",
        stt_model_dir=MODEL_DIR,
        stt_device="cpu",
        stt_cpu_threads=1,
        inference_stt_replicas=2,
        inference_stt_num_cpus=0.5,
        inference_tts_num_cpus=0.5,
        inference_stt_max_batch_size=8,
        inference_stt_batch_wait_s=0.05,
    )
    prefer_serve_loop()  # as `python -m inference` serves it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build(settings), name=APP, route_prefix="/")
        yield Tier(f"http://127.0.0.1:{port}", settings)
    finally:
        serve.shutdown()
        ray.shutdown()
