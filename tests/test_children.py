"""ChildPool in-process, with real child servers: warm reuse, sharing, limits, replacement and cleanup."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import MCPError
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from lmstudio_bridge import children as children_module
from lmstudio_bridge.children import OWNER_VAR, Child, ChildPool, kill_marked_processes, map_call_error
from lmstudio_bridge.errors import ChildGone, McpStartError, ToolCallFailed, ToolTimeout
from lmstudio_bridge.mcp_config import McpServerSpec
from tests.support.bridge import text_of
from tests.support.common import ECHO_SERVER, PROBE_SERVER


def echo_spec(name: str = "echo", *extra: str, env: dict[str, str] | None = None) -> McpServerSpec:
    return McpServerSpec(
        name=name,
        transport="stdio",
        command=sys.executable,
        args=(ECHO_SERVER, "--name", name, *extra),
        env=tuple(sorted((env or {}).items())),
        source="test",
    )


def probe_spec(env: dict[str, str] | None = None) -> McpServerSpec:
    return McpServerSpec(
        name="probe", transport="stdio", command=sys.executable, args=(PROBE_SERVER,),
        env=tuple(sorted((env or {}).items())), source="test",
    )  # fmt: skip


@asynccontextmanager
async def pool_of(**options: Any) -> AsyncIterator[ChildPool]:
    settings: dict[str, Any] = {"start_timeout": 15.0, "idle_timeout": 300.0, "max_children": 16, **options}
    pool = ChildPool(**settings)
    try:
        yield pool
    finally:
        await pool.aclose()


async def call(child: Child, tool: str, **arguments: Any) -> str:
    result = await child.call_tool(tool, arguments, timeout=15)
    return text_of(result)


async def count(child: Child) -> tuple[int, int]:
    data = json.loads(await call(child, "counter"))
    return data["count"], data["pid"]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked(marker: str) -> list[int]:
    """Live processes whose owner marker starts with ``marker``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(OWNER_VAR, "").startswith(marker) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


