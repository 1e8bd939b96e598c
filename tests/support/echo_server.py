"""A small MCP server (stdio) with tools that behave well, badly, slowly or fatally.

Run: ``python tests/support/echo_server.py [--name NAME] [--root DIR] [flags]``

Tools: ``echo(text)``, ``add(a, b)``, ``read_file(path)`` (below ``--root``), ``fail(message)``
(an ``is_error`` result whose text is exactly ``message``), ``slow(seconds)`` (reports progress),
``big(chars)``, ``crash()`` (``os._exit(3)``), ``spawn_grandchild(new_session=False)`` (starts a
``sleep 600`` that outlives this server; returns its pid), ``counter()`` (``{"count": n, "pid": pid}``).

Flags: ``--crash-on-start`` (exit 3 before serving), ``--hang-on-start`` (never answers
``initialize``; exits when stdin closes), ``--stderr-flood`` (megabytes to stderr at start and on every
call), ``--exit-after N`` (exit 0 shortly after the N-th tool call is answered), ``--weird-names``
(also offers ``echo`` as ``dotted.echo`` and under an 80-character name with spaces), ``--http-port N``
(serve streamable HTTP at ``http://127.0.0.1:N/mcp`` instead of stdio; ``0`` picks a free port,
named on stderr as ``Uvicorn running on http://127.0.0.1:PORT``).

Nothing but the MCP protocol is written to stdout.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import Field

FLOOD_START_BYTES = 2 * 1024 * 1024
FLOOD_CALL_BYTES = 1024 * 1024
TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
"""A 1x1 red PNG, base64."""
LONG_NAME = "echo with a very long name that no OpenAI function name could ever carry as it is"


class CallHooks:
    """What happens on every tool call: counting, stderr flooding, exiting after N calls."""

    def __init__(self, flood: bool, exit_after: int | None) -> None:
        self.flood = flood
        self.exit_after = exit_after
        self.calls = 0
        self._lock = threading.Lock()

    def on_call(self) -> int:
        with self._lock:
            self.calls += 1
            calls = self.calls
        if self.exit_after is not None:
            if calls > self.exit_after:
                os._exit(0)
            if calls == self.exit_after:
                threading.Timer(0.3, os._exit, args=(0,)).start()
        if self.flood:
            flood_stderr(FLOOD_CALL_BYTES)
        return calls


def flood_stderr(size: int) -> None:
    line = ("stderr flood " + "#" * 66 + "\n").encode()
    for _ in range(size // len(line) + 1):
        sys.stderr.buffer.write(line)
    sys.stderr.buffer.flush()


def build_server(
    name: str, root: Path, hooks: CallHooks, weird_names: bool = False, screenshot: bool = False
) -> MCPServer:
    server = MCPServer(name, version="1.0.0", instructions="A test server with echo, arithmetic and failure tools.")
    root = root.resolve()
    tally = {"count": 0}

    @server.tool(description="Return the text unchanged.")
    def echo(text: Annotated[str, Field(description="text to return")]) -> str:
        hooks.on_call()
        return text

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        hooks.on_call()
        return a + b

    @server.tool(description="Read a UTF-8 text file below the server's root directory.")
    def read_file(path: Annotated[str, Field(description="path relative to the root")]) -> CallToolResult:
        hooks.on_call()
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            return _error(f"access denied: {path} is outside {root}")
        try:
            return CallToolResult(content=[TextContent(type="text", text=target.read_text(encoding="utf-8"))])
        except OSError as exc:
            return _error(f"cannot read {path}: {exc.strerror or exc}")

    @server.tool(description="Always fail with the given message.")
    def fail(message: str) -> CallToolResult:
        hooks.on_call()
        return _error(message)

    @server.tool(description="Sleep for the given number of seconds, reporting progress.")
    async def slow(seconds: float, ctx: Context) -> str:
        await anyio.to_thread.run_sync(hooks.on_call)
        steps = max(1, min(10, math.ceil(seconds / 0.1)))
        for step in range(1, steps + 1):
            await anyio.sleep(seconds / steps)
            await ctx.report_progress(step, steps, message=f"slept {step}/{steps}")
        return f"slept {seconds}"

    @server.tool(description="Return a text of exactly `chars` characters (a repeated digit pattern).")
    def big(chars: int) -> str:
        hooks.on_call()
        return ("0123456789" * (chars // 10 + 1))[: max(0, chars)]

    @server.tool(description="Make the server process exit at once with status 3.")
    def crash() -> str:
        hooks.on_call()
        os._exit(3)

    @server.tool(description="Start a long-lived grandchild process that outlives this server; return its pid.")
    def spawn_grandchild(new_session: bool = False) -> int:
        hooks.on_call()
        sleeper = shutil.which("sleep")
        command = [sleeper, "600"] if sleeper else [sys.executable, "-c", "import time; time.sleep(600)"]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=new_session,
        )
        return process.pid

    @server.tool(name="counter", description="Count calls to this tool in this process; return the count and the pid.")
    def counter() -> dict[str, int]:
        hooks.on_call()
        tally["count"] += 1
        return {"count": tally["count"], "pid": os.getpid()}

    if screenshot:

        @server.tool(description="Take a screenshot: an image, and a line about it.")
        def screenshot() -> CallToolResult:
            hooks.on_call()
            return CallToolResult(
                content=[
                    TextContent(type="text", text="a screenshot of the login page"),
                    ImageContent(type="image", data=TINY_PNG, mime_type="image/png"),
                ]
            )

    if weird_names:
        server.add_tool(echo, name="dotted.echo", description="echo, under a name with a dot")
        server.add_tool(echo, name=LONG_NAME, description="echo, under a long name with spaces")
    return server


def _error(text: str) -> CallToolResult:
    return CallToolResult(is_error=True, content=[TextContent(type="text", text=text)])


def hang_until_stdin_closes(limit: float = 600.0) -> None:
    """Read and ignore stdin (so no request is ever answered) until it closes or ``limit`` passes."""
    closed = threading.Event()

    def drain() -> None:
        while sys.stdin.buffer.read1(65536):
            pass
        closed.set()

    threading.Thread(target=drain, daemon=True).start()
    closed.wait(limit)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="echo")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    parser.add_argument("--crash-on-start", action="store_true")
    parser.add_argument("--hang-on-start", action="store_true")
    parser.add_argument("--stderr-flood", action="store_true")
    parser.add_argument("--exit-after", type=int, default=None)
    parser.add_argument("--weird-names", action="store_true")
    parser.add_argument("--screenshot", action="store_true", help="add a tool whose result holds an image")
    parser.add_argument("--http-port", type=int, default=None, help="serve streamable HTTP on 127.0.0.1 instead")
    args = parser.parse_args(argv)

    if args.crash_on_start:
        sys.stderr.write(f"{args.name}: crashing on start as asked\n")
        sys.stderr.flush()
        os._exit(3)
    if args.hang_on_start:
        hang_until_stdin_closes()
        return
    if args.stderr_flood:
        flood_stderr(FLOOD_START_BYTES)
    hooks = CallHooks(flood=args.stderr_flood, exit_after=args.exit_after)
    server = build_server(args.name, args.root, hooks, weird_names=args.weird_names, screenshot=args.screenshot)
    if args.http_port is not None:
        server.run("streamable-http", host="127.0.0.1", port=args.http_port)
    else:
        server.run()


if __name__ == "__main__":
    main()
