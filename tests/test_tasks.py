"""Tasks in this process: the history file (redaction, retention, interrupted tasks), the history sent
again by continue_task, and the task tools' errors. Over stdio: tests/test_tasks_stdio.py."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmstudio_bridge import task_store
from lmstudio_bridge.continuation import estimated_tokens, fit_history
from lmstudio_bridge.task_store import Redactor, TaskRecord, TaskStore
from tests.support.bridge import bridge_client, text_of
from tests.support.common import echo_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio

SECRET = "sk-live-0123456789abcdef"
API_KEY = "lm-studio-key-42424242"


def record(task_id: str, created_at: float, state: str = "completed") -> TaskRecord:
    return TaskRecord(id=task_id, state=state, task="t", mcps=["echo"], created_at=created_at, updated_at=created_at)  # type: ignore[arg-type]


async def test_secrets_never_reach_the_history(fake: FakeLMStudio, tmp_path: Path) -> None:
    entry = {**echo_entry("echo"), "env": {"ECHO_TOKEN": SECRET, "DEBUG": "1"}}
    config = write_config(tmp_path / "mcp.json", {"echo": entry})
    fake.require_api_key = API_KEY
    state = tmp_path / "state"
    task = f'Use {SECRET} and {API_KEY}.\n@call echo {{"text": "token {SECRET}"}}'
    async with bridge_client(
        fake.base_url, config, LMSTUDIO_BRIDGE_STATE_DIR=str(state), LMSTUDIO_API_KEY=API_KEY
    ) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": task})
        shown = await client.call_tool("list_tasks", {})
    assert not result.is_error, text_of(result)
    assert SECRET in text_of(result)  # the caller gets the answer as it is; only the history is redacted
    stored = b"".join(p.read_bytes() for p in state.iterdir())
    assert SECRET.encode() not in stored and API_KEY.encode() not in stored
    assert b"token ***" in stored
    assert SECRET not in text_of(shown)


async def test_retention_keeps_the_newest_tasks_within_age_and_count(tmp_path: Path) -> None:
    store = TaskStore(tmp_path, retention_days=1, retention_count=3)
    await store.open()
    now = time.time()
    await store.insert(record("old", now - 3 * 86400))
    for n in range(5):
        await store.insert(record(f"t{n}", now - 100 + n))
    await store.insert(record("run", now - 5 * 86400, state="running"))  # never pruned while it runs
    await store.finish("t4", "completed")
    kept = {r.id for r in await store.recent(limit=50)}
    await store.aclose()
    assert kept == {"t2", "t3", "t4", "run"}


async def test_a_running_task_of_a_dead_process_is_interrupted_at_the_next_start(tmp_path: Path) -> None:
    first = TaskStore(tmp_path, retention_days=30, retention_count=100)
    await first.open()
    await first.insert(record("mine", time.time(), state="running"))
    await first.insert(record("theirs", time.time(), state="running"))
    await first.aclose()
    with sqlite3.connect(tmp_path / "tasks.sqlite3") as db:  # "theirs" belonged to a bridge that is gone
        db.execute("UPDATE tasks SET owner = ? WHERE id = 'theirs'", (first.owner.rsplit(":", 1)[0] + ":1.000",))
    second = TaskStore(tmp_path, retention_days=30, retention_count=100)
    await second.open()
    states = {r.id: r.state for r in await second.recent()}
    await second.aclose()
    assert states == {"mine": "running", "theirs": "interrupted"}  # this process still runs "mine"


ATTEMPTS = 40
OPEN_AND_INSERT = """
import asyncio, sys, time
from pathlib import Path
from lmstudio_bridge.task_store import TaskRecord, TaskStore

async def main():
    store = TaskStore(Path(sys.argv[1]), retention_days=1, retention_count=100)
    await store.open()
    now = time.time()
    await store.insert(TaskRecord(id=sys.argv[2], state="completed", task="t", mcps=[], created_at=now, updated_at=now))
    await store.aclose()

asyncio.run(main())
"""
"""One bridge's first steps with the history."""


def test_bridges_started_together_each_keep_their_tasks_in_a_new_history(tmp_path: Path) -> None:
    """Two bridges opening a new history at once: SQLite refused one of them the switch to WAL mode with
    SQLITE_BUSY, without waiting, and that bridge ran with no history and said nothing. Before the fix, this
    test failed in 9 of 10 runs."""
    for attempt in range(ATTEMPTS):
        directory = tmp_path / str(attempt)
        bridges = [
            subprocess.Popen([sys.executable, "-c", OPEN_AND_INSERT, str(directory), f"t{n}"], stderr=subprocess.PIPE)
            for n in range(2)
        ]
        logs = [bridge.communicate(timeout=60)[1].decode() for bridge in bridges]
        with sqlite3.connect(directory / "tasks.sqlite3") as db:
            kept = {row[0] for row in db.execute("SELECT id FROM tasks")}
        assert kept == {"t0", "t1"}, (attempt, logs)


