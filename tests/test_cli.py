"""The command line as a user runs it, against the fake LM Studio.

Each command runs in this process (``run_cli``: ``cli.main(argv)`` with its stdout, stderr and exit
code), with real child servers. tests/test_stdio.py runs ``python -m lmstudio_bridge run`` as a process.

Exit codes: 0 success, 1 the operation failed, 2 a usage or configuration error.
stdout carries only the answer; progress, logs and errors go to stderr.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bridge import run_cli
from tests.support.common import GUIDE_MODELS, echo_entry, time_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio

CODING, REASONING, _ = GUIDE_MODELS
READ_NOTES = '@call read_file {"path": "notes.txt"}'


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``lmstudio-bridge ARGS`` with ``env`` added to the environment, in ``cwd`` (default: the test's home)."""
    return run_cli(*args, env=env, cwd=cwd or Path(os.environ["HOME"]))


@pytest.fixture
def env(fake: FakeLMStudio, mcp_config: Path) -> dict[str, str]:
    return {"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(mcp_config)}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- models, mcps -------------------------------------------------------------


def test_models_lists_the_loaded_models(env: dict[str, str]) -> None:
    done = cli("models", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Available models (3):",
        *(f"{n}. {m} (loaded, llm, context 32768 of 32768, tool use)" for n, m in enumerate(GUIDE_MODELS, start=1)),
        "",
        f"Default model: {CODING}",
    ]


def test_models_when_lmstudio_is_not_running() -> None:
    done = cli("models", env={"LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}"})
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("Error: Cannot reach LM Studio at http://127.0.0.1:")
    assert "lms server start" in done.stderr


def test_mcps_lists_servers_with_their_source(env: dict[str, str], mcp_config: Path) -> None:
    done = cli("mcps", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Available MCPs (6):"
    assert any(line.startswith("- filesystem (stdio: ") and line.endswith(f"from {mcp_config}") for line in lines)


def test_mcps_marks_disabled_and_self_entries(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "mcp.json",
        {
            "echo": echo_entry("echo"),
            "off": {**echo_entry("off"), "disabled": True},
            "me": {"command": "uvx", "args": ["lmstudio-bridge"]},
        },
    )
    done = cli("mcps", env={"LMSTUDIO_BRIDGE_MCP_CONFIG": str(config)})
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == "Available MCPs (1):"
    assert '[disabled; remove "disabled": true to use it]' in done.stdout
    assert "[starts lmstudio-bridge itself; never offered]" in done.stdout


# --- run ----------------------------------------------------------------------


def test_run_prints_only_the_answer_on_stdout(env: dict[str, str]) -> None:
    done = cli("run", "--mcp", "filesystem", f"Read the notes\n{READ_NOTES}", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"FINAL model={CODING} tools=1 last=the secret word is pineapple\n"
    assert "round 1/25" in done.stderr and "filesystem.read_file" in done.stderr  # progress on stderr


def test_run_with_model_and_several_mcps(env: dict[str, str]) -> None:
    task = '@call filesystem.read_file {"path": "notes.txt"}\n@call memory.echo {"text": "remembered"}'
    done = cli("run", "--mcp", "filesystem", "--mcp", "memory", "--model", REASONING, task, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"FINAL model={REASONING} tools=2 last=remembered\n"


def test_run_json_is_the_structured_result(env: dict[str, str]) -> None:
    done = cli("run", "--mcp", "filesystem", "--json", READ_NOTES, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"].endswith("pineapple")
    assert result["model"] == CODING
    assert result["mcps"] == ["filesystem"]
    assert result["stop_reason"] == "answered"
    assert [c["name"] for c in result["tool_calls"]] == ["filesystem.read_file"]


def test_run_max_rounds_makes_the_model_sum_up(env: dict[str, str]) -> None:
    task = '@call echo {"text": "a"}\n@call echo {"text": "b"}\n@call echo {"text": "c"}'
    done = cli("run", "--mcp", "filesystem", "--max-rounds", "1", "--json", task, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["stop_reason"] == "round_limit"
    assert result["answer"].startswith("SUMMARY")


def test_run_unknown_model_is_a_usage_error(env: dict[str, str]) -> None:
    done = cli("run", "--mcp", "filesystem", "--model", "nonexistent-model", "task", env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().endswith(
        "Error: Model 'nonexistent-model' not found. Available models: " + ", ".join(GUIDE_MODELS)
    )


def test_run_unknown_mcp_is_a_usage_error(env: dict[str, str]) -> None:
    done = cli("run", "--mcp", "nope", "task", env=env)
    assert done.returncode == 2
    assert "Error: MCP 'nope' not found. Available MCPs: echo, echo2, fetch, filesystem, memory, time" in done.stderr


def test_run_empty_task_is_a_usage_error(env: dict[str, str]) -> None:
    done = cli("run", "--mcp", "filesystem", " ", env=env)
    assert done.returncode == 2
    assert "Error: The task is empty" in done.stderr


def test_run_without_mcp_is_a_usage_error(env: dict[str, str]) -> None:
    done = cli("run", "task", env=env)
    assert done.returncode == 2
    assert "--mcp" in done.stderr


def test_run_child_that_fails_to_start_is_a_failure(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"broken": echo_entry("broken", "--crash-on-start")})
    env = {"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config)}
    done = cli("run", "--mcp", "broken", "task", env=env)
    assert done.returncode == 1
    assert "Error: MCP 'broken' failed to start: " in done.stderr


def test_run_when_lmstudio_is_not_running_is_a_failure(mcp_config: Path) -> None:
    env = {"LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}", "LMSTUDIO_BRIDGE_MCP_CONFIG": str(mcp_config)}
    done = cli("run", "--mcp", "filesystem", "task", env=env)
    assert done.returncode == 1
    assert "Error: Cannot reach LM Studio" in done.stderr


def test_bad_setting_is_a_configuration_error() -> None:
    done = cli("models", env={"LMSTUDIO_BRIDGE_MAX_ROUNDS": "0"})
    assert done.returncode == 2
    assert done.stderr.startswith("lmstudio-bridge: configuration error: LMSTUDIO_BRIDGE_MAX_ROUNDS='0'")


def test_unknown_command_is_a_usage_error() -> None:
    done = cli("bogus")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


# --- doctor -------------------------------------------------------------------


def test_doctor_all_good(fake: FakeLMStudio, mcp_config: Path) -> None:
    files = mcp_config.parent / "files"  # two of the config's servers: ours and the published time server
    servers = {"filesystem": echo_entry("filesystem", root=files), "time": time_entry()}
    config = write_config(mcp_config.parent / "doctor.json", servers)
    done = cli("doctor", env={"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config)})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[ok  ] LM Studio at ") and "answers" in lines[0]
    assert f"[ok  ] default model: {CODING} (first loaded)" in lines
    assert any(line.startswith("[ok  ] MCP 'filesystem' started in ") for line in lines)
    assert any(line.startswith("[ok  ] MCP 'time' started in ") for line in lines)
    assert not any(line.startswith("[FAIL]") for line in lines)


def test_doctor_without_lmstudio_says_how_to_fix_it() -> None:
    done = cli("doctor", env={"LMSTUDIO_BASE_URL": f"http://127.0.0.1:{closed_port()}"})
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[FAIL] LM Studio at http://127.0.0.1:") and lines[0].endswith("does not answer")
    assert lines[1].strip().startswith("fix: Start the local server")
    assert "[note] no MCP config file found" in lines


def test_doctor_flags_a_child_that_cannot_start(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"broken": echo_entry("broken", "--crash-on-start")})
    done = cli("doctor", env={"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config)})
    assert done.returncode == 1
    assert "[FAIL] MCP 'broken' failed to start: " in done.stdout


def test_doctor_flags_a_default_model_that_is_not_loaded(fake: FakeLMStudio) -> None:
    done = cli("doctor", env={"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_DEFAULT_MODEL": "gone"})
    assert done.returncode == 1
    assert "[FAIL] LMSTUDIO_DEFAULT_MODEL='gone' is not listed" in done.stdout


# --- config -------------------------------------------------------------------


def test_config_claude_desktop_is_a_working_entry(fake: FakeLMStudio) -> None:
    done = cli("config", "claude-desktop", env={"LMSTUDIO_BASE_URL": fake.base_url})
    assert done.returncode == 0
    entry = json.loads(done.stdout)["mcpServers"]["lmstudio-bridge"]
    assert entry["command"] == sys.executable
    assert entry["args"] == ["-m", "lmstudio_bridge"]
    assert entry["env"] == {"LMSTUDIO_BASE_URL": fake.base_url}


def test_config_claude_desktop_leaves_defaults_out() -> None:
    done = cli("config", "claude-desktop")
    assert "env" not in json.loads(done.stdout)["mcpServers"]["lmstudio-bridge"]


def test_config_claude_code_is_one_command(fake: FakeLMStudio, mcp_config: Path) -> None:
    env = {"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(mcp_config)}
    done = cli("config", "claude-code", env=env)
    assert done.returncode == 0
    words = shlex.split(done.stdout)
    assert words[:4] == ["claude", "mcp", "add", "lmstudio-bridge"]
    assert words[words.index("--") + 1 :] == [sys.executable, "-m", "lmstudio_bridge"]
    assert f"LMSTUDIO_BASE_URL={fake.base_url}" in words
    assert f"LMSTUDIO_BRIDGE_MCP_CONFIG={mcp_config}" in words


def test_the_printed_claude_desktop_command_really_serves(fake: FakeLMStudio) -> None:
    """The registered command speaks MCP: an initialize over stdin gets an answer on stdout."""
    entry = json.loads(cli("config", "claude-desktop", env={"LMSTUDIO_BASE_URL": fake.base_url}).stdout)
    server = entry["mcpServers"]["lmstudio-bridge"]
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    done = subprocess.run(
        [server["command"], *server["args"]],
        input=json.dumps(hello) + "\n",
        env={**os.environ, **server["env"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[0])
    assert answer["result"]["serverInfo"]["name"] == "lmstudio-bridge"


def test_version_and_help() -> None:
    assert cli("--version").stdout.startswith("lmstudio-bridge ")
    helped = cli("--help").stdout
    for command in ("serve", "models", "mcps", "doctor", "run", "config"):
        assert command in helped


def test_run_read_only_refuses_a_server_whose_tools_do_not_say_they_only_read(env: dict[str, str]) -> None:
    done = cli("run", "--mcp", "filesystem", "--read-only", READ_NOTES, env=env)
    assert done.returncode != 0 and "read_only: none of the tools of filesystem declares readOnlyHint" in done.stderr
