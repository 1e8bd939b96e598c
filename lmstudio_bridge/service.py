"""The bridge's operations, shared by the MCP tools and the command line.

``Bridge`` owns the long-lived parts (the LM Studio API client, the model
validator, the client pool, the MCP catalog and the child pool) and runs each
task through the one agent loop.
"""

from __future__ import annotations

import asyncio
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
from .host import Host
from .lmstudio import LMStudioAPI
from .mcp_config import McpCatalog, McpServerSpec
from .models import LLMClientPool, ModelValidator
from .policy import Approver, ServerRules, ToolPolicy, check_allowed_tools, load_tool_rules
from .results import HealthResult, McpEntry, McpListResult, ModelEntry, ModelsResult, TaskResult
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
        self.api = LMStudioAPI.from_settings(settings, transport=transport)
        self.validator = ModelValidator(self.api, ttl=settings.model_cache_ttl, default_model=settings.default_model)
        self.clients = LLMClientPool(self.api)
        self.catalog = catalog or McpCatalog(explicit_paths=settings.mcp_config, cwd=Path.cwd())
        self.children = ChildPool(
            start_timeout=settings.child_start_timeout,
            idle_timeout=settings.child_idle_timeout,
            max_children=settings.max_children,
            exclusive=settings.exclusive_mcps,
        )
        self._task_slots = asyncio.Semaphore(settings.max_concurrent_tasks)
        self._running = 0

    async def __aenter__(self) -> Bridge:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.children.aclose()
        await self.api.aclose()

    async def list_models(self) -> ModelsResult:
        listing = await self.validator.models(refresh=True)
        return ModelsResult(
            models=[
                ModelEntry(id=m.id, type=m.type, loaded=m.loaded, is_default=m.id == listing.default)
                for m in listing.models
            ],
            default_model=listing.default,
            base_url=self.api.base_url,
        )

    async def health(self) -> HealthResult:
        started = time.perf_counter()
        try:
            listing = await self.validator.models(refresh=True)
        except LMStudioError as exc:
            return HealthResult(reachable=False, base_url=self.api.base_url, error=str(exc))
        return HealthResult(
            reachable=True,
            base_url=self.api.base_url,
            model_count=len(listing.models),
            default_model=listing.default,
            round_trip_ms=round((time.perf_counter() - started) * 1000, 1),
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
        allowed_tools: Sequence[str] | None = None,
        host: Host | None = None,
    ) -> TaskResult:
        """Runs one task with the tools of the named MCP servers, on the requested model.

        ``read_only`` offers only the tools that declare they change nothing, and refuses any other call;
        ``allowed_tools`` (names or patterns) offers only the tools it matches. ``host`` is the calling
        client, asked for approvals, for the children's questions and for its roots (see docs/safety.md).
        """
        names = _check_request(mcp_names, task, max_rounds, model)
        allowed = check_allowed_tools(allowed_tools)
        specs = await asyncio.to_thread(self._specs, names)  # stats (and may re-read) the config files
        rules = await asyncio.to_thread(load_tool_rules, self.settings.tool_rules)
        model_id = await self.validator.resolve(model)
        logger.info("Using model: %s", model_id)
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
            model=model_id,
            progress=say,
        )
        link = TaskLink(
            llm=self.clients.get(model_id),
            request_budget=limits.max_rounds,
            reply_tokens=limits.reply_tokens,
            sampling=self.settings.sampling,
            host=host,
            elicitation_timeout=self.settings.approval_timeout,
            roots=self.settings.roots,
            say=say,
        )
        if self._task_slots.locked():
            await say(f"waiting: {self.settings.max_concurrent_tasks} tasks are already running")
        async with self._task_slots:
            try:
                async with asyncio.timeout(self.settings.task_timeout):
                    await say(f"starting {', '.join(names)}")
                    async with self.children.lease_all(specs, link) as children:
                        toolbox = Toolbox([TaskChild(c, link) for c in children], policy=policy, approver=approver)
                        if not toolbox.tools and toolbox.withheld_why:
                            raise InvalidRequest(_nothing_offered(names, toolbox))
                        result = await run_agent(
                            llm=self.clients.get(model_id),
                            toolbox=toolbox,
                            task=task,
                            servers=names,
                            limits=limits,
                            sampling=self.settings.sampling,
                            progress=progress,
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
