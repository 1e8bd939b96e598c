"""Child servers that misbehave on purpose (``tests/hostile_children.py``): the bridge survives them.

A child that never answers ``initialize`` fails at the start timeout and is killed, and a
cancelled call never ends the bridge's session (over stdio, the real bridge); one invalid
UTF-8 line does not wedge a child; a warm child that died while idle is replaced before a
task gets it; processes left by a bridge killed with SIGKILL are swept by the next start,
and its direct children die with it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from lmstudio_bridge import children as children_module
from lmstudio_bridge.children import BRIDGE_ID, OWNER_VAR, ChildPool
from lmstudio_bridge.errors import ChildGone, McpStartError
from lmstudio_bridge.mcp_config import McpServerSpec
from tests.hostile_children import command

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 2.0
START_MARGIN = 1.5
"""How late a start failure may come on a busy machine."""


# ----------------------------------------------------------------------------- helpers


def hostile_spec(name: str = "hostile", *flags: str) -> McpServerSpec:
    cmd = command(*flags)
    return McpServerSpec(name=name, transport="stdio", command=cmd[0], args=tuple(cmd[1:]), source="test")


def hostile_entry(*flags: str) -> dict[str, Any]:
    cmd = command(*flags)
    return {"command": cmd[0], "args": cmd[1:]}


@asynccontextmanager
async def pool_of(**options: Any) -> AsyncIterator[ChildPool]:
    settings: dict[str, Any] = {"start_timeout": 15.0, "idle_timeout": 300.0, "max_children": 16, **options}
    pool = ChildPool(**settings)
    try:
        yield pool
    finally:
        await pool.aclose()


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked(prefix: str) -> list[int]:
    """Live processes whose owner marker starts with ``prefix``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(OWNER_VAR, "").startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


async def eventually(check: Callable[[], bool], within: float = 8.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.05)
    return await asyncio.to_thread(check)


def pids_in(path: Path) -> list[int]:
    """The pids a hostile child wrote with ``--pid-file`` (itself, then its grandchild)."""
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Running:
    client: Client
    pid: int
    stderr: Path

    def logs(self) -> str:
        return self.stderr.read_text(errors="replace")


@asynccontextmanager
async def bridge(base_url: str, config: Path, stderr: Path, **env: str) -> AsyncIterator[Running]:
    """The real bridge (``python -m lmstudio_bridge``) over stdio, its stderr in a file, its pid known."""
    environment = {
        "LMSTUDIO_BASE_URL": base_url,
        "LMSTUDIO_BRIDGE_LOG_LEVEL": "DEBUG",
        "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config),
        "HOME": os.environ["HOME"],
        "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME", ""),
        **env,
    }
    before = {p.pid for p in psutil.Process().children()}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "lmstudio_bridge"], env=environment, cwd=str(config.parent)
    )
    with stderr.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=60) as client:
            (pid,) = [p.pid for p in psutil.Process().children() if p.pid not in before]
            yield Running(client, pid, stderr)


def write_config(path: Path, servers: dict[str, dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}, indent=2))
    return path


async def task(client: Client, server: str, text: str) -> Any:
    return await client.call_tool("autonomous_with_mcp", {"mcp_name": server, "task": text})


async def still_serving(run: Running) -> None:
    """The session answers, and a task on a well-behaved child works."""
    listing = await asyncio.wait_for(run.client.call_tool("list_mcps", {}), 15)
    assert not listing.is_error, text_of(listing)
    after = await asyncio.wait_for(task(run.client, "good", '@call echo {"text": "still here"}'), 30)
    assert not after.is_error and text_of(after).endswith("last=still here"), text_of(after)


# ----------------------------------------------------------------------------- 2. invalid UTF-8 on stdout


async def test_an_invalid_utf8_line_does_not_wedge_the_child() -> None:
    async with pool_of() as pool:
        async with pool.lease(hostile_spec()) as child:
            pid = text_of(await child.call_tool("pid", {}, timeout=5))
            started = time.monotonic()
            assert text_of(await child.call_tool("garble", {}, timeout=5)) == "garbled"
            assert time.monotonic() - started < 3
            assert text_of(await child.call_tool("echo", {"text": "next"}, timeout=5)) == "next"
            inside = text_of(await child.call_tool("garble_inside", {}, timeout=5))
            assert inside == "before-\ufffd-after"
        async with pool.lease(hostile_spec()) as again:  # a later task, on the same child
            assert text_of(await again.call_tool("echo", {"text": "later"}, timeout=5)) == "later"
            assert text_of(await again.call_tool("pid", {}, timeout=5)) == pid
        assert pool.started_count == 1
