"""Shared fixtures: a hermetic home, the fake LM Studio, MCP config files, and the bridge over stdio."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.fakes.fake_lmstudio import FakeLMStudio

ROOT = Path(__file__).resolve().parent.parent
ECHO_SERVER = str(ROOT / "tests" / "servers" / "echo_server.py")
GUIDE_MODELS = ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509", "deepseek/deepseek-coder-33b"]


@pytest.fixture(autouse=True)
def hermetic_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the real user's MCP configs or writes to their home."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for var in ("LMSTUDIO_BRIDGE_MCP_CONFIG", "MCP_JSON_PATH", "LMSTUDIO_BASE_URL", "LMSTUDIO_HOST", "LMSTUDIO_PORT",
                "LMSTUDIO_API_KEY", "LM_API_TOKEN", "LMSTUDIO_DEFAULT_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def fake() -> Iterator[FakeLMStudio]:
    with FakeLMStudio(models=list(GUIDE_MODELS)) as server:
        yield server


def echo_entry(name: str = "echo", *extra: str, root: Path | None = None) -> dict[str, Any]:
    args = [ECHO_SERVER, "--name", name, *extra]
    if root is not None:
        args += ["--root", str(root)]
    return {"command": sys.executable, "args": args}


def time_entry() -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


def write_config(path: Path, servers: dict[str, dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mcpServers": servers}, indent=2))
    return path


@pytest.fixture
def mcp_config(tmp_path: Path) -> Path:
    """A config with our echo server (twice, for name collisions) and the published time server."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "notes.txt").write_text("the secret word is pineapple")
    return write_config(
        tmp_path / "mcp.json",
        {
            "echo": echo_entry("echo", root=files),
            "echo2": echo_entry("echo2", root=files),
            "time": time_entry(),
            "filesystem": echo_entry("filesystem", root=files),
            "memory": echo_entry("memory", root=files),
            "fetch": echo_entry("fetch", root=files),
        },
    )


@asynccontextmanager
async def bridge_client(
    base_url: str, config: Path | None = None, cwd: Path | None = None, read_timeout: float = 60, **env: str
) -> AsyncIterator[Client]:
    """The real bridge as a subprocess, spoken to over stdio by the MCP client SDK."""
    environment = {
        "LMSTUDIO_BASE_URL": base_url,
        "LMSTUDIO_BRIDGE_LOG_LEVEL": "DEBUG",
        "HOME": os.environ["HOME"],
        "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME", ""),
        **env,
    }
    if config is not None:
        environment["LMSTUDIO_BRIDGE_MCP_CONFIG"] = str(config)
    workdir = cwd or (config.parent if config else ROOT)
    params = StdioServerParameters(command=sys.executable, args=["-m", "lmstudio_bridge"], env=environment, cwd=str(workdir))
    async with Client(params, mode="legacy", read_timeout_seconds=read_timeout) as client:
        yield client


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
