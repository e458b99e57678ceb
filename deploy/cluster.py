"""`make run-cluster`: the whole split service on this machine, as it runs across machines.

Starts, in order: the Ray Serve inference tier (`python -m inference`, OpenAI audio API on
127.0.0.1:8100), two gateways (`python -m server` on 8001 and 8002, remote speech engines, one
shared database and Redis) and HAProxy on 127.0.0.1:8000 in front of them (deploy/haproxy.cfg).
The database is `SILVERTALK_DATABASE_URL` when set, else PostgreSQL on 127.0.0.1:5432 when it
answers (database `silvertalk`, created if missing), else the SQLite file in the data dir; it is
migrated once here, not by each gateway. Redis is `SILVERTALK_REDIS_URL`, else 127.0.0.1:6379
(started with `redis-server` when nothing answers there).

Ctrl-C (or SIGTERM) stops everything: the gateways first (they drain: open calls end with 1012
within SILVERTALK_SHUTDOWN_GRACE_S), then the balancer and the tier. A second Ctrl-C kills at once.
Other SILVERTALK_* variables (and .env) reach the gateways unchanged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType

import psycopg
import redis

from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432"


class ClusterError(Exception):
    """Something the cluster needs is missing; the message says what to do."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    #: Seconds to wait after SIGTERM before SIGKILL.
    stop_s: float = 10.0


@dataclass
class Cluster:
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    def start(self, name: str, argv: list[str], env: dict[str, str], stop_s: float = 10.0) -> Child:
        # Own session: a Ctrl-C in the terminal reaches only this supervisor, which stops the
        # children in order (gateways drain before the balancer and the tier go).
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
        child = Child(name, proc, stop_s)
        self.children.append(child)
        print(f"[cluster] {name}: pid {proc.pid}", flush=True)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            if child.proc.poll() is not None:
                raise ClusterError(f"{child.name} exited with code {child.proc.returncode}")

    def stop(self, names: list[str] | None = None) -> None:
        """SIGTERM the children (the named ones, or all) together, then wait; kill stragglers."""
        chosen = [c for c in self.children if names is None or c.name in names]
        for child in chosen:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in chosen:
            try:
                child.proc.wait(child.stop_s)
            except subprocess.TimeoutExpired:
                print(f"[cluster] {child.name} did not stop in {child.stop_s:.0f} s: killing it", flush=True)
                child.proc.kill()
                child.proc.wait()

    def kill(self) -> None:
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.kill()


