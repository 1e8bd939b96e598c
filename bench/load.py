"""Figure 8: tasks under load. 100 concurrent and 500 sequential 2-round tasks on one bridge:
errors, per-task wall time (p50, p99), and the bridge's RSS, open fds and processes before and after."""

from __future__ import annotations

import asyncio
import time

from tests.support.fake_lmstudio import FakeLMStudio

from .common import BridgeHandle, Report, Stats, Workspace, bridge, echo_task, run_task, say
from .memory import snapshot

SECTION = "8"
ROUNDS = 2


async def timed(handle: BridgeHandle, tag: str) -> float | BaseException:
    """One task's wall time, or what it failed with."""
    try:
        return await run_task(handle, "echo", echo_task(ROUNDS, tag), rounds=ROUNDS)
    except Exception as exc:  # noqa: BLE001 - a failed task is counted, not raised
        return exc


def tally(outcomes: list[float | BaseException]) -> tuple[Stats, list[str]]:
    times = [o for o in outcomes if isinstance(o, float)]
    errors = [f"{type(o).__name__}: {o}"[:200] for o in outcomes if isinstance(o, BaseException)]
    return Stats(times or [0.0]), errors


async def run(report: Report, ws: Workspace) -> None:
    concurrent, sequential = (10, 20) if report.quick else (100, 500)
    latency = 0.01
    say(f"== {SECTION}. Load: {concurrent} concurrent and {sequential} sequential {ROUNDS}-round tasks ==")
    say(f"one bridge, the default concurrency limit (8; the rest queue), fake latency {latency} s per answer")
    async with FakeLMStudio(models=["fake-model"], latency=latency) as fake, bridge(ws, fake.base_url) as handle:
        await timed(handle, "warm")
        rows = []
        for label, count in ((f"{concurrent} concurrent", concurrent), (f"{sequential} sequential", sequential)):
            before = snapshot(handle)
            started = time.perf_counter()
            if count == concurrent:
                outcomes = list(await asyncio.gather(*(timed(handle, f"c{i}-") for i in range(count))))
            else:
                outcomes = [await timed(handle, f"s{i}-") for i in range(count)]
            wall = time.perf_counter() - started
            fake.reset()  # the fake keeps every request; that is this process, not the bridge
            after = snapshot(handle)
            stats, errors = tally(outcomes)
            rows.append((label, stats, errors, before, after, wall))
            say(
                f"{label:<16} errors {len(errors)}  {stats.show('ms')}  all in {wall:.1f} s\n"
                f"{'':<16} RSS {before[0]:.1f} -> {after[0]:.1f} MB  fds {before[1]} -> {after[1]}  "
                f"processes below the bridge {before[2]} -> {after[2]}"
            )
            for error in errors[:3]:
                say(f"{'':<16} {error}")
    say()
    for label, stats, errors, before, after, _ in rows:
        report.add(SECTION, f"{label}: errors", str(len(errors)), "0", not errors)
        report.add(SECTION, f"{label}: task wall p50 / p99", f"{stats.p50 * 1e3:.0f} / {stats.p99 * 1e3:.0f} ms")
        report.add(
            SECTION,
            f"{label}: RSS, fds before -> after",
            f"{before[0]:.1f} -> {after[0]:.1f} MB, {before[1]} -> {after[1]}",
            "flat",
            after[0] - before[0] < 10 and after[1] <= before[1] + 2,
        )
