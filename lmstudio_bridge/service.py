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
from .children import ChildPool
from .config import ENV_NAMES, MAX_TASK_CHARS, Settings
from .errors import InvalidRequest, LMStudioError, TaskTimeout
from .fleet import Fleet, Server
from .lmstudio import ModelInfo
from .mcp_config import McpCatalog, McpServerSpec
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
            servers=self.settings.base_urls,
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
                )
            )
        return McpListResult(
            mcps=entries,
            config_files=[str(p) for p, _ in self.catalog.candidate_paths() if p.is_file()],
            problems=list(self.catalog.problems),
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
    ) -> TaskResult:
        """Runs one task with the tools of the named MCP servers, on the requested model.

        ``read_only`` offers only the tools that declare they change nothing, and refuses any other call.
        ``conversation`` is the list the agent keeps its messages in (see ``run_agent``).
        """
        names = _check_request(mcp_names, task, max_rounds, model)
        specs = await asyncio.to_thread(self._specs, names)  # stats (and may re-read) the config files
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
        if self._task_slots.locked():
            await say(f"waiting: {self.settings.max_concurrent_tasks} tasks are already running")
        async with self._task_slots:
            try:
                async with asyncio.timeout(self.settings.task_timeout):
                    await say(f"starting {', '.join(names)}")
                    async with (
                        self.children.lease_all(specs) as children,
                        self.fleet.use(route, say, needed_tokens=len(task) // 3) as llm,
                    ):
                        toolbox = Toolbox(children, read_only=read_only)
                        if read_only and not toolbox.tools:
                            raise InvalidRequest(
                                f"read_only: none of the tools of {', '.join(names)} declares readOnlyHint, so a "
                                "read-only task could use none of them. Run the task without read_only, or use a "
                                "server whose tools say which of them only read."
                            )
                        return await run_agent(
                            llm=llm,
                            toolbox=toolbox,
                            task=task,
                            servers=names,
                            limits=limits,
                            sampling=self.settings.sampling,
                            progress=progress,
                            conversation=conversation,
                        )
            except TimeoutError:
                raise TaskTimeout(
                    f"The task ran past its deadline of {self.settings.task_timeout:g} s and was stopped. "
                    f"Raise {ENV_NAMES['task_timeout']}, or split the task into smaller ones."
                ) from None

    def _specs(self, names: Sequence[str]) -> list[McpServerSpec]:
        return [self.catalog.get(name) for name in names]


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
