"""The bridge as tests and benchmarks reach it: in this process, over stdio, or as the command line.

- ``bridge_client``: the bridge's MCP server (``build_server``) in this process. The MCP client
  speaks the same JSON-RPC messages as over stdio (``mode="legacy"``: initialize, progress,
  cancellation), through in-memory streams instead of a pipe to a subprocess. Child MCP servers
  are still real processes. Use it for everything that is not about stdio or the bridge process.
- ``stdio_bridge`` / ``stdio_bridge_client``: ``python -m lmstudio_bridge`` as a subprocess, as an
  MCP host starts it. For the protocol on the wire, process hygiene and signals.
- ``run_cli``: ``lmstudio_bridge.cli.main(argv)`` in this process, with its stdout, stderr and
  exit code, as a terminal would see them (``run_in_process`` does the same for any entry point).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import psutil
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from lmstudio_bridge import cli
from lmstudio_bridge.config import load_settings
from lmstudio_bridge.server import build_server
from lmstudio_bridge.service import Bridge

from .common import ROOT

BRIDGE_LOGGER = "lmstudio_bridge"


def bridge_environment(base_url: str, config: Path | None = None, **env: str) -> dict[str, str]:
    """The variables a test bridge is started with: LM Studio's address, the MCP config, DEBUG logs."""
    environment = {"LMSTUDIO_BASE_URL": base_url, "LMSTUDIO_BRIDGE_LOG_LEVEL": "DEBUG", **env}
    if config is not None:
        environment["LMSTUDIO_BRIDGE_MCP_CONFIG"] = str(config)
    return environment


def _workdir(config: Path | None, cwd: Path | None) -> Path:
    return cwd or (config.parent if config else ROOT)


# ----------------------------------------------------------------------------- in this process


@asynccontextmanager
async def bridge_client(
    base_url: str,
    config: Path | None = None,
    cwd: Path | None = None,
    read_timeout: float = 60,
    callbacks: Mapping[str, Any] | None = None,
    **env: str,
) -> AsyncIterator[Client]:
    """The bridge's MCP server in this process, connected to an MCP client over in-memory streams.

    ``env`` holds the bridge's settings as environment variables (``LMSTUDIO_BRIDGE_MAX_ROUNDS="2"``);
    they are read exactly as a bridge process would read them, and nothing else of this process's
    environment is. The bridge's logs go to the ``lmstudio_bridge`` logger at the
    ``LMSTUDIO_BRIDGE_LOG_LEVEL`` level (DEBUG unless given): ``caplog`` sees them. ``callbacks`` are the
    client's own (``elicitation_callback``, ``list_roots_callback``, ...): a host that supports them.
    """
    environ = bridge_environment(base_url, config, **env)
    async with bridge_client_for(
        environ, _workdir(config, cwd), read_timeout=read_timeout, callbacks=callbacks
    ) as client:
        yield client


@asynccontextmanager
async def bridge_client_for(
    environ: Mapping[str, str],
    cwd: Path,
    *,
    read_timeout: float = 60,
    callbacks: Mapping[str, Any] | None = None,
) -> AsyncIterator[Client]:
    """``bridge_client`` for a bridge that would be started with the environment ``environ`` in ``cwd``."""
    async with bridge_in_process(environ, cwd) as bridge:
        server = build_server(bridge.settings, bridge)
        async with Client(server, mode="legacy", read_timeout_seconds=read_timeout, **dict(callbacks or {})) as client:
            yield client


@asynccontextmanager
async def bridge_in_process(environ: Mapping[str, str], cwd: Path) -> AsyncIterator[Bridge]:
    """A ``Bridge`` built as a bridge process builds it: settings from ``environ``, config files from ``cwd``."""
    settings = load_settings(environ=environ)
    with contextlib.chdir(cwd):
        bridge = Bridge(settings)  # finds the project's .mcp.json in the working directory, like a process
    with bridge_log_level(settings.log_level):
        async with bridge:
            yield bridge


