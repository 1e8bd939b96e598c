"""Figure 4: parallel scaling. 1, 4, 8 and 16 concurrent tasks, each LLM answer taking 500 ms."""

from __future__ import annotations

import asyncio
import time

from tests.support.fake_lmstudio import FakeLMStudio

from .common import BridgeHandle, Report, Stats, Workspace, bridge, echo_task, run_task, say

SECTION = "4"
ROUNDS = 2  # one echo call, then the answer: two LLM answers per task


async def wall_time(handle: BridgeHandle, tasks: int, tag: str) -> float:
    started = time.perf_counter()
    await asyncio.gather(
        *(run_task(handle, "echo", echo_task(ROUNDS, f"{tag}-{i}-"), rounds=ROUNDS) for i in range(tasks))
    )
    return time.perf_counter() - started


async def scaling(ws: Workspace, base_url: str, counts: tuple[int, ...], repeats: int, limit: int) -> dict[int, Stats]:
    walls: dict[int, list[float]] = {n: [] for n in counts}
    async with bridge(ws, base_url, LMSTUDIO_BRIDGE_MAX_CONCURRENT_TASKS=str(limit)) as handle:
        await wall_time(handle, 1, "warm")
        for rep in range(repeats):
            for n in counts:
                walls[n].append(await wall_time(handle, n, f"{rep}-{n}"))
    return {n: Stats(w) for n, w in walls.items()}


async def run(report: Report, ws: Workspace) -> None:
    latency = 0.1 if report.quick else 0.5
    repeats = 1 if report.quick else 5
    say(f"== {SECTION}. Parallel scaling: concurrent {ROUNDS}-round tasks, fake latency {latency} s per answer ==")
    say("LMSTUDIO_BRIDGE_MAX_CONCURRENT_TASKS=16 for the 1/4/8/16 rows (the default, 8, would queue the 16 case);")
    say("the last row is 16 tasks with the default limit of 8, for comparison.")
    async with FakeLMStudio(models=["fake-model"], latency=latency) as fake:
        raised = await scaling(ws, fake.base_url, (1, 4, 8, 16), repeats, limit=16)
        default = await scaling(ws, fake.base_url, (16,), repeats, limit=8)
        peak = fake.max_in_flight
    one = raised[1].p50
    for n, stats in raised.items():
        say(f"{n:>2} tasks (limit 16)           {stats.show('s')}  ratio to one task {stats.p50 / one:.2f}")
    say(f"16 tasks (default limit 8)     {default[16].show('s')}  ratio to one task {default[16].p50 / one:.2f}")
    say(f"most chat requests in flight at the fake at once: {peak}")
    say()
    report.add(
        SECTION, "1 task wall p50 [min–max]", f"{one:.3f} s [{raised[1].min:.3f}–{raised[1].max:.3f}] (n={raised[1].n})"
    )
    for n in (4, 8, 16):
        stats = raised[n]
        target, met = ("<= 1.3", stats.p50 / one <= 1.3) if n == 8 else ("", None)
        report.add(
            SECTION,
            f"{n} concurrent tasks: wall ratio to 1 (limit 16)",
            f"{stats.p50 / one:.3f} [{stats.min / one:.2f}–{stats.max / one:.2f}] (n={stats.n})",
            target,
            met,
        )
    report.add(
        SECTION,
        "16 concurrent tasks: wall ratio to 1 (default limit 8)",
        f"{default[16].p50 / one:.3f} (n={default[16].n})",
        "~2 (queued by design)",
    )
