"""`python -m server.jobs worker|scheduler`: a job worker process, or the sweeps' scheduler."""

from __future__ import annotations

import argparse

from server import logs
from server.jobs.runner import run_scheduler, run_worker
from server.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m server.jobs")
    parser.add_argument("role", choices=["worker", "scheduler"])
    args = parser.parse_args()
    settings = Settings()
    logs.configure(settings.log_level)
    if args.role == "worker":
        run_worker(settings)
    else:
        run_scheduler(settings)


if __name__ == "__main__":
    main()
