"""The server under test, as a subprocess: `python -m server`, or `python -m bench.serve` for instant engines.

`ServerProcess` starts it on a free port with `SILVERTALK_*` settings in a temporary data dir,
waits for `/healthz`, and stops it (SIGINT, then kill). Its log goes to `bench/results/<name>.log`.

`python -m bench.serve --ws IMPL` is the same app with the benchmark's instant engines registered
(see `bench.engines`) and uvicorn's WebSocket implementation chosen on the command line, for the
calls-per-core benchmark.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

from bench.report import RESULTS

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc; Linux only)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class ServerProcess:
    """A Silvertalk server in its own process, on 127.0.0.1:<free port>."""

    #: What answers 200 once the server is up, and how long it may take to stop after SIGINT.
    health_path = "/healthz"
    stop_timeout_s = 15.0

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        *,
        module: str = "server",
        args: tuple[str, ...] = (),
        start_timeout_s: float = 120.0,
        wrapper: tuple[str, ...] = (),
    ) -> None:
        self.name, self.module, self.args, self.wrapper = name, module, args, wrapper
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix=f"silvertalk-bench-{name}-")
        self.data_dir = Path(self._tmp.name)
        self.env = {
            **os.environ,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "SILVERTALK_ENVIRONMENT": "development",
            "SILVERTALK_HOST": "127.0.0.1",
            "SILVERTALK_PORT": str(self.port),
            "SILVERTALK_DATA_DIR": str(self.data_dir),
            "SILVERTALK_LOG_LEVEL": "warning",
            "SILVERTALK_DEV_LOGIN": "true",
            "SILVERTALK_RATE_LIMIT_PER_MINUTE": "100000000",
            # Every benchmark client comes from 127.0.0.1: no per-address limits.
            "SILVERTALK_LOGIN_RATE_LIMIT_PER_MINUTE": "0",
            "SILVERTALK_REALTIME_RATE_LIMIT_PER_MINUTE": "0",
            "SILVERTALK_STT_MODEL_DIR": str(ROOT / "models" / "whisper-base"),
            **env,
        }
        self.log_path = RESULTS / f"{name}.server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> ServerProcess:
        RESULTS.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        # A wrapper (e.g. `python -m pyinstrument ...`) replaces the interpreter and runs the module.
        cmd = [*(self.wrapper or (sys.executable,)), "-m", self.module, *self.args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name}: the server exited with {self.proc.returncode}:\n{tail}")
            try:
                health = httpx.get(f"{self.url}{self.health_path}", timeout=1.0, trust_env=False)
                if health.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(
            f"{self.name}: the server did not answer {self.health_path} within {self.start_timeout_s:.0f} s"
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()


def main() -> None:
    """Serve the app with the instant benchmark engines and a chosen WebSocket implementation."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--ws", default="websockets-sansio", help="uvicorn ws implementation")
    parser.add_argument("--no-deflate", action="store_true", help="refuse permessage-deflate")
    args = parser.parse_args()

    import logging

    import uvicorn

    from bench import engines
    from server.__main__ import ws_max_size
    from server.app import create_app
    from server.settings import Settings

    engines.register()
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper())
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        ws=args.ws,
        ws_per_message_deflate=not args.no_deflate,
        ws_max_size=ws_max_size(settings),
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
