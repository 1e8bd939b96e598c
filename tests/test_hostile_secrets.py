"""A secret that reaches an MCP entry through ``${VAR}`` (in ``args``, ``url``, ``env`` or ``headers``),
or written in its ``env``, never appears where the bridge shows an entry: tool results, progress
lines, the log, and the ``mcps``, ``doctor`` and ``run`` commands.

The bridge and its commands run in this process (``API_TOKEN`` in this process's environment, as a
bridge process would have it); their children are processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.bridge import bridge_client, run_cli

SECRET = "tok-3c9f1e7a5b2d"
ENV_SECRET = "env-literal-8e41b0c6"
HEADER_SECRET = "hdr-literal-5a7d2e90"

MINI_SERVER = """
from mcp.server import MCPServer
server = MCPServer("mini")

@server.tool()
def echo(text: str) -> str:
    return text

server.run()
"""


def entries() -> dict[str, Any]:
    python = sys.executable
    secret_env = {"SERVICE_TOKEN": "${API_TOKEN}", "OTHER_TOKEN": ENV_SECRET}
    return {
        "tokened": {"command": python, "args": ["-c", MINI_SERVER, "--token", "${API_TOKEN}"], "env": secret_env},
        "inline": {"command": python, "args": ["-c", MINI_SERVER, "--token=${API_TOKEN}"]},
        "crashes": {"command": python, "args": ["-c", "import sys; sys.exit(3)", "${API_TOKEN}"], "env": secret_env},
        "remote": {
            "type": "http",
            "url": "http://127.0.0.1:9/mcp?key=${API_TOKEN}",
            "headers": {"Authorization": "Bearer ${API_TOKEN}", "X-Other": HEADER_SECRET},
        },
        "old": {"command": python, "args": ["--token", "${API_TOKEN}"], "disabled": True},
        "legacy": {"type": "sse", "url": "http://127.0.0.1:9/sse?key=${API_TOKEN}"},
    }


def environment(base_url: str, config: Path) -> dict[str, str]:
    return {
        "API_TOKEN": SECRET,
        "LMSTUDIO_BASE_URL": base_url,
        "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config),
        "LMSTUDIO_BRIDGE_LOG_LEVEL": "DEBUG",
        "LMSTUDIO_BRIDGE_CHILD_START_TIMEOUT": "10",
    }


def write_config(folder: Path) -> Path:
    path = folder / "mcp.json"
    path.write_text(json.dumps({"mcpServers": entries()}, indent=2))
    return path


def assert_no_secret(where: str, text: str) -> None:
    for secret in (SECRET, ENV_SECRET, HEADER_SECRET):
        assert secret not in text, f"{where} shows a secret"


async def test_tool_results_progress_and_log_never_show_a_secret(
    fake: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path)
    monkeypatch.setenv("API_TOKEN", SECRET)  # ${API_TOKEN} is expanded from the bridge's environment
    settings = {k: v for k, v in environment(fake.base_url, config).items() if k.startswith("LMSTUDIO_BRIDGE_")}
    seen: list[str] = []

    async def on_progress(_: float, __: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with bridge_client(fake.base_url, config, tmp_path, **settings) as client:
        listing = await client.call_tool("list_mcps", {})
        assert not listing.is_error
        text = listing.content[0].text
        assert "- tokened (stdio: " in text and "--token ${API_TOKEN}" in text
        assert "--token=${API_TOKEN}" in text
        assert "- remote (http: http://127.0.0.1:9/mcp?key=${API_TOKEN})" in text
        shown = {m["name"]: m for m in listing.structured_content["mcps"]}
        assert shown["tokened"]["command"].endswith("--token ${API_TOKEN}")
        assert shown["remote"]["url"] == "http://127.0.0.1:9/mcp?key=${API_TOKEN}"
        seen += [text, json.dumps(listing.structured_content)]
        calls = [
            ("autonomous_with_mcp", {"mcp_name": "tokened", "task": '@call echo {"text": "hi"}'}),
            ("autonomous_with_multiple_mcps", {"mcp_names": ["tokened", "inline"], "task": "@answer done"}),
            ("autonomous_with_mcp", {"mcp_name": "crashes", "task": "x"}),
            ("autonomous_with_mcp", {"mcp_name": "remote", "task": "x"}),
            ("autonomous_with_mcp", {"mcp_name": "old", "task": "x"}),
            ("autonomous_with_mcp", {"mcp_name": "legacy", "task": "x"}),
        ]
        texts = []
        for tool, args in calls:
            result = await client.call_tool(tool, args, progress_callback=on_progress)
            texts.append(result.content[0].text)
            seen += [result.content[0].text, json.dumps(result.structured_content)]
        assert "last=hi" in texts[0] and texts[1] == "done"
        assert texts[2].startswith("Error: MCP 'crashes' failed to start")
        assert texts[3].startswith("Error: MCP 'remote' failed to start")
    assert any(line.startswith("round 1/") for line in seen)
    for n, text in enumerate(seen):
        assert_no_secret(f"result or progress line {n}", text)
    log = caplog.text
    assert "MCP 'tokened' started" in log  # the bridge's log (every record, DEBUG and up) was seen
    assert_no_secret("the bridge's log", log)


def run_command(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    done = run_cli(*args, env=env, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def test_mcps_doctor_and_run_never_show_a_secret(fake: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = environment(fake.base_url, config)
    code, out, err = run_command("mcps", env=env, cwd=tmp_path)
    assert code == 0 and "--token ${API_TOKEN}" in out
    assert_no_secret("mcps", out + err)
    code, out, err = run_command("doctor", env=env, cwd=tmp_path)
    assert code == 1 and "[ok  ] MCP 'tokened' started" in out and "[FAIL] MCP 'crashes' failed to start" in out
    assert_no_secret("doctor", out + err)
    code, out, err = run_command("run", "--mcp", "tokened", '@call echo {"text": "hi"}', env=env, cwd=tmp_path)
    assert code == 0 and "round 1/" in err
    assert_no_secret("run", out + err)
    code, out, err = run_command("run", "--mcp", "crashes", "x", env=env, cwd=tmp_path)
    assert code == 1 and "Error: MCP 'crashes' failed to start" in err
    assert_no_secret("run", out + err)
