"""What a new user runs into in the first minutes, each held by a test: the command line through
``cli.main(argv)`` (``run_cli``), processes where the subject is a pipe or a terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmstudio_bridge.children import StderrTail
from tests.support.bridge import run_cli
from tests.support.common import GUIDE_MODELS, time_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio

BROKEN_JSON = '{"mcpServers": {"time": '


def broken_config(tmp_path: Path) -> Path:
    path = tmp_path / "broken.json"
    path.write_text(BROKEN_JSON)
    return path


# --- a malformed config file --------------------------------------------------------


def test_run_names_the_broken_config_file_when_the_mcp_is_not_found(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = broken_config(tmp_path)
    done = run_cli(
        "run",
        "--mcp",
        "time",
        "task",
        env={"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config)},
    )
    assert done.returncode == 2
    first = done.stderr.splitlines()[-1]
    assert first.startswith("Error: MCP 'time' not found. Available MCPs: (none configured). Problems in the MCP ")
    assert str(config) in first


def test_mcps_exits_1_when_it_lists_problems(tmp_path: Path) -> None:
    done = run_cli("mcps", env={"LMSTUDIO_BRIDGE_MCP_CONFIG": str(broken_config(tmp_path))})
    assert done.returncode == 1
    assert "Problems:" in done.stdout
    done = run_cli(
        "mcps", env={"LMSTUDIO_BRIDGE_MCP_CONFIG": str(write_config(tmp_path / "ok.json", {"time": time_entry()}))}
    )
    assert done.returncode == 0, done.stdout


def test_doctor_does_not_call_a_broken_file_ok_and_keeps_logs_out(fake: FakeLMStudio, tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.json", {"time": time_entry()})
    bad = broken_config(tmp_path)
    env = {"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": os.pathsep.join([str(bad), str(good)])}
    done = run_cli("doctor", env=env)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert f"[ok  ] MCP config files: {good}" in lines
    assert any(line.startswith(f"[FAIL] {bad}: ") for line in lines)
    assert "WARNING" not in done.stderr and "INFO" not in done.stderr, done.stderr


def test_a_command_from_an_unset_variable_is_named(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"tool": {"command": "${MISSING_BIN}", "args": []}})
    done = run_cli("mcps", env={"LMSTUDIO_BRIDGE_MCP_CONFIG": str(config)})
    assert '"command" is empty: ${MISSING_BIN} is not set' in done.stdout


# --- config for a host ------------------------------------------------------------


def test_config_carries_every_setting_that_was_set(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet.json"
    env = {
        "LMSTUDIO_BRIDGE_MAX_TOKENS": "256",
        "LMSTUDIO_BRIDGE_TEMPERATURE": "0.2",
        "LMSTUDIO_BRIDGE_LOCAL_MODEL": "0.5b",
        "LMSTUDIO_API_KEY": "sk-secret",
    }
    done = run_cli("config", "claude-desktop", "--mcp-config", str(missing), env=env)
    assert done.returncode == 0
    entry = json.loads(done.stdout)["mcpServers"]["lmstudio-bridge"]
    assert entry["env"] == {
        "LMSTUDIO_BRIDGE_MAX_TOKENS": "256",
        "LMSTUDIO_BRIDGE_TEMPERATURE": "0.2",
        "LMSTUDIO_BRIDGE_LOCAL_MODEL": "0.5b",
        "LMSTUDIO_BRIDGE_MCP_CONFIG": str(missing.resolve()),
    }
    assert f"warning: MCP config file {missing.resolve()} does not exist" in done.stderr
    assert "sk-secret" not in done.stdout + done.stderr


# --- help, pipes, terminals ---------------------------------------------------------


def test_each_command_help_lists_only_its_own_options() -> None:
    mcps = run_cli("mcps", "--help").stdout
    assert "--mcp-config" in mcps and "--base-url" not in mcps and "--max-rounds" not in mcps
    models = run_cli("models", "--help").stdout
    assert "--base-url" in models and "--mcp-config" not in models and "--temperature" not in models
    run = run_cli("run", "--help").stdout
    assert "--max-rounds" in run and "--mcp-config" in run


def test_a_closed_pipe_ends_a_listing_quietly(fake: FakeLMStudio) -> None:
    """``lmstudio-bridge models | head -1``: the reader has gone before the listing is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "LMSTUDIO_BASE_URL": fake.base_url}
    done = subprocess.run(
        [sys.executable, "-m", "lmstudio_bridge", "models"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=env,
        timeout=60,
    )
    os.close(write_end)
    assert "Traceback" not in done.stderr.decode(), done.stderr.decode()
    assert done.returncode == 1


def test_started_in_a_terminal_it_says_what_it_is_for(fake: FakeLMStudio) -> None:
    primary, secondary = pty.openpty()
    env = {**os.environ, "LMSTUDIO_BASE_URL": fake.base_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmstudio_bridge"],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(secondary)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while b"lmstudio-bridge demo" not in seen and time.monotonic() < deadline:
            if select.select([proc.stderr], [], [], 1.0)[0]:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        assert b"waiting for an MCP host on stdin" in seen, seen
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.close(primary)


# --- a child that fails to start -------------------------------------------------------

NPM_404 = [
    "npm error code E404",
    "npm error 404 Not Found - GET https://registry.npmjs.org/@modelcontextprotocol%2fserver-filesytem - Not found",
    "npm error 404",
    "npm error 404  '@modelcontextprotocol/server-filesytem@*' is not in this registry.",
    "npm error 404",
    "npm error 404 Note that you can also install from a",
    "npm error 404 tarball, folder, http url, or git url.",
    "npm error A complete log of this run can be found in: /root/.npm/_logs/2026-11-30T09_00_00_000Z-debug-0.log",
]


async def test_the_error_keeps_the_line_that_says_what_failed() -> None:
    tail = StderrTail("filesystem")
    try:
        for line in ["some earlier noise"] * 10 + NPM_404:
            tail._line(line)
        text = tail.tail()
    finally:
        tail.close_writer()
        tail._reader.close()
    assert "404 Not Found - GET https://registry.npmjs.org/@modelcontextprotocol%2fserver-filesytem" in text
    assert text.endswith(NPM_404[-1])


def test_the_examples_say_how_to_pick_a_model() -> None:
    done = subprocess.run(
        [sys.executable, "examples/model_fallback.py", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0
    assert "lmstudio-bridge models" in done.stdout


@pytest.mark.parametrize("listed", [True, False])
def test_doctor_says_first_listed_when_the_server_does_not_report_loading(fake: FakeLMStudio, listed: bool) -> None:
    if not listed:
        fake.api_version = "openai"  # an OpenAI-compatible server: /v1/models only
    done = run_cli("doctor", env={"LMSTUDIO_BASE_URL": fake.base_url})
    how = "first loaded" if listed else "first listed"
    assert f"[ok  ] default model: {GUIDE_MODELS[0]} ({how})" in done.stdout.splitlines()
