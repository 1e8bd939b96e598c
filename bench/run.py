"""Runs every benchmark of lmstudio-bridge's performance promises and prints each figure, then a summary table.

    python bench/run.py            # the full run (a few minutes)
    python bench/run.py --quick    # tiny sizes, to check that the benchmarks still work
    python bench/run.py --only 2,3 # some sections only
    python bench/run.py --only 2 --profile   # and where the bridge spends its time per round

Everything talks to 127.0.0.1 only: the scripted fake LM Studio from tests/support and child MCP
servers started on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

from bench import children, memory, overhead, parallel, startup, switching, validation
from bench.common import Report, Workspace, say
from bench.node import node_memory_server

SECTIONS = ("1", "2", "3", "4", "5", "6", "7")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()} ({platform.machine()})")


async def main(quick: bool, only: set[str], profile: bool) -> Report:
    report = Report(quick=quick, profile=profile)
    with tempfile.TemporaryDirectory(prefix="lmstudio-bridge-bench-") as tmp:
        node = node_memory_server() if "5" in only else None
        ws = Workspace.create(Path(tmp), node)
        steps = {
            "1": lambda: validation.run(report),
            "2": lambda: overhead.run(report, ws),
            "3": lambda: switching.run(report, ws),
            "4": lambda: parallel.run(report, ws),
            "5": lambda: children.run(report, ws),
            "6": lambda: memory.run(report, ws),
            "7": lambda: startup.run(report, ws),
        }
        for key in SECTIONS:
            if key in only:
                started = time.perf_counter()
                await steps[key]()
                say(f"(section {key} took {time.perf_counter() - started:.1f} s)")
                say()
    return report


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    parser.add_argument("--profile", action="store_true", help="also profile the bridge during section 2")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated section numbers (default: all)")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    say(f"machine: {machine()}")
    say(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (the machine may be shared)")
    say(f"command: python bench/run.py{' --quick' if args.quick else ''}")
    say()
    started = time.perf_counter()
    report = asyncio.run(main(args.quick, only, args.profile))
    say("== Summary ==")
    say(report.markdown())
    say()
    say(f"total time {time.perf_counter() - started:.1f} s; "
        f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    cli()
