"""The protocol's own tasks (MCP 2025-11-25): task-augmented ``tools/call``, ``tasks/get``, ``tasks/result``,
``tasks/cancel`` and ``tasks/list``, backed by the same ``TaskManager`` as the task tools.

MCP SDK 2.3 defines the types (``mcp_types``) but serves none of this: ``tasks/*`` are not in its method
tables (``mcp_types/methods.py``: "2025-11-25 (tasks/* deliberately absent)"), ``Server.get_capabilities``
never declares ``tasks``, and a ``tools/call`` handler's result is checked against ``CallToolResult``
(``ServerRunner._serialize``), which a ``CreateTaskResult`` is not. What it does allow, and this module uses:

- a ``Server.middleware`` entry, which sees ``tools/call`` before validation and may answer it itself
  (a short-circuited result is not checked against the method's result type);
- ``Server.add_request_handler`` for the ``tasks/*`` methods, which the SDK treats as custom methods;
- the capability, added to what ``get_capabilities`` declares for 2025-11-25 connections.

A task-augmented call of an autonomous tool (or ``continue_task``) runs as ``background: true`` would, and
answers ``CreateTaskResult``; a call without ``task`` is untouched. The tools say ``execution.taskSupport:
"optional"``. The 2026-07-28 revision moved tasks out of the core protocol, so nothing of this is offered
on a connection that negotiated it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    CallToolResult,
    CancelTaskRequestParams,
    GetTaskPayloadRequestParams,
    GetTaskRequestParams,
    PaginatedRequestParams,
    ServerCapabilities,
    ServerTasksCapability,
    ServerTasksRequestsCapability,
    TasksCallCapability,
    TasksCancelCapability,
    TasksListCapability,
    TasksToolsCapability,
    TextContent,
    Tool,
    ToolExecution,
)

from .errors import BridgeError
from .render import render_task
from .task_views import TaskStatus
from .tasks import MAX_WAIT_SECONDS, TaskNotFound

if TYPE_CHECKING:
    from .server import BridgeServer
    from .service import Bridge

logger = logging.getLogger(__name__)

TASKS_VERSION = "2025-11-25"
"""The one protocol revision whose core has tasks."""
TASK_TOOLS = frozenset({"autonomous_with_mcp", "autonomous_with_multiple_mcps", "continue_task"})
POLL_INTERVAL_MS = 5000
RELATED_TASK = "io.modelcontextprotocol/related-task"
CAPABILITY = ServerTasksCapability(
    list=TasksListCapability(),
    cancel=TasksCancelCapability(),
    requests=ServerTasksRequestsCapability(tools=TasksToolsCapability(call=TasksCallCapability())),
)
_STATUS = {"running": "working", "completed": "completed", "failed": "failed", "cancelled": "cancelled"}


def with_task_support(tool: Tool) -> Tool:
    """``execution.taskSupport: "optional"`` on the tools that can run as protocol tasks."""
    if tool.name not in TASK_TOOLS:
        return tool
    return tool.model_copy(update={"execution": ToolExecution(task_support="optional")})


def serve_protocol_tasks(server: BridgeServer) -> None:
    """Adds the capability, the ``tools/call`` interception and the ``tasks/*`` methods to ``server``."""
    low = server._lowlevel_server
    declared = low.get_capabilities

    def get_capabilities(*args: Any, **kwargs: Any) -> ServerCapabilities:
        capabilities = declared(*args, **kwargs)
        if kwargs.get("protocol_version") not in (None, TASKS_VERSION):
            return capabilities
        return capabilities.model_copy(update={"tasks": CAPABILITY})

    low.get_capabilities = get_capabilities  # type: ignore[method-assign]
    low.middleware.append(_TaskAugmentedCalls(server))

    def bridge_of(ctx: ServerRequestContext[Any, Any]) -> Bridge:
        bridge: Bridge = ctx.lifespan_context
        return bridge

    async def get_task(ctx: ServerRequestContext[Any, Any], params: GetTaskRequestParams) -> dict[str, Any]:
        return protocol_task(await _status(bridge_of(ctx), params.task_id))

    async def task_payload(ctx: ServerRequestContext[Any, Any], params: GetTaskPayloadRequestParams) -> dict[str, Any]:
        tasks = bridge_of(ctx).tasks
        await _status(bridge_of(ctx), params.task_id)  # an unknown id is a protocol error
        while True:
            try:
                result = await tasks.wait(params.task_id, MAX_WAIT_SECONDS)
            except BridgeError as exc:
                answer = CallToolResult(content=[TextContent(type="text", text=f"Error: {exc}")], is_error=True)
                break
            if result.state != "running":
                answer = CallToolResult(
                    content=[TextContent(type="text", text=render_task(result))],
                    structured_content=result.model_dump(mode="json"),
                )
                break
        payload = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
        payload.pop("resultType", None)  # a 2026-07-28 field; tasks exist only on 2025-11-25 connections
        payload["_meta"] = {RELATED_TASK: {"taskId": params.task_id}}
        return payload

    async def cancel_task(ctx: ServerRequestContext[Any, Any], params: CancelTaskRequestParams) -> dict[str, Any]:
        status = await _status(bridge_of(ctx), params.task_id)
        if status.state != "running":
            raise MCPError(code=INVALID_PARAMS, message=f"Task {params.task_id} is already {status.state}")
        try:
            return protocol_task(await bridge_of(ctx).tasks.cancel(params.task_id))
        except BridgeError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None

    async def list_tasks(ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams) -> dict[str, Any]:
        listing = await bridge_of(ctx).tasks.list(limit=100)
        return {"tasks": [protocol_task(status) for status in listing.tasks]}

    low.add_request_handler("tasks/get", GetTaskRequestParams, get_task)
    low.add_request_handler("tasks/result", GetTaskPayloadRequestParams, task_payload)
    low.add_request_handler("tasks/cancel", CancelTaskRequestParams, cancel_task)
    low.add_request_handler("tasks/list", PaginatedRequestParams, list_tasks)


async def _status(bridge: Bridge, task_id: str) -> TaskStatus:
    try:
        return await bridge.tasks.status(task_id)
    except TaskNotFound as exc:
        raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None


def protocol_task(status: TaskStatus) -> dict[str, Any]:
    """A ``Task`` of the protocol, as JSON."""
    task: dict[str, Any] = {
        "taskId": status.task_id,
        "status": _STATUS.get(status.state, "failed"),
        "createdAt": status.created_at,
        "lastUpdatedAt": status.finished_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "ttl": None,
        "pollInterval": POLL_INTERVAL_MS,
    }
    message = status.error if status.state != "running" else status.last_progress
    if status.state == "interrupted":
        message = f"interrupted: {status.error}"
    if message:
        task["statusMessage"] = message
    return task


class _TaskAugmentedCalls:
    """``tools/call`` with ``task`` of a tool that supports it: started in the background, answered with
    ``CreateTaskResult``. Every other request passes through."""

    def __init__(self, server: BridgeServer) -> None:
        self._server = server

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params
        if (
            ctx.method != "tools/call"
            or not isinstance(params, Mapping)
            or params.get("task") is None
            or ctx.protocol_version != TASKS_VERSION
        ):
            return await call_next(ctx)
        name = params.get("name")
        if name not in TASK_TOOLS:
            raise MCPError(
                code=-32601, message=f"Tool {str(name)[:100]!r} does not run as a task; call it without 'task'."
            )
        arguments = params.get("arguments")
        if not isinstance(arguments, Mapping):
            arguments = {}
        inner = {key: value for key, value in params.items() if key != "task"}
        inner["arguments"] = {**arguments, "background": True}
        started = await call_next(replace(ctx, params=inner))
        result = CallToolResult.model_validate(started) if isinstance(started, Mapping) else started
        if not isinstance(result, CallToolResult) or result.is_error or not result.structured_content:
            texts = (
                [c.text for c in result.content if isinstance(c, TextContent)]
                if isinstance(result, CallToolResult)
                else []
            )
            raise MCPError(code=INVALID_PARAMS, message=" ".join(texts) or "the task could not start")
        task_id = str(result.structured_content["task_id"])
        logger.info("Task %s runs as a protocol task", task_id)
        bridge: Bridge = ctx.lifespan_context
        return {"task": protocol_task(await bridge.tasks.status(task_id))}
