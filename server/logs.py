"""Logging for the server's processes: one format, and no line per timer tick."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> None:
    """Log at `level` (a name: "info", "debug", ...) to stderr.

    APScheduler logs two INFO lines each time a sweep's timer fires ("Running job ...", "...
    executed successfully"), every few seconds for the life of the process, which buried the
    call's own lines; it keeps its warnings and errors (a job that missed its time or raised).
    """
    logging.basicConfig(level=level.upper(), format=FORMAT)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
