"""The embedded model from the bridge's side, for a machine without LM Studio.

Two ways to use it (docs/other-servers.md#no-lm-studio-the-embedded-model weighs them):

- ``lmstudio-bridge local-server`` keeps one llama.cpp server running on 127.0.0.1:1234, LM Studio's
  address, so every bridge finds it with no settings;
- ``LMSTUDIO_BRIDGE_LOCAL_MODEL=0.5b`` makes each bridge start its own on the first request to the model
  (``LocalModelTransport``) and stop it when the bridge exits.

Both need the ``local`` extra (``xllamacpp``); the server code is ``lmstudio_bridge.llamacpp``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import IO, Any

import httpx

from .config import DEFAULT_PORT, ENV_NAMES, Settings
from .lmstudio import ManagedServer, ServerNotStarted

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 1800.0
"""A cold start fetches the model (minutes on a slow line) before it loads."""
LOG_NAME = "local-server.log"
LOCAL_MODEL_ENV = ENV_NAMES["local_model"]


def add_local_server_arguments(parser: argparse.ArgumentParser) -> None:
    from .llamacpp import add_serve_arguments

    add_serve_arguments(parser)
    parser.set_defaults(port=DEFAULT_PORT)
    parser.add_argument("--fetch-only", action="store_true", help="Fetch and verify the model, print its path, exit.")


def run_local_server(args: argparse.Namespace) -> int:
    """``lmstudio-bridge local-server``: serve until Ctrl-C or SIGTERM (0), or say what is missing (2)."""
    from .llamacpp import SetupError, fetch_model, serve, serve_options

    try:
        if args.fetch_only:
            print(fetch_model(args.model, args.cache_dir), flush=True)  # stdout-ok
            return 0
        return serve(serve_options(args))
    except SetupError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


def embedded_label(model: str) -> str:
    """The embedded model in words, to begin a sentence with: ``the embedded model 0.5b``."""
    return f"the embedded model {model}"


def model_server_name(settings: Settings) -> str:
    """The model server a bridge with these settings uses, in words, before it has made any request."""
    if settings.local_model:
        return f"{embedded_label(settings.local_model)} (llama.cpp, started on the first request)"
    return f"LM Studio at {settings.base_url}"


def local_transport(settings: Settings) -> LocalModelTransport | None:
    """The transport that brings up the embedded model, when ``LMSTUDIO_BRIDGE_LOCAL_MODEL`` asks for one."""
    if not settings.local_model:
        return None
    return LocalModelTransport(settings.local_model)


class LocalModelTransport(ManagedServer):
    """Sends every request to the embedded model's server, starting it on the first one; ``aclose`` stops it.

    The server runs as a child process (``python -m lmstudio_bridge.llamacpp serve``) whose standard
    input is a pipe from this process, so it also stops when the bridge dies. Its log goes to
    ``local-server.log`` in the model cache. As a ``ManagedServer`` it names itself in the bridge's
    messages and results: the embedded model, at its own address once it runs.
    """

    def __init__(self, model: str, *, cache_dir: str | None = None, start_timeout: float = START_TIMEOUT_S) -> None:
        from .llamacpp import resolve_cache_dir

        self.model = model
        self.label = embedded_label(model)
        self.log_path = resolve_cache_dir(cache_dir) / LOG_NAME
        self._cache_dir = cache_dir
        self._start_timeout = start_timeout
        self._inner = httpx.AsyncHTTPTransport()
        self._stack = AsyncExitStack()
        self._starting: asyncio.Task[Any] | None = None
        self._address: str | None = None
        self._problem: str | None = None

    def address(self) -> str | None:
        return self._address

    def name(self) -> str:
        if self._address is not None:
            return f"{self.label} at {self._address}"
        if self._problem is not None:
            return f"{self.label} (not running: it did not start)"
        return f"{self.label} (llama.cpp, started on the first request)"

    def unreachable_hint(self) -> str:
        return (
            f"Its log is {self.log_path}: fix what it says and try again (a bridge that is still running "
            f"starts it on the next request), or unset {LOCAL_MODEL_ENV} to use LM Studio instead."
        )

    def context_hint(self) -> str:
        from .llamacpp import DEFAULT_CTX

        return (
            f"{LOCAL_MODEL_ENV} serves it with a context of {DEFAULT_CTX:,} tokens: for more, run "
            f"`lmstudio-bridge local-server --model {self.model} --ctx {2 * DEFAULT_CTX}` and unset "
            f"{LOCAL_MODEL_ENV} (it listens on 127.0.0.1:{DEFAULT_PORT}, where the bridge looks by default)"
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            base_url = await self._base_url()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            from .llamacpp import SetupError

            reason = str(exc) if isinstance(exc, SetupError) else f"{type(exc).__name__}: {exc}"
            self._problem = reason
            logger.error("The embedded model did not start: %s", reason)
            raise ServerNotStarted(reason, request=request) from exc
        target = httpx.URL(base_url)
        request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
        return await self._inner.handle_async_request(request)

    async def _base_url(self) -> str:
        if self._starting is None or (self._starting.done() and self._starting.exception() is not None):
            self._starting = asyncio.create_task(self._start(), name="local-model-start")
        # Shielded: a cancelled request does not abandon a server that is half started.
        server = await asyncio.shield(self._starting)
        return str(server.base_url)

    async def _start(self) -> Any:
        from .llamacpp import start_server_async

        log = self._stack.enter_context(await asyncio.to_thread(_open_log, self.log_path))
        logger.info("Starting the embedded model (%s); its log: %s", self.model, self.log_path)
        server = await self._stack.enter_async_context(
            start_server_async(
                model=self.model,
                cache_dir=self._cache_dir,
                timeout=self._start_timeout,
                stderr=log,
            )
        )
        self._address = str(server.base_url).rstrip("/").removesuffix("/v1")
        self._problem = None
        logger.info("Embedded model %s ready at %s", server.model_id, server.base_url)
        return server

    async def aclose(self) -> None:
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._starting
        await self._inner.aclose()
        await self._stack.aclose()
        self._address = None


def _open_log(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8")  # the caller's exit stack closes it
