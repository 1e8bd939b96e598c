"""Tasks that outlive a call, with the bridge as a process (``python -m lmstudio_bridge``) against the
scripted LM Studio: a task longer than the client's request timeout, background runs, cancel, status,
the history across a restart, two bridges on one history file, and a history file that cannot be used.

Time is scaled: ``SCALE`` (``LMSTUDIO_BRIDGE_TEST_TIME_SCALE``, default 0.04) multiplies every duration
of the scenario "a 5-minute task from a client that gives up after 60 s": the client's own request
timeout (``read_timeout_seconds``, which cuts a call as a host does), the scripted model delays, the
detach delay and the waits. ``LMSTUDIO_BRIDGE_TEST_TIME_SCALE=1`` runs it at full length.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import psutil
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.support.bridge import run_cli, stdio_bridge, text_of
from tests.support.common import echo_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio

SCALE = float(os.environ.get("LMSTUDIO_BRIDGE_TEST_TIME_SCALE", "0.04"))
CLIENT_TIMEOUT = 60 * SCALE
"""The client's request timeout: the MCP Inspector CLI's 60 s."""
DETACH_AFTER = 30 * SCALE
WAIT = 30 * SCALE
ROUNDS = 10
ROUND_DELAY = 30 * SCALE
"""Ten rounds of 30 s: a 5-minute task."""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo", root=tmp_path)})


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def long_task(rounds: int = ROUNDS, delay: float = ROUND_DELAY) -> str:
    cues = [f'@delay {delay}\n@call echo {{"text": "step {n}"}}' for n in range(1, rounds + 1)]
    return "A long task.\n" + "\n".join(cues) + f"\n@delay {delay}\n@answer all {rounds} steps done, {{tools}} calls"


async def call(client: Client, tool: str, timeout: float | None = None, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout)
    assert not result.is_error, text_of(result)
    return result.structured_content


def history(state: Path) -> sqlite3.Connection:
    return sqlite3.connect(state / "tasks.sqlite3")


async def test_a_five_minute_task_finishes_for_a_client_that_gives_up_after_a_minute(
    fake: FakeLMStudio, config: Path, state: Path, tmp_path: Path
) -> None:
    env = {"LMSTUDIO_BRIDGE_STATE_DIR": str(state), "LMSTUDIO_BRIDGE_TASK_TIMEOUT": str(3600 * max(SCALE, 0.1))}
    task = {"mcp_name": "echo", "task": long_task()}
    # Without detaching, the client's own timeout cuts the call off, as the MCP Inspector does.
    async with stdio_bridge(fake.base_url, config, LMSTUDIO_BRIDGE_DETACH_AFTER="0", **env) as run:
        with pytest.raises(MCPError) as cut:
            await run.client.call_tool("autonomous_with_mcp", task, read_timeout_seconds=CLIENT_TIMEOUT)
        assert cut.value.error.code == -32001
    fake.reset()
    progress: list[str] = []

    async def on_progress(_: float, __: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with stdio_bridge(
        fake.base_url,
        config,
        tmp_path / "stderr.log",
        LMSTUDIO_BRIDGE_DETACH_AFTER=str(DETACH_AFTER),
        **env,
    ) as run:
        await run.client.list_tools()  # the bridge is up: from here on, every call has the client's timeout
        first = await run.client.call_tool(
            "autonomous_with_mcp", task, read_timeout_seconds=CLIENT_TIMEOUT, progress_callback=on_progress
        )
        assert not first.is_error, text_of(first)
        started = first.structured_content
        assert started["state"] == "running" and started["stop_reason"] is None
        task_id = started["task_id"]
        assert started["next_call"] == f'task_result(task_id="{task_id}", wait_seconds=50)'
        assert progress[0].startswith(f"task {task_id} · echo")
        assert f'task_result(task_id="{task_id}"' in text_of(first)
        polls = 0
        while True:  # each call returns within the client's timeout; the task goes on between them
            result = await call(run.client, "task_result", CLIENT_TIMEOUT, task_id=task_id, wait_seconds=WAIT)
            polls += 1
            if result["state"] == "completed":
                break
            assert polls < 100
    assert result["answer"] == f"all {ROUNDS} steps done, {ROUNDS} calls"
    assert result["task_id"] == task_id and result["rounds"] == ROUNDS + 1 and len(result["tool_calls"]) == ROUNDS
    assert result["elapsed_seconds"] >= (ROUNDS + 1) * ROUND_DELAY > 5 * CLIENT_TIMEOUT
    assert polls >= 2
    with history(state) as db:
        assert db.execute("SELECT state, rounds FROM tasks WHERE id = ?", (task_id,)).fetchone() == (
            "completed",
            ROUNDS + 1,
        )


async def test_background_task_status_while_running_then_cancel(
    fake: FakeLMStudio, config: Path, state: Path, tmp_path: Path
) -> None:
    task = '@call echo {"text": "first"}\n@delay 60\n@answer too late'
    async with stdio_bridge(
        fake.base_url, config, tmp_path / "stderr.log", LMSTUDIO_BRIDGE_STATE_DIR=str(state)
    ) as run:
        started = await call(run.client, "autonomous_with_mcp", mcp_name="echo", task=task, background=True)
        assert started["state"] == "running"
        task_id = started["task_id"]
        for _ in range(200):  # task_result waits on the task (bounded), until it is in its slow second round
            status = await call(run.client, "task_status", task_id=task_id)
            if status["tool_calls"] == 1 and fake.in_flight == 1:
                break
            await call(run.client, "task_result", task_id=task_id, wait_seconds=0.1)
        assert status["state"] == "running" and status["rounds"] == 1 and status["tool_calls"] == 1
        assert status["model"] == "qwen/qwen3-coder-30b" and status["mcps"] == ["echo"]
        assert status["last_progress"].startswith("round 2/25")
        listed = await call(run.client, "list_tasks", state="running")
        assert [t["task_id"] for t in listed["tasks"]] == [task_id]
        cancelled = await call(run.client, "cancel_task", task_id=task_id)
        assert cancelled["state"] == "cancelled"
        connections = [
            c for c in psutil.Process(run.pid).net_connections(kind="tcp") if c.raddr and c.raddr.port == fake.port
        ]
        assert not [c for c in connections if c.status == psutil.CONN_ESTABLISHED]  # the model request is closed
        fetched = await run.client.call_tool("task_result", {"task_id": task_id})
        assert fetched.is_error and text_of(fetched).startswith(f"Error: Task {task_id} was cancelled")
        after = await call(run.client, "autonomous_with_mcp", mcp_name="echo", task='@call echo {"text": "next"}')
        assert after["answer"].endswith("last=next")


async def test_a_finished_task_is_fetched_shown_and_continued_after_a_restart(
    fake: FakeLMStudio, config: Path, state: Path
) -> None:
    task = 'Read the notes.\n@call echo {"text": "the secret word is pineapple"}\n@answer The word is pineapple.'
    async with stdio_bridge(fake.base_url, config, LMSTUDIO_BRIDGE_STATE_DIR=str(state)) as run:
        first = await call(run.client, "autonomous_with_mcp", mcp_name="echo", task=task)
    task_id = first["task_id"]
    async with stdio_bridge(fake.base_url, config, LMSTUDIO_BRIDGE_STATE_DIR=str(state)) as run:
        again = await call(run.client, "task_result", task_id=task_id)
        assert again == first
        fake.reset()
        follow = await call(
            run.client,
            "continue_task",
            task_id=task_id,
            message="Say it backwards.",
            model="deepseek/deepseek-coder-33b",
        )
        resources = await run.client.list_resources()
        resource = await run.client.read_resource(f"lmstudio-bridge://tasks/{follow['task_id']}")
        status = await call(run.client, "task_status", task_id=follow["task_id"])
    sent = fake.chat_bodies()[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[3]["content"] == "the secret word is pineapple" and sent[4]["content"] == "The word is pineapple."
    assert sent[5]["content"] == "Say it backwards." and follow["model"] == "deepseek/deepseek-coder-33b"
    assert follow["task_id"] != task_id and status["parent_id"] == task_id
    assert {f"lmstudio-bridge://tasks/{i}" for i in (task_id, follow["task_id"])} <= {
        str(r.uri) for r in resources.resources
    }
    data = json.loads(resource.contents[0].text)
    assert data["parent_id"] == task_id and data["messages"][-2]["content"] == "Say it backwards."

    env = {"LMSTUDIO_BRIDGE_STATE_DIR": str(state)}
    shown = await asyncio.to_thread(run_cli, "tasks", "show", task_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert 'echo {"text": "the secret word is pineapple"}' in shown.stdout
    assert "the secret word is pineapple" in shown.stdout and "The word is pineapple." in shown.stdout
    listed = await asyncio.to_thread(run_cli, "tasks", "--json", env=env)
    assert [t["task_id"] for t in json.loads(listed.stdout)["tasks"]] == [follow["task_id"], task_id]
    table = await asyncio.to_thread(run_cli, "tasks", env=env)
    assert table.stdout.splitlines()[0].split()[:2] == ["ID", "STATE"] and task_id in table.stdout


@pytest.mark.parametrize("end", ["killed", "host closed"])
async def test_a_task_whose_bridge_stopped_is_interrupted(
    fake: FakeLMStudio, config: Path, state: Path, end: str
) -> None:
    env = {"LMSTUDIO_BRIDGE_STATE_DIR": str(state)}
    with contextlib.suppress(Exception, BaseExceptionGroup):
        async with stdio_bridge(fake.base_url, config, **env) as run:
            started = await call(
                run.client, "autonomous_with_mcp", mcp_name="echo", task="@delay 60\n@answer never", background=True
            )
            if end == "killed":
                os.kill(run.pid, signal.SIGKILL)
                psutil.Process(run.pid).wait(10)
    async with stdio_bridge(fake.base_url, config, **env) as run:
        status = await call(run.client, "task_status", task_id=started["task_id"])
        fetched = await run.client.call_tool("task_result", {"task_id": started["task_id"]})
    assert status["state"] == "interrupted"
    assert fetched.is_error and "was interrupted" in text_of(fetched)


async def test_two_bridges_write_one_history_at_once(
    fake: FakeLMStudio, config: Path, state: Path, tmp_path: Path
) -> None:
    env = {"LMSTUDIO_BRIDGE_STATE_DIR": str(state)}
    async with (
        stdio_bridge(fake.base_url, config, tmp_path / "a.log", **env) as a,
        stdio_bridge(fake.base_url, config, tmp_path / "b.log", **env) as b,
    ):

        async def tasks(client: Client, name: str) -> list[str]:
            started = await asyncio.gather(
                *(
                    call(
                        client,
                        "autonomous_with_mcp",
                        mcp_name="echo",
                        task=f'@call echo {{"text": "{name}{n}"}}\n@call echo {{"text": "{name}{n} again"}}',
                        background=True,
                    )
                    for n in range(6)
                )
            )
            for s in started:
                assert (await call(client, "task_result", task_id=s["task_id"], wait_seconds=50))[
                    "state"
                ] == "completed"
            return [s["task_id"] for s in started]

        ids_a, ids_b = await asyncio.gather(tasks(a.client, "a"), tasks(b.client, "b"))
        ids = ids_a + ids_b
        seen_by_a = await call(a.client, "list_tasks", limit=50)
        logs = a.logs() + b.logs()
    assert {t["task_id"] for t in seen_by_a["tasks"]} == set(ids)  # a sees b's tasks too
    assert all(t["state"] == "completed" for t in seen_by_a["tasks"])
    assert "Task history is off" not in logs
    with history(state) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM tasks WHERE state = 'completed'").fetchone() == (12,)
        assert db.execute("SELECT count(DISTINCT task_id) FROM messages").fetchone() == (12,)
    assert oct((state / "tasks.sqlite3").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("damage", ["corrupt", "unwritable"])
async def test_a_history_that_cannot_be_used_leaves_tasks_working(
    fake: FakeLMStudio, config: Path, state: Path, tmp_path: Path, damage: str
) -> None:
    if damage == "corrupt":
        state.mkdir()
        (state / "tasks.sqlite3").write_bytes(b"this is not a database\n" * 200)
        where = state
    else:
        # Root writes read-only files, so the unwritable place is one no one can create a file in.
        where = Path("/proc/self/no-such-dir") if os.geteuid() == 0 else state
        if os.geteuid() != 0:
            state.mkdir(mode=0o500)
    async with stdio_bridge(
        fake.base_url, config, tmp_path / "stderr.log", LMSTUDIO_BRIDGE_STATE_DIR=str(where)
    ) as run:
        results = [
            await call(run.client, "autonomous_with_mcp", mcp_name="echo", task=f'@call echo {{"text": "t{n}"}}')
            for n in range(2)
        ]
        background = await call(
            run.client, "autonomous_with_mcp", mcp_name="echo", task="@answer later", background=True
        )
        fetched = await call(run.client, "task_result", task_id=background["task_id"], wait_seconds=50)
        listed = await call(run.client, "list_tasks")
        logs = run.logs()
    assert [r["answer"].rsplit("=", 1)[1] for r in results] == ["t0", "t1"]
    assert fetched["answer"] == "later"
    assert listed["history"] is None and listed["history_problem"]
    assert len(listed["tasks"]) == 3
    assert logs.count("Task history is off") == 1
    if damage == "corrupt":
        assert (state / "tasks.sqlite3").read_bytes().startswith(b"this is not a database")  # left for the user


async def test_protocol_tasks_for_clients_that_have_them(fake: FakeLMStudio, config: Path, state: Path) -> None:
    """MCP 2025-11-25 task-augmented tools/call, then tasks/get, tasks/result, tasks/list, tasks/cancel."""
    async with stdio_bridge(fake.base_url, config, LMSTUDIO_BRIDGE_STATE_DIR=str(state)) as run:
        client = run.client
        capabilities = client.server_capabilities
        tools = {t.name: t for t in (await client.list_tools()).tools}
        send = client.session._dispatcher.send_raw_request  # the SDK's client has no task API of its own

        async def request(method: str, params: dict[str, Any]) -> Any:
            return await send(method, params, None)

        task = {"mcp_name": "echo", "task": '@call echo {"text": "as a task"}'}
        created = await request(
            "tools/call", {"name": "autonomous_with_mcp", "arguments": task, "task": {"ttl": 60000}}
        )
        task_id = created["task"]["taskId"]
        got = await request("tasks/get", {"taskId": task_id})
        payload = await request("tasks/result", {"taskId": task_id})
        listed = await request("tasks/list", {})
        slow = await request(
            "tools/call",
            {"name": "autonomous_with_mcp", "arguments": {"mcp_name": "echo", "task": "@delay 60"}, "task": {}},
        )
        cancelled = await request("tasks/cancel", {"taskId": slow["task"]["taskId"]})
        with pytest.raises(MCPError) as again:
            await request("tasks/cancel", {"taskId": task_id})
        with pytest.raises(MCPError) as not_a_task:
            await request("tools/call", {"name": "list_models", "arguments": {}, "task": {}})
        with pytest.raises(MCPError) as unknown:
            await request("tasks/get", {"taskId": "nope"})
        plain = await call(client, "task_status", task_id=task_id)
    assert capabilities is not None and capabilities.tasks is not None
    assert capabilities.tasks.requests.tools.call is not None
    assert tools["autonomous_with_mcp"].execution.task_support == "optional"
    assert tools["list_models"].execution is None
    assert created["task"]["status"] == "working" and got["taskId"] == task_id
    assert payload["content"][0]["text"].endswith("last=as a task") and not payload["isError"]
    assert payload["structuredContent"]["task_id"] == task_id
    assert payload["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
    assert task_id in [t["taskId"] for t in listed["tasks"]]
    assert cancelled["status"] == "cancelled"
    assert again.value.error.code == -32602 and not_a_task.value.error.code == -32601
    assert unknown.value.error.code == -32602
    assert plain["state"] == "completed"  # the same task, seen through the tools
