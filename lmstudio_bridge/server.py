"""The MCP tool surface: a thin layer over ``Bridge``.

Every failure reaches the caller as an error result (``isError`` true) whose
text starts with ``Error: ``; successes carry text for the caller's model and
structured content for programs.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import CallToolResult, JSONRPCError, Resource, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from . import __version__
from .agent import ProgressFn
from .config import MAX_TASK_CHARS, Settings
from .errors import BridgeError, quoted
from .host import McpHost
from .local import local_transport
from .policy import MAX_PATTERN_CHARS, MAX_PATTERNS
from .protocol_tasks import serve_protocol_tasks, with_task_support
from .render import render_health, render_load, render_mcps, render_models, render_task, render_unload
from .results import HealthResult, McpListResult, ModelLoadResult, ModelsResult, ModelUnloadResult, TaskResult
from .service import MAX_MODEL_CHARS, MAX_NAME_CHARS, Bridge
from .task_tools import add_task_tools, task_resources
from .tasks import TaskRequest
from .wire import ScreenedLines, claimed_stdin

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
Delegates whole tasks to a local model served by LM Studio. The local model works with the tools of
MCP servers from the user's MCP config (see list_mcps) until it can answer.
Use autonomous_with_mcp for one server, autonomous_with_multiple_mcps for several. Omit `model` to use
the default model; pass an exact id from list_models to choose one (for example a coding model for code,
a reasoning model for analysis)."""

ResultT = TypeVar("ResultT", bound=BaseModel)
Ctx = Context[Bridge, Any]


def _integral(value: object) -> object:
    """``2.0`` is the integer 2, as in JSON Schema; every other non-integer stays for strict validation to refuse."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# String lengths are published as maxLength and checked in ``service._check_request``, whose
# messages say the limit without repeating the value. Numbers and booleans are strict: "2",
# true or "yes" are refused, not converted.
NameText = Annotated[str, Field(json_schema_extra={"maxLength": MAX_NAME_CHARS})]
McpName = Annotated[NameText, Field(description="Name of an MCP server from the user's MCP config (see list_mcps).")]
Task = Annotated[
    str,
    Field(
        description="What the local model should do, in plain words, with every detail it needs.",
        json_schema_extra={"maxLength": MAX_TASK_CHARS},
    ),
]
Model = Annotated[
    Annotated[str, Field(json_schema_extra={"maxLength": MAX_MODEL_CHARS})] | None,
    Field(description="Exact model id from list_models; omit (or 'default') for the default model."),
]
MaxRounds = Annotated[
    int | None,
    Field(strict=True, description="Most model turns before the model must sum up (default from config)."),
    BeforeValidator(_integral),
]
ReadOnly = Annotated[
    bool,
    Field(
        strict=True,
        description="True for questions, analysis and reviews: the local model is offered only the tools that "
        "declare they change nothing (readOnlyHint), and any other call is refused before it reaches the server.",
    ),
]
NameModel = Annotated[str, Field(json_schema_extra={"maxLength": MAX_MODEL_CHARS})]
ContextLength = Annotated[
    int | None,
    Field(strict=True, description="Tokens of context to load the model with (default: the bridge's load setting)."),
    BeforeValidator(_integral),
]
Background = Annotated[
    bool,
    Field(
        strict=True,
        description="True: return at once with the task id; fetch the answer with task_result. Use it for long "
        "tasks (a foreground call still running after a while returns the task id too).",
    ),
]
AllowedTools = Annotated[
    list[Annotated[str, Field(json_schema_extra={"maxLength": MAX_PATTERN_CHARS})]] | None,
    Field(
        description="Only these tools are offered to the local model: names or shell-style patterns, qualified "
        "by server where needed (git_log, git_*, git.*, filesystem.read_text_file). Omit to offer every tool "
        "the user's tool rules allow.",
        json_schema_extra={"maxItems": MAX_PATTERNS},
    ),
]
IncludeReasoning = Annotated[
    bool,
    Field(
        strict=True,
        description="Append the model's reasoning, when it gave any, to the answer text "
        "(the structured result always carries it).",
    ),
]


class BridgeServer(MCPServer[Bridge]):
    """``MCPServer`` whose every tool error text starts with ``Error: ``, and whose tools take no
    argument they do not list (``additionalProperties: false``)."""

    async def run_stdio_async(self) -> None:
        """Serves over stdio like ``MCPServer``, but answers every line JSON-RPC says to answer (see ``wire``)."""
        send_rejected, rejected = anyio.create_memory_object_stream[JSONRPCError](0)
        with claimed_stdin() as stdin:
            lines = ScreenedLines(stdin, send_rejected)
            async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]

                async def answer_rejected() -> None:
                    async with rejected:
                        async for error in rejected:
                            await write_stream.send(SessionMessage(error))

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(answer_rejected)
                    await self._lowlevel_server.run(
                        read_stream, write_stream, self._lowlevel_server.create_initialization_options()
                    )
                    tasks.cancel_scope.cancel()

    bridge: Bridge | None = None
    """The running bridge, once the lifespan has made it (resource listings have no request context)."""

    async def list_tools(self) -> list[Tool]:
        return [with_task_support(_closed(tool)) for tool in await super().list_tools()]

    async def list_resources(self) -> list[Resource]:
        return [*await super().list_resources(), *await task_resources(self.bridge)]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        schemas = {tool.name: tool.input_schema for tool in await self.list_tools()}
        if name not in schemas:
            raise ToolError(f"Error: unknown tool {quoted(name)}; the tools are {', '.join(schemas)}.")
        properties: Mapping[str, Any] = schemas[name].get("properties", {})
        unknown = [key for key in arguments if key not in properties]
        if unknown:
            raise ToolError(f"Error: {_unknown_arguments(name, unknown, list(properties))}")
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            logger.exception("Tool %s failed unexpectedly", name)
            raise ToolError(f"Error: {name} failed unexpectedly; the bridge's log (stderr) has the details.") from None
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                summary = _validation_summary(cause, properties)
                raise ToolError(f"Error: invalid arguments for {name}: {summary}") from None
            text = str(exc).removeprefix(f"Error executing tool {name}: ")
            raise ToolError(text if text.startswith("Error: ") else f"Error: {text}") from None


def _closed(tool: Tool) -> Tool:
    """The tool with ``additionalProperties: false`` in its input schema: unknown arguments are refused."""
    return tool.model_copy(update={"input_schema": {**tool.input_schema, "additionalProperties": False}})


def _unknown_arguments(tool: str, unknown: list[str], known: list[str]) -> str:
    """``unknown argument 'modle'; did you mean 'model'?``, or the list of the arguments the tool takes."""
    guesses = [difflib.get_close_matches(key[:200], known, n=1) for key in unknown[:3]]
    shown = [
        quoted(key, 40) + (f" (did you mean '{guess[0]}'?)" if guess else "")
        for key, guess in zip(unknown, guesses, strict=True)
    ]
    if len(unknown) > 3:
        shown.append(f"and {len(unknown) - 3:,} more")
    if len(unknown) == 1 and guesses[0]:
        return f"unknown argument {quoted(unknown[0], 40)}; did you mean '{guesses[0][0]}'?"
    takes = f"{tool} takes {', '.join(known)}." if known else f"{tool} takes no arguments."
    noun = "argument" if len(unknown) == 1 else "arguments"
    return f"unknown {noun} {', '.join(shown)}; {takes}"


def build_server(settings: Settings, bridge: Bridge | None = None) -> BridgeServer:
    """The MCP server. ``bridge`` is for tests; normally the lifespan builds one."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Bridge]) -> AsyncIterator[Bridge]:
        if bridge is not None:
            server.bridge = bridge
            yield bridge
            return
        async with Bridge(settings, transport=local_transport(settings)) as owned:
            server.bridge = owned
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
        read_only: ReadOnly = False,
        include_reasoning: IncludeReasoning = False,
        background: Background = False,
        allowed_tools: AllowedTools = None,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Have the local model do a task with the tools of one MCP server (for example "filesystem"), and return its answer."""
        return await _run_task(
            ctx, [mcp_name], task, model, max_rounds, read_only, include_reasoning, background, allowed_tools
        )

    @server.tool(annotations=delegating)
    async def autonomous_with_multiple_mcps(
        mcp_names: Annotated[list[NameText], Field(description="Names of MCP servers from the user's MCP config.")],
        task: Task,
        ctx: Ctx,
        model: Model = None,
        max_rounds: MaxRounds = None,
        read_only: ReadOnly = False,
        include_reasoning: IncludeReasoning = False,
        background: Background = False,
        allowed_tools: AllowedTools = None,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Have the local model do a task with the tools of several MCP servers at once, and return its answer."""
        return await _run_task(
            ctx, mcp_names, task, model, max_rounds, read_only, include_reasoning, background, allowed_tools
        )

    managing = ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )

    @server.tool(annotations=managing)
    async def load_model(
        model: Annotated[NameModel, Field(description="Exact model id from list_models.")],
        ctx: Ctx,
        context_length: ContextLength = None,
    ) -> Annotated[CallToolResult, ModelLoadResult]:
        """Load a downloaded model in LM Studio, optionally with a context length; tasks also load models on demand."""
        return await _respond(_bridge(ctx).load_model(model, context_length, _progress(ctx)), render_load)

    @server.tool(annotations=managing)
    async def unload_model(
        model: Annotated[NameModel, Field(description="Exact model id from list_models.")], ctx: Ctx
    ) -> Annotated[CallToolResult, ModelUnloadResult]:
        """Unload a model from LM Studio to free memory; refused while a task is using it."""
        return await _respond(_bridge(ctx).unload_model(model), render_unload)

    add_task_tools(server, _bridge, _progress, _respond)
    serve_protocol_tasks(server)
    return server


