"""The MCP tools and resources for tasks: task_status, task_result, cancel_task, list_tasks, continue_task,
and ``lmstudio-bridge://tasks/ID``. The work is ``TaskManager``'s; this is the surface."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, Resource, ToolAnnotations
from pydantic import BeforeValidator, Field

from .agent import ProgressFn
from .config import MAX_TASK_CHARS
from .render import render_task
from .results import TaskResult
from .service import MAX_MODEL_CHARS
from .task_store import TaskState
from .task_views import TaskList, TaskStatus, render_list, render_status, transcript_data
from .tasks import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS, TaskNotFound

if TYPE_CHECKING:
    from .server import BridgeServer
    from .service import Bridge

RESOURCE_PREFIX = "lmstudio-bridge://tasks/"
LISTED_RESOURCES = 50

Ctx = Context[Any, Any]


def _number(value: object) -> object:
    """Integers are numbers too; booleans and strings are refused by strict validation."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


TaskId = Annotated[
    str,
    Field(description="The task id, from the result or the first progress line of an autonomous tool.", max_length=64),
]
WaitSeconds = Annotated[
    float,
    Field(
        strict=True,
        ge=0,
        description=f"Seconds to wait for the answer while the task runs (at most {MAX_WAIT_SECONDS:g}: hosts cut off "
        "longer calls); then the result says it is still running, and you can call again.",
    ),
    BeforeValidator(_number),
]


def add_task_tools(
    server: BridgeServer,
    bridge_of: Callable[[Ctx], Bridge],
    progress_of: Callable[[Ctx], ProgressFn],
    respond: Callable[[Awaitable[Any], Callable[[Any], str]], Awaitable[CallToolResult]],
) -> None:
    """Registers the task tools (after the autonomous tools) and the task resources on ``server``."""
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    async def task_status(task_id: TaskId, ctx: Ctx) -> Annotated[CallToolResult, TaskStatus]:
        """Where a task is: its state, model, servers, rounds and tool calls so far, last progress line, elapsed time."""
        return await respond(bridge_of(ctx).tasks.status(task_id.strip()), render_status)

    @server.tool(annotations=read_only)
    async def task_result(
        task_id: TaskId, ctx: Ctx, wait_seconds: WaitSeconds = DEFAULT_WAIT_SECONDS
    ) -> Annotated[CallToolResult, TaskResult]:
        """A task's answer. While it runs, waits up to wait_seconds for it, then says it is still running."""
        wait = bridge_of(ctx).tasks.wait(task_id.strip(), wait_seconds, progress=progress_of(ctx))
        return await respond(wait, render_task)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False))
    async def cancel_task(task_id: TaskId, ctx: Ctx) -> Annotated[CallToolResult, TaskStatus]:
        """Stop a running task: its model request and tool calls end within seconds."""
        return await respond(bridge_of(ctx).tasks.cancel(task_id.strip()), render_status)

    @server.tool(annotations=read_only)
    async def list_tasks(
        ctx: Ctx,
        state: Annotated[
            TaskState | None, Field(description="Only tasks in this state.", json_schema_extra={"maxLength": 11})
        ] = None,
        limit: Annotated[int, Field(strict=True, ge=1, le=200, description="Most tasks to list.")] = 20,
    ) -> Annotated[CallToolResult, TaskList]:
        """Recent tasks, newest first, with their ids and states."""
        return await respond(bridge_of(ctx).tasks.list(state=state, limit=limit), render_list)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True))
    async def continue_task(
        task_id: TaskId,
        message: Annotated[
            str,
            Field(
                description="The follow-up: what the model should do next, in plain words.",
                json_schema_extra={"maxLength": MAX_TASK_CHARS},
            ),
        ],
        ctx: Ctx,
        model: Annotated[
            str | None,
            Field(
                description="Another model id from list_models; omit to keep the task's model.",
                json_schema_extra={"maxLength": MAX_MODEL_CHARS},
            ),
        ] = None,
        background: Annotated[
            bool, Field(strict=True, description="True: return at once with the new task's id.")
        ] = False,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Continue a finished task's conversation with a follow-up, with the same servers (and model, unless given),
        as a new task that points to it."""
        tasks = bridge_of(ctx).tasks

        async def follow() -> TaskResult:
            request = await tasks.follow_up(task_id.strip(), message, model)
            return await tasks.run(request, progress=progress_of(ctx), background=background)

        return await respond(follow(), render_task)

    @server.resource(
        RESOURCE_PREFIX + "{task_id}",
        name="task",
        description="A task of the bridge: its state, result and conversation (JSON).",
        mime_type="application/json",
    )
    async def task_resource(task_id: str) -> str:
        bridge = server.bridge
        if bridge is None:
            raise RuntimeError("the bridge is not running")
        try:
            record = await bridge.tasks.transcript(task_id)
        except TaskNotFound as exc:
            from mcp.server.mcpserver.exceptions import ResourceError

            raise ResourceError(str(exc)) from None
        return json.dumps(transcript_data(record), ensure_ascii=False, indent=2)


async def task_resources(bridge: Bridge | None) -> list[Resource]:
    """The recent tasks, each as a resource."""
    if bridge is None:
        return []
    listing = await bridge.tasks.list(limit=LISTED_RESOURCES)
    return [
        Resource(
            uri=RESOURCE_PREFIX + t.task_id,
            name=f"task {t.task_id}",
            description=f"{t.state}: {t.task.splitlines()[0][:80] if t.task else ''}",
            mime_type="application/json",
        )
        for t in listing.tasks
    ]
