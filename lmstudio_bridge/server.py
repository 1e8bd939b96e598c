"""The MCP tool surface: a thin layer over ``Bridge``.

Every failure reaches the caller as an error result (``isError`` true) whose
text starts with ``Error: ``; successes carry text for the caller's model and
structured content for programs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from . import __version__
from .agent import ProgressFn
from .config import Settings
from .errors import BridgeError
from .render import render_health, render_mcps, render_models, render_task
from .results import HealthResult, McpListResult, ModelsResult, TaskResult
from .service import Bridge

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
Delegates whole tasks to a local model served by LM Studio. The local model works with the tools of
MCP servers from the user's MCP config (see list_mcps) until it can answer.
Use autonomous_with_mcp for one server, autonomous_with_multiple_mcps for several. Omit `model` to use
the default model; pass an exact id from list_models to choose one (for example a coding model for code,
a reasoning model for analysis)."""

ResultT = TypeVar("ResultT", bound=BaseModel)
Ctx = Context[Bridge, Any]

McpName = Annotated[str, Field(description="Name of an MCP server from the user's MCP config (see list_mcps).")]
Task = Annotated[str, Field(description="What the local model should do, in plain words, with every detail it needs.")]
Model = Annotated[
    str | None,
    Field(description="Exact model id from list_models; omit (or 'default') for the default model."),
]
MaxRounds = Annotated[
    int | None, Field(description="Most model turns before the model must sum up (default from config).")
]
IncludeReasoning = Annotated[
    bool,
    Field(
        description="Append the model's reasoning, when it gave any, to the answer text "
        "(the structured result always carries it)."
    ),
]


class BridgeServer(MCPServer[Bridge]):
    """``MCPServer`` whose every tool error text starts with ``Error: ``."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            logger.exception("Tool %s failed unexpectedly", name)
            raise ToolError(f"Error: {name} failed unexpectedly; the bridge's log (stderr) has the details.") from None
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(f"Error: invalid arguments for {name}: {_validation_summary(cause)}") from None
            text = str(exc).removeprefix(f"Error executing tool {name}: ")
            raise ToolError(text if text.startswith("Error: ") else f"Error: {text}") from None


def build_server(settings: Settings, bridge: Bridge | None = None) -> BridgeServer:
    """The MCP server. ``bridge`` is for tests; normally the lifespan builds one."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Bridge]) -> AsyncIterator[Bridge]:
        if bridge is not None:
            yield bridge
            return
        async with Bridge(settings) as owned:
            yield owned

    server = BridgeServer("lmstudio-bridge", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan)
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    delegating = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)

    @server.tool(annotations=read_only)
    async def list_models(ctx: Ctx) -> Annotated[CallToolResult, ModelsResult]:
        """List the models LM Studio can run; use an id from here as `model` in the autonomous tools."""
        return await _respond(_bridge(ctx).list_models(), render_models)

    @server.tool(annotations=read_only)
    async def health_check(ctx: Ctx) -> Annotated[CallToolResult, HealthResult]:
        """Check that LM Studio answers: its address, how many models it lists, and the round-trip time."""
        return await _respond(_bridge(ctx).health(), render_health)

    @server.tool(annotations=read_only)
    async def list_mcps(ctx: Ctx) -> Annotated[CallToolResult, McpListResult]:
        """List the MCP servers the local model can use, and the config files they come from."""

        async def listing() -> McpListResult:
            return _bridge(ctx).list_mcps()

        return await _respond(listing(), render_mcps)

    @server.tool(annotations=delegating)
    async def autonomous_with_mcp(
        mcp_name: McpName,
        task: Task,
        ctx: Ctx,
        model: Model = None,
        max_rounds: MaxRounds = None,
        include_reasoning: IncludeReasoning = False,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Have the local model do a task with the tools of one MCP server (for example "filesystem"), and return its answer."""
        return await _run_task(ctx, [mcp_name], task, model, max_rounds, include_reasoning)

    @server.tool(annotations=delegating)
    async def autonomous_with_multiple_mcps(
        mcp_names: Annotated[list[str], Field(description="Names of MCP servers from the user's MCP config.")],
        task: Task,
        ctx: Ctx,
        model: Model = None,
        max_rounds: MaxRounds = None,
        include_reasoning: IncludeReasoning = False,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Have the local model do a task with the tools of several MCP servers at once, and return its answer."""
        return await _run_task(ctx, mcp_names, task, model, max_rounds, include_reasoning)

    return server


async def _run_task(
    ctx: Ctx, names: list[str], task: str, model: str | None, max_rounds: int | None, include_reasoning: bool
) -> CallToolResult:
    run = _bridge(ctx).run_task(names, task, model=model, max_rounds=max_rounds, progress=_progress(ctx))
    return await _respond(run, lambda result: render_task(result, include_reasoning=include_reasoning))


def _bridge(ctx: Ctx) -> Bridge:
    return ctx.request_context.lifespan_context


def _progress(ctx: Ctx) -> ProgressFn:
    """Progress notifications with a rising count; a no-op when the caller sent no progress token."""
    count = 0

    async def report(message: str) -> None:
        nonlocal count
        count += 1
        try:
            await ctx.report_progress(count, None, message)
        except Exception:  # noqa: BLE001 - progress must never fail a task
            logger.debug("Progress notification failed", exc_info=True)

    return report


async def _respond(work: Awaitable[ResultT], render: Callable[[ResultT], str]) -> CallToolResult:
    try:
        result = await work
    except BridgeError as exc:
        logger.info("Tool failed: %s", exc)
        return error_result(str(exc))
    return CallToolResult(
        content=[TextContent(type="text", text=render(result))],
        structured_content=result.model_dump(mode="json"),
    )


def error_result(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=f"Error: {message}")], is_error=True)


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
