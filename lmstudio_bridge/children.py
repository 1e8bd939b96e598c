"""Starting, reusing and stopping child MCP servers: the only code that does.

Each child runs in an owner task of its own, because the MCP client must be
entered and left in one task. Every process a child starts carries an
``LMSTUDIO_BRIDGE_OWNER`` marker in its environment, so when the child stops,
whatever it left behind (the grandchildren of ``npx`` and ``uvx``) is found and
stopped too.

A child stays warm for ``child_idle_timeout`` seconds after its last task and
is shared by concurrent tasks, unless its name is in ``exclusive_mcps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import psutil
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult, Tool

from .errors import ChildGone, McpStartError, ToolCallFailed, ToolTimeout
from .mcp_config import McpServerSpec

logger = logging.getLogger(__name__)

OWNER_VAR = "LMSTUDIO_BRIDGE_OWNER"
BRIDGE_ID = uuid.uuid4().hex[:12]
"""Marks every process this bridge process starts (one value per bridge process)."""

PASSED_THROUGH_ENV = (
    "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TEMP", "TMP",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "UV_CACHE_DIR", "npm_config_cache", "PIP_FIND_LINKS", "PIP_CERT",
)  # fmt: skip
"""Besides the MCP SDK's minimal default: locale, temp dirs, certificates and proxies
that ``npx`` and ``uvx`` need to download a server. Nothing secret."""

STOP_TIMEOUT = 8.0
CALL_GRACE = 2.0
"""Seconds past the tool timeout after which a call is given up even if the SDK's own timeout did not fire."""
STDERR_TAIL_LINES = 15
STDERR_LOG_LINES = 200
REAPER_PERIOD = 15.0


def child_environment(spec: McpServerSpec, marker: str) -> dict[str, str]:
    """The environment a child gets: a minimal default, its entry's ``env`` over it, and our marker."""
    env = get_default_environment()
    env.update({k: v for k in PASSED_THROUGH_ENV if (v := os.environ.get(k)) is not None})
    env.update(spec.env_dict)
    env[OWNER_VAR] = marker
    return env


class StderrTail:
    """Drains a child's stderr: logs it (up to a budget) and keeps its last lines for error messages."""

    def __init__(self, name: str) -> None:
        self.name = name
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self.lines: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._logged = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name=f"stderr:{self.name}")

    def close_writer(self) -> None:
        """Our copy of the write end: closed once the child has it, so EOF comes when it exits."""
        with contextlib.suppress(OSError):
            self.writer.close()

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self._reader)
        partial = b""
        try:
            while chunk := await reader.read(65536):
                *complete, partial = (partial + chunk).split(b"\n")
                partial = partial[-4096:]
                for raw in complete:
                    self._line(raw.decode("utf-8", "replace").rstrip())
        finally:
            transport.close()

    def _line(self, line: str) -> None:
        if not line:
            return
        self.lines.append(line[:500])
        self._logged += 1
        if self._logged <= STDERR_LOG_LINES:
            logger.info("[%s] %s", self.name, line[:500])
        elif self._logged == STDERR_LOG_LINES + 1:
            logger.info("[%s] (more stderr output; shown at DEBUG level)", self.name)
        else:
            logger.debug("[%s] %s", self.name, line[:500])

    async def stop(self) -> None:
        self.close_writer()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def tail(self) -> str:
        return " | ".join(list(self.lines)[-3:])


