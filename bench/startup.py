"""Figure 7: start-up, from spawning ``python -m lmstudio_bridge`` to the answer to ``initialize``; and exit,
from closing its stdin (with one warm child) to the process gone.

Both always spawn the bridge, with ``--in-process`` too: a process is what they measure. The exit
figure replaces the time bound tests/test_reliability.py used to put on it (a bound a busy machine
can break); the test keeps checking that the bridge exits and leaves no process behind.
"""

from __future__ import annotations

import time

from tests.support.fake_lmstudio import FakeLMStudio

from .common import Report, Stats, Workspace, bridge, run_task, say

SECTION = "7"
EXIT_TARGET = 5.0


async def run(report: Report, ws: Workspace) -> None:
    say(f"== {SECTION}. Start-up: spawn to the answer to initialize (Client enter); exit: stdin closed to exit ==")
    runs = 1 if report.quick else 10
    starts, exits = [], []
    async with FakeLMStudio(models=["fake-model"]) as fake:
        for _ in range(runs):
            started = time.perf_counter()
            async with bridge(ws, fake.base_url, spawn=True) as handle:
                starts.append(time.perf_counter() - started)
                await run_task(handle, "echo", '@call echo {"text": "warm"}', rounds=2)  # one warm child to stop
                closing = time.perf_counter()
            exits.append(time.perf_counter() - closing)  # the client closed stdin and waited for the exit
    start, exit_ = Stats(starts), Stats(exits)
    say(f"spawn to initialized           {start.show('ms')}")
    say(f"stdin closed to exit (1 child) {exit_.show('ms')}")
    say()
    report.add(
        SECTION,
        "spawn to initialize answered, p50 [min–max]",
        f"{start.p50 * 1e3:.0f} ms [{start.min * 1e3:.0f}–{start.max * 1e3:.0f}] (n={start.n})",
    )
    report.add(
        SECTION,
        "stdin closed to exit, one warm child, p50 [min–max]",
        f"{exit_.p50 * 1e3:.0f} ms [{exit_.min * 1e3:.0f}–{exit_.max * 1e3:.0f}] (n={exit_.n})",
        f"< {EXIT_TARGET:g} s",
        exit_.max < EXIT_TARGET,
    )
