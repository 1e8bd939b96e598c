"""A tiny MCP server (stdio) that lets tests look inside a child: its environment and its cancellations.

Run: ``python tests/support/probe_server.py [--log FILE]``

Tools: ``getenv(name)`` (the variable's value, or ``"<unset>"``), ``env_names()`` (every variable
name, sorted, comma-separated), ``wait(seconds)`` (sleeps; appends ``started <pid>`` and then ``finished`` or
``cancelled`` to the ``--log`` file, so a test sees whether a call was cancelled).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anyio
from mcp.server import MCPServer


def build_server(log: Path | None) -> MCPServer:
    server = MCPServer("probe", version="1.0.0")

    def note(line: str) -> None:
        if log is not None:
            with log.open("a", encoding="utf-8") as out:
                out.write(line + "\n")

    @server.tool(description="The value of one environment variable, or <unset>.")
    def getenv(name: str) -> str:
        return os.environ.get(name, "<unset>")

    @server.tool(description="The names of every environment variable, sorted, comma-separated.")
    def env_names() -> str:
        return ",".join(sorted(os.environ))

    @server.tool(description="Sleep for the given number of seconds.")
    async def wait(seconds: float) -> str:
        note(f"started {os.getpid()}")
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            note("cancelled")
            raise
        note("finished")
        return f"waited {seconds}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    build_server(args.log).run()


if __name__ == "__main__":
    main()