async def eventually(check: Callable[[], bool], within: float = 8.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(0.1)
    return await asyncio.to_thread(check)


async def test_twenty_tasks_in_a_row_start_the_server_once() -> None:
    async with pool_of() as pool:
        seen = []
        for _ in range(20):
            async with pool.lease(echo_spec()) as child:
                seen.append(await count(child))
        assert [c for c, _ in seen] == list(range(1, 21))
        assert len({pid for _, pid in seen}) == 1
        assert pool.started_count == 1


async def test_concurrent_tasks_share_one_child() -> None:
    async with pool_of() as pool:

        async def task() -> int:
            async with pool.lease(echo_spec()) as child:
                await call(child, "slow", seconds=0.3)
                return (await count(child))[1]

        pids = await asyncio.gather(*(task() for _ in range(6)))
        assert len(set(pids)) == 1
        assert pool.started_count == 1


async def test_exclusive_servers_serve_one_task_at_a_time() -> None:
    async with pool_of(exclusive=["echo"]) as pool:

        async def task() -> int:
            async with pool.lease(echo_spec()) as child:
                assert child.in_use == 1
                await call(child, "slow", seconds=0.3)
                return (await count(child))[1]

        pids = await asyncio.gather(*(task() for _ in range(3)))
        assert len(set(pids)) == 3 and pool.started_count == 3
        again = await task()  # an idle exclusive child is still reused
        assert again in pids and pool.started_count == 3


async def test_idle_timeout_zero_starts_one_child_per_task() -> None:
    async with pool_of(idle_timeout=0) as pool:
        pids = []
        for _ in range(2):
            async with pool.lease(echo_spec()) as child:
                pids.append((await count(child))[1])
            assert pool.children == []
        assert pids[0] != pids[1] and pool.started_count == 2
        assert await eventually(lambda: not alive(pids[0]) and not alive(pids[1]))


async def test_an_edited_entry_replaces_the_child_once_it_is_idle() -> None:
    async with pool_of() as pool:
        async with pool.lease(echo_spec()) as old:
            _, old_pid = await count(old)
            async with pool.lease(echo_spec(env={"EDITED": "1"})) as new:
                _, new_pid = await count(new)
                assert new_pid != old_pid
            assert alive(old_pid)  # still serving the task that holds it
        assert await eventually(lambda: not alive(old_pid), within=10)
        assert [c.spec.env for c in pool.children] == [(("EDITED", "1"),)]
        async with pool.lease(echo_spec(env={"EDITED": "1"})) as again:
            assert (await count(again))[1] == new_pid


async def test_an_idle_child_is_stopped_with_everything_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(children_module, "REAPER_PERIOD", 0.2)
    async with pool_of(idle_timeout=0.5) as pool:
        async with pool.lease(echo_spec()) as child:
            _, pid = await count(child)
            kids = [int(await call(child, "spawn_grandchild", new_session=flag)) for flag in (False, True)]
            marker = child.marker
        assert all(alive(p) for p in [pid, *kids])
        assert await eventually(lambda: not any(alive(p) for p in [pid, *kids]), within=10)
        assert pool.children == [] and marked(marker) == []


async def test_a_crashed_child_is_replaced_and_cleaned_up() -> None:
    async with pool_of() as pool:
        async with pool.lease(echo_spec()) as child:
            _, pid = await count(child)
            grandchild = int(await call(child, "spawn_grandchild", new_session=True))
            with pytest.raises(Exception):  # noqa: B017 - whatever the SDK raises for a dead session
                await call(child, "crash")
            assert await eventually(lambda: not child.healthy, within=5)
            assert child.broken
        async with pool.lease(echo_spec()) as fresh:
            count_, new_pid = await count(fresh)
        assert new_pid != pid and count_ == 1 and pool.started_count == 2
        assert await eventually(lambda: not alive(grandchild))


async def test_max_children_bounds_running_children() -> None:
    async with pool_of(max_children=2) as pool:
        peak = 0

        async def task(name: str) -> None:
            nonlocal peak
            async with pool.lease(echo_spec(name)) as child:
                peak = max(peak, len(pool.children))
                await call(child, "slow", seconds=0.5)

        started = time.monotonic()
        await asyncio.gather(*(task(f"s{n}") for n in range(4)))
        assert peak <= 2 and len(pool.children) <= 2
        assert time.monotonic() - started >= 0.9  # two had to wait for a slot


async def test_a_start_failure_is_reported_to_every_waiter() -> None:
    async with pool_of() as pool:
        spec = echo_spec("crashy", "--crash-on-start")

        async def task() -> None:
            async with pool.lease(spec):
                pass

        outcomes = await asyncio.gather(*(task() for _ in range(3)), return_exceptions=True)
        assert all(isinstance(o, McpStartError) for o in outcomes), outcomes
        assert "crashing on start" in str(outcomes[0])
        assert pool.children == []


async def test_aclose_stops_children_and_grandchildren() -> None:
    pool = ChildPool(start_timeout=15, idle_timeout=300, max_children=16)
    async with pool.lease(echo_spec("a")) as a, pool.lease(echo_spec("b")) as b:
        pids = [(await count(a))[1], (await count(b))[1]]
        pids += [int(await call(c, "spawn_grandchild", new_session=flag)) for c in (a, b) for flag in (False, True)]
    assert all(alive(p) for p in pids)
    started = time.monotonic()
    await pool.aclose()
    assert time.monotonic() - started < 5
    assert await eventually(lambda: not any(alive(p) for p in pids), within=3)
    with pytest.raises(McpStartError, match="shutting down"):
        async with pool.lease(echo_spec("a")):
            pass


async def test_kill_marked_processes_finds_only_its_marker(tmp_path: Path) -> None:
    import subprocess

    def sleeper(marker: str) -> subprocess.Popen[bytes]:
        env = {"PATH": "/usr/bin:/bin", OWNER_VAR: marker}
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)

    mine, other = sleeper("test-owner:1"), sleeper("test-owner-not:1")
    try:
        await asyncio.sleep(0.2)
        assert await asyncio.to_thread(kill_marked_processes, "test-owner:") == 1
        assert mine.wait(5) is not None and other.poll() is None
    finally:
        other.kill()
        other.wait(5)


