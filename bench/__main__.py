"""`python -m bench NAME [options]`: run a benchmark (or `all`), print its tables.

Names: see `BENCHMARKS` below. Each writes its JSON under bench/results/.

`all` runs every benchmark but the long ones (`load`, `endpointing`, `soak`) and `tier` (it starts
Ray; each runs on its own) once
with its defaults (about 10 minutes on a 2-core machine). One benchmark that fails (a server that
will not start, say) is reported and the others still run; nothing here fails on speed. Options
after the name go to that benchmark (`--help` lists them).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable

from bench import bargein, calls, endpointing, floor, fuzz, load, messages, rest, soak, tier, v2v

BENCHMARKS: dict[str, Callable[[list[str] | None], None]] = {
    "v2v": v2v.main,
    "floor": floor.main,
    "bargein": bargein.main,
    "calls": calls.main,
    "rest": rest.main,
    "endpointing": endpointing.main,
    "fuzz": fuzz.main,
    "load": load.main,
    "soak": soak.main,
    "messages": messages.main,
    "tier": tier.main,
}
#: Left out of `all`: too long to run with the others.
ON_ITS_OWN = {"load", "endpointing", "soak", "tier"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*BENCHMARKS, "all"):
        print(__doc__)
        return 2
    name, rest_args = argv[0], argv[1:]
    if name != "all":
        BENCHMARKS[name](rest_args)
        return 0
    failed = []
    for bench_name, entry in BENCHMARKS.items():
        if bench_name in ON_ITS_OWN:
            continue
        started = time.monotonic()
        print(f"\n=== {bench_name} ===", flush=True)
        try:
            entry([])
        except Exception:
            traceback.print_exc()
            failed.append(bench_name)
        print(f"=== {bench_name}: {time.monotonic() - started:.0f} s ===", flush=True)
    if failed:
        print(f"\nthese benchmarks could not run: {', '.join(failed)} (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
