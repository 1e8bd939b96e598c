"""Which model a task runs on: the cached ``ModelValidator`` over one server's model list."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from cachetools import TTLCache

from .errors import ModelNotFound
from .lmstudio import LMStudioAPI, ModelInfo

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

    def info(self, name: str) -> ModelInfo | None:
        """What the server says of the model ``name`` (or of the model a ``name:2`` instance belongs to)."""
        found = self.match(name)
        if found is None:
            return None
        suffix = _INSTANCE_SUFFIX.match(found)
        for candidate in (found, suffix["base"] if suffix else None):
            for model in self.models:
                if model.id == candidate:
                    return model
        return None

    def replaced(self, info: ModelInfo) -> ModelList:
        """This list with ``info`` in place of the entry with its id."""
        models = tuple(info if m.id == info.id else m for m in self.models)
        return ModelList(models, self.ids, self.default)


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
            raise self._api.no_models_loaded()
        raise ModelNotFound(name, listing.names)

    def invalidate(self) -> None:
        self._cache.clear()

    def cached_info(self, model: str) -> ModelInfo | None:
        """What the cached list (if any) says of ``model``; never asks the server."""
        cached = self._cache.get("models")
        return cached.info(model) if cached is not None else None

    def mark_loaded(self, model: str, context_length: int | None) -> ModelInfo:
        """Records that ``model`` is now loaded (a model is "downloaded but not loaded" until then),
        so the next task does not wait out the cache's TTL to see it."""
        cached = self._cache.get("models")
        old = cached.info(model) if cached is not None else None
        info = replace(old or ModelInfo(id=model), loaded=True, context_length=context_length)
        if cached is not None:
            self._cache["models"] = cached.replaced(info)
        return info
