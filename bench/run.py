"""Runs every benchmark of lmstudio-bridge's performance promises and prints each figure, then a summary table.

    python bench/run.py            # the full run (a few minutes)
    python bench/run.py --quick    # tiny sizes, to check that the benchmarks still work
    python bench/run.py --only 2,3 # some sections only
    python bench/run.py --only 2 --profile   # and where the bridge spends its time per round
    python bench/run.py --quick --in-process --no-node   # what tests/test_bench_smoke.py runs

Everything talks to 127.0.0.1 only: the scripted fake LM Studio from tests/support and child MCP
servers started on this machine. A section that fails is an ERROR row in the summary (its
traceback on stderr), the other sections still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import children, load, memory, overhead, parallel, startup, switching, validation
from bench.common import Report, Workspace, say
from bench.node import node_memory_server

SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "8")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} ({platform.machine()})"
    )


async def main(quick: bool, only: set[str], profile: bool, *, in_process: bool = False, node: bool = True) -> Report:
    report = Report(quick=quick, profile=profile)
    with tempfile.TemporaryDirectory(prefix="lmstudio-bridge-bench-") as tmp:
        ws = Workspace.create(Path(tmp), node_memory_server() if node and "5" in only else None, in_process=in_process)
        steps = {
            "1": lambda: validation.run(report),
            "2": lambda: overhead.run(report, ws),
            "3": lambda: switching.run(report, ws),
            "4": lambda: parallel.run(report, ws),
            "5": lambda: children.run(report, ws),
            "6": lambda: memory.run(report, ws),
            "7": lambda: startup.run(report, ws),
            "8": lambda: load.run(report, ws),
        }
        for key in SECTIONS:
            if key in only:
                started = time.perf_counter()
                try:
                    await steps[key]()
                except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
                    report.failed(key, exc)
                    say(f"section {key} FAILED: {type(exc).__name__}: {exc}")
                    traceback.print_exc(file=sys.stderr)
                say(f"(section {key} took {time.perf_counter() - started:.1f} s)")
                say()
    return report


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    parser.add_argument("--profile", action="store_true", help="also profile the bridge during section 2")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated section numbers (default: all)")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the bridge in this process (start-up still spawns it): checks that the "
        "benchmarks run, fast; the figures then include this process's own work",
    )
    parser.add_argument("--no-node", action="store_true", help="leave out section 5's Node child (no npm install)")
    args = parser.parse_args(argv)
    if args.in_process and args.profile:
        parser.error("--profile profiles the bridge subprocess; leave out --in-process")
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := only - set(SECTIONS):
        parser.error(f"no section {', '.join(sorted(unknown))}; the sections are {', '.join(SECTIONS)}")
    if args.in_process:
        # The bridge in this process logs to its log file (bench/common.py); only warnings reach stderr.
        # Configured before the MCP SDK's own basicConfig, which would print every INFO record.
        warnings_only = logging.StreamHandler(sys.stderr)
        warnings_only.setLevel(logging.WARNING)
        logging.basicConfig(level=logging.WARNING, handlers=[warnings_only])
    chosen = (("--quick", args.quick), ("--in-process", args.in_process), ("--no-node", args.no_node))
    options = [option for option, on in chosen if on]
    say(f"machine: {machine()}")
    say(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (the machine may be shared)")
    say(f"command: python bench/run.py{''.join(' ' + o for o in options)}")
    say()
    started = time.perf_counter()
    report = asyncio.run(main(args.quick, only, args.profile, in_process=args.in_process, node=not args.no_node))
    say("== Summary ==")
    say(report.markdown())
    say()
    say(
        f"total time {time.perf_counter() - started:.1f} s; "
        f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if report.errors:
        say(f"{report.errors} benchmark(s) failed: see the ERROR rows above and the tracebacks on stderr")
        sys.exit(1)


if __name__ == "__main__":
    cli()
