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


# ----------------------------------------------------------------------------- 1. a child that hangs at start


async def test_a_child_that_never_answers_initialize_fails_at_the_start_timeout_and_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    spec = hostile_spec("hangs", "--hang-at-start", "--ignore-term", "--grandchild", "--pid-file", str(pid_file))
    try:
        async with pool_of(start_timeout=START_TIMEOUT) as pool:
            started = time.monotonic()
            with pytest.raises(McpStartError) as raised:
                async with asyncio.timeout(START_TIMEOUT + 10), pool.lease(spec):
                    pass
            elapsed = time.monotonic() - started
            assert (
                str(raised.value) == f"MCP 'hangs' failed to start: no answer to initialize within {START_TIMEOUT:g} s"
            )
            assert elapsed < START_TIMEOUT + START_MARGIN, f"the start failed after {elapsed:.1f} s"
            pids = pids_in(pid_file)
            assert len(pids) == 2 and pool.children == []
            # it ignores stdin close and SIGTERM; its grandchild is in a session of its own
            assert await eventually(lambda: not any(alive(p) for p in pids), within=5), "its processes outlived it"
    finally:
        kill_all(pids_in(pid_file))


async def test_cancelling_a_start_that_hangs_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    spec = hostile_spec("hangs", "--hang-at-start", "--ignore-term", "--grandchild", "--pid-file", str(pid_file))
    try:
        async with pool_of(start_timeout=30) as pool:

            async def lease() -> None:
                async with pool.lease(spec):
                    pass

            leasing = asyncio.create_task(lease())
            assert await eventually(lambda: len(pids_in(pid_file)) == 2, within=10)
            leasing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(leasing, 5)  # the cancellation is the caller's, and it is not swallowed
            assert pool.children == []
            assert await eventually(lambda: not any(alive(p) for p in pids_in(pid_file)), within=5)
    finally:
        kill_all(pids_in(pid_file))


async def test_cancelling_a_stop_cancels_the_caller_and_the_child_still_stops() -> None:
    async with pool_of() as pool:
        async with pool.lease(hostile_spec("stubborn", "--ignore-term", "--linger")) as child:
            pid = int(text_of(await child.call_tool("pid", {}, timeout=5)))
        stopping = asyncio.create_task(child.stop())  # stdin closed, SIGTERM ignored: the SDK needs 4 s
        done, _ = await asyncio.wait([stopping], timeout=0.5)
        assert not done
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(stopping, 5)
        assert await eventually(lambda: not alive(pid), within=10), "the stop did not go on"
        await asyncio.wait_for(child.stop(), 10)  # stopping again waits for the same stop
        assert not child.healthy


@pytest.mark.parametrize("cancel", ["none", "while-starting", "after-the-start-timeout"])
async def test_a_call_on_a_child_that_hangs_at_start_ends_in_time_and_leaves_the_bridge_serving(
    fake: Any, tmp_path: Path, cancel: str
) -> None:
    pid_file = tmp_path / "pids"
    config = write_config(
        tmp_path / "mcp.json",
        {
            "hangs": hostile_entry("--hang-at-start", "--ignore-term", "--grandchild", "--pid-file", str(pid_file)),
            "good": hostile_entry(),
        },
    )
    try:
        async with bridge(
            fake.base_url, config, tmp_path / "stderr.log", LMSTUDIO_BRIDGE_CHILD_START_TIMEOUT=f"{START_TIMEOUT:g}"
        ) as run:
            started = time.monotonic()
            call = asyncio.create_task(task(run.client, "hangs", "@answer never"))
            if cancel == "none":
                done, _ = await asyncio.wait([call], timeout=START_TIMEOUT + START_MARGIN)
                assert done, f"no answer within {START_TIMEOUT + START_MARGIN:g} s"
            elif cancel == "while-starting":
                assert await eventually(lambda: len(pids_in(pid_file)) == 2, within=10)
                call.cancel()
            else:  # when the old code was inside its stop of the child
                await asyncio.wait([call], timeout=START_TIMEOUT + 0.8)
                call.cancel()
            try:
                result = await asyncio.wait_for(call, 5)
            except asyncio.CancelledError:
                pass
            else:
                elapsed = time.monotonic() - started
                assert result.is_error and text_of(result) == (
                    f"Error: MCP 'hangs' failed to start: no answer to initialize within {START_TIMEOUT:g} s"
                )
                assert elapsed < START_TIMEOUT + START_MARGIN
            await still_serving(run)
            pids = pids_in(pid_file)
            assert pids and await eventually(lambda: not any(alive(p) for p in pids), within=5), run.logs()[-3000:]
            assert alive(run.pid)
        assert "Traceback" not in run.logs(), run.logs()[-3000:]
    finally:
        kill_all(pids_in(pid_file))


