"""Shared fixtures: a hermetic home and the fake LM Studio. The helpers themselves live in ``tests.support``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bridge import bridge_client, text_of
from tests.support.common import ECHO_SERVER, GUIDE_MODELS, ROOT, echo_entry, time_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio

__all__ = [  # kept for tests that import these from here; new tests import them from tests.support
    "ECHO_SERVER", "GUIDE_MODELS", "ROOT", "bridge_client", "echo_entry", "text_of", "time_entry", "write_config",
]  # fmt: skip


@pytest.fixture(autouse=True)
def hermetic_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the real user's MCP configs or writes to their home."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for var in (
        "LMSTUDIO_BRIDGE_MCP_CONFIG",
        "MCP_JSON_PATH",
        "LMSTUDIO_BASE_URL",
        "LMSTUDIO_HOST",
        "LMSTUDIO_PORT",
        "LMSTUDIO_API_KEY",
        "LM_API_TOKEN",
        "LMSTUDIO_DEFAULT_MODEL",
        "LMSTUDIO_BRIDGE_STATE_DIR",
        "XDG_STATE_HOME",
        "LMSTUDIO_BRIDGE_LOCAL_MODEL",
        "LMSTUDIO_BRIDGE_MODEL_SOURCE",
        "PIP_INDEX_URL",  # the model's chunk wheels come from the index these name
        "UV_DEFAULT_INDEX",
        "UV_INDEX_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def fake() -> Iterator[FakeLMStudio]:
    with FakeLMStudio(models=list(GUIDE_MODELS)) as server:
        yield server


@pytest.fixture
def second_fake() -> Iterator[FakeLMStudio]:
    """Another scripted server (another machine), for tests of a bridge over several servers."""
    with FakeLMStudio(models=["second/model"]) as server:
        yield server


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
