"""`python -m inference` as `make run-cluster` starts it: serves until SIGTERM, then stops Ray cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.inference.conftest import MODEL_DIR

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_serves_the_api_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    """The CLI answers /health, and on SIGTERM exits 0 with the Ray processes it started gone."""
    port = free_port()
    env = {
        **os.environ,
        "NO_PROXY": "127.0.0.1,localhost",
        "SILVERTALK_STT_MODEL_DIR": str(MODEL_DIR),
        "SILVERTALK_STT_DEVICE": "cpu",
        "SILVERTALK_INFERENCE_STT_NUM_CPUS": "0.5",
        "SILVERTALK_INFERENCE_TTS_VOICES": '["espeak"]',
    }
    health_url = f"http://127.0.0.1:{port}/health"
    log = (tmp_path / "tier.log").open("wb")
    cmd = [sys.executable, "-m", "inference", "--host", "127.0.0.1", "--port", str(port), "--num-cpus", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "tier.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the tier did not answer /health in 180 s"
            try:
                if httpx.get(health_url, timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        health = httpx.get(health_url, timeout=10, trust_env=False).json()
        assert health["tts"]["voices"] == ["auto", "espeak"]
        pgrep = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        children = pgrep.stdout.split()
        assert children  # Ray's own processes (GCS, raylet ...), started by this process
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        time.sleep(1)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()]
        assert not alive, f"Ray processes left behind: {alive}"
        with pytest.raises(httpx.ConnectError):
            httpx.get(health_url, timeout=2, trust_env=False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
