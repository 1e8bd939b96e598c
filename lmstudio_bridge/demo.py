"""``lmstudio-bridge demo``: one real task end to end, on this machine, with nothing to set up.

The model is LM Studio's when it answers with a model loaded, otherwise the embedded one (llama.cpp with
a small model, ``lmstudio_bridge.llamacpp``, from the ``local`` extra). The MCP server is the published
``mcp-server-time``, installed with that extra. Progress goes to stderr, the answer to stdout; the
model server and the MCP server are stopped before the command returns.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from .config import Settings
from .errors import BridgeError
from .mcp_config import McpCatalog
from .render import render_task
from .service import Bridge

logger = logging.getLogger(__name__)

DEMO_TASK = "What's the current time in Tokyo?"
DEMO_SERVER = "time"
SMALL_MODEL_MAX_TOKENS = 256
"""The README's setting for models under 3B parameters: a reply that loops stops early."""

Say = Callable[[str], Awaitable[None]]


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from .llamacpp import add_model_arguments

    parser.add_argument(
        "--local",
        action="store_true",
        help="Use the embedded model even when LM Studio answers.",
    )
    add_model_arguments(parser)
    parser.add_argument("task", nargs="?", default=DEMO_TASK, help=f"The task (default: {DEMO_TASK!r}).")


def demo_catalog(folder: Path) -> McpCatalog:
    """A catalog holding only the time server, run by this interpreter: the user's config files are not read."""
    config = folder / "mcp.json"
    # UTC as its local zone: the set-up the live tests measure the small models with (tests/live_tasks.py).
    entry = {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}
    config.write_text(json.dumps({"mcpServers": {DEMO_SERVER: entry}}), encoding="utf-8")
    return McpCatalog(explicit_paths=[config], cwd=folder, home=folder, environ={})


async def lmstudio_model(settings: Settings) -> tuple[str | None, str]:
    """The model LM Studio would use, or None; and what was found, for the progress line."""
    async with Bridge(settings, catalog=McpCatalog(cwd=Path.cwd(), environ={})) as bridge:
        try:
            listing = await bridge.validator.models(refresh=True)
        except BridgeError as exc:
            return None, f"no LM Studio at {settings.base_url} ({type(exc).__name__})"
    if not listing.models or listing.default is None:
        return None, f"LM Studio at {settings.base_url} has no model loaded"
    return listing.default, f"LM Studio at {settings.base_url} answers; model {listing.default}"


def _missing_extra() -> str | None:
    missing = [name for name in ("xllamacpp", "mcp_server_time") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: install the bridge with "
        f"its local extra, `{sys.executable} -m pip install 'lmstudio-bridge[local]'` "
        "(from a checkout: `.venv/bin/pip install -e '.[local]'`), then run the demo again."
    )


async def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Runs the demo task; returns the exit code (0 answered, 1 failed, 2 nothing to run it with)."""
    from .llamacpp import SetupError, fetch_model, start_server_async

    started = time.monotonic()

    async def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    if importlib.util.find_spec("mcp_server_time") is None:
        print(f"Error: {_missing_extra()}", file=sys.stderr)
        return 2
    model = None
    if not args.local:
        model, found = await lmstudio_model(settings)
        await say(found)
    async with AsyncExitStack() as stack:
        if model is None:
            problem = _missing_extra()
            if problem is not None:
                print(f"Error: {problem}", file=sys.stderr)
                return 2
            await say(f"using the embedded model ({args.model}, llama.cpp on 127.0.0.1); the first run fetches it")
            log = stack.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115
            try:
                await asyncio.to_thread(fetch_model, args.model, args.cache_dir)  # its progress shows on stderr
                server = await stack.enter_async_context(
                    start_server_async(model=args.model, cache_dir=args.cache_dir, stderr=log, timeout=1800)
                )
            except SetupError as exc:
                print(f"Error: the embedded model did not start: {exc}\n{_tail(log)}", file=sys.stderr)
                return 1
            await say(f"model {server.model_id} ready at {server.base_url}")
            settings = settings.model_copy(
                update={
                    "base_url": server.base_url.removesuffix("/v1"),
                    "default_model": server.model_id,
                    "max_tokens": settings.max_tokens or SMALL_MODEL_MAX_TOKENS,
                }
            )
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lmstudio-bridge-demo-")))
        bridge = await stack.enter_async_context(Bridge(settings, catalog=demo_catalog(folder)))
        await say(f"task for the {DEMO_SERVER} server (mcp-server-time): {args.task}")
        try:
            result = await bridge.run_task([DEMO_SERVER], args.task, model=model, progress=say)
        except BridgeError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        print(render_task(result))  # stdout-ok
        await say(f"done: {result.rounds} round(s), {len(result.tool_calls)} tool call(s); stopping")
    return 0


def _tail(log: object, lines: int = 15) -> str:
    """The end of the embedded server's log, for an error message."""
    try:
        log.seek(0)  # type: ignore[attr-defined]
        text: str = log.read()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return ""
    return "\n".join(text.splitlines()[-lines:])