@dataclass(eq=False)
class Child:
    """One running child MCP server and the session to it."""

    spec: McpServerSpec
    marker: str
    tools: list[Tool] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)
    in_use: int = 0
    broken: str | None = None
    outdated: bool = False
    """Its config entry changed: no new task gets it, and it stops once idle."""
    start_seconds: float = 0.0
    _client: Client | None = None
    _owner: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _stderr: StderrTail | None = None
    _calls: set[asyncio.Future[Any]] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def healthy(self) -> bool:
        """Not known to be broken, and its owner task (so its session) still runs; it may still be starting."""
        return self.broken is None and self._owner is not None and not self._owner.done()

    @property
    def ready(self) -> bool:
        """Healthy and started: ``initialize`` answered, tools listed."""
        return self._client is not None and self.healthy

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> CallToolResult:
        """Calls one tool; raises ``ToolCallFailed`` when no result comes back.

        A session that ended under the call marks this child broken, so the next task gets a new one.
        """
        assert self._client is not None
        try:
            async with asyncio.timeout(timeout + CALL_GRACE):
                result = await self._abandonable(self._client.call_tool(name, arguments, read_timeout_seconds=timeout))
        except Exception as exc:
            error = map_call_error(exc, server=self.name, tool=name, timeout=timeout, session_alive=self.healthy)
            if isinstance(error, ChildGone):
                self.broken = self.broken or error.reason
            raise error from exc
        if not isinstance(result, CallToolResult):
            raise ToolCallFailed(
                f"{self.name}.{name} answered with a {type(result).__name__}, not a tool result", name=self.name, tool=name
            )
        return result

    async def _abandonable(self, call: Coroutine[Any, Any, Any]) -> Any:
        """Runs ``call`` in a task of its own that a cancellation reaches exactly once.

        A cancelled MCP request tells the child with ``notifications/cancelled``, but a
        caller inside a cancelled anyio scope is cancelled again and again, which would
        cut that message off; the inner task is cancelled once and left to send it.
        """
        task = asyncio.ensure_future(call)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def start(self, timeout: float) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        self._owner = asyncio.create_task(self._own(ready), name=f"mcp-child:{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            await self._abandon(ready)
            raise McpStartError(self.name, f"no answer to initialize within {timeout:g} s{self._tail()}") from None
        except asyncio.CancelledError:
            await self._abandon(ready)
            raise
        self.start_seconds = time.perf_counter() - started
        logger.info("MCP '%s' started in %.2f s with %d tools", self.name, self.start_seconds, len(self.tools))

    async def _abandon(self, ready: asyncio.Future[None]) -> None:
        """Stops a child whose start nobody waits for any more; its start error is already reported."""
        await self.stop()
        if ready.done() and not ready.cancelled():
            ready.exception()

    async def _own(self, ready: asyncio.Future[None]) -> None:
        try:
            async with self._connect() as client:
                self.tools = await _list_all_tools(client)
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported through `ready` or `broken`
            if not ready.done():
                ready.set_exception(McpStartError(self.name, self._start_reason(exc)))
            elif not self._stop.is_set():
                self.broken = _describe(exc)
                logger.warning("MCP '%s' stopped unexpectedly: %s", self.name, self.broken)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.broken = self.broken or "stopped"
            if self._stderr is not None:
                await self._stderr.stop()
            await asyncio.to_thread(kill_marked_processes, self.marker)

    def _connect(self) -> contextlib.AbstractAsyncContextManager[Client]:
        spec = self.spec
        if spec.transport == "http":
            assert spec.url is not None
            http = httpx2.AsyncClient(headers=dict(spec.headers), timeout=httpx2.Timeout(30.0, read=300.0))
            return _closing(Client(streamable_http_client(spec.url, http_client=http), mode="legacy"), http)
        assert spec.command is not None
        self._stderr = StderrTail(self.name)
        self._stderr.start()
        params = StdioServerParameters(
            command=spec.command, args=list(spec.args), env=child_environment(spec, self.marker), cwd=spec.cwd
        )
        transport = stdio_client(params, errlog=self._stderr.writer)
        return _releasing_stderr(Client(transport, mode="legacy"), self._stderr)

    def _start_reason(self, exc: BaseException) -> str:
        leaf = _leaf(exc)
        if isinstance(leaf, FileNotFoundError | PermissionError):
            reason = f"cannot run {self.spec.command!r} ({leaf.strerror or leaf}); check that it is installed and on PATH"
        elif isinstance(leaf, NotADirectoryError):
            reason = f"its cwd {self.spec.cwd!r} is not a directory"
        else:
            reason = _describe(leaf)
        return reason + self._tail()

    def _tail(self) -> str:
        tail = self._stderr.tail() if self._stderr is not None else ""
        return f"; its stderr ended with: {tail}" if tail else ""

    async def stop(self) -> None:
        self._stop.set()
        owner = self._owner
        if owner is None or owner.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(owner), STOP_TIMEOUT)
        except (TimeoutError, Exception):
            owner.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(owner, 2.0)
        except asyncio.CancelledError:
            owner.cancel()
            raise


@contextlib.asynccontextmanager
async def _releasing_stderr(client: Client, stderr: StderrTail) -> AsyncIterator[Client]:
    async with contextlib.AsyncExitStack() as stack:
        try:
            entered = await stack.enter_async_context(client)
        finally:
            stderr.close_writer()
        yield entered


@contextlib.asynccontextmanager
async def _closing(client: Client, http: httpx2.AsyncClient) -> AsyncIterator[Client]:
    try:
        async with client as entered:
            yield entered
    finally:
        await http.aclose()


