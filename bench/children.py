"""Figure 5: a task's time with a cold child (started for the task, stopped after it) vs a warm one.

Cold is ``LMSTUDIO_BRIDGE_CHILD_IDLE_TIMEOUT=0``: every task starts its child and stops it before
answering. Warm is the default idle timeout, after one task has started the child.
"""

from __future__ import annotations

import re

from tests.support.fake_lmstudio import FakeLMStudio

from . import node
from .common import BridgeHandle, Report, Stats, Workspace, bridge, run_task, say

SECTION = "5"
KINDS = {
    "echo": ("Python, tests/support/echo_server.py", '@call echo {"text": "x"}'),
    "time": ("Python, python -m mcp_server_time", '@call get_current_time {"timezone": "UTC"}'),
    "memory": ("Node, @modelcontextprotocol/server-memory", "@call read_graph"),
}


def start_seconds(handle: BridgeHandle, name: str) -> list[float]:
    """The bridge's own log of how long each start of child ``name`` took (to initialize and list tools)."""
    pattern = re.compile(rf"MCP '{re.escape(name)}' started in ([0-9.]+) s")
    return [float(m) for m in pattern.findall(handle.log_text())]


async def measure(
    ws: Workspace, base_url: str, kinds: list[str], runs: int, *, warm_up: bool = True, **env: str
) -> tuple[dict[str, Stats], dict[str, list[float]]]:
    times: dict[str, list[float]] = {k: [] for k in kinds}
    async with bridge(ws, base_url, **env) as handle:
        for kind in kinds if warm_up else ():
            await run_task(handle, kind, KINDS[kind][1], rounds=2)  # warms the child, or the code paths
        for _ in range(runs):
            for kind in kinds:
                times[kind].append(await run_task(handle, kind, KINDS[kind][1], rounds=2))
        starts = {k: start_seconds(handle, k) for k in kinds}
    return {k: Stats(v) for k, v in times.items()}, starts


async def run(report: Report, ws: Workspace) -> None:
    say(f"== {SECTION}. Child servers: task time (2 rounds, one tool call) with a cold vs a warm child ==")
    kinds = ["echo", "time"] + (["memory"] if ws.node_memory is not None else [])
    if ws.node_memory is None:
        say(f"Node child skipped: {node.skip_reason or 'not requested'}")
    runs = 1 if report.quick else 10
    async with FakeLMStudio(models=["fake-model"]) as fake:
        warm, _ = await measure(ws, fake.base_url, kinds, runs)
        cold, starts = await measure(
            ws, fake.base_url, kinds, runs, warm_up=not report.quick, LMSTUDIO_BRIDGE_CHILD_IDLE_TIMEOUT="0"
        )
    for kind in kinds:
        label = KINDS[kind][0]
        start = Stats(starts[kind]) if starts[kind] else None
        say(f"{kind:<7} warm  {warm[kind].show('ms')}   ({label})")
        say(f"{kind:<7} cold  {cold[kind].show('ms')}   cold - warm {(cold[kind].p50 - warm[kind].p50) * 1e3:.0f} ms")
        if start is not None:
            say(f"{kind:<7} child start as the bridge logs it: {start.show('ms')}")
        value = f"{warm[kind].p50 * 1e3:.1f} / {cold[kind].p50 * 1e3:.0f} ms (n={cold[kind].n})"
        if start is not None:
            value += f"; child start {start.p50 * 1e3:.0f} ms"
        report.add(SECTION, f"{kind} ({label}): warm / cold task p50", value)
    if ws.node_memory is None:
        report.add(SECTION, "Node child", f"skipped: {node.skip_reason or 'not requested'}")
    say()
