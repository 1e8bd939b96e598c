"""What the task tools, the ``tasks`` command and the task resources show: typed results and their text."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from .task_store import TaskRecord, TaskState

TASK_TEXT_CHARS = 200
TOOL_RESULT_LINES = 12


class TaskStatus(BaseModel):
    task_id: str
    state: TaskState
    task: str = Field(description=f"the task as asked, its first {TASK_TEXT_CHARS} characters")
    model: str | None
    mcps: list[str]
    parent_id: str | None = Field(default=None, description="the task this one continues (continue_task)")
    rounds: int = Field(description="model replies so far")
    tool_calls: int = Field(description="tool calls so far")
    last_progress: str | None = Field(default=None, description="the last progress line")
    elapsed_seconds: float
    created_at: str = Field(description="when it started, ISO 8601 UTC")
    finished_at: str | None = None
    error: str | None = None
    next_call: str | None = Field(default=None, description="what to call next")


class TaskList(BaseModel):
    tasks: list[TaskStatus] = Field(description="newest first")
    history: str | None = Field(description="the history file; null when the history is off")
    history_problem: str | None = Field(default=None, description="why the history is off")


def _iso(stamp: float | None) -> str | None:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds") if stamp is not None else None


def status_of(record: TaskRecord, *, mine: bool) -> TaskStatus:
    """``mine``: the task runs (or ran) in this bridge process."""
    end = record.finished_at if record.finished_at is not None else time.time()
    if record.state == "running":
        follow = f'task_result(task_id="{record.id}", wait_seconds=50)'
        if not mine:
            follow += " (it runs in another bridge process)"
    elif record.state == "completed":
        follow = (
            f'task_result(task_id="{record.id}") for the answer, or continue_task(task_id="{record.id}", message=...)'
        )
    else:
        follow = f'continue_task(task_id="{record.id}", message=...) to go on from its conversation'
    task = record.task if len(record.task) <= TASK_TEXT_CHARS else record.task[:TASK_TEXT_CHARS] + "…"
    return TaskStatus(
        task_id=record.id,
        state=record.state,
        task=task,
        model=record.model,
        mcps=record.mcps,
        parent_id=record.parent_id,
        rounds=record.rounds,
        tool_calls=record.tool_calls,
        last_progress=record.last_progress,
        elapsed_seconds=round(max(0.0, end - record.created_at), 1),
        created_at=_iso(record.created_at) or "",
        finished_at=_iso(record.finished_at),
        error=record.error,
        next_call=follow,
    )


def render_status(status: TaskStatus) -> str:
    lines = [
        f"Task {status.task_id}: {status.state} after {status.elapsed_seconds:g} s",
        f"model: {status.model or '?'} · mcps: {', '.join(status.mcps)} · rounds: {status.rounds} · "
        f"tool calls: {status.tool_calls}",
        f"task: {status.task}",
    ]
    if status.parent_id:
        lines.append(f"continues: {status.parent_id}")
    if status.last_progress:
        lines.append(f"last progress: {status.last_progress}")
    if status.error:
        lines.append(f"error: {status.error}")
    if status.next_call:
        lines.append(f"next: {status.next_call}")
    return "\n".join(lines)


def render_list(listing: TaskList) -> str:
    lines: list[str] = []
    if listing.history_problem:
        lines.append(f"[The task history is off: {listing.history_problem}. Only this bridge's tasks are shown.]")
    if not listing.tasks:
        lines.append("No tasks yet.")
        return "\n".join(lines)
    rows = [("ID", "STATE", "STARTED (UTC)", "SECONDS", "ROUNDS", "MODEL", "MCPS", "TASK")]
    for t in listing.tasks:
        first = t.task.splitlines()[0] if t.task else ""
        rows.append(
            (
                t.task_id,
                t.state,
                t.created_at.replace("T", " ").removesuffix("+00:00"),
                f"{t.elapsed_seconds:.0f}",
                str(t.rounds),
                (t.model or "?")[:30],
                ",".join(t.mcps)[:30],
                first[:50],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return "\n".join(lines)


def transcript_data(record: TaskRecord) -> dict[str, Any]:
    """The task and its messages, as ``--json`` and the resource give them."""
    status = status_of(record, mine=False).model_dump(mode="json")
    status["task"] = record.task
    return {**status, "result": record.result, "messages": record.messages}


def render_transcript(record: TaskRecord) -> str:
    """The task's conversation, readably: the task, each round's tool calls with their arguments and results,
    and the answer."""
    status = status_of(record, mine=False)
    out = [render_status(status), ""]
    round_no = 0
    for message in record.messages:
        role = message.get("role")
        content = _text(message.get("content"))
        if role == "system":
            continue
        if role == "user":
            out += ["== user ==", content, ""]
        elif role == "assistant":
            round_no += 1
            calls = message.get("tool_calls") or []
            out.append(f"== round {round_no} · {'tool calls' if calls else 'answer'} ==")
            if content:
                out.append(content)
            for call in calls:
                function = call.get("function", {})
                out.append(f"-> {function.get('name')} {function.get('arguments') or '{}'}")
            out.append("")
        elif role == "tool":
            lines = content.splitlines()
            shown = lines[:TOOL_RESULT_LINES]
            if len(lines) > TOOL_RESULT_LINES:
                shown.append(f"… ({len(lines) - TOOL_RESULT_LINES} more lines; --json has them all)")
            out += ["<- result:", *("   " + line for line in shown), ""]
    if record.result and record.result.get("answer") and not record.messages:
        out += ["== answer ==", record.result["answer"]]
    return "\n".join(out).rstrip()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else json.dumps(content)