async def test_a_history_another_bridge_holds_past_the_busy_timeout_is_off_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, such a bridge ran with no history and said nothing: every write was skipped as "busy"."""
    first = TaskStore(tmp_path, retention_days=1, retention_count=100)
    await first.open()
    await first.aclose()
    monkeypatch.setattr(task_store, "BUSY_TIMEOUT_MS", 50)
    other = sqlite3.connect(tmp_path / "tasks.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    store = TaskStore(tmp_path, retention_days=1, retention_count=100)
    await store.open()
    other.execute("ROLLBACK")
    other.close()
    assert not store.enabled
    assert store.problem == "another bridge held it for over 0.05 s while this one opened it"


def test_redactor_leaves_short_values_and_replaces_secrets_everywhere() -> None:
    redact = Redactor(["1", "true", SECRET])
    value = {"k": [f"a{SECRET}b", 1, True, "1 true"], SECRET: None}
    assert redact.value(value) == {"k": ["a***b", 1, True, "1 true"], "***": None}


def conversation(results: int, size: int) -> list[dict[str, object]]:
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "system"},
        {"role": "user", "content": "the task"},
    ]
    for n in range(results):
        call = {"id": f"c{n}", "type": "function", "function": {"name": "read", "arguments": "{}"}}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{n}", "content": f"result {n} " + "x" * size},
        ]
    return [*messages, {"role": "assistant", "content": "the answer"}]


def test_history_within_budget_is_sent_as_it_is() -> None:
    messages = conversation(3, 100)
    assert fit_history(messages, 10_000) == messages


def test_older_tool_results_are_shortened_first() -> None:
    messages = conversation(4, 4000)
    fitted = fit_history(messages, 2500)
    results = [m["content"] for m in fitted if m["role"] == "tool"]
    assert len(results) == 4 and estimated_tokens(fitted) <= 2500
    assert all(isinstance(r, str) for r in results)
    assert "shortened by the bridge" in str(results[0]) and "shortened by the bridge" not in str(results[-1])
    assert len(str(results[-1])) > 4000


def test_whole_exchanges_go_when_shortening_is_not_enough() -> None:
    messages = conversation(40, 1000)
    fitted = fit_history(messages, 1000)
    assert estimated_tokens(fitted) <= 1000
    assert fitted[:2] == messages[:2] and fitted[-1] == messages[-1]
    for index, message in enumerate(fitted):  # every tool result follows the call it answers
        if message["role"] == "tool":
            previous = fitted[index - 1]
            assert previous.get("tool_calls") or previous["role"] == "tool"


async def test_task_tools_explain_unknown_and_running_tasks(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_STATE_DIR=str(tmp_path / "s")) as client:
        unknown = await client.call_tool("task_status", {"task_id": "nope"})
        slow = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "echo", "task": "@delay 30\n@answer late", "background": True}
        )
        task_id = slow.structured_content["task_id"]
        early = await client.call_tool("continue_task", {"task_id": task_id, "message": "more"})
        waited = await client.call_tool("task_result", {"task_id": task_id, "wait_seconds": 0})
        too_long = await client.call_tool("task_result", {"task_id": task_id, "wait_seconds": "5"})
        await client.call_tool("cancel_task", {"task_id": task_id})
        bad_model = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "model": "nope", "background": True}
        )
    assert unknown.is_error and text_of(unknown).startswith("Error: No task has the id 'nope'")
    assert early.is_error and "is still running" in text_of(early)
    assert not waited.is_error and waited.structured_content["state"] == "running"
    assert too_long.is_error and "wait_seconds" in text_of(too_long)
    assert bad_model.is_error and "Model 'nope' not found" in text_of(bad_model)  # refused before it starts


async def test_cancelling_a_foreground_call_cancels_its_task(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    progress: list[str] = []

    async def on_progress(_: float, __: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_STATE_DIR=str(tmp_path / "s")) as client:
        call = asyncio.create_task(
            client.call_tool(
                "autonomous_with_mcp",
                {"mcp_name": "echo", "task": "@delay 30\n@answer late"},
                progress_callback=on_progress,
            )
        )
        for _ in range(400):
            if fake.in_flight == 1:
                break
            await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        listing = await client.call_tool("list_tasks", {})
        for _ in range(100):
            if listing.structured_content["tasks"][0]["state"] != "running":
                break
            await asyncio.sleep(0.05)
            listing = await client.call_tool("list_tasks", {})
    task_id = progress[0].split()[1]
    assert [(t["task_id"], t["state"]) for t in listing.structured_content["tasks"]] == [(task_id, "cancelled")]
    assert json.loads(json.dumps(listing.structured_content))["history"].endswith("tasks.sqlite3")


def test_a_call_left_without_its_result_is_left_out() -> None:
    messages = conversation(2, 10)
    call = {"id": "late", "type": "function", "function": {"name": "read", "arguments": "{}"}}
    stopped = [*messages[:-1], {"role": "assistant", "content": None, "tool_calls": [call]}]
    assert fit_history(stopped, 10_000) == messages[:-1]


async def test_a_task_keeps_its_allowed_tools_and_an_older_history_file_gains_them(tmp_path: Path) -> None:
    from lmstudio_bridge import task_store

    old_schema = task_store._SCHEMA.replace("    allowed_tools TEXT,\n", "")
    with sqlite3.connect(tmp_path / "tasks.sqlite3") as db:  # a history written before tasks kept them
        db.executescript(old_schema)
    store = TaskStore(tmp_path, retention_days=30, retention_count=100)
    await store.open()
    limited = record("limited", time.time())
    limited.allowed_tools = ["git_log", "git.git_show"]
    await store.insert(limited)
    await store.insert(record("open", time.time()))
    kept = {r.id: r.allowed_tools for r in await store.recent()}
    await store.aclose()
    assert kept == {"limited": ["git_log", "git.git_show"], "open": None}
