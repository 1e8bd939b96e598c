"""What every benchmark shares: statistics, the figures table, a hermetic workspace, and the bridge over stdio
(or, to check that the benchmarks run, in this process)."""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import psutil
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.bridge import bridge_client_for
from tests.support.common import ECHO_SERVER, ROOT

CACHE = ROOT / "bench" / ".cache"


# ----------------------------------------------------------------------------- statistics


@dataclass
class Stats:
    """Samples in seconds; shown in the unit asked for."""

    samples: list[float]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def show(self, unit: str = "ms") -> str:
        scale = UNITS[unit]
        return (
            f"p50 {self.p50 * scale:.3g} {unit}  p99 {self.p99 * scale:.3g}  "
            f"min {self.min * scale:.3g}  max {self.max * scale:.3g}  n={self.n}"
        )


UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


# ----------------------------------------------------------------------------- the figures table


@dataclass
class Figure:
    """One line of the summary table."""

    section: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None
    error: bool = False
    """The benchmark failed: ``value`` says how. Not a missed target: the figure could not be measured."""

    @property
    def verdict(self) -> str:
        return "ERROR" if self.error else {True: "met", False: "MISSED", None: ""}[self.met]


@dataclass
class Report:
    quick: bool
    profile: bool = False
    figures: list[Figure] = field(default_factory=list)

    def add(self, section: str, name: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.figures.append(Figure(section, name, value, target, met))

    def failed(self, section: str, exc: BaseException) -> None:
        """Section ``section`` raised ``exc``: an ERROR figure, and ``errors`` counts it."""
        self.figures.append(Figure(section, "benchmark failed", f"{type(exc).__name__}: {exc}"[:300], error=True))

    @property
    def errors(self) -> int:
        return sum(1 for f in self.figures if f.error)

    def markdown(self) -> str:
        rows = ["| # | figure | measured | target | verdict |", "|---|---|---|---|---|"]
        rows += [f"| {f.section} | {f.name} | {f.value} | {f.target} | {f.verdict} |" for f in self.figures]
        return "\n".join(rows)


def say(line: str = "") -> None:
    print(line, flush=True)


# ----------------------------------------------------------------------------- workspace


@dataclass
class Workspace:
    """A hermetic HOME, an MCP config with the benchmark's children, and a folder for bridge logs.

    ``in_process``: ``bridge()`` runs the bridge in this process instead of spawning it, which only
    checks that the benchmarks run (``--in-process``): the figures then hold this process's work too.
    """

    root: Path
    config: Path
    home: Path
    logs: Path
    node_memory: Path | None = None
    in_process: bool = False

    @classmethod
    def create(cls, root: Path, node_memory: Path | None, *, in_process: bool = False) -> Workspace:
        home, logs = root / "home", root / "logs"
        home.mkdir(parents=True, exist_ok=True)
        logs.mkdir(exist_ok=True)
        servers: dict[str, Any] = {
            "echo": {"command": sys.executable, "args": [str(ECHO_SERVER), "--name", "echo", "--root", str(root)]},
            "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
        }
        if node_memory is not None:
            servers["memory"] = {
                "command": str(node_memory),
                "args": [],
                "env": {"MEMORY_FILE_PATH": str(root / "memory.jsonl")},
            }
        config = root / "mcp.json"
        config.write_text(json.dumps({"mcpServers": servers}, indent=2))
        return cls(root, config, home, logs, node_memory, in_process)


def bridge_env(ws: Workspace, base_url: str, **env: str) -> dict[str, str]:
    return {
        "LMSTUDIO_BASE_URL": base_url,
        "LMSTUDIO_BRIDGE_MCP_CONFIG": str(ws.config),
        "LMSTUDIO_BRIDGE_LOG_LEVEL": "INFO",
        "HOME": str(ws.home),
        "XDG_CONFIG_HOME": str(ws.home / ".config"),
        "PATH": os.environ.get("PATH", ""),
        **env,
    }


# ----------------------------------------------------------------------------- the bridge over stdio


@dataclass
class BridgeHandle:
    client: Client
    process: psutil.Process
    log: Path

    def rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20

    def fds(self) -> int:
        return self.process.num_fds()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


_bridge_count = 0


@asynccontextmanager
async def bridge(
    ws: Workspace, base_url: str, *, profile: Path | None = None, spawn: bool | None = None, **env: str
) -> AsyncIterator[BridgeHandle]:
    """The real bridge as a subprocess (``python -m lmstudio_bridge``), spoken to by the MCP client SDK.

    With ``profile``, the bridge runs under cProfile and writes its statistics there when it exits.
    With ``ws.in_process`` (and ``spawn`` not True) it runs in this process instead.
    """
    global _bridge_count
    _bridge_count += 1
    log = ws.logs / f"bridge-{_bridge_count}.log"
    if ws.in_process if spawn is None else not spawn:
        if profile is not None:
            raise ValueError("the bridge can be profiled only as a subprocess")
        async with _bridge_in_process(ws, base_url, log, **env) as handle:
            yield handle
        return
    args = ["-m", "lmstudio_bridge"]
    if profile is not None:
        args = ["-m", "cProfile", "-o", str(profile), *args]
    params = StdioServerParameters(
        command=sys.executable, args=args, env=bridge_env(ws, base_url, **env), cwd=str(ws.root)
    )
    before = {p.pid for p in psutil.Process().children()}
    with log.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=300) as client:
            yield BridgeHandle(client, _new_bridge_process(before), log)


@asynccontextmanager
async def _bridge_in_process(ws: Workspace, base_url: str, log: Path, **env: str) -> AsyncIterator[BridgeHandle]:
    """The bridge in this process, with the environment and folder a spawned one gets; its log in ``log``."""
    environ = bridge_env(ws, base_url, **env)
    handler = logging.FileHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("lmstudio_bridge")
    logger.addHandler(handler)
    try:
        with mock.patch.dict(os.environ, {k: environ[k] for k in ("HOME", "XDG_CONFIG_HOME")}):
            async with bridge_client_for(environ, ws.root, read_timeout=300) as client:
                yield BridgeHandle(client, psutil.Process(), log)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _new_bridge_process(before: set[int]) -> psutil.Process:
    """The bridge: the child of this process started by the client that was not there before."""
    for proc in psutil.Process().children():
        if proc.pid not in before and "lmstudio_bridge" in " ".join(proc.cmdline()):
            return proc
    raise RuntimeError("cannot find the bridge subprocess")


class TaskFailed(RuntimeError):
    pass


async def run_task(
    handle: BridgeHandle, mcp: str, task: str, *, model: str | None = None, rounds: int | None = None
) -> float:
    """One ``autonomous_with_mcp`` call; its wall time in seconds, as the MCP client sees it."""
    args: dict[str, Any] = {"mcp_name": mcp, "task": task}
    if model is not None:
        args["model"] = model
    started = time.perf_counter()
    result = await handle.client.call_tool("autonomous_with_mcp", args)
    elapsed = time.perf_counter() - started
    text = " ".join(getattr(b, "text", "") for b in result.content)
    if result.is_error:
        raise TaskFailed(f"task on {mcp} failed: {text[:300]}")
    if rounds is not None and (result.structured_content or {}).get("rounds") != rounds:
        raise TaskFailed(f"expected {rounds} rounds, got {result.structured_content}")
    return elapsed


def echo_task(rounds: int, tag: str = "x") -> str:
    """A task the fake plays as ``rounds`` answers: rounds - 1 echo calls (each different), then the answer."""
    lines = [f'@call echo {{"text": "{tag}{i}"}}' for i in range(rounds - 1)]
    return "\n".join(["Benchmark task.", *lines])
