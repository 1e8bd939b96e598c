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
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import psutil
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult, Tool

from .child_requests import ChildRequests, TaskLink
from .errors import ChildGone, McpStartError, ToolCallFailed, ToolTimeout
from .mcp_config import McpServerSpec

logger = logging.getLogger(__name__)

OWNER_VAR = "LMSTUDIO_BRIDGE_OWNER"


def _bridge_id() -> str:
    me = psutil.Process()
    return f"{me.pid}-{round(me.create_time() * 100)}-{uuid.uuid4().hex[:6]}"


BRIDGE_ID = _bridge_id()
"""Marks every process this bridge process starts (one value per bridge process): the bridge's
pid and start time (centiseconds since the epoch), so a later bridge can tell whether the
bridge that started a process still runs; and a random part. A child's marker is
``BRIDGE_ID:CHILD_ID``."""
_MARKER = re.compile(r"(\d+)-(\d+)-[0-9a-f]+:")

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
"""Seconds a stop waits for the SDK's own stop sequence (stdin closed, 2 s, SIGTERM, 2 s, SIGKILL) before
killing the child's marked processes itself."""
STOP_KILL_GRACE = 1.0
"""Seconds between SIGTERM and SIGKILL when the bridge kills a child's processes itself."""
CLOSE_GRACE = 1.0
"""Seconds the bridge's own shutdown gives its children to exit on their own before killing them."""
CLOSE_KILL_GRACE = 0.5
EXIT_NOTICE = 2.0
"""Seconds a lease waits, after finding a warm child's process gone, for its session to end too."""
LARGE_RESULT_CHARS = 256 * 1024
"""A tool result this large makes the bridge ping the child afterwards (see ``Child._flush_session``)."""
FLUSH_TIMEOUT = 10.0
CALL_GRACE = 2.0
"""Seconds past the tool timeout after which a call is given up even if the SDK's own timeout did not fire."""
STDERR_TAIL_LINES = 15
STDERR_TAIL_CHARS = 1000
STDERR_LOG_LINES = 200
REAPER_PERIOD = 15.0


def child_environment(spec: McpServerSpec, marker: str) -> dict[str, str]:
    """The environment a child gets: a minimal default, its entry's ``env`` over it, and our marker."""
    env = get_default_environment()
    env.update({k: v for k in PASSED_THROUGH_ENV if (v := os.environ.get(k)) is not None})
    env.update(spec.env_dict)
    env[OWNER_VAR] = marker
    return env


_PARENT_DEATH_LAUNCHER = """\
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM: when the bridge dies, so do we
if os.getppid() != int(sys.argv[1]):
    os._exit(70)  # the bridge died before prctl took effect
if sys.argv[2].startswith("+"):
    os.environ["LC_CTYPE"] = sys.argv[2][1:]
else:
    os.environ.pop("LC_CTYPE", None)  # set by Python's own locale coercion (PEP 538), not by the entry
os.execv(sys.argv[3], sys.argv[4:])
"""


def with_parent_death_signal(
    command: str, args: list[str], env: dict[str, str], cwd: str | None
) -> tuple[str, list[str]]:
    """On Linux, the command line that runs ``command`` with SIGTERM as its parent-death signal.

    ``prctl(PR_SET_PDEATHSIG)`` must be called in the child between fork and exec, and the
    SDK spawns through ``anyio.open_process``, which takes no ``preexec_fn``; so a small
    launcher (this Python, isolated, without site) sets it and execs the command, keeping
    the pid, the argv and the environment. A bridge killed with SIGKILL then still takes its
    children with it (their own children are left to them, and to the next start's sweep).
    Elsewhere, or when the command is not found (the SDK's spawn then reports that), the
    command line is unchanged. Blocking: it looks ``command`` up on the child's PATH.
    """
    if sys.platform != "linux" or not os.path.isabs(sys.executable):
        return command, args
    if os.sep in command:
        path: str | None = command if os.path.isabs(command) else os.path.join(cwd or os.getcwd(), command)
    else:
        path = shutil.which(command, path=env.get("PATH", os.defpath))
    if path is None or not os.path.isabs(path) or not os.path.isfile(path) or not os.access(path, os.X_OK):
        return command, args
    lc_ctype = "+" + env["LC_CTYPE"] if "LC_CTYPE" in env else "-"
    launcher = ["-I", "-S", "-c", _PARENT_DEATH_LAUNCHER, str(os.getpid()), lc_ctype, path, command]
    return sys.executable, [*launcher, *args]


