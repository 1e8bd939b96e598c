"""Figure 2: the bridge's own milliseconds per agent round, over stdio, with an instant fake and the instant echo tool.

Method. Tasks of 1, 5 and 20 rounds run through the MCP client against a warm bridge (its echo
child already started). Each extra round costs one chat request to the fake plus one ``echo``
call on the child, so the least-squares slope of task time over rounds is the wall time of one
round, with the per-task costs (the outer MCP call, validation, leasing the child) left in the
intercept. Two figures are the bridge's own:
  * its CPU time per round: the slope over rounds of the bridge process's user+system time
    (psutil; the fake and the child are other processes, so nothing of theirs is in it), and
  * the wall time per round left after taking away the fake's time per chat request (timed inside
    the fake: reading the JSON body, deciding the answer, writing it) and a direct ``echo`` call
    from an MCP client in this process to an echo server of its own (the tool plus one stdio hop).
    What is left also holds the HTTP hop on 127.0.0.1 and waiting for a core: on a 2-core machine
    four busy processes (this client, the fake, the bridge, the child) take turns.
"""

from __future__ import annotations

import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.fake_lmstudio import FakeLMStudio

from .common import ECHO_SERVER, BridgeHandle, Report, Stats, Workspace, bridge, echo_task, run_task, say, slope

SECTION = "2"
SIZES = (1, 5, 20)


class FakeClock:
    """Times the fake's work per chat request by wrapping its handler and writer on this instance."""

    def __init__(self, fake: FakeLMStudio) -> None:
        self.fake = fake
        self.seconds = 0.0
        fake._handle = self._timed(fake._handle)  # type: ignore[method-assign]
        fake._write = self._timed(fake._write)  # type: ignore[method-assign]

    def _timed(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args)
            finally:
                self.seconds += time.perf_counter() - started

        return timed

    def per_chat_request(self) -> float:
        """Seconds per chat request so far, with the JSON parsing of the bodies (done by the fake's reader) added."""
        chats = self.fake.chat_requests()
        started = time.perf_counter()
        for request in chats:
            json.loads(request.raw_body)
        parsing = time.perf_counter() - started
        return (self.seconds + parsing) / max(1, len(chats))

    def reset(self) -> None:
        self.seconds = 0.0
        self.fake.reset()


async def direct_echo(calls: int) -> Stats:
    """One ``echo`` call from an MCP client straight to an echo server: what the tool costs any client."""
    params = StdioServerParameters(command=sys.executable, args=[str(ECHO_SERVER)])
    samples = []
    with open("/dev/null", "w") as devnull:
        async with Client(stdio_client(params, errlog=devnull), mode="legacy") as client:
            for i in range(calls + 5):
                started = time.perf_counter()
                await client.call_tool("echo", {"text": f"x{i}"})
                if i >= 5:
                    samples.append(time.perf_counter() - started)
    return Stats(samples)


def cpu_seconds(handle: BridgeHandle) -> float:
    """User plus system CPU time of the bridge process itself (its children not included)."""
    times = handle.process.cpu_times()
    return times.user + times.system


async def task_times(handle: BridgeHandle, rounds: int, repeats: int) -> tuple[Stats, float]:
    """Wall time per task, and the bridge's CPU seconds per task."""
    cpu = cpu_seconds(handle)
    walls = [await run_task(handle, "echo", echo_task(rounds, f"r{i}-"), rounds=rounds) for i in range(repeats)]
    return Stats(walls), (cpu_seconds(handle) - cpu) / repeats


async def profile_rounds(ws: Workspace, base_url: str, tasks: int) -> str:
    """The bridge under cProfile for ``tasks`` 20-round tasks: its hottest functions by own time and by total time."""
    path = ws.root / "bridge.prof"
    async with bridge(ws, base_url, profile=path) as handle:
        for i in range(tasks):
            await run_task(handle, "echo", echo_task(20, f"p{i}-"), rounds=20)
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(
        r"(agent|lmstudio|toolbox|children|_client|_models|session|encoder|decoder|selector_events|streams)\.py", 40
    )
    return out.getvalue()


