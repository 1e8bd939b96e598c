"""The bridge as an MCP host runs it: ``python -m lmstudio_bridge``, MCP over its stdin and stdout.

Most tests run the bridge in this process (``tests.support.bridge.bridge_client``). These keep what
only a process shows: the protocol on a real pipe, with logs, progress and a child's stderr flood
kept off stdout; the lifespan that builds the bridge; and the command line's streams and exit code.
Exit, signals and leftover processes are in tests/test_reliability.py; a published host (the MCP
Inspector) drives the bridge in tests/test_inspector.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.bridge import stdio_bridge, stdio_environment, text_of
from tests.support.common import GUIDE_MODELS, echo_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio

READ_NOTES = '@call read_file {"path": "notes.txt"}'
TOOLS = {
    "list_models", "health_check", "list_mcps", "autonomous_with_mcp", "autonomous_with_multiple_mcps",
    "load_model", "unload_model",
    "task_status", "task_result", "cancel_task", "list_tasks", "continue_task",
}  # fmt: skip


async def test_a_task_over_stdio_with_progress_and_logs_on_stderr(
    fake: FakeLMStudio, mcp_config: Path, tmp_path: Path
) -> None:
    progress: list[str | None] = []

    async def on_progress(_: float, __: float | None, message: str | None) -> None:
        progress.append(message)

    async with stdio_bridge(fake.base_url, mcp_config, tmp_path / "stderr.log") as run:
        assert {t.name for t in (await run.client.list_tools()).tools} == TOOLS
        models = await run.client.call_tool("list_models", {})
        result = await run.client.call_tool(
            "autonomous_with_mcp",
            {"mcp_name": "echo", "task": '@call echo {"text": "over the pipe"}', "model": GUIDE_MODELS[1]},
            progress_callback=on_progress,
        )
        logs = run.logs()
    assert text_of(models).startswith("Available models (3):\n1. qwen/qwen3-coder-30b")
    assert not result.is_error, text_of(result)
    assert text_of(result) == f"FINAL model={GUIDE_MODELS[1]} tools=1 last=over the pipe"
    assert result.structured_content["tool_calls"][0]["name"] == "echo.echo"
    assert "round 1/25 · echo.echo" in progress and f"round 2/25 · waiting for {GUIDE_MODELS[1]}" in progress
    assert "serving MCP over stdio" in logs and "MCP 'echo' started" in logs  # the logs went to stderr


async def test_child_stderr_never_reaches_stdout(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"noisy": echo_entry("noisy", "--stderr-flood")})
    async with stdio_bridge(fake.base_url, config, tmp_path / "stderr.log") as run:
        for _ in range(2):
            task = '@call echo {"text": "ok"}'
            result = await run.client.call_tool("autonomous_with_mcp", {"mcp_name": "noisy", "task": task})
            assert not result.is_error and "last=ok" in text_of(result)
        assert "stderr flood" in run.logs()  # the flood reached the bridge's log, not the wire


def test_run_as_a_process_prints_only_the_answer_on_stdout(fake: FakeLMStudio, mcp_config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lmstudio_bridge", "run", "--mcp", "filesystem", READ_NOTES],
        env=stdio_environment(fake.base_url, mcp_config),
        cwd=mcp_config.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"FINAL model={GUIDE_MODELS[0]} tools=1 last=the secret word is pineapple\n"
    assert "round 1/25" in done.stderr and "filesystem.read_file" in done.stderr