def _own_child_process(marker: str) -> psutil.Process | None:
    """This bridge's child process that carries ``marker`` (blocking: call it in a thread)."""
    for proc in psutil.Process().children():
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get(OWNER_VAR) == marker:
                return proc
    return None


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
        try:
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self._reader)
        except BaseException:
            self._reader.close()
            raise
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
            await asyncio.wait([self._task])
            _retrieve(self._task)

    def tail(self) -> str:
        """The last lines, as many as fit in ``STDERR_TAIL_CHARS`` (at least 3): a tool such as npm says what
        failed several lines before its closing footnote."""
        kept: list[str] = []
        for line in reversed(self.lines):
            if len(kept) >= 3 and sum(map(len, kept)) + len(line) > STDERR_TAIL_CHARS:
                break
            kept.insert(0, line)
        return " | ".join(kept)


@dataclass(eq=False)
class Child:
    """One running child MCP server and the session to it.

    Its owner task enters and leaves the MCP client. Nothing else cancels that task while
    the SDK winds the session down (a second cancellation would cut off the SDK's own
    stop sequence, leaving the process alive); a stop that takes too long is helped by
    killing the child's marked processes instead, and only then given up on.
    """

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
    _stopper: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the owner should leave the session: a stop was asked for, or the session ended."""
    _stop_asked: bool = False
    _session_ended: bool = False
    _process: psutil.Process | None = None
    """The child's own process (stdio only), to check that it still runs before a task gets it."""
    _stderr: StderrTail | None = None
    _calls: set[asyncio.Future[Any]] = field(default_factory=set)
    _flushing: asyncio.Task[None] | None = None
    requests: ChildRequests = field(init=False)
    """Answers the child's own requests (sampling, elicitation, roots) for the task it serves."""

    def __post_init__(self) -> None:
        self.requests = ChildRequests(self.spec.name)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def healthy(self) -> bool:
        """Not known to be broken, its session not ended, and its owner task (so its session) still runs.

        It may still be starting."""
        return (
            self.broken is None
            and not self._session_ended
            and not self._stop_asked
            and self._owner is not None
            and not self._owner.done()
        )

    @property
    def ready(self) -> bool:
        """Healthy and started: ``initialize`` answered, tools listed."""
        return self._client is not None and self.healthy

    async def alive(self) -> bool:
        """Ready, and its process still runs: what a warm child must be before a task gets it.

        A child that died while idle is noticed here even when its session's end has not been
        read yet. A process gone while its session goes on (a launcher that handed its pipes to
        a process of its own and exited) is not checked again.
        """
        if not self.ready:
            return False
        process = self._process
        if process is None or await asyncio.to_thread(_running, process):
            return self.ready
        try:
            async with asyncio.timeout(EXIT_NOTICE):
                while not self._session_ended:
                    await self._wake.wait()
                    if self._stop_asked:
                        return False
        except TimeoutError:
            logger.info("MCP '%s': its process %d exited but its session goes on", self.name, process.pid)
            self._process = None
            return self.ready
        self.broken = self.broken or "it exited while idle"
        return False

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
                f"{self.name}.{name} answered with a {type(result).__name__}, not a tool result",
                name=self.name,
                tool=name,
            )
        if _result_chars(result) >= LARGE_RESULT_CHARS:
            self._flush_session()
        return result

    def _flush_session(self) -> None:
        """Makes the child send one more message, in the background.

        The SDK keeps the last line read from a child, and the last message parsed from it, in
        the locals of its reader tasks until the next one arrives: after a large result, that
        is the whole result, twice, for as long as the child stays idle. A ping's answer
        replaces them; the caller's own reference is the only one left.
        """
        client = self._client
        if client is None or self._flushing is not None:
            return

        async def ping() -> None:
            try:
                async with asyncio.timeout(FLUSH_TIMEOUT):
                    await client.session.send_ping()
            except Exception as exc:  # noqa: BLE001 - an unanswered ping changes nothing; calls show real trouble
                logger.debug("MCP '%s' did not answer a ping: %s", self.name, _describe(exc))
            finally:
                self._flushing = None

        self._flushing = asyncio.create_task(ping(), name=f"mcp-flush:{self.name}")

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
        """Starts the child and waits, at most ``timeout`` seconds, for its tools.

        On any failure (no answer in time, an error, the caller's cancellation) the child is
        already being stopped in the background when this returns: its processes are killed at
        once, since a child that never answered is owed no graceful stop.
        """
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ready.add_done_callback(_retrieve)
        started = time.perf_counter()
        self._owner = asyncio.create_task(self._own(ready), name=f"mcp-child:{self.name}")
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(ready)
        except TimeoutError:
            self.begin_stop()
            raise McpStartError(self.name, f"no answer to initialize within {timeout:g} s{self._tail()}") from None
        except BaseException:
            self.begin_stop()
            raise
        self.start_seconds = time.perf_counter() - started
        logger.info("MCP '%s' started in %.2f s with %d tools", self.name, self.start_seconds, len(self.tools))

    async def _own(self, ready: asyncio.Future[None]) -> None:
        try:
            params = await asyncio.to_thread(self._stdio_params) if self.spec.transport != "http" else None
            async with self._connect(params) as client:
                self.tools = await _list_all_tools(client)
                if params is not None:
                    self._process = await asyncio.to_thread(_own_child_process, self.marker)
                self._client = client
                ready.set_result(None)
                while not (self._stop_asked or self._session_ended):
                    await self._wake.wait()
                if not self._stop_asked:
                    self.broken = self.broken or "its session ended: the process exited or closed its stdout"
                    logger.warning("MCP '%s' stopped unexpectedly: %s", self.name, self.broken)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(McpStartError(self.name, self._start_reason(exc)))
            elif not self._stop_asked:
                self.broken = _describe(exc)
                logger.warning("MCP '%s' stopped unexpectedly: %s", self.name, self.broken)
            if not isinstance(exc, Exception):
                raise
        finally:
            self.broken = self.broken or "stopped"
            if not ready.done():
                ready.set_exception(McpStartError(self.name, "stopped while starting"))
            if self._stderr is not None:
                await self._stderr.stop()
            await asyncio.to_thread(kill_marked_processes, self.marker)

    def _session_end(self) -> None:
        """Called by the transport's read stream at its end: the child closed its stdout, or exited."""
        self._session_ended = True
        self._wake.set()

    def _stdio_params(self) -> StdioServerParameters:
        """How to run the child (blocking: it looks the command up on the child's PATH)."""
        spec = self.spec
        assert spec.command is not None
        env = child_environment(spec, self.marker)
        command, args = with_parent_death_signal(spec.command, list(spec.args), env, spec.cwd)
        return StdioServerParameters(
            command=command, args=args, env=env, cwd=spec.cwd,
            encoding_error_handler="replace",  # "strict" turns one bad byte into a session that never answers again
        )  # fmt: skip

    def _connect(self, params: StdioServerParameters | None) -> contextlib.AbstractAsyncContextManager[Client]:
        spec = self.spec
        if params is None:
            assert spec.url is not None
            http = httpx2.AsyncClient(headers=dict(spec.headers), timeout=httpx2.Timeout(30.0, read=300.0))
            transport = _watching_end(streamable_http_client(spec.url, http_client=http), self._session_end)
            return _closing(Client(transport, mode="legacy", **self.requests.callbacks()), http)
        self._stderr = StderrTail(self.name)
        self._stderr.start()
        transport = _watching_end(stdio_client(params, errlog=self._stderr.writer), self._session_end)
        return _releasing_stderr(Client(transport, mode="legacy", **self.requests.callbacks()), self._stderr)

    def _start_reason(self, exc: BaseException) -> str:
        leaf = _leaf(exc)
        if isinstance(leaf, FileNotFoundError | PermissionError):
            command = self.spec.written_command if self.spec.written_command is not None else self.spec.command
            reason = f"cannot run {command!r} ({leaf.strerror or leaf}); check that it is installed and on PATH"
        elif isinstance(leaf, NotADirectoryError):
            reason = "its cwd is not a directory"
        else:
            reason = _describe(leaf)
        return reason + self._tail()

    def _tail(self) -> str:
        tail = self._stderr.tail() if self._stderr is not None else ""
        return f"; its stderr ended with: {tail}" if tail else ""

    def begin_stop(self) -> asyncio.Task[None]:
        """Starts stopping the child in the background (once); the task that does it.

        Never waits, so a caller that is being cancelled can call it; it takes the child out
        of service at once.
        """
        if self._stopper is None:
            self._stop_asked = True
            self._wake.set()
            self._stopper = asyncio.create_task(self._stop(), name=f"mcp-stop:{self.name}")
        return self._stopper

    async def stop(self) -> None:
        """Stops the child and waits for it; a cancellation of the caller is the caller's (the stop goes on)."""
        await asyncio.shield(self.begin_stop())

    async def _stop(self) -> None:
        owner = self._owner
        if owner is None or owner.done():
            return
        if self._client is None:
            # Still starting (the SDK is waiting for `initialize`): end that wait, and kill its processes now.
            owner.cancel()
            killing = asyncio.ensure_future(asyncio.to_thread(kill_marked_processes, self.marker, STOP_KILL_GRACE))
            await asyncio.wait([owner, killing], timeout=STOP_TIMEOUT)
        else:
            await asyncio.wait([owner], timeout=STOP_TIMEOUT)  # the SDK's own sequence: stdin closed, TERM, KILL
        if owner.done():
            return
        logger.warning("MCP '%s' is slow to stop; killing its processes", self.name)
        await asyncio.to_thread(kill_marked_processes, self.marker, STOP_KILL_GRACE)
        await asyncio.wait([owner], timeout=STOP_TIMEOUT)
        if not owner.done():
            logger.warning("MCP '%s' did not stop; leaving its session behind", self.name)
            owner.cancel()