def wait_for(what: str, ready: Callable[[], bool], cluster: Cluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        cluster.check_alive()
        if time.monotonic() > deadline:
            raise ClusterError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(0.3)
    print(f"[cluster] {what} ready", flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def database_url(settings: Settings) -> str:
    """SILVERTALK_DATABASE_URL, else local PostgreSQL when it answers, else the SQLite file."""
    if settings.database_url:
        return settings.database_url
    try:
        with psycopg.connect(f"{LOCAL_PG}/postgres", autocommit=True, connect_timeout=2) as conn:
            if conn.execute("select 1 from pg_database where datname = 'silvertalk'").fetchone() is None:
                conn.execute("create database silvertalk")
    except psycopg.OperationalError:
        print("[cluster] PostgreSQL not reachable at 127.0.0.1:5432: using the SQLite file", flush=True)
        return settings.resolved_database_url
    return "postgresql+psycopg://postgres@127.0.0.1:5432/silvertalk"


def redis_url(settings: Settings, cluster: Cluster) -> str:
    """SILVERTALK_REDIS_URL, else 127.0.0.1:6379, started here when nothing answers."""
    url = settings.redis_url or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        return url
    except redis.RedisError:
        if settings.redis_url or shutil.which("redis-server") is None:
            hint = "start it (apt-get install redis-server)"
            raise ClusterError(f"Redis does not answer at {url}; {hint}") from None
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"]
    cluster.start("redis", argv, dict(os.environ))
    wait_for("redis", lambda: port_open(6379), cluster, 30)
    return url


def run(args: argparse.Namespace, cluster: Cluster) -> None:
    settings = Settings()
    if shutil.which("haproxy") is None:
        raise ClusterError("haproxy is not installed: run `make haproxy` (apt-get install haproxy)")
    db_url = database_url(settings)
    shared = {"SILVERTALK_DATABASE_URL": db_url, "SILVERTALK_REDIS_URL": redis_url(settings, cluster)}
    env = dict(os.environ) | shared
    print(f"[cluster] database {db_url.split('@')[-1]}; migrating", flush=True)
    subprocess.run([sys.executable, "-m", "server.migrate"], cwd=ROOT, env=env, check=True)

    if args.engines == "remote":
        tier = f"http://127.0.0.1:{args.inference_port}/v1"
        argv = [sys.executable, "-m", "inference", "--host", "127.0.0.1", "--port", str(args.inference_port)]
        cluster.start("inference", [*argv, "--num-cpus", str(args.num_cpus)], env, stop_s=30)
        health = f"http://127.0.0.1:{args.inference_port}/health"
        wait_for("inference tier", partial(http_ok, health), cluster, 600)
        env |= {
            "SILVERTALK_STT_ENGINE": "remote",
            "SILVERTALK_STT_REMOTE_URL": tier,
            "SILVERTALK_TTS_ENGINE": "remote",
            "SILVERTALK_TTS_REMOTE_URL": tier,
        }
    ports = [args.gateway_port, args.gateway_port + 1]
    grace = settings.shutdown_grace_s
    for i, port in enumerate(ports, 1):
        gateway_env = env | {
            "SILVERTALK_HOST": "127.0.0.1",
            "SILVERTALK_PORT": str(port),
            "SILVERTALK_MIGRATE_ON_START": "false",
        }
        cluster.start(f"gateway{i}", [sys.executable, "-m", "server"], gateway_env, stop_s=grace + 20)
    for i, port in enumerate(ports, 1):
        wait_for(f"gateway{i}", partial(http_ok, f"http://127.0.0.1:{port}/readyz"), cluster, 300)

    lb_env = env | {
        "LB_BIND": f"127.0.0.1:{args.port}",
        "GATEWAY1": f"127.0.0.1:{ports[0]}",
        "GATEWAY2": f"127.0.0.1:{ports[1]}",
    }
    cluster.start("haproxy", ["haproxy", "-db", "-f", str(HAPROXY_CFG)], lb_env)
    wait_for("load balancer", lambda: http_ok(f"http://127.0.0.1:{args.port}/readyz"), cluster, 30)
    print(
        f"[cluster] Silvertalk on http://127.0.0.1:{args.port} (gateways on {ports[0]} and {ports[1]}"
        + (f", inference on {args.inference_port}" if args.engines == "remote" else "")
        + "). Ctrl-C stops everything.",
        flush=True,
    )
    while not cluster.stopping:
        cluster.check_alive()
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8000, help="the load balancer's port")
    parser.add_argument("--gateway-port", type=int, default=8001, help="the first gateway's port")
    parser.add_argument("--inference-port", type=int, default=8100)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs the local Ray tier may use")
    parser.add_argument(
        "--engines",
        choices=["remote", "local"],
        default="remote",
        help="remote: speech through the Ray Serve tier; local: each gateway loads its own models",
    )
    args = parser.parse_args()
    cluster = Cluster()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        if cluster.stopping:
            print("[cluster] stopping at once", flush=True)
            cluster.kill()
            os._exit(1)
        cluster.stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        run(args, cluster)
    except KeyboardInterrupt:
        pass
    except (ClusterError, subprocess.CalledProcessError) as e:
        print(f"[cluster] {e}", file=sys.stderr, flush=True)
        code = 1
    cluster.stopping = True
    print("[cluster] stopping: gateways drain first (Ctrl-C again to kill everything)", flush=True)
    cluster.stop([c.name for c in cluster.children if c.name.startswith("gateway")])
    cluster.stop(["haproxy"])
    cluster.stop()
    sys.exit(code)


if __name__ == "__main__":
    main()
