"""The bridge's operations, shared by the MCP tools and the command line.

``Bridge`` owns the long-lived parts (the model servers, each with its API client,
model validator and one ``LLMClient`` per model; the MCP catalog and the child pool) and runs each
task through the one agent loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from .agent import LoopLimits, ProgressFn, no_progress, run_agent
from .child_requests import TaskChild, TaskLink
from .children import ChildPool
from .config import ENV_NAMES, MAX_TASK_CHARS, Settings
from .errors import ConfigError, InvalidRequest, LMStudioError, TaskTimeout
from .fleet import Fleet, Server
from .host import Host
from .lmstudio import ModelInfo
from .mcp_config import McpCatalog, McpServerSpec
from .policy import Approver, ServerRules, ToolPolicy, check_allowed_tools, load_tool_rules
from .results import (
    HealthResult,
    McpEntry,
    McpListResult,
    ModelEntry,
    ModelLoadResult,
    ModelsResult,
    ModelUnloadResult,
    ServerHealth,
    TaskResult,
)
from .tasks import TaskManager
from .toolbox import Toolbox

logger = logging.getLogger(__name__)

MAX_MCPS_PER_TASK = 16
MAX_NAME_CHARS = 200
MAX_MODEL_CHARS = 500


class Bridge:
    """Everything a running bridge holds. Use as ``async with Bridge(settings) as bridge``."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: McpCatalog | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.fleet = Fleet(settings, transport=transport)
        self.api = self.fleet.primary.api
        self.validator = self.fleet.primary.validator
        self.catalog = catalog or McpCatalog(explicit_paths=settings.mcp_config, cwd=Path.cwd())
        self.children = ChildPool(
            start_timeout=settings.child_start_timeout,
            idle_timeout=settings.child_idle_timeout,
            max_children=settings.max_children,
            exclusive=settings.exclusive_mcps,
        )
        self._task_slots = asyncio.Semaphore(settings.max_concurrent_tasks)
        self._running = 0
        self.tasks = TaskManager(self)

    async def __aenter__(self) -> Bridge:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.tasks.aclose()
        await self.children.aclose()
        await self.fleet.aclose()

    async def list_models(self) -> ModelsResult:
        listing = await self.fleet.listing(refresh=True)
        return ModelsResult(
            models=[_model_entry(m, listing.default) for m in listing.models],
            default_model=listing.default,
            base_url=self.api.base_url,
            server_name=self.api.server_name,
            servers=[server.base_url for server in self.fleet.servers],
            notes=listing.notes,
        )

    async def health(self) -> HealthResult:
        checks = await asyncio.gather(*(_server_health(s) for s in self.fleet.servers))
        up = [c for c in checks if c.reachable]
        default = None
        if up:
            with contextlib.suppress(LMStudioError):
                default = (await self.fleet.listing()).default
        return HealthResult(
            reachable=bool(up),
            base_url=self.api.base_url,
            server_name=self.api.server_name,
            model_count=sum(c.model_count or 0 for c in up) if up else None,
            default_model=default,
            round_trip_ms=up[0].round_trip_ms if up else None,
            error=None if up else checks[0].error,
            servers=checks,
        )

    async def load_model(
        self, model: str, context_length: int | None = None, progress: ProgressFn | None = None
    ) -> ModelLoadResult:
        """Loads ``model`` on the server that lists it (``context_length``: tokens, else the load setting)."""
        _check_model_name(model)
        server, loaded = await self.fleet.load(model.strip(), context_length, progress or no_progress)
        if loaded is None:
            info = server.validator.cached_info(model.strip())
            return ModelLoadResult(
                model=model.strip(),
                server=server.base_url,
                loaded_now=False,
                context_length=info.context_length if info else None,
            )
        return ModelLoadResult(
            model=loaded.model,
            server=server.base_url,
            loaded_now=True,
            instance_id=loaded.instance_id,
            context_length=loaded.context_length,
            load_time_seconds=loaded.load_time_seconds,
        )

    async def unload_model(self, model: str) -> ModelUnloadResult:
        """Unloads ``model`` wherever it is loaded, unless a task is using it."""
        _check_model_name(model)
        done = await self.fleet.unload(model.strip())
        return ModelUnloadResult(
            model=model.strip(),
            unloaded=[i for _, instances in done for i in instances],
            servers=[server.base_url for server, _ in done],
        )

    def list_mcps(self) -> McpListResult:
        entries = []
        problems: list[str] = []
        try:
            rules = load_tool_rules(self.settings.tool_rules)  # small; read as the catalog reads its files
        except ConfigError as exc:
            rules, problems = {}, [str(exc)]
        for spec in sorted(self.catalog.servers().values(), key=lambda s: s.name):
            note = None
            if spec.is_bridge:
                note = "starts lmstudio-bridge itself; never offered"
            elif spec.disabled:
                note = 'disabled; remove "disabled": true to use it'
            elif spec.unsupported:
                note = spec.unsupported
            entries.append(
                McpEntry(
                    name=spec.name,
                    transport=spec.transport,
                    command=spec.shown_command,  # as written: an expanded ${VAR} may be a secret
                    url=spec.shown_url,
                    source=spec.source,
                    disabled=spec.disabled,
                    usable=note is None,
                    note=note,
                    **self._effective_tools(spec.name, rules),
                )
            )
        return McpListResult(
            mcps=entries,
            config_files=[str(p) for p, _ in self.catalog.candidate_paths() if p.is_file()],
            problems=list(self.catalog.problems) + problems,
        )

    async def run_task(
        self,
        mcp_names: Sequence[str],
        task: str,
        *,
        model: str | None = None,
        max_rounds: int | None = None,
        read_only: bool = False,
        progress: ProgressFn | None = None,
        conversation: list[dict[str, Any]] | None = None,
        allowed_tools: Sequence[str] | None = None,
        host: Host | None = None,
    ) -> TaskResult:
        """Runs one task with the tools of the named MCP servers, on the requested model.

        ``read_only`` offers only the tools that declare they change nothing, and refuses any other call;
        ``allowed_tools`` (names or patterns) offers only the tools it matches. ``host`` is the calling
        client, asked for approvals, for the children's questions and for its roots (see docs/safety.md).
        ``conversation`` is the list the agent keeps its messages in (see ``run_agent``).
        """
        names = _check_request(mcp_names, task, max_rounds, model)
        allowed = check_allowed_tools(allowed_tools)
        specs = await asyncio.to_thread(self._specs, names)  # stats (and may re-read) the config files
        rules = await asyncio.to_thread(load_tool_rules, self.settings.tool_rules)
        route = await self.fleet.route(model)
        logger.info("Using model: %s on %s", route.model, route.server.base_url)
        limits = LoopLimits(
            max_rounds=max_rounds or self.settings.max_rounds,
            tool_timeout=self.settings.tool_timeout,
            result_chars=self.settings.tool_result_chars,
            reply_tokens=self.settings.reply_tokens,
            reasoning_tokens=self.settings.reasoning_tokens,
        )
        say = progress or no_progress
        policy = ToolPolicy(read_only=read_only, allowed_tools=allowed, rules=rules)
        approver = Approver(
            self.settings.approval,
            host=host,
            fallback=self.settings.approval_fallback,
            timeout=self.settings.approval_timeout,
            per_server={name: r.approval for name, r in rules.items() if r.approval is not None},
            model=route.model,
            progress=say,
        )
        if self._task_slots.locked():
            await say(f"waiting: {self.settings.max_concurrent_tasks} tasks are already running")
        async with self._task_slots:
            try:
                async with asyncio.timeout(self.settings.task_timeout):
                    await say(f"starting {', '.join(names)}")
                    async with self.fleet.use(route, say, needed_tokens=len(task) // 3) as llm:
                        link = TaskLink(
                            llm=llm,
                            request_budget=limits.max_rounds,
                            reply_tokens=limits.reply_tokens,
                            sampling=self.settings.sampling,
                            host=host,
                            elicitation_timeout=self.settings.approval_timeout,
                            roots=self.settings.roots,
                            say=say,
                        )
                        async with self.children.lease_all(specs, link) as children:
                            toolbox = Toolbox([TaskChild(c, link) for c in children], policy=policy, approver=approver)
                            if not toolbox.tools and toolbox.withheld_why:
                                raise InvalidRequest(_nothing_offered(names, toolbox))
                            result = await run_agent(
                                llm=llm,
                                toolbox=toolbox,
                                task=task,
                                servers=names,
                                limits=limits,
                                sampling=self.settings.sampling,
                                progress=progress,
                                conversation=conversation,
                            )
                            return result.model_copy(
                                update={
                                    "tools_withheld": list(toolbox.withheld_why),
                                    "refused_calls": list(toolbox.refusals),
                                    "child_requests": list(link.records),
                                }
                            )
            except TimeoutError:
                raise TaskTimeout(
                    f"The task ran past its deadline of {self.settings.task_timeout:g} s and was stopped. "
                    f"Raise {ENV_NAMES['task_timeout']}, or split the task into smaller ones."
                ) from None

    def _specs(self, names: Sequence[str]) -> list[McpServerSpec]:
        return [self.catalog.get(name) for name in names]

    def _effective_tools(self, name: str, rules: dict[str, ServerRules]) -> dict[str, Any]:
        """The tool rules for server ``name``, and its effective tools when a child of it runs."""
        policy = ToolPolicy(rules=rules)
        shown: dict[str, Any] = {}
        if name in rules:
            shown.update(allow=list(rules[name].allow), deny=list(rules[name].deny))
        running = [c for c in self.children.children if c.name == name and c.ready]
        if running:
            shown["tools"] = policy.effective_tools(name, running[-1].tools)
        return shown


def _nothing_offered(names: Sequence[str], toolbox: Toolbox) -> str:
    """Why a task would have no tool at all, and what to do about it."""
    servers = ", ".join(names)
    reasons = {why.by for why in toolbox.withheld_why.values()}
    if reasons == {"read_only"}:
        return (
            f"read_only: none of the tools of {servers} declares readOnlyHint, so a read-only task could use "
            "none of them. Run the task without read_only, or use a server whose tools say which of them only read."
        )
    first = next(iter(toolbox.withheld_why.values()))
    return (
        f"no tool of {servers} is left to offer: {len(toolbox.withheld_why)} withheld ({first.reason}, ...). "
        "Check allowed_tools, read_only and the tool rules file (list_mcps shows each server's tools)."
    )


def _model_entry(info: ModelInfo, default: str | None) -> ModelEntry:
    return ModelEntry(
        id=info.id,
        type=info.type,
        loaded=info.loaded,
        is_default=info.id == default,
        context_length=info.context_length,
        max_context_length=info.max_context_length,
        capabilities=info.capabilities,
        server=info.server or None,
    )


async def _server_health(server: Server) -> ServerHealth:
    started = time.perf_counter()
    try:
        listing = await server.validator.models(refresh=True)
    except LMStudioError as exc:
        return ServerHealth(base_url=server.base_url, reachable=False, error=str(exc))
    return ServerHealth(
        base_url=server.base_url,
        reachable=True,
        api=server.api.dialect,
        model_count=len(listing.models),
        round_trip_ms=round((time.perf_counter() - started) * 1000, 1),
    )


def _check_model_name(model: str) -> None:
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("Name a model: an id from list_models.")
    if len(model) > MAX_MODEL_CHARS:
        raise InvalidRequest(
            f"The model name is {len(model):,} characters long; model ids are at most {MAX_MODEL_CHARS}. "
            "Copy an id from list_models."
        )


def _check_request(mcp_names: Sequence[str], task: str, max_rounds: int | None, model: str | None = None) -> list[str]:
    """The de-duplicated MCP names; raises ``InvalidRequest``, whose message never repeats a long value."""
    if isinstance(mcp_names, str):
        mcp_names = [mcp_names]
    names = list(dict.fromkeys(n.strip() for n in mcp_names if isinstance(n, str)))
    if not names or any(not n for n in names):
        raise InvalidRequest("Name at least one MCP server (see list_mcps).")
    if len(names) > MAX_MCPS_PER_TASK:
        raise InvalidRequest(f"At most {MAX_MCPS_PER_TASK} MCP servers per task; {len(names)} were named.")
    if any(len(n) > MAX_NAME_CHARS for n in names):
        raise InvalidRequest(f"An MCP name is longer than {MAX_NAME_CHARS} characters.")
    if not task or not task.strip():
        raise InvalidRequest("The task is empty: say what the model should do.")
    if len(task) > MAX_TASK_CHARS:
        raise InvalidRequest(
            f"The task is {len(task):,} characters long; the limit is {MAX_TASK_CHARS:,}. "
            "Put large inputs in a file the model can read with a tool, and refer to it."
        )
    if max_rounds is not None and (isinstance(max_rounds, bool) or not isinstance(max_rounds, int)):
        raise InvalidRequest(f"max_rounds must be an integer, not {type(max_rounds).__name__}.")
    if max_rounds is not None and not 1 <= max_rounds <= 1000:
        shown = f"{max_rounds}" if abs(max_rounds) < 10**12 else "a number that large"
        raise InvalidRequest(f"max_rounds must be between 1 and 1000, not {shown}.")
    if model is not None and len(model) > MAX_MODEL_CHARS:
        raise InvalidRequest(
            f"The model name is {len(model):,} characters long; model ids are at most {MAX_MODEL_CHARS}. "
            "Copy an id from list_models, or leave model out for the default model."
        )
    return names
