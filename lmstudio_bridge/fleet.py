"""The model servers one bridge runs tasks on: one, or several (``LMSTUDIO_BASE_URL=URL,URL``).

Each server has its own ``LMStudioAPI`` (its own key and connection pool), ``ModelValidator``
and ``ModelLoader``. The model lists are merged; a task goes to a server that has its model
loaded, else to one that can load it, else to the least busy (ties: the order given). A server
that does not answer is left out of listings with a note, and out of routing, until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import httpx
from pydantic import SecretStr

from .config import Settings
from .errors import InvalidRequest, LMStudioError, ModelNotFound, capitalized
from .lmstudio import LLMClient, LMStudioAPI, LoadResult, ManagedServer, ModelInfo, ServerOptions
from .model_loading import ModelLoader
from .models import DEFAULT_ALIASES, ModelList, ModelValidator

logger = logging.getLogger(__name__)

Say = Callable[[str], Awaitable[None]]
MIN_CONTEXT_LENGTH = 512


@dataclass
class Server:
    """One model server and what the bridge keeps for it."""

    api: LMStudioAPI
    validator: ModelValidator
    loader: ModelLoader
    busy: int = 0
    """Tasks running on it now."""
    clients: dict[str, LLMClient] = field(default_factory=dict)
    """One per model used here, by model id, shared by every task on that model."""

    @property
    def base_url(self) -> str:
        return self.api.base_url

    def client(self, model: str, info: ModelInfo) -> LLMClient:
        """The client of ``model`` (made on first use), up to date with ``info``: what the server says
        of the model now, so a model loaded again with another context gets the new length."""
        client = self.clients.get(model)
        if client is None:
            client = self.clients[model] = LLMClient(self.api, model)
        client.context_length = info.context_length or info.max_context_length
        client.sees_images = info.sees_images
        return client


@dataclass(frozen=True)
class Route:
    """Where a task runs: the server, the model id to send, and what the server says of the model."""

    server: Server
    model: str
    info: ModelInfo
    alternatives: tuple[Route, ...] = ()
    """Every server that has the model, this one included: the choice is made again when the task starts."""


@dataclass
class Listing:
    """The merged model lists: every chat model with its server, the default model, and notes on servers that failed."""

    models: list[ModelInfo] = field(default_factory=list)
    default: str | None = None
    notes: list[str] = field(default_factory=list)
    per_server: list[tuple[Server, ModelList | LMStudioError]] = field(default_factory=list)


def server_options(settings: Settings) -> list[ServerOptions]:
    """One ``ServerOptions`` per address in ``base_url``, each with its key (``api_key`` may list one per server)."""
    base = ServerOptions.from_settings(settings)
    if settings.servers:
        return [replace(base, base_url=s.url, api_key=s.api_key) for s in settings.servers]
    urls = settings.base_urls
    if len(urls) == 1:
        return [base]
    keys: list[SecretStr | None] = [settings.api_key] * len(urls)
    if settings.api_key is not None:
        parts = [k.strip() for k in settings.api_key.get_secret_value().split(",")]
        if len(parts) == len(urls):  # else one key for all (``Settings`` allows no other count)
            keys = [SecretStr(k) if k else None for k in parts]
    return [replace(base, base_url=url, api_key=key) for url, key in zip(urls, keys, strict=True)]


class Fleet:
    """Every server of the bridge (see the module docstring)."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.servers: list[Server] = []
        every = server_options(settings)
        # A transport that is the server itself (the embedded model) stands for one server, whatever the addresses.
        for options in every[:1] if isinstance(transport, ManagedServer) else every:
            api = LMStudioAPI(options, transport=transport)
            validator = ModelValidator(api, ttl=settings.model_cache_ttl, default_model=settings.default_model)
            loader = ModelLoader(
                api, validator, context_length=settings.load_context_length, timeout=settings.load_timeout
            )
            self.servers.append(Server(api, validator, loader))

    @property
    def primary(self) -> Server:
        return self.servers[0]

    async def aclose(self) -> None:
        for server in self.servers:
            await server.api.aclose()

    # -- listing

    async def listing(self, *, refresh: bool = False) -> Listing:
        """Every server's list, merged; raises the first server's error when no server answers."""
        answers = await asyncio.gather(*(self._list(s, refresh) for s in self.servers))
        result = Listing(per_server=list(zip(self.servers, answers, strict=True)))
        errors = [a for a in answers if isinstance(a, LMStudioError)]
        if len(errors) == len(answers):
            raise errors[0]
        several = len(self.servers) > 1
        for server, answer in result.per_server:
            if isinstance(answer, LMStudioError):
                result.notes.append(f"{server.base_url} skipped: {answer}")
                continue
            result.models += [replace(m, server=server.base_url) if several else m for m in answer.models]
            if result.default is None:
                result.default = answer.default
        return result

    async def _list(self, server: Server, refresh: bool) -> ModelList | LMStudioError:
        try:
            return await server.validator.models(refresh=refresh)
        except LMStudioError as exc:
            if len(self.servers) > 1:
                logger.warning("Model server %s skipped: %s", server.base_url, exc)
            return exc

    # -- routing

    async def route(self, requested: str | None) -> Route:
        """The server and model id for a task; raises ``ModelNotFound``, ``NoModelsLoaded`` or the servers' error."""
        name = (requested or "").strip()
        if name.lower() in DEFAULT_ALIASES:
            name = self.settings.default_model or ""
        listing = await self.listing()
        candidates = self._candidates(listing, name)
        if not candidates:
            listing = await self.listing(refresh=True)
            candidates = self._candidates(listing, name)
        if candidates:
            return replace(min(candidates, key=self._rank), alternatives=tuple(candidates))
        if not listing.models:
            raise self.primary.api.no_models_loaded()
        raise ModelNotFound(name, list(dict.fromkeys(m.id for m in listing.models)))

    def _candidates(self, listing: Listing, name: str) -> list[Route]:
        wanted = name or listing.default
        if not wanted:
            return []
        routes = []
        for server, answer in listing.per_server:
            if isinstance(answer, ModelList) and (found := answer.match(wanted)) is not None:
                info = answer.info(found) or ModelInfo(id=found)
                routes.append(Route(server, found, info))
        return routes

    def _rank(self, route: Route) -> tuple[int, int, int]:
        """Loaded there first (or the server does not say), then a server that can load it, then the least busy."""
        if route.info.loaded is not False:
            state = 0
        elif route.server.api.can_load:
            state = 1
        else:
            state = 2
        return state, route.server.busy, self.servers.index(route.server)

    @contextlib.asynccontextmanager
    async def use(self, route: Route, say: Say, *, needed_tokens: int = 0) -> AsyncIterator[LLMClient]:
        """The model of ``route``, loaded, as the server's ``LLMClient`` for it; busy while in use."""
        if len(route.alternatives) > 1:
            route = min(route.alternatives, key=self._rank)  # tasks routed meanwhile made some servers busier
        server = route.server
        server.busy += 1
        try:
            async with server.loader.using(route.info.id):
                info = await server.loader.ensure_loaded(route.info, say, needed_tokens=needed_tokens)
                yield server.client(route.model, info)
        finally:
            server.busy -= 1

    # -- loading for hosts that manage models

    async def load(self, model: str, context_length: int | None, say: Say) -> tuple[Server, LoadResult | None]:
        """Loads ``model`` where it is listed; ``None`` for the result when it is loaded already as asked."""
        route = await self.route(model)
        info = route.info
        if context_length is not None:
            top = info.max_context_length
            if context_length < MIN_CONTEXT_LENGTH or (top is not None and context_length > top):
                limit = f" and {top:,}" if top is not None else ""
                raise InvalidRequest(
                    f"context_length must be between {MIN_CONTEXT_LENGTH}{limit} for {info.id}, not {context_length:,}."
                )
        if info.loaded and context_length in (None, info.context_length):
            return route.server, None
        if route.server.api.managed is not None:
            raise InvalidRequest(
                f"{capitalized(route.server.api.server_name)} serves {info.id} only, loaded with its own context "
                "when it starts: name it in a task, no load needed."
            )
        if info.loaded:
            raise InvalidRequest(
                f"{info.id} is loaded already with a context of {info.context_length or 'unknown'} tokens on "
                f"{route.server.base_url}. Unload it (unload_model) first to load it with {context_length:,}."
            )
        if not route.server.api.can_load:
            raise InvalidRequest(
                f"The server at {route.server.base_url} does not load models through its API (LM Studio 0.4 or "
                "later does). Load it there (`lms load`), or just name it in a task: the server loads it on first use."
            )
        loader = route.server.loader
        chosen = context_length or loader.context_for(info)
        result = await loader.load(info, chosen, say)
        route.server.validator.mark_loaded(info.id, result.context_length)
        return route.server, result

    async def unload(self, model: str) -> list[tuple[Server, list[str]]]:
        """Unloads ``model`` on every server that has it loaded; refuses while a task uses it."""
        listing = await self.listing(refresh=True)
        holders = [
            s
            for s, answer in listing.per_server
            if isinstance(answer, ModelList) and (i := answer.info(model)) and i.loaded
        ]
        if not holders:
            known = [m.id for m in listing.models]
            if model not in known:
                raise ModelNotFound(model, list(dict.fromkeys(known)))
            raise InvalidRequest(f"{model} is not loaded; nothing to unload.")
        busy = [s for s in holders if s.loader.in_use(model)]
        if busy:
            raise InvalidRequest(
                f"{model} is in use by {sum(s.loader.in_use(model) for s in busy)} running task(s); "
                "the bridge unloads a model only when no task uses it. Retry when they are done."
            )
        return [(server, await server.loader.unload(model)) for server in holders]
