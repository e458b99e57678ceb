"""`python -m inference`: serve the tier until SIGTERM or SIGINT, then shut Serve and Ray down cleanly.

Locally it starts a private Ray instance (`--num-cpus` cores for the replicas). On a Ray cluster
(`ray start --head` on one machine, `ray start --address HEAD:6379 [--num-gpus 1]` on the others)
pass `--address auto` from a machine of the cluster: replicas are placed by their `num_cpus` /
`num_gpus` settings. Deployment sizes and models come from `SILVERTALK_*` settings (see
`server.settings`, the `inference_*` and `stt_*` fields).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from inference import prefer_serve_loop
from server.settings import Settings

log = logging.getLogger("inference")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="where the HTTP API listens")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--num-cpus", type=int, default=None, help="cores of a local Ray instance")
    parser.add_argument("--address", default=None, help="join a Ray cluster (e.g. auto) instead")
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    prefer_serve_loop()
    try:
        import ray
        from ray import serve
    except ImportError:
        parser.exit(2, 'Ray Serve is not installed: pip install -e ".[inference]"\n')

    from inference.app import build

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    # Ray installs handlers of its own at init; ours decide how the process ends.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build(settings), name="silvertalk", route_prefix="/")
        log.info("inference tier ready at http://%s:%d/v1", args.host, args.port)
        print(f"inference tier ready at http://{args.host}:{args.port}/v1", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