async def test_a_cancelled_call_on_a_child_that_stopped_answering_leaves_the_bridge_serving(
    fake: Any, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    config = write_config(
        tmp_path / "mcp.json", {"deaf": hostile_entry("--ignore-term", "--log", str(log)), "good": hostile_entry()}
    )
    async with bridge(fake.base_url, config, tmp_path / "stderr.log") as run:
        first = await task(run.client, "deaf", "@call pid {}")
        assert not first.is_error
        pid = int(text_of(first).rsplit("last=", 1)[1])
        call = asyncio.create_task(task(run.client, "deaf", '@call sleep {"seconds": 60}'))
        assert await eventually(lambda: "call sleep" in log.read_text(), within=10)  # now it hears nothing more
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, 5)
        await still_serving(run)
    assert await eventually(lambda: not alive(pid), within=10)


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


# ----------------------------------------------------------------------------- 3. a warm child that died while idle


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
async def test_a_warm_child_that_died_while_idle_is_replaced_before_the_next_task(how: signal.Signals) -> None:
    async with pool_of() as pool:
        async with pool.lease(hostile_spec()) as child:
            pid = int(text_of(await child.call_tool("pid", {}, timeout=5)))
        os.kill(pid, how)
        assert await eventually(lambda: not alive(pid), within=5)
        async with pool.lease(hostile_spec()) as fresh:  # at once: the bridge may not have read the end yet
            new_pid = int(text_of(await fresh.call_tool("pid", {}, timeout=5)))
        assert new_pid != pid and pool.started_count == 2
        assert child.broken is not None and not child.healthy


async def test_a_child_whose_process_is_gone_but_whose_session_goes_on_is_kept() -> None:
    async with pool_of() as pool:
        async with pool.lease(hostile_spec()) as child:
            await child.call_tool("pid", {}, timeout=5)
        # what a launcher that hands its pipes to its own child and exits looks like: the process is gone
        stand_in = subprocess.Popen(["sleep", "60"])
        child._process = psutil.Process(stand_in.pid)
        stand_in.kill()
        stand_in.wait(5)
        started = time.monotonic()
        async with pool.lease(hostile_spec()) as same:
            assert same is child
            assert text_of(await same.call_tool("echo", {"text": "on"}, timeout=5)) == "on"
        assert time.monotonic() - started < children_module.EXIT_NOTICE + 2
        assert pool.started_count == 1 and child._process is None


async def test_a_call_on_a_child_that_died_mid_call_is_child_gone() -> None:
    async with pool_of() as pool:
        async with pool.lease(hostile_spec()) as child:
            pid = int(text_of(await child.call_tool("pid", {}, timeout=5)))
            call = asyncio.create_task(child.call_tool("sleep", {"seconds": 30}, timeout=20))
            await asyncio.wait([call], timeout=0.5)
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(ChildGone):
                await asyncio.wait_for(call, 10)
        async with pool.lease(hostile_spec()) as fresh:
            assert text_of(await fresh.call_tool("echo", {"text": "again"}, timeout=5)) == "again"


# ----------------------------------------------------------------------------- 11. a large tool result


