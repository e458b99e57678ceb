"""`python -m server.jobs worker|scheduler`: a job worker process, or the sweeps' scheduler."""

from __future__ import annotations

import argparse
import logging

from server.jobs.runner import run_scheduler, run_worker
from server.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m server.jobs")
    parser.add_argument("role", choices=["worker", "scheduler"])
    args = parser.parse_args()
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.role == "worker":
        run_worker(settings)
    else:
        run_scheduler(settings)


if __name__ == "__main__":
    main()
