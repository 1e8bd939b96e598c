"""Hostile children: faults injected and survived, and the processes a bridge leaves when it ends.

Run: ``.venv/bin/python -m bench.hostile`` (under a minute; ``--runs N`` repeats each fault N times).

Faults (children from ``tests/hostile_children.py``, the bridge's ``ChildPool`` in this process,
and the real bridge over stdio where the subject is the bridge's session):

1. a child that never answers ``initialize`` (and ignores stdin closing and SIGTERM, with a
   grandchild in a session of its own): the start fails at the start timeout, its processes are
   gone, the next task works; over stdio, a call cancelled while it starts leaves the session serving;
2. a line of invalid UTF-8 on a child's stdout: the next call on that child works;
3. a warm child killed while idle: the next task gets a working child;
11. a 5 MB tool result: this process's RSS before, just after, and after the bridge's ping.

Then the processes left 3 s after the bridge ends by stdin closing (followed by SIGTERM 2 s later
and SIGKILL 2 s after that if it is still running, as a host does), SIGTERM and SIGKILL, with
children that ignore stdin closing and SIGTERM and grandchildren in sessions of their own; and
what is left once the next bridge has started (its sweep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from lmstudio_bridge.children import OWNER_VAR, ChildPool
from lmstudio_bridge.errors import McpStartError
from lmstudio_bridge.mcp_config import McpServerSpec
from lmstudio_bridge.toolbox import render_tool_result
from tests.hostile_children import command

try:
    from tests.support.fake_lmstudio import FakeLMStudio
except ImportError:  # before the test support moved
    from tests.fakes.fake_lmstudio import FakeLMStudio  # type: ignore[no-redef]

START_TIMEOUT = 1.0
MARGIN = 1.5
BIG = 5_000_000
rows: list[tuple[str, str, str]] = []


def say(text: str = "") -> None:
    print(text, flush=True)


def spec(name: str, *flags: str) -> McpServerSpec:
    cmd = command(*flags)
    return McpServerSpec(name=name, transport="stdio", command=cmd[0], args=tuple(cmd[1:]), source="bench")


def entry(*flags: str) -> dict[str, Any]:
    cmd = command(*flags)
    return {"command": cmd[0], "args": cmd[1:]}


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked(prefix: str) -> list[int]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(OWNER_VAR, "").startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def bridge_marker(pid: int) -> str:
    """The marker prefix of the bridge ``pid`` (whatever its form), read from its children."""
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            value = proc.environ().get(OWNER_VAR)
        except psutil.Error:
            continue
        if value:
            return value.split(":")[0] + ":"
    raise RuntimeError("the bridge has no marked child")


def wait_until(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


async def eventually(check: Callable[[], bool], within: float) -> bool:
    return await asyncio.to_thread(wait_until, check, within)


def text(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")


def record(fault: str, survived: int, runs: int, detail: str) -> None:
    rows.append((fault, f"{survived}/{runs}", detail))
    say(f"  {fault}: survived {survived}/{runs}  {detail}")


# ----------------------------------------------------------------------------- faults, in this process


async def hang_at_start(tmp: Path, runs: int) -> None:
    survived, times = 0, []
    pool = ChildPool(start_timeout=START_TIMEOUT, idle_timeout=300, max_children=8)
    try:
        for run in range(runs):
            pid_file = tmp / f"hang{run}.pids"
            hanging = spec("hangs", "--hang-at-start", "--ignore-term", "--grandchild", "--pid-file", str(pid_file))
            started = time.monotonic()
            try:
                async with asyncio.timeout(START_TIMEOUT + 10), pool.lease(hanging):
                    pass
                ok = False
            except McpStartError as exc:
                ok = "no answer to initialize" in str(exc)
            except TimeoutError:
                ok = False
            elapsed = time.monotonic() - started
            times.append(elapsed)
            pids = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
            gone = bool(pids) and await eventually(lambda pids=pids: not any(alive(p) for p in pids), 5)
            async with pool.lease(spec("good")) as good:
                works = text(await good.call_tool("echo", {"text": "ok"}, timeout=10)) == "ok"
            survived += ok and gone and works and elapsed < START_TIMEOUT + MARGIN
    finally:
        await pool.aclose()
    record("1. hangs at start (in-process)", survived, runs,
           f"error after {min(times):.2f}-{max(times):.2f} s (start timeout {START_TIMEOUT:g} s); processes killed")  # fmt: skip


async def invalid_utf8(runs: int) -> None:
    survived = 0
    pool = ChildPool(start_timeout=15, idle_timeout=300, max_children=8)
    try:
        async with pool.lease(spec("garbles")) as child:
            for _ in range(runs):
                try:
                    async with asyncio.timeout(10):
                        garbled = text(await child.call_tool("garble", {}, timeout=5))
                        after = text(await child.call_tool("echo", {"text": "next"}, timeout=5))
                    survived += garbled == "garbled" and after == "next"
                except Exception:  # noqa: BLE001 - counted as not survived
                    pass
    finally:
        await pool.aclose()
    record("2. invalid UTF-8 line on stdout", survived, runs, "the same child answers the next call")


async def died_while_idle(runs: int) -> None:
    survived = 0
    pool = ChildPool(start_timeout=15, idle_timeout=300, max_children=8)
    try:
        for _ in range(runs):
            async with pool.lease(spec("dies")) as child:
                pid = int(text(await child.call_tool("pid", {}, timeout=5)))
            os.kill(pid, signal.SIGKILL)
            await eventually(lambda pid=pid: not alive(pid), 5)
            try:
                async with asyncio.timeout(15), pool.lease(spec("dies")) as fresh:
                    new_pid = int(text(await fresh.call_tool("pid", {}, timeout=5)))
                survived += new_pid != pid
            except Exception:  # noqa: BLE001 - counted as not survived
                pass
    finally:
        await pool.aclose()
    record("3. warm child killed while idle", survived, runs, "the next task gets a new child at once")


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def big_result() -> None:
    pool = ChildPool(start_timeout=15, idle_timeout=300, max_children=8)
    try:
        async with pool.lease(spec("big")) as child:
            for _ in range(3):
                await child.call_tool("echo", {"text": "warm"}, timeout=10)
            before = rss_mb()
            result = await child.call_tool("big", {"chars": BIG}, timeout=30)
            kept = render_tool_result(result, 4000)  # what the agent keeps (tool_result_chars)
            del result
            just_after = rss_mb()
            flushing = getattr(child, "_flushing", None)
            if flushing is not None:
                await asyncio.wait([flushing], timeout=10)
            after = rss_mb()
            assert len(kept) < 4100 and kept.endswith("characters cut ...]"), kept[-200:]
    finally:
        await pool.aclose()
    detail = f"RSS {before:.1f} -> {just_after:.1f} MB just after, {after:.1f} MB once the child answered a ping"
    rows.append(("11. 5 MB tool result", f"{after - before:+.1f} MB", detail))
    say(f"  11. 5 MB tool result: {detail}")


# ----------------------------------------------------------------------------- the bridge over stdio


class RawBridge:
    """``python -m lmstudio_bridge`` with its pipes in our hands, spoken to in plain JSON-RPC."""

    def __init__(self, base_url: str, config: Path, stderr: Path, **env: str) -> None:
        environment = {
            "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""),
            "LMSTUDIO_BASE_URL": base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config),
            "LMSTUDIO_BRIDGE_LOG_LEVEL": "DEBUG", **env,
        }  # fmt: skip
        self._err = stderr.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lmstudio_bridge"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._err, env=environment, cwd=str(config.parent), start_new_session=True,
        )  # fmt: skip
        self._next = 0
        self._buffer = b""
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}})  # fmt: skip
        self.notify("notifications/initialized")

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        self._send({"jsonrpc": "2.0", "method": method, **({"params": params} if params else {})})

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        self._next += 1
        wanted = self._next
        self._send({"jsonrpc": "2.0", "id": wanted, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == wanted and "method" not in message:
                    return message
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"{method}: no answer within {timeout:g} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError(f"{method}: the bridge closed its stdout")
            self._buffer += chunk

    def task(self, server: str, cues: str) -> str:
        answer = self.request(
            "tools/call", {"name": "autonomous_with_mcp", "arguments": {"mcp_name": server, "task": cues}}
        )
        return answer["result"]["content"][0]["text"]

    def cancel_later(self, server: str, cues: str) -> int:
        """Sends a task, returning its request id without waiting for the answer."""
        self._next += 1
        self._send({"jsonrpc": "2.0", "id": self._next, "method": "tools/call",
                    "params": {"name": "autonomous_with_mcp", "arguments": {"mcp_name": server, "task": cues}}})  # fmt: skip
        return self._next

    def end(self, how: str) -> None:
        assert self.proc.stdin is not None
        if how == "stdin close":
            self.proc.stdin.close()
        else:
            self.proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()


def cancel_during_start(fake: Any, tmp: Path, runs: int) -> None:
    pid_file = tmp / "stdio-hang.pids"
    config = tmp / "cancel.json"
    hanging = entry("--hang-at-start", "--ignore-term", "--grandchild", "--pid-file", str(pid_file))
    config.write_text(json.dumps({"mcpServers": {"hangs": hanging, "good": entry()}}))
    bridge = RawBridge(fake.base_url, config, tmp / "cancel.log", LMSTUDIO_BRIDGE_CHILD_START_TIMEOUT="30")
    survived = 0
    try:
        for _ in range(runs):
            pid_file.unlink(missing_ok=True)
            request_id = bridge.cancel_later("hangs", "@answer never")
            wait_until(lambda: pid_file.exists(), 10)
            bridge.notify("notifications/cancelled", {"requestId": request_id, "reason": "bench"})
            pids = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
            try:
                works = bridge.task("good", '@call echo {"text": "alive"}').endswith("last=alive")
            except (TimeoutError, EOFError, KeyError):
                works = False
            gone = bool(pids) and wait_until(lambda pids=pids: not any(alive(p) for p in pids), 5)
            survived += works and gone
    finally:
        bridge.close()
    record("1. call cancelled while its child hangs at start (stdio)", survived, runs,
           "the session serves the next task; the child's processes are gone")  # fmt: skip


def bridge_memory(fake: Any, tmp: Path) -> None:
    config = tmp / "memory.json"
    config.write_text(json.dumps({"mcpServers": {"big": entry()}}))
    bridge = RawBridge(fake.base_url, config, tmp / "memory.log")
    try:
        process = psutil.Process(bridge.proc.pid)
        for n in range(5):
            bridge.task("big", f'@call echo {{"text": "warm {n}"}}')
        before = process.memory_info().rss / 2**20
        bridge.task("big", f'@call big {{"chars": {BIG}}}')
        after = process.memory_info().rss / 2**20
        for n in range(3):
            bridge.task("big", f'@call echo {{"text": "later {n}"}}')
        later = process.memory_info().rss / 2**20
    finally:
        bridge.close()
    detail = f"bridge RSS {before:.1f} -> {after:.1f} MB after the task, {later:.1f} MB after 3 more tasks"
    rows.append(("11. 5 MB tool result (stdio bridge)", f"{after - before:+.1f} MB", detail))
    say(f"  11. 5 MB tool result, the bridge over stdio: {detail}")


def leftovers(fake: Any, tmp: Path) -> None:
    config = tmp / "leftovers.json"
    stubborn = entry("--ignore-term", "--linger", "--grandchild", "--pid-file", str(tmp / "stubborn.pids"))
    config.write_text(json.dumps({"mcpServers": {"stubborn": stubborn, "good": entry()}}))
    say("  processes below the bridge: 'stubborn' ignores stdin closing and SIGTERM and has a grandchild in a")
    say("  session of its own; 'good' exits when stdin closes, after starting a new-session grandchild")
    for how in ("stdin close", "SIGTERM", "SIGKILL"):
        bridge = RawBridge(fake.base_url, config, tmp / f"{how}.log")
        bridge.task("stubborn", "@call pid {}")
        bridge.task("good", "@call spawn_grandchild {}")
        prefix = bridge_marker(bridge.proc.pid)
        wait_until(
            lambda prefix=prefix: len(marked(prefix)) >= 4, 5
        )  # two children, a grandchild each (one may still be exec'ing)
        running = len(marked(prefix))
        ended = time.monotonic()
        bridge.end(how)
        escalated = ""
        for signal_, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "SIGKILL")):
            try:  # what a host does (the MCP SDK's client): 2 s after stdin closes, SIGTERM; 2 s later, SIGKILL
                bridge.proc.wait(2 if how == "stdin close" else 10)
                break
            except subprocess.TimeoutExpired:
                bridge.proc.send_signal(signal_)
                escalated = f" (needed {name})"
        bridge.proc.wait(10)
        exit_s = time.monotonic() - ended
        wait_until(lambda prefix=prefix: not marked(prefix), 3)
        left = marked(prefix)
        bridge.close()
        nxt = RawBridge(fake.base_url, config, tmp / f"after {how}.log")
        wait_until(lambda left=left: not any(alive(p) for p in left), 10)
        still = [p for p in left if alive(p)]
        nxt.close()
        for pid in still:
            os.kill(pid, signal.SIGKILL)
        rows.append((f"9. processes left after {how}", f"{len(left)} of {running}",
                     f"bridge gone {exit_s:.1f} s after{escalated}; after the next start: {len(still)}"))  # fmt: skip
        say(
            f"  {how}: {running} running, bridge exited after {exit_s:.1f} s{escalated}, {len(left)} left 3 s later, "
            f"{len(still)} left once the next bridge started"
        )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="times each fault is injected (default 3)")
    options = parser.parse_args()
    started = time.monotonic()
    say(f"== Hostile children (python -m bench.hostile --runs {options.runs}) ==")
    with tempfile.TemporaryDirectory(prefix="hostile-") as name:
        tmp = Path(name)
        await hang_at_start(tmp, options.runs)
        await invalid_utf8(options.runs)
        await died_while_idle(options.runs)
        await big_result()
        with FakeLMStudio(models=["bench/model"]) as fake:
            await asyncio.to_thread(bridge_memory, fake, tmp)
            await asyncio.to_thread(cancel_during_start, fake, tmp, options.runs)
            await asyncio.to_thread(leftovers, fake, tmp)
    say()
    say("| fault | survived / left | detail |")
    say("| --- | --- | --- |")
    for row in rows:
        say(f"| {' | '.join(row)} |")
    say(f"\ntook {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