async def test_the_child_gets_its_entry_env_over_a_minimal_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_ONLY_VARIABLE", "not for children")
    monkeypatch.setenv("LMSTUDIO_API_KEY", "sk-bridge-secret")
    async with pool_of() as pool, pool.lease(probe_spec(env={"FROM_ENTRY": "yes"})) as child:
        assert await call(child, "getenv", name="FROM_ENTRY") == "yes"
        assert await call(child, "getenv", name="BRIDGE_ONLY_VARIABLE") == "<unset>"
        assert await call(child, "getenv", name="LMSTUDIO_API_KEY") == "<unset>"
        assert await call(child, "getenv", name="PATH") != "<unset>"
        names = set((await call(child, "env_names")).split(","))
    allowed = {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "FROM_ENTRY", OWNER_VAR}
    allowed |= set(children_module.PASSED_THROUGH_ENV)
    assert names - allowed <= {"PWD", "SHLVL", "_", "LC_CTYPE"}, names - allowed


# --- The MCP SDK's errors, mapped once, by type and code -------------------------------------------

REFUSING_SERVER = """
from mcp import MCPError
from mcp.server import MCPServer

server = MCPServer("refusing")


@server.tool(description="Fails the way a tool that reaches a dead upstream service does.")
def fetch_upstream() -> str:
    raise MCPError(code=-32603, message="upstream API: [Errno 111] Connection refused")


@server.tool(description="Works.")
def ping() -> str:
    return "pong"


server.run()
"""


@pytest.mark.parametrize(
    ("raised", "alive_session", "expected"),
    [
        (MCPError(code=REQUEST_TIMEOUT, message="Request 'tools/call' timed out"), True, ToolTimeout),
        (MCPError(code=CONNECTION_CLOSED, message="Connection closed"), True, ChildGone),
        (MCPError(code=-32603, message="upstream: [Errno 111] Connection refused"), True, ToolCallFailed),
        (MCPError(code=-32602, message="the connection string is closed"), True, ToolCallFailed),
        (TimeoutError(), True, ToolTimeout),
        (anyio.ClosedResourceError(), True, ChildGone),
        (BaseExceptionGroup("tg", [anyio.BrokenResourceError()]), True, ChildGone),
        (RuntimeError("connection closed"), True, ToolCallFailed),
        (RuntimeError("anything"), False, ChildGone),
    ],
)
def test_sdk_errors_are_mapped_by_type_and_code_not_text(
    raised: BaseException, alive_session: bool, expected: type[ToolCallFailed]
) -> None:
    error = map_call_error(raised, server="s", tool="t", timeout=5, session_alive=alive_session)
    assert type(error) is expected
    assert str(error).startswith(("s.t ", "MCP 's' stopped while running t"))


async def test_an_mcp_error_that_mentions_a_connection_leaves_the_child_alone(tmp_path: Path) -> None:
    script = tmp_path / "refusing.py"
    script.write_text(REFUSING_SERVER)
    spec = McpServerSpec(name="refusing", transport="stdio", command=sys.executable, args=(str(script),), source="test")
    async with pool_of() as pool, pool.lease(spec) as child:
        with pytest.raises(ToolCallFailed) as raised:
            await child.call_tool("fetch_upstream", {}, timeout=15)
        assert type(raised.value) is ToolCallFailed
        assert "Connection refused" in str(raised.value) and "stopped" not in str(raised.value)
        assert child.healthy and child.broken is None
        assert await call(child, "ping") == "pong"
    assert pool.started_count == 1
