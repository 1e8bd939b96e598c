"""Where things are, and the MCP config files tests write: the echo, probe and time servers as entries."""

from __future__ import annotations

import contextlib
import json
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
"""The repository."""
SUPPORT = Path(__file__).resolve().parent
ECHO_SERVER = str(SUPPORT / "echo_server.py")
PROBE_SERVER = str(SUPPORT / "probe_server.py")
ASKING_SERVER = str(SUPPORT / "asking_server.py")
GUIDE_MODELS = ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509", "deepseek/deepseek-coder-33b"]
"""The models of the multi-model guide, in LM Studio's order: coding, reasoning, another coding model."""


def echo_entry(name: str = "echo", *extra: str, root: Path | None = None) -> dict[str, Any]:
    """An MCP config entry that starts ``echo_server.py`` (flags in ``extra``) with this Python."""
    args = [ECHO_SERVER, "--name", name, *extra]
    if root is not None:
        args += ["--root", str(root)]
    return {"command": sys.executable, "args": args}


def probe_entry(log: Path | None = None, **env: str) -> dict[str, Any]:
    """An MCP config entry that starts ``probe_server.py``, logging its calls to ``log``, with ``env``."""
    args = [PROBE_SERVER] + (["--log", str(log)] if log else [])
    return {"command": sys.executable, "args": args, "env": env}


def asking_entry(annotations: Path | None = None, log: Path | None = None) -> dict[str, Any]:
    """An MCP config entry that starts ``asking_server.py``: a child that makes requests of its own."""
    args = [ASKING_SERVER]
    if annotations is not None:
        args += ["--annotations", str(annotations)]
    if log is not None:
        args += ["--log", str(log)]
    return {"command": sys.executable, "args": args}


def time_entry() -> dict[str, Any]:
    """The published ``mcp-server-time``, in UTC."""
    return {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


def write_config(path: Path, servers: dict[str, dict[str, Any]]) -> Path:
    """An MCP config file with ``servers`` under ``mcpServers``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mcpServers": servers}, indent=2))
    return path


@contextlib.contextmanager
def http_echo_server(name: str = "web", start_timeout: float = 30.0) -> Iterator[str]:
    """``echo_server.py --http-port 0`` as a process; yields its streamable-HTTP URL once it listens.

    The server picks a free port itself and names it on stderr ("Uvicorn running on URL"), so two
    tests (or two xdist workers) never race for one port, and nothing polls.
    """
    process = subprocess.Popen(
        [sys.executable, ECHO_SERVER, "--name", name, "--http-port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found: queue.Queue[str | None] = queue.Queue()

    def read_stderr() -> None:  # reads to the end, so the pipe never fills
        assert process.stderr is not None
        for line in process.stderr:
            if match := _LISTENING.search(line):
                found.put(match.group(1))
        found.put(None)

    threading.Thread(target=read_stderr, name=f"http-echo-{name}", daemon=True).start()
    try:
        try:
            address = found.get(timeout=start_timeout)
        except queue.Empty:
            address = None
        if address is None:
            raise RuntimeError(f"the HTTP echo server did not start (exit code {process.poll()})")
        yield f"{address}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


_LISTENING = re.compile(r"Uvicorn running on (http://\S+)")
