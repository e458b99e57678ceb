"""`python -m server` with Redis supervises its job processes: started, restarted when killed, stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from server.jobs.runner import Supervisor
from server.settings import Settings
from tests.conftest import make_settings
from tests.jobs.cluster import env_of, wait_until


def jobs_settings(tmp_path: Path, sqlite_url: str, redis_url: str) -> Settings:
    """Settings for job processes of their own (a Redis prefix of this test's own)."""
    return make_settings(
        tmp_path,
        sqlite_url,
        redis_url=redis_url,
        redis_prefix=f"test-{uuid.uuid4().hex[:8]}:",
        preload_engines=False,
    )


def test_supervisor_restarts_a_killed_worker_and_stops_all(
    tmp_path: Path, sqlite_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed with SIGKILL is started again; stop() leaves no process behind."""
    settings = jobs_settings(tmp_path, sqlite_url, redis_url)
    for key, value in env_of(settings).items():
        if key.startswith("SILVERTALK_"):
            monkeypatch.setenv(key, value)
    supervisor = Supervisor(["worker", "scheduler"])
    supervisor.start()
    try:
        procs = wait_until(
            lambda: all(p is not None for p in supervisor.procs) and list(supervisor.procs), 20, "start"
        )
        first = procs[0]
        first.send_signal(signal.SIGKILL)
        wait_until(lambda: supervisor.procs[0] is not first and supervisor.procs[0], 30, "a new worker")
        assert procs[1] is supervisor.procs[1] and procs[1].poll() is None  # the scheduler went on
    finally:
        supervisor.stop()
    for proc in supervisor.procs:
        assert proc is not None and proc.poll() is not None
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)


PARENT = """
import sys, time
from server.jobs.runner import Supervisor
supervisor = Supervisor(["worker", "scheduler"])
supervisor.start()
while not all(p is not None for p in supervisor.procs):
    time.sleep(0.1)
print(" ".join(str(p.pid) for p in supervisor.procs), flush=True)
time.sleep(600)
"""


def test_job_processes_stop_when_their_server_is_killed(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    """A server killed with SIGKILL cannot stop its children: they notice and stop on their own
    (the test suite's killed gateways once left ten workers polling Redis for good)."""
    settings = jobs_settings(tmp_path, sqlite_url, redis_url)
    server = subprocess.Popen([sys.executable, "-c", PARENT], env=env_of(settings), stdout=subprocess.PIPE)
    children: list[int] = []
    try:
        assert server.stdout is not None
        children = [int(pid) for pid in server.stdout.readline().split()]
        assert len(children) == 2
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        wait_until(lambda: all(_gone(pid) for pid in children), 30, "the orphaned job processes to stop")
    finally:
        if server.poll() is None:
            server.kill()
        for pid in children:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def _gone(pid: int) -> bool:
    """Exited (or a zombie not yet reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[-1].startswith("Z")
    except FileNotFoundError:
        return True
