"""The command line: serve over stdio (the default), or run one operation in a terminal.

Exit codes: 0 success, 1 the operation failed, 2 a usage or configuration error.
Answers go to stdout; logs, progress and errors go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any, NoReturn

from . import __version__
from .children import BRIDGE_ID, kill_marked_processes
from .config import DEFAULT_PORT as LMSTUDIO_PORT
from .config import ENV_NAMES, Settings, add_setting_flags, flag_values, load_settings
from .demo import add_demo_arguments, run_demo
from .errors import BridgeError, ConfigError, InvalidRequest, McpError, McpStartError, ModelNotFound
from .local import add_local_server_arguments, local_transport, model_server_name, run_local_server
from .render import render_mcps, render_models, render_task
from .service import Bridge
from .task_cli import add_tasks_command, tasks_command
from .tasks import TaskRequest

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
SIGNAL_GRACE = 0.5
"""Seconds running tasks get to unwind after SIGTERM/SIGINT before the children are stopped."""

logger = logging.getLogger("lmstudio_bridge")
TERMINAL_HINT = (
    "lmstudio-bridge is waiting for an MCP host on stdin: hosts such as Claude Code and Claude Desktop start it "
    "themselves (see `lmstudio-bridge config claude-desktop`). In a terminal, try `lmstudio-bridge demo`, "
    "`lmstudio-bridge doctor` or `lmstudio-bridge run --mcp NAME TASK`; Ctrl-C stops this."
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_setting_flags(common)

    def flags(*fields: str) -> list[argparse.ArgumentParser]:
        """A parent parser with only the setting flags a command uses, so its --help lists no others."""
        only = argparse.ArgumentParser(add_help=False)
        add_setting_flags(only, fields=(*fields, "log_level"))
        return [only]

    server = ("host", "port", "base_url")
    parser = argparse.ArgumentParser(
        prog="lmstudio-bridge",
        description="An MCP server that delegates tasks to local models in LM Studio. "
        "With no command it serves MCP over stdio: an MCP host (Claude Code, Claude Desktop) starts it. "
        "To see it work in a terminal, run `lmstudio-bridge demo`.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"lmstudio-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", parents=[common], help="Serve MCP over stdio (the default).")
    commands.add_parser("models", parents=flags(*server, "default_model"), help="List the models LM Studio can run.")
    commands.add_parser("mcps", parents=flags("mcp_config"), help="List the MCP servers found in the config files.")
    commands.add_parser(
        "doctor",
        parents=flags(*server, "default_model", "mcp_config"),
        help="Check LM Studio and every configured MCP server.",
    )
    run = commands.add_parser("run", parents=[common], help="Run one task in the terminal.")
    run.add_argument("--mcp", action="append", required=True, metavar="NAME", help="MCP server to use (repeatable).")
    run.add_argument("--json", action="store_true", help="Print the structured result as JSON.")
    run.add_argument("--include-reasoning", action="store_true", help="Show the model's reasoning too.")
    run.add_argument(
        "--read-only",
        action="store_true",
        help="Offer only the tools that declare they change nothing (readOnlyHint); refuse any other call.",
    )
    run.add_argument(
        "--allowed-tools",
        action="append",
        metavar="PATTERNS",
        help="Offer only these tools: comma-separated names or patterns (git_log, git.*); repeatable.",
    )
    run.add_argument("task", help="What the local model should do.")
    config = commands.add_parser("config", parents=[common], help="Print the registration snippet for an MCP host.")
    config.add_argument("host", choices=["claude-desktop", "claude-code"])
    add_tasks_command(commands, common)
    demo = commands.add_parser(
        "demo",
        parents=flags(*server, "max_tokens", "temperature", "request_timeout", "task_timeout"),
        help="Run one real task end to end: LM Studio's model, or the embedded one (the local extra), "
        "with the time server.",
    )
    add_demo_arguments(demo)
    local_server = commands.add_parser(
        "local-server",
        help="Serve the embedded model (llama.cpp, the local extra) on 127.0.0.1 until stopped.",
        description="llama.cpp's OpenAI-compatible server with a small model, for a machine without LM Studio. "
        f"With --port {LMSTUDIO_PORT} (the default) the bridge finds it with no settings.",
    )
    add_local_server_arguments(local_server)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(flags=flag_values(args))
    except ConfigError as exc:
        _fail(EXIT_USAGE, f"lmstudio-bridge: configuration error: {exc}")
    _setup_logging(settings.log_level)
    command = args.command or "serve"
    if command == "serve":
        sys.exit(_serve(settings))
    if command == "config":
        print(registration_snippet(args.host, settings))  # stdout-ok
        sys.exit(EXIT_OK)
    if command == "local-server":
        sys.exit(run_local_server(args))
    if command == "demo":
        sys.exit(_guarded(lambda: asyncio.run(run_demo(settings, args))))
    handlers: dict[str, Callable[[Bridge], Awaitable[int]]] = {
        "models": _models,
        "mcps": _mcps,
        "doctor": _doctor,
        "run": lambda bridge: _run(bridge, args),
        "tasks": lambda bridge: tasks_command(bridge, args),
    }
    sys.exit(_guarded(lambda: asyncio.run(_with_bridge(settings, handlers[command]))))


def _guarded(command: Callable[[], int]) -> int:
    """Runs a terminal command: Ctrl-C exits 130, and a closed stdout (``| head -1``) ends it quietly."""
    try:
        code = command()
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        _fail(EXIT_INTERRUPTED, "lmstudio-bridge: interrupted")
    except BrokenPipeError:
        # The reader went away: nothing more can be shown. Point stdout at /dev/null so the
        # interpreter's final flush does not fail again, as the Python docs advise.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _serve(settings: Settings) -> int:
    """Serves until stdin closes, or until SIGTERM/SIGINT; either way every child is stopped first."""
    logger.info("lmstudio-bridge %s serving MCP over stdio; model server: %s", __version__, model_server_name(settings))
    if sys.stdin.isatty():
        print(TERMINAL_HINT, file=sys.stderr, flush=True)
    signalled = False
    try:
        signalled = asyncio.run(_serve_until_stopped(settings))
    except KeyboardInterrupt:
        signalled = True
    finally:
        kill_marked_processes(f"{BRIDGE_ID}:")  # last sweep, whatever happened above
    if signalled:
        # The stdio transport reads stdin in a worker thread that only a line or EOF
        # ends; waiting for it would keep a signalled bridge alive indefinitely.
        logging.shutdown()
        os._exit(EXIT_OK)
    return EXIT_OK


async def _serve_until_stopped(settings: Settings) -> bool:
    """True when a signal ended serving (its stdin reader may still be blocked), False on EOF."""
    from .server import build_server

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Bridge(settings, transport=local_transport(settings)) as bridge:
        serving = asyncio.create_task(build_server(settings, bridge).run_stdio_async(), name="mcp-stdio")
        stopping = asyncio.create_task(stop.wait(), name="signal")
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if serving.done():
            serving.result()
            return False
        logger.info("Stopping on a signal")
        serving.cancel()  # cancels running tasks: their LM Studio requests and tool calls end now
        await asyncio.wait({serving}, timeout=SIGNAL_GRACE)
    return True


async def _with_bridge(settings: Settings, handler: Callable[[Bridge], Awaitable[int]]) -> int:
    async with Bridge(settings, transport=local_transport(settings)) as bridge:
        try:
            return await handler(bridge)
        except BridgeError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return exit_code_for(exc)


def exit_code_for(exc: BridgeError) -> int:
    """2 when the command or the config names something unusable (fix the call), else 1."""
    if isinstance(exc, McpStartError):
        return EXIT_FAILED
    if isinstance(exc, InvalidRequest | ModelNotFound | McpError | ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


async def _models(bridge: Bridge) -> int:
    print(render_models(await bridge.list_models()))  # stdout-ok
    return EXIT_OK


async def _mcps(bridge: Bridge) -> int:
    listing = bridge.list_mcps()
    print(render_mcps(listing))  # stdout-ok
    return EXIT_FAILED if listing.problems else EXIT_OK


async def _run(bridge: Bridge, args: argparse.Namespace) -> int:
    started = time.monotonic()

    async def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    allowed = [p.strip() for group in args.allowed_tools or () for p in group.split(",")] or None
    request = TaskRequest(args.mcp, args.task, read_only=args.read_only, allowed_tools=allowed)
    result = await bridge.tasks.run(request, progress=progress, detach_after=0)  # recorded, as the tools' tasks
    if args.json:
        print(result.model_dump_json(indent=2))  # stdout-ok
    else:
        print(render_task(result, include_reasoning=args.include_reasoning))  # stdout-ok
    return EXIT_OK


async def _doctor(bridge: Bridge) -> int:
    from .doctor import run_doctor

    if not {"LMSTUDIO_BRIDGE_LOG_LEVEL"} & os.environ.keys() and bridge.settings.log_level == "INFO":
        logging.getLogger("lmstudio_bridge").setLevel(logging.ERROR)  # the report says it all, in order
    return EXIT_OK if await run_doctor(bridge, out=sys.stdout) else EXIT_FAILED


def registration_snippet(host: str, settings: Settings) -> str:
    """How to register this bridge in Claude Desktop or Claude Code, on this machine."""
    command, args = _launch_command()
    env = _registration_env(settings)
    if host == "claude-code":
        env_flags = "".join(f" -e {shlex.quote(f'{k}={v}')}" for k, v in env.items())
        return f"claude mcp add lmstudio-bridge{env_flags} -- {shlex.join([command, *args])}"
    entry: dict[str, Any] = {"command": command, "args": args}
    if env:
        entry["env"] = env
    return json.dumps({"mcpServers": {"lmstudio-bridge": entry}}, indent=2)


def _launch_command() -> tuple[str, list[str]]:
    """The interpreter this bridge is installed in: it works wherever the package came from."""
    return sys.executable, ["-m", "lmstudio_bridge"]


def _registration_env(settings: Settings) -> dict[str, str]:
    """Every setting that is not at its default, as the variable that sets it (the API key excepted: a
    secret stays out of printed config)."""
    defaults = Settings()
    env = {}
    for field in Settings.model_fields:
        value = getattr(settings, field)
        if field in ("api_key", "log_level") or value == getattr(defaults, field):
            continue
        if field == "mcp_config":
            for path in value:
                if not path.is_file():
                    print(f"warning: MCP config file {path.resolve()} does not exist (yet)", file=sys.stderr)
            env[ENV_NAMES[field]] = os.pathsep.join(str(p.resolve()) for p in value)
        elif isinstance(value, tuple):
            env[ENV_NAMES[field]] = ",".join(value)
        else:
            env[ENV_NAMES[field]] = str(value)
    return env


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("lmstudio_bridge").setLevel(level)


def _fail(code: int, message: str) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(code)