@contextlib.contextmanager
def bridge_log_level(level: str | int) -> Iterator[None]:
    """The bridge's logger at ``level`` for a while, as ``LMSTUDIO_BRIDGE_LOG_LEVEL`` sets it in a process."""
    logger = logging.getLogger(BRIDGE_LOGGER)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


# ----------------------------------------------------------------------------- over stdio


@dataclass
class StdioBridge:
    """A bridge process and the MCP client connected to it over its stdin and stdout."""

    client: Client
    pid: int
    stderr: Path | None

    def logs(self) -> str:
        """What the bridge wrote on stderr so far (its logs)."""
        return self.stderr.read_text(errors="replace") if self.stderr else ""


def stdio_environment(base_url: str, config: Path | None = None, **env: str) -> dict[str, str]:
    """The whole environment of a bridge process: the test's variables, a hermetic HOME, PATH."""
    return {
        "HOME": os.environ["HOME"],
        "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME", ""),
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        **bridge_environment(base_url, config, **env),
    }


@asynccontextmanager
async def stdio_bridge(
    base_url: str,
    config: Path | None = None,
    stderr: Path | None = None,
    *,
    cwd: Path | None = None,
    read_timeout: float = 60,
    callbacks: Mapping[str, Any] | None = None,
    **env: str,
) -> AsyncIterator[StdioBridge]:
    """``python -m lmstudio_bridge`` as a subprocess, spoken to over stdio; its stderr in ``stderr`` if given.

    ``callbacks`` are the client's own, as in ``bridge_client``."""
    before = {p.pid for p in psutil.Process().children()}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lmstudio_bridge"],
        env=stdio_environment(base_url, config, **env),
        cwd=str(_workdir(config, cwd)),
    )
    with contextlib.ExitStack() as files:
        errlog = files.enter_context(stderr.open("w")) if stderr is not None else sys.stderr
        transport = stdio_client(params, errlog=errlog)
        async with Client(
            transport, mode="legacy", read_timeout_seconds=read_timeout, **dict(callbacks or {})
        ) as client:
            (pid,) = [p.pid for p in psutil.Process().children() if p.pid not in before]
            yield StdioBridge(client, pid, stderr)


@asynccontextmanager
async def stdio_bridge_client(
    base_url: str,
    config: Path | None = None,
    cwd: Path | None = None,
    read_timeout: float = 60,
    callbacks: Mapping[str, Any] | None = None,
    **env: str,
) -> AsyncIterator[Client]:
    """``stdio_bridge``'s client alone: the same arguments as ``bridge_client``, over a real process."""
    async with stdio_bridge(
        base_url, config, cwd=cwd, read_timeout=read_timeout, callbacks=callbacks, **env
    ) as running:
        yield running.client


# ----------------------------------------------------------------------------- the command line


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``lmstudio-bridge ARGS`` run in this process: exit code, stdout and stderr, like ``subprocess.run``.

    ``env`` is added to this process's environment and ``cwd`` is the working directory for the
    duration of the command; both, and the logging set-up the command installs, are restored after.
    """
    return run_in_process(lambda: cli.main(list(args)), ["lmstudio-bridge", *args], env=env, cwd=cwd)


def run_in_process(
    main: Callable[[], object], argv: list[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Calls ``main`` as a program's entry point: ``sys.argv``, environment, working directory and
    logging set for it and restored after; its stdout and stderr captured; ``SystemExit`` as the exit code."""
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, dict(env or {})))
        stack.enter_context(mock.patch.object(sys, "argv", list(argv)))
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stack.enter_context(_logging_restored())
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    if isinstance(code, str):  # sys.exit("message"): the message on stderr, status 1
        err.write(code + "\n")
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(list(argv), returncode, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """``cli.main`` replaces the root logger's handlers and sets levels; put them back afterwards."""
    root, bridge = logging.getLogger(), logging.getLogger(BRIDGE_LOGGER)
    handlers, root_level, bridge_level = root.handlers[:], root.level, bridge.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(root_level)
        bridge.setLevel(bridge_level)


def text_of(result: Any) -> str:
    """The text blocks of a tool result, joined by newlines."""
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