def _result_chars(result: CallToolResult) -> int:
    """About how many characters a tool result holds (its texts, data and resources)."""
    total = 0
    for block in result.content:
        resource = getattr(block, "resource", None)
        for holder in (block, resource):
            for attribute in ("text", "data", "blob"):
                value = getattr(holder, attribute, None)
                if isinstance(value, str):
                    total += len(value)
    return total


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Marks a future's exception as seen (a start nobody waits for any more still fails quietly)."""
    if not future.cancelled():
        future.exception()


class _EndWatchingStream:
    """A transport's read stream that calls ``on_end`` when it ends (``ReadStream`` protocol).

    The session's end is how a child that exited, or closed its stdout, is noticed while
    nobody is calling it.
    """

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _EndWatchingStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _EndWatchingStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


@contextlib.asynccontextmanager
async def _watching_end(
    transport: contextlib.AbstractAsyncContextManager[Any], on_end: Callable[[], None]
) -> AsyncIterator[Any]:
    async with transport as streams:
        read_stream, write_stream = streams
        yield _EndWatchingStream(read_stream, on_end), write_stream


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
        self._marker = f"{BRIDGE_ID}:{uuid.uuid4().hex[:6]}-"
        """The start of the marker of every child of this pool (a process may hold several pools)."""
        sweep_orphans_in_background()

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
    async def lease_all(
        self, specs: Iterable[McpServerSpec], link: TaskLink | None = None
    ) -> AsyncIterator[list[Child]]:
        """Children for several specs, started side by side; all or none.

        ``link`` answers the children's own requests while the lease lasts (from their start on).
        """
        specs = list(specs)
        held: dict[int, Child] = {}

        async def take(index: int, spec: McpServerSpec) -> None:
            child = held[index] = await self._acquire(spec, link)  # no await between acquiring and recording
            if link is not None:
                child.requests.attach(link)

        try:
            outcomes = await asyncio.gather(*(take(i, s) for i, s in enumerate(specs)), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            yield [held[i] for i in range(len(specs))]
        finally:
            for child in held.values():
                if link is not None:
                    child.requests.detach(link)
                self._release(child)

    async def _acquire(self, spec: McpServerSpec, link: TaskLink | None = None) -> Child:
        key = spec.launch_key()
        shared = spec.name not in self.exclusive and self.idle_timeout > 0
        while True:
            if self._closed:
                raise McpStartError(spec.name, "the bridge is shutting down")
            self._ensure_reaper()
            self._retire_outdated(spec)
            child = self._find(key, shared)
            if child is not None:
                child.in_use += 1  # reserved before any await, so the reaper leaves it alone
                try:
                    alive = await child.alive()
                except BaseException:
                    self._release(child)
                    raise
                if alive:
                    return child
                logger.info("MCP '%s' exited while idle; starting it again", child.name)
                self._release(child)
                continue
            if shared and key in self._starting:
                child = await asyncio.shield(self._starting[key])
                if child is not None and child.ready:
                    child.in_use += 1
                    return child
                continue
            if self._has_room():
                return await self._start(spec, key, shared, link)
            await self._wait_for_room()

    async def _start(self, spec: McpServerSpec, key: Any, shared: bool, link: TaskLink | None = None) -> Child:
        """Starts a child for ``spec``; concurrent tasks wanting the same shared child wait for this one."""
        start: asyncio.Future[Child | None] = asyncio.get_running_loop().create_future()
        if shared:
            self._starting[key] = start
        child = Child(spec=spec, marker=f"{self._marker}{uuid.uuid4().hex[:12]}", in_use=1)  # reserved while starting
        if link is not None:
            child.requests.attach(link)  # a child may ask for roots as soon as it is initialized
        self._children.append(child)
        self.started_count += 1
        try:
            await child.start(self.start_timeout)
        except McpStartError as exc:
            start.set_exception(exc)
            start.exception()  # every waiter re-raises it; none needs to retrieve it
            self._release(child)  # already stopping; counted until it is gone
            raise
        except BaseException:
            start.set_result(None)  # cancelled or failed oddly: waiters try again themselves
            self._release(child)
            raise
        else:
            start.set_result(child)
            return child
        finally:
            if self._starting.get(key) is start:
                del self._starting[key]

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
        """Takes ``child`` out of the pool at once and stops it in the background (never waits)."""
        if child not in self._children:
            return
        self._children.remove(child)
        task = child.begin_stop()
        if not task.done():
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
            await asyncio.wait([self._reaper])  # unlike `await`, leaves a cancellation of ours to propagate
        for child in list(self._children):
            self._discard(child)
        # A host closes our stdin and sends SIGTERM 2 s later (the MCP SDK's client does): children still
        # running a second after their stdin closed are killed, not given the SDK's longer stop sequence.
        if self._stopping:
            await asyncio.wait(list(self._stopping), timeout=CLOSE_GRACE)
        await asyncio.to_thread(kill_marked_processes, self._marker, CLOSE_KILL_GRACE)
        if self._stopping:
            await asyncio.wait(list(self._stopping), timeout=STOP_TIMEOUT)


def kill_marked_processes(marker: str, grace: float = 1.0) -> int:
    """Stops every process whose owner marker is ``marker`` (or starts with it, if it ends with ':' or '-').

    Blocking (it reads /proc or the OS equivalent); call it in a thread.
    """
    prefix = marker.endswith((":", "-"))
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
    _terminate(found, grace)
    if found:
        logger.debug("Stopped %d leftover process(es) marked %s", len(found), marker)
    return len(found)


def sweep_orphans(grace: float = STOP_KILL_GRACE) -> int:
    """Stops the processes left by bridge processes that no longer run (killed with SIGKILL, say).

    Only processes of this user whose marker names a bridge (pid and start time) that is gone;
    never one whose bridge still runs, nor one marked in another form. Blocking: call it in a thread.
    """
    me = psutil.Process()
    my_uid = _real_uid(me)
    verdicts: dict[tuple[int, int], bool] = {}
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid == me.pid:
            continue
        try:
            if _real_uid(proc) != my_uid:
                continue
            value = proc.environ().get(OWNER_VAR)
        except (psutil.Error, OSError):
            continue
        owner = _marker_owner(value)
        if owner is None:
            continue
        if owner not in verdicts:
            verdicts[owner] = not _bridge_running(*owner)
        if verdicts[owner]:
            found.append(proc)
    _terminate(found, grace)
    if found:
        logger.info("Stopped %d process(es) left behind by a bridge that is gone", len(found))
    return len(found)


_sweep_lock = threading.Lock()
_sweep_thread: threading.Thread | None = None


def sweep_orphans_in_background() -> None:
    """Runs ``sweep_orphans`` once per bridge process, in a thread of its own: start-up does not wait for it."""
    global _sweep_thread
    with _sweep_lock:
        if _sweep_thread is not None:
            return
        _sweep_thread = threading.Thread(target=_sweep_quietly, name="mcp-orphan-sweep", daemon=True)
        _sweep_thread.start()


def _sweep_quietly() -> None:
    try:
        sweep_orphans()
    except Exception as exc:  # noqa: BLE001 - a failed sweep must not take the bridge down
        logger.warning("Sweeping processes left by an earlier bridge failed: %s", _describe(exc))


def _real_uid(proc: psutil.Process) -> Any:
    """The process's real user: its uid where there is one, else its user name."""
    return proc.uids().real if hasattr(proc, "uids") else proc.username()


def _marker_owner(value: str | None) -> tuple[int, int] | None:
    """The (pid, start time in centiseconds) of the bridge that wrote ``value``; None for another form."""
    match = _MARKER.match(value or "")
    return (int(match[1]), int(match[2])) if match else None


def _bridge_running(pid: int, started: int) -> bool:
    """Whether the bridge with this pid and start time still runs (a reused pid has another start time)."""
    try:
        proc = psutil.Process(pid)
        return abs(round(proc.create_time() * 100) - started) <= 150 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # cannot tell: leave its processes alone


def _terminate(procs: list[psutil.Process], grace: float) -> None:
    """SIGTERM to each of ``procs``, then SIGKILL to those still running after ``grace`` seconds."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    for proc in _still_running(procs, grace):
        with contextlib.suppress(psutil.Error):
            proc.kill()


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
