"""Which model a task runs on: the cached ``ModelValidator`` and the ``LLMClientPool``."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache

from .errors import ModelNotFound, NoModelsLoaded
from .lmstudio import LLMClient, LMStudioAPI, ModelInfo

logger = logging.getLogger(__name__)

DEFAULT_ALIASES = frozenset({"", "default"})
_INSTANCE_SUFFIX = re.compile(r"^(?P<base>.+):(?P<n>\d+)$")


@dataclass(frozen=True)
class ModelList:
    """A snapshot of LM Studio's chat models (embedding models left out)."""

    models: tuple[ModelInfo, ...]
    ids: frozenset[str]
    default: str | None

    @classmethod
    def build(cls, models: list[ModelInfo], configured_default: str | None) -> ModelList:
        chat = tuple(m for m in models if not m.is_embedding)
        return cls(chat, frozenset(m.id for m in chat), configured_default or _pick_default(chat))

    @property
    def names(self) -> list[str]:
        return [m.id for m in self.models]

    def match(self, name: str) -> str | None:
        """The id to send for ``name``: exact, or a loaded instance (``model:2``) of a listed model."""
        if name in self.ids:
            return name
        suffix = _INSTANCE_SUFFIX.match(name)
        if suffix and suffix["base"] in self.ids:
            return name
        instances = sorted(i for i in self.ids if (m := _INSTANCE_SUFFIX.match(i)) and m["base"] == name)
        return instances[0] if instances else None


def _pick_default(models: tuple[ModelInfo, ...]) -> str | None:
    loaded = [m for m in models if m.loaded]
    pool = loaded or [m for m in models if m.loaded is not False] or list(models)
    return pool[0].id if pool else None


class ModelValidator:
    """Resolves a requested model name against LM Studio's list, cached for ``ttl`` seconds.

    Concurrent cold calls share one request (single flight). A name missing from a
    cached list triggers one refresh before it is rejected, so a model loaded a
    moment ago is found without waiting out the TTL.
    """

    def __init__(
        self,
        api: LMStudioAPI,
        *,
        ttl: float,
        default_model: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._default_model = default_model
        self._clock = clock
        self._cache: TTLCache[str, ModelList] = TTLCache(maxsize=1, ttl=ttl, timer=clock)
        self._inflight: asyncio.Future[ModelList] | None = None

    async def models(self, *, refresh: bool = False) -> ModelList:
        if not refresh:
            cached = self._cache.get("models")
            if cached is not None:
                return cached
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(self._clear_inflight)
        return await asyncio.shield(self._inflight)

    def _clear_inflight(self, future: asyncio.Future[ModelList]) -> None:
        if self._inflight is future:
            self._inflight = None
        if not future.cancelled():
            future.exception()  # mark retrieved: every waiter sees it anyway

    async def _fetch(self) -> ModelList:
        listing = ModelList.build(await self._api.list_models(), self._default_model)
        self._cache["models"] = listing
        return listing

    async def resolve(self, requested: str | None) -> str:
        """The model id to use for a call; raises ``ModelNotFound`` or ``NoModelsLoaded``."""
        name = (requested or "").strip()
        use_default = name.lower() in DEFAULT_ALIASES
        if use_default:
            name = self._default_model or ""
        listing = await self.models()
        found = listing.match(name) if name else listing.default
        if found is None:
            listing = await self.models(refresh=True)
            found = listing.match(name) if name else listing.default
        if found is not None:
            return found
        if not listing.models:
            raise NoModelsLoaded(self._api.base_url)
        raise ModelNotFound(name, listing.names)

    def invalidate(self) -> None:
        self._cache.clear()


class LLMClientPool:
    """One ``LLMClient`` per model used, all sharing the API's connection pool."""

    def __init__(self, api: LMStudioAPI, *, max_clients: int = 64) -> None:
        self._api = api
        self._clients: LRUCache[str, LLMClient] = LRUCache(maxsize=max_clients)

    def get(self, model: str) -> LLMClient:
        client = self._clients.get(model)
        if client is None:
            client = self._clients[model] = LLMClient(self._api, model)
        return client

    def __len__(self) -> int:
        return len(self._clients)
