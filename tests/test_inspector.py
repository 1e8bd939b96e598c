"""The MCP Inspector's command-line mode against the bridge, exactly as docs/tools.md shows it.

Skipped when ``npx`` is missing, or when the Inspector cannot be fetched from npm
within ``INSTALL_TIMEOUT`` (no network). Every call is bounded; on a timeout the
whole process group (npx, node, the bridge and its children) is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.common import GUIDE_MODELS
from tests.support.fake_lmstudio import FakeLMStudio

NPX = shutil.which("npx")
INSPECTOR = "@modelcontextprotocol/inspector"
INSTALL_TIMEOUT = 240.0
CALL_TIMEOUT = 90.0
BRIDGE = str(Path(sys.executable).parent / "lmstudio-bridge")
NPM_CACHE = os.environ.get("npm_config_cache") or str(Path.home() / ".npm")
"""Read at import, before the tests' hermetic HOME: the download is cached across tests and runs."""

pytestmark = pytest.mark.skipif(NPX is None, reason="npx is not installed")


def npx(
    *args: str, env: dict[str, str] | None = None, timeout: float = CALL_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    assert NPX is not None
    environment = {**os.environ, "npm_config_cache": NPM_CACHE, "npm_config_update_notifier": "false", **(env or {})}
    process = subprocess.Popen(
        [NPX, "-y", INSPECTOR, *args],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def inspector() -> None:
    """Fetches the Inspector once (the first run downloads it)."""
    try:
        done = npx("--help", timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{INSPECTOR} could not be fetched within {INSTALL_TIMEOUT:g} s")
    if done.returncode != 0 or "--cli" not in done.stdout:
        pytest.skip(f"{INSPECTOR} is not available: {done.stderr.strip()[-300:]}")


@pytest.fixture
def bridge_env(fake: FakeLMStudio, mcp_config: Path) -> list[str]:
    """The Inspector's ``-e`` options that point the bridge at the fake and the test config."""
    return ["-e", f"LMSTUDIO_BASE_URL={fake.base_url}", "-e", f"LMSTUDIO_BRIDGE_MCP_CONFIG={mcp_config}"]


def as_json(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_tools_list(inspector: None, bridge_env: list[str]) -> None:
    listed = as_json(npx(*bridge_env, "--cli", BRIDGE, "--method", "tools/list"))
    tools = {t["name"]: t for t in listed["tools"]}
    assert set(tools) == {
        "list_models",
        "health_check",
        "list_mcps",
        "autonomous_with_mcp",
        "autonomous_with_multiple_mcps",
        "load_model",
        "unload_model",
        "task_status",
        "task_result",
        "cancel_task",
        "list_tasks",
        "continue_task",
    }
    assert tools["autonomous_with_mcp"]["inputSchema"]["required"] == ["mcp_name", "task"]
    assert tools["autonomous_with_multiple_mcps"]["inputSchema"]["required"] == ["mcp_names", "task"]


def test_call_list_models(inspector: None, bridge_env: list[str]) -> None:
    result = as_json(npx(*bridge_env, "--cli", BRIDGE, "--method", "tools/call", "--tool-name", "list_models"))
    assert not result.get("isError")
    assert result["content"][0]["text"].startswith("Available models (3):\n1. qwen/qwen3-coder-30b")
    assert [m["id"] for m in result["structuredContent"]["models"]] == GUIDE_MODELS


def test_call_autonomous_with_mcp(inspector: None, bridge_env: list[str]) -> None:
    done = npx(
        *bridge_env,
        "--cli",
        BRIDGE,
        "--method",
        "tools/call",
        "--tool-name",
        "autonomous_with_mcp",
        "--tool-arg",
        "mcp_name=filesystem",
        '--tool-arg=task=@call read_file {"path": "notes.txt"}',
    )
    result = as_json(done)
    assert result["content"][0]["text"] == f"FINAL model={GUIDE_MODELS[0]} tools=1 last=the secret word is pineapple"
    assert result["structuredContent"]["tool_calls"][0]["name"] == "filesystem.read_file"


def test_call_with_a_missing_model_is_an_error_result(inspector: None, bridge_env: list[str]) -> None:
    done = npx(
        *bridge_env,
        "--cli",
        BRIDGE,
        "--method",
        "tools/call",
        "--tool-name",
        "autonomous_with_mcp",
        "--tool-arg",
        "mcp_name=filesystem",
        "task=List files",
        "model=nonexistent-model",
    )
    assert "Error: Model 'nonexistent-model' not found. Available models: " in done.stdout + done.stderr


def test_a_long_call_returns_its_task_id_instead_of_timing_out(
    inspector: None, bridge_env: list[str], tmp_path: Path
) -> None:
    """The Inspector's CLI gives up on a request after 60 s; a task still running at the detach delay
    (2 s here, 50 s by default) returns its id and the follow-up call instead."""
    state = tmp_path / "state"
    done = npx(
        *bridge_env,
        "-e",
        "LMSTUDIO_BRIDGE_DETACH_AFTER=2",
        "-e",
        f"LMSTUDIO_BRIDGE_STATE_DIR={state}",
        "--cli",
        BRIDGE,
        "--method",
        "tools/call",
        "--tool-name",
        "autonomous_with_mcp",
        "--tool-arg",
        "mcp_name=filesystem",
        "task=@delay 30\n@answer late",
    )
    result = as_json(done)
    assert not result.get("isError")
    data = result["structuredContent"]
    task_id = data["task_id"]
    assert data["state"] == "running" and data["next_call"] == f'task_result(task_id="{task_id}", wait_seconds=50)'
    # Each CLI call starts its own bridge, which stops (and its tasks with it) when the call ends.
    listed = subprocess.run(
        [BRIDGE, "tasks", "--json"],
        env={**os.environ, "LMSTUDIO_BRIDGE_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT,
    )
    tasks = json.loads(listed.stdout)["tasks"]
    assert [t["task_id"] for t in tasks] == [data["task_id"]]
    assert tasks[0]["state"] in ("cancelled", "interrupted")