async def _list_all_tools(client: Client) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


class ChildPool:
    """Hands out running children by spec; keeps them warm, bounded, and cleans up after them.

    Releasing a child never waits for it to stop: children to retire are stopped by
    background tasks (counted against ``max_children`` until they are gone), so a
    task's end, or its cancellation, is not held up by a slow shutdown.
    """

    def __init__(
        self,
        *,
        start_timeout: float,
        idle_timeout: float,
        max_children: int,
        exclusive: Iterable[str] = (),
    ) -> None:
        self.start_timeout = start_timeout
        self.idle_timeout = idle_timeout
        self.max_children = max_children
        self.exclusive = frozenset(exclusive)
        self._children: list[Child] = []
        self._starting: dict[Any, asyncio.Future[Child | None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.started_count = 0

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    @contextlib.asynccontextmanager
    async def lease(self, spec: McpServerSpec) -> AsyncIterator[Child]:
        """A healthy child for ``spec``, reserved for the duration of the ``async with``."""
        child = await self._acquire(spec)
        try:
            yield child
        finally:
            self._release(child)

    @contextlib.asynccontextmanager
    async def lease_all(self, specs: Iterable[McpServerSpec]) -> AsyncIterator[list[Child]]:
        """Children for several specs, started side by side; all or none."""
        specs = list(specs)
        held: dict[int, Child] = {}

        async def take(index: int, spec: McpServerSpec) -> None:
            held[index] = await self._acquire(spec)  # no await between acquiring and recording

        try:
            outcomes = await asyncio.gather(*(take(i, s) for i, s in enumerate(specs)), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            yield [held[i] for i in range(len(specs))]
        finally:
            for child in held.values():
                self._release(child)

    async def _acquire(self, spec: McpServerSpec) -> Child:
        key = spec.launch_key()
        shared = spec.name not in self.exclusive and self.idle_timeout > 0
        while True:
            if self._closed:
                raise McpStartError(spec.name, "the bridge is shutting down")
            self._ensure_reaper()
            self._retire_outdated(spec)
            child = self._find(key, shared)
            if child is not None:
                child.in_use += 1
                return child
            if shared and key in self._starting:
                child = await asyncio.shield(self._starting[key])
                if child is not None and child.ready:
                    child.in_use += 1
                    return child
                continue
            if self._has_room():
                return await self._start(spec, key, shared)
            await self._wait_for_room()

    async def _start(self, spec: McpServerSpec, key: Any, shared: bool) -> Child:
        """Starts a child for ``spec``; concurrent tasks wanting the same shared child wait for this one."""
        start: asyncio.Future[Child | None] = asyncio.get_running_loop().create_future()
        if shared:
            self._starting[key] = start
        child = Child(spec=spec, marker=f"{BRIDGE_ID}:{uuid.uuid4().hex[:12]}", in_use=1)  # reserved while starting
        self._children.append(child)
        self.started_count += 1
        try:
            await child.start(self.start_timeout)
        except McpStartError as exc:
            start.set_exception(exc)
            start.exception()  # every waiter re-raises it; none needs to retrieve it
            raise
        except BaseException:
            start.set_result(None)  # cancelled or failed oddly: waiters try again themselves
            raise
        else:
            start.set_result(child)
            return child
        finally:
            if self._starting.get(key) is start:
                del self._starting[key]
            if not child.ready and child in self._children:
                self._children.remove(child)
                self._notify()

    def _find(self, key: Any, shared: bool) -> Child | None:
        for child in self._children:
            if child.ready and not child.outdated and child.spec.launch_key() == key and (shared or child.in_use == 0):
                return child
        return None

    def _retire_outdated(self, spec: McpServerSpec) -> None:
        """An edited entry: children started from its old form stop once no task uses them."""
        key = spec.launch_key()
        for child in self._children:
            if child.name == spec.name and child.spec.launch_key() != key and not child.outdated:
                logger.info("MCP '%s' changed in its config; its running child stops once idle", spec.name)
                child.outdated = True
                if child.in_use == 0:
                    self._discard(child)

    def _release(self, child: Child) -> None:
        child.in_use -= 1
        child.last_used = time.monotonic()
        if not child.healthy or (child.in_use == 0 and (child.outdated or self.idle_timeout == 0)):
            self._discard(child)
        self._notify()

    def _has_room(self) -> bool:
        """True when another child may start now, after making room by retiring the longest-idle one."""
        for child in [c for c in self._children if not c.healthy and c.in_use == 0]:
            self._discard(child)
        if len(self._children) + len(self._stopping) < self.max_children:
            return True
        idle = sorted((c for c in self._children if c.ready and c.in_use == 0), key=lambda c: c.last_used)
        if idle:
            self._discard(idle[0])
        return False

    async def _wait_for_room(self) -> None:
        if not any(c.in_use == 0 and c.ready for c in self._children) and not self._stopping:
            logger.info("All %d child slots are busy; waiting for one", self.max_children)
        changed = self._changed
        await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _discard(self, child: Child) -> None:
        """Takes ``child`` out of the pool at once and stops it in the background."""
        if child not in self._children:
            return
        self._children.remove(child)
        task = asyncio.create_task(child.stop(), name=f"mcp-stop:{child.name}")
        self._stopping.add(task)
        task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        self._stopping.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("Stopping an MCP child failed: %s", _describe(task.exception()))  # type: ignore[arg-type]
        self._notify()

    def _ensure_reaper(self) -> None:
        if self._reaper is None and self.idle_timeout > 0:
            self._reaper = asyncio.create_task(self._reap_idle(), name="mcp-child-reaper")

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(REAPER_PERIOD, self.idle_timeout))
            now = time.monotonic()
            for child in list(self._children):
                if child.in_use == 0 and (now - child.last_used >= self.idle_timeout or not child.healthy):
                    logger.info("Stopping idle MCP '%s'", child.name)
                    self._discard(child)

    async def aclose(self) -> None:
        """Stops every child, and everything any of them started."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for child in list(self._children):
            self._discard(child)
        if self._stopping:
            await asyncio.wait(list(self._stopping), timeout=STOP_TIMEOUT + 3)
        await asyncio.to_thread(kill_marked_processes, f"{BRIDGE_ID}:")


def kill_marked_processes(marker: str, grace: float = 1.0) -> int:
    """Stops every process whose owner marker is ``marker`` (or starts with it, if it ends with ':').

    Blocking (it reads /proc or the OS equivalent); call it in a thread.
    """
    prefix = marker.endswith(":")
    found: list[psutil.Process] = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            value = proc.environ().get(OWNER_VAR)
        except (psutil.Error, OSError):
            continue
        if value is not None and (value.startswith(marker) if prefix else value == marker):
            found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    for proc in _still_running(found, grace):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if found:
        logger.debug("Stopped %d leftover process(es) marked %s", len(found), marker)
    return len(found)


def _still_running(procs: list[psutil.Process], grace: float) -> list[psutil.Process]:
    """Those of ``procs`` still running after ``grace`` seconds.

    A zombie counts as gone: an orphan whose new parent is slow to reap it must not
    hold up every stop for the whole grace period.
    """
    deadline = time.monotonic() + grace
    running = [p for p in procs if _running(p)]
    while running and time.monotonic() < deadline:
        time.sleep(0.02)
        running = [p for p in running if _running(p)]
    return running


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    leaf = _leaf(exc)
    text = str(leaf).strip()
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


_SESSION_ENDED = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    BrokenPipeError,
    ConnectionResetError,
    EOFError,
)
"""What a read or write on a child's streams raises once the child is gone."""


def map_call_error(
    exc: BaseException, *, server: str, tool: str, timeout: float, session_alive: bool = True
) -> ToolCallFailed:
    """The MCP SDK's failure of one tool call as the bridge's error: by type and JSON-RPC code, never by text.

    An error the child answered with (any other code) leaves the child usable: its session still works.
    """
    leaf = _leaf(exc)
    label = f"{server}.{tool}"
    if isinstance(leaf, MCPError):
        if leaf.code == REQUEST_TIMEOUT:
            return ToolTimeout(f"{label} did not finish within {timeout:g} s", name=server, tool=tool)
        if leaf.code == CONNECTION_CLOSED:
            return ChildGone(name=server, tool=tool, reason="its connection closed")
        return ToolCallFailed(f"{label} failed: {leaf.message} (MCP error {leaf.code})", name=server, tool=tool)
    if isinstance(leaf, TimeoutError):
        return ToolTimeout(f"{label} did not finish within {timeout:g} s", name=server, tool=tool)
    if isinstance(leaf, _SESSION_ENDED) or not session_alive:
        return ChildGone(name=server, tool=tool, reason=_describe(leaf))
    logger.warning("Unexpected failure calling %s: %s", label, _describe(leaf))
    return ToolCallFailed(f"{label} failed: {_describe(leaf)}", name=server, tool=tool)