async def run(report: Report, ws: Workspace) -> None:
    say(f"== {SECTION}. Bridge overhead per round: instant fake, instant echo tool, over stdio, warm child ==")
    repeats = 3 if report.quick else 25
    async with FakeLMStudio(models=["fake-model"]) as fake:
        clock = FakeClock(fake)
        async with bridge(ws, fake.base_url) as handle:
            for _ in range(3):
                await run_task(handle, "echo", echo_task(5, "warm"))
            by_size: dict[int, Stats] = {}
            cpu_by_size: dict[int, float] = {}
            fake_cost: list[float] = []
            for rounds in SIZES:
                clock.reset()
                by_size[rounds], cpu_by_size[rounds] = await task_times(handle, rounds, repeats)
                fake_cost.append(clock.per_chat_request())
                stats = by_size[rounds]
                say(
                    f"{rounds:>2}-round task (per task)      {stats.show('ms')}  "
                    f"-> {stats.p50 * 1e3 / rounds:.2f} ms per round; bridge CPU {cpu_by_size[rounds] * 1e3:.1f} ms per task"
                )
        if report.profile:
            say(await profile_rounds(ws, fake.base_url, 5 if report.quick else 50))
    echo = await direct_echo(20 if report.quick else 200)
    xs = [r for r in SIZES for _ in by_size[r].samples]
    ys = [t for r in SIZES for t in by_size[r].samples]
    per_round = slope(xs, ys)
    medians = slope(list(SIZES), [by_size[r].p50 for r in SIZES])
    fake_per_request = max(fake_cost)
    echo_mean = statistics.fmean(echo.samples)
    own = per_round - fake_per_request - echo_mean
    cpu_per_round = slope(list(SIZES), [cpu_by_size[r] for r in SIZES])
    say(f"slope over all samples         {per_round * 1e3:.2f} ms per round (over medians: {medians * 1e3:.2f} ms)")
    say(
        f"fake's time per chat request   {fake_per_request * 1e3:.3f} ms (timed inside the fake; worst of the three sizes)"
    )
    say(f"direct echo call, MCP client   {echo.show('ms')}  mean {echo_mean * 1e3:.2f} ms")
    say(f"wall left per round            {own * 1e3:.2f} ms  (= slope - fake's time - mean direct echo)")
    say(
        f"bridge CPU per round           {cpu_per_round * 1e3:.2f} ms  (slope of the bridge process's user+system time)"
    )
    say("method: the slope of task time over rounds (1, 5, 20) leaves per-task costs in the intercept. The bridge's")
    say("        CPU per round is the same slope over the bridge process's CPU time. The wall left per round is the")
    say("        slope less the fake's own time (timed inside it) and a direct echo call; it still holds the HTTP hop")
    say("        and time spent waiting for a core (4 busy processes on this machine's cores). See bench/overhead.py.")
    say()
    for rounds in SIZES:
        stats = by_size[rounds]
        report.add(
            SECTION,
            f"{rounds}-round task, p50 [min–max]",
            f"{stats.p50 * 1e3:.1f} ms [{stats.min * 1e3:.1f}–{stats.max * 1e3:.1f}] (n={stats.n})",
        )
    report.add(SECTION, "per round, gross (slope over 1/5/20 rounds)", f"{per_round * 1e3:.2f} ms")
    report.add(
        SECTION,
        "fake's time per chat request / direct echo call (mean)",
        f"{fake_per_request * 1e3:.2f} ms / {echo_mean * 1e3:.2f} ms (n={echo.n})",
    )
    report.add(
        SECTION, "bridge's own: CPU per round (slope)", f"{cpu_per_round * 1e3:.2f} ms", "< 2 ms", cpu_per_round < 2e-3
    )
    report.add(
        SECTION, "bridge's own: wall left per round (gross - fake - echo)", f"{own * 1e3:.2f} ms", "< 2 ms", own < 2e-3
    )
