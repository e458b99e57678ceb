"""Real job processes for tests: our API server (in a thread) and `python -m server.jobs` workers.

Everything shares one PostgreSQL database, one Redis (under a prefix of its own) and one data
directory, as a deployment would. Processes are started with the settings as SILVERTALK_*
variables and are killed (SIGKILL) or stopped (SIGTERM) by the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from server.settings import Settings
from tests.conftest import ROOT, LiveServer, dev_login, make_settings

MODEL_DIR = ROOT / "models" / "whisper-base"


def env_of(settings: Settings) -> dict[str, str]:
    """The SILVERTALK_* environment that recreates `settings` in another process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILVERTALK_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            text = json.dumps(value)
        elif isinstance(value, Path):
            text = str(value.resolve())
        else:
            text = str(value)
        env[f"SILVERTALK_{name.upper()}"] = text
    return env


class Cluster:
    """The API server and job processes on one database and Redis; use as a context manager."""

    def __init__(self, tmp_path: Path, db_url: str, redis_url: str, **overrides: Any) -> None:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "redis_prefix": f"test-{uuid.uuid4().hex[:8]}:",
            "jobs_redelivery_s": 2.0,
            "jobs_sweep_interval_s": 0.5,
            "jobs_worker_threads": 2,
            "stt_model_dir": MODEL_DIR,
        }
        values.update(overrides)
        self.settings = make_settings(tmp_path, db_url, **values)
        self.server = LiveServer(self.settings)
        self.logs = tmp_path / "logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Cluster:
        self.server.__enter__()
        self.client = httpx.Client(base_url=self.server.url, trust_env=False, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.client.close()
        self.server.__exit__(*exc)

    def start(self, role: str, **overrides: Any) -> subprocess.Popen[bytes]:
        """`python -m server.jobs <role>` with the cluster's settings (and `overrides`)."""
        settings = self.settings.model_copy(update={"migrate_on_start": False, **overrides})
        log = (self.logs / f"{role}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.jobs", role],
            env=env_of(settings) | {"PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def login(self, name: str) -> dict[str, str]:
        return dev_login(self.client, name)

    def output(self) -> str:
        """Every process's log, for assertion messages."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.logs.iterdir())
        )


def wait_until(check: Callable[[], Any], timeout: float, what: str, *, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(every)