async def _run_task(
    ctx: Ctx,
    names: list[str],
    task: str,
    model: str | None,
    max_rounds: int | None,
    read_only: bool,
    include_reasoning: bool,
    background: bool = False,
    allowed_tools: list[str] | None = None,
) -> CallToolResult:
    bridge = _bridge(ctx)
    request = TaskRequest(
        names,
        task,
        model=model,
        max_rounds=max_rounds,
        read_only=read_only,
        allowed_tools=allowed_tools,
        host=None if background else McpHost(ctx.request_context.session, ctx.request_id),
    )
    run = bridge.tasks.run(request, progress=_progress(ctx), background=background)
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
        except Exception:
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


_EXPECTED = {"int_type": "an integer", "bool_type": "true or false", "string_type": "a string", "list_type": "a list"}
"""Type errors, said as the JSON type the argument needs; other errors keep pydantic's message."""


def _validation_summary(exc: ValidationError, properties: Mapping[str, Any] | None = None) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        expected = _EXPECTED.get(error["type"])
        if expected is None:
            parts.append(f"{where}: {error['msg']}")
            continue
        schema = (properties or {}).get(str(error["loc"][0]), {}) if error["loc"] else {}
        if len(error["loc"]) == 1 and {"type": "null"} in schema.get("anyOf", []):
            expected += " or null"
        parts.append(f"{where}: expected {expected}, got {_described(error['input'])}")
    return "; ".join(parts)


def _described(value: object) -> str:
    """A JSON value as an error message names it, repeating at most a short prefix."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {quoted(value, 40)}"
    if isinstance(value, int | float):
        return f"the number {value!r}" if abs(value) < 10**12 else "a very large number"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__
