"""Loading and unloading models on one server, on demand or when a host asks.

A task that names a model the server has downloaded but not loaded loads it first, with a
context length that fits (``load_context_length``, at least what the task needs, at most the
model's maximum), and reports progress while LM Studio loads it. Concurrent tasks on one
unloaded model share one load. A model a task is using is never unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from .errors import InvalidRequest, ModelLoadFailed
from .lmstudio import LMStudioAPI, LoadResult, ModelInfo
from .models import ModelValidator

logger = logging.getLogger(__name__)

Say = Callable[[str], Awaitable[None]]
LOAD_PROGRESS_INTERVAL = 5.0
"""Seconds between progress lines while a model loads."""


class ModelLoader:
    """Loads and unloads models on one server (see the module docstring)."""

    def __init__(self, api: LMStudioAPI, validator: ModelValidator, *, context_length: int, timeout: float) -> None:
        self._api = api
        self._validator = validator
        self._context_length = context_length
        self._timeout = timeout
        self._loads: dict[str, asyncio.Future[LoadResult]] = {}
        self._users: Counter[str] = Counter()
        self.loads_started = 0

    def context_for(self, info: ModelInfo, needed_tokens: int = 0) -> int | None:
        """The context length to load ``info`` with: the setting, or what is needed if more, within its maximum."""
        wanted = max(self._context_length, needed_tokens)
        if info.max_context_length is not None:
            wanted = min(wanted, info.max_context_length)
        return wanted

    async def ensure_loaded(self, info: ModelInfo, say: Say, *, needed_tokens: int = 0) -> ModelInfo:
        """``info`` as loaded: loads the model first when the server says it is not loaded and can load it."""
        info = self._validator.cached_info(info.id) or info  # another task may have loaded it meanwhile
        if info.loaded is not False:
            return info
        if not self._api.can_load:
            await say(f"{info.id} is not loaded; the server loads it with the first request")
            return info
        result = await self.load(info, self.context_for(info, needed_tokens), say)
        return self._validator.mark_loaded(info.id, result.context_length or info.context_length)

    async def load(self, info: ModelInfo, context_length: int | None, say: Say) -> LoadResult:
        """Loads ``info`` once however many tasks ask at the same time; progress lines while it loads."""
        future = self._loads.get(info.id)
        if future is None:
            # Registered before anything awaits: a task arriving meanwhile waits for this load.
            self.loads_started += 1
            future = asyncio.ensure_future(
                self._api.load_model(info.id, context_length=context_length, timeout=self._timeout)
            )
            self._loads[info.id] = future
            future.add_done_callback(functools.partial(self._done, info.id))
            await say(
                f"loading {info.id}" + (f" with a context of {context_length:,} tokens" if context_length else "")
            )
        else:
            await say(f"waiting for {info.id} to load")
        started = time.monotonic()
        while True:
            try:
                result = await asyncio.wait_for(asyncio.shield(future), LOAD_PROGRESS_INTERVAL)
            except TimeoutError:
                await say(f"loading {info.id} · {time.monotonic() - started:.0f} s")
                continue
            took = f" in {result.load_time_seconds:g} s" if result.load_time_seconds is not None else ""
            await say(f"loaded {info.id}{took}")
            return result

    def _done(self, model: str, future: asyncio.Future[LoadResult]) -> None:
        if self._loads.get(model) is future:
            del self._loads[model]
        if not future.cancelled() and (error := future.exception()) is not None:
            logger.warning("Loading %s failed: %s", model, error)

    async def unload(self, model: str) -> list[str]:
        """Unloads every loaded instance of ``model``; refuses while a task uses it. Returns the instances."""
        if self._users[model] > 0:
            raise InvalidRequest(
                f"{model} is in use by {self._users[model]} running task(s); it is unloaded only when none uses it. "
                "Retry when they are done."
            )
        listing = await self._validator.models(refresh=True)
        info = listing.info(model)
        if info is None or not info.loaded:
            raise InvalidRequest(f"{model} is not loaded on {self._api.base_url}; nothing to unload.")
        if not self._api.can_load:
            raise ModelLoadFailed(
                f"The server at {self._api.base_url} does not unload models through its API (LM Studio 0.4 or "
                "later does). Unload it in the server itself (`lms unload` for LM Studio).",
                base_url=self._api.base_url,
            )
        instances = list(info.instances) or [model]
        for instance in instances:
            await self._api.unload_model(instance)
        self._validator.invalidate()
        return instances

    @contextlib.asynccontextmanager
    async def using(self, model: str) -> AsyncIterator[None]:
        """Marks ``model`` as used by a task while the block runs."""
        self._users[model] += 1
        try:
            yield
        finally:
            self._users[model] -= 1
            if self._users[model] <= 0:
                del self._users[model]

    def in_use(self, model: str) -> int:
        return self._users[model]