async def test_a_large_result_is_not_held_once_the_caller_let_it_go() -> None:
    """The SDK's reader tasks keep the last line and message a child sent; the bridge makes it send another."""
    size = 5_000_000
    async with pool_of() as pool, pool.lease(hostile_spec()) as child:
        await child.call_tool("echo", {"text": "warm"}, timeout=5)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            result = await child.call_tool("big", {"chars": size}, timeout=30)
            assert len(text_of(result)) == size
            del result

            def held() -> int:
                gc.collect()
                return tracemalloc.get_traced_memory()[0] - before

            released = await eventually(lambda: held() < size // 5, within=10)
            assert released, f"{held() / 2**20:.1f} MB still held after the call"
        finally:
            tracemalloc.stop()
        assert text_of(await child.call_tool("echo", {"text": "after"}, timeout=5)) == "after"


# ----------------------------------------------------------------------------- 9. a bridge killed with SIGKILL


def sleeper(marker: str) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), OWNER_VAR: marker}
    return subprocess.Popen(["sleep", "120"], env=env, start_new_session=True)


async def test_the_sweep_stops_what_dead_bridges_left_and_nothing_else() -> None:
    gone = subprocess.Popen(["sleep", "120"])
    gone_id = f"{gone.pid}-{round(psutil.Process(gone.pid).create_time() * 100)}-abc123"
    gone.kill()
    gone.wait(5)
    me = psutil.Process()
    reused_id = f"{me.pid}-{round(me.create_time() * 100) - 100_000}-abc123"  # our pid, another start: a reused pid
    procs = {
        "dead bridge": sleeper(f"{gone_id}:child1"),
        "reused pid": sleeper(f"{reused_id}:child2"),
        "live bridge": sleeper(f"{BRIDGE_ID}:child3"),
        "other form": sleeper("0123456789ab:child4"),
    }
    try:
        await eventually(lambda: all(alive(p.pid) for p in procs.values()), within=5)
        await asyncio.to_thread(children_module.sweep_orphans)  # its count may include other tests' leftovers
        assert await eventually(
            lambda: procs["dead bridge"].poll() is not None and procs["reused pid"].poll() is not None
        )
        assert procs["live bridge"].poll() is None and procs["other form"].poll() is None
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(5)


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
async def test_a_child_dies_with_a_bridge_killed_by_sigkill(fake: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"lingers": hostile_entry("--linger")})  # deaf to stdin closing
    async with bridge(fake.base_url, config, tmp_path / "stderr.log") as run:
        result = await task(run.client, "lingers", "@call pid {}")
        pid = int(text_of(result).rsplit("last=", 1)[1])
        os.kill(run.pid, signal.SIGKILL)
        try:
            assert await eventually(lambda: not alive(pid), within=5), "the child outlived the bridge"
        finally:
            kill_all([pid])


async def test_the_next_start_sweeps_what_a_bridge_killed_by_sigkill_left(fake: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    stubborn = hostile_entry("--ignore-term", "--linger", "--grandchild", "--pid-file", str(pid_file))
    config = write_config(tmp_path / "mcp.json", {"stubborn": stubborn, "good": hostile_entry()})
    try:
        async with bridge(fake.base_url, config, tmp_path / "first.log") as first:
            assert not (await task(first.client, "stubborn", "@call pid {}")).is_error
            left = marked(f"{first.pid}-")
            os.kill(first.pid, signal.SIGKILL)
            assert await eventually(lambda: not alive(first.pid), within=5)
        assert len(left) >= 2 and set(pids_in(pid_file)) <= set(left)
        # the grandchild, at least, outlives it (unless another test process's start swept it already)
        async with bridge(fake.base_url, config, tmp_path / "second.log") as second:
            assert await eventually(lambda: not any(alive(p) for p in left), within=10), second.logs()[-2000:]
            await still_serving(second)
    finally:
        kill_all(pids_in(pid_file))
