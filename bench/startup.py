"""Figure 7: start-up, from spawning ``python -m lmstudio_bridge`` to the answer to ``initialize``."""

from __future__ import annotations

import time

from tests.support.fake_lmstudio import FakeLMStudio

from .common import Report, Stats, Workspace, bridge, say

SECTION = "7"


async def run(report: Report, ws: Workspace) -> None:
    say(f"== {SECTION}. Start-up: spawn to the answer to initialize (Client enter) ==")
    runs = 2 if report.quick else 10
    samples = []
    async with FakeLMStudio(models=["fake-model"]) as fake:
        for _ in range(runs):
            started = time.perf_counter()
            async with bridge(ws, fake.base_url):
                samples.append(time.perf_counter() - started)
    stats = Stats(samples)
    say(f"spawn to initialized           {stats.show('ms')}")
    say()
    report.add(SECTION, "spawn to initialize answered, p50 [min–max]",
               f"{stats.p50 * 1e3:.0f} ms [{stats.min * 1e3:.0f}–{stats.max * 1e3:.0f}] (n={stats.n})")
