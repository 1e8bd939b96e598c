"""What every example shares: start lmstudio-bridge over stdio, call its tools, print the results.

The bridge is started as ``python -m lmstudio_bridge`` with the interpreter that runs
the example, so run the examples with the Python that has the package installed
(``.venv/bin/python examples/parallel_models.py``). It gets this process's whole
environment: ``LMSTUDIO_HOST``, ``LMSTUDIO_BASE_URL``, ``LMSTUDIO_BRIDGE_MCP_CONFIG``
and the rest reach it unchanged.

Every example accepts:

``--task-suffix TEXT``  appended (on a new line) to every task; default ``$EXAMPLE_TASK_SUFFIX``.
``--reasoning-model``, ``--coding-model``  the model ids; defaults are the guide's, or
``$EXAMPLE_REASONING_MODEL`` / ``$EXAMPLE_CODING_MODEL``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp import Client, StdioServerParameters

REASONING_MODEL = "mistralai/magistral-small-2509"
CODING_MODEL = "qwen/qwen3-coder-30b"
SECOND_CODING_MODEL = "deepseek/deepseek-coder-33b"
TASK_TIMEOUT = 1800.0
"""Seconds to wait for one tool call; local models on a laptop can take minutes per task."""


@dataclass
class Outcome:
    """One tool call's result: the text, the structured content, and whether it is an error result."""

    text: str
    data: dict[str, Any] | None
    is_error: bool

    @property
    def model(self) -> str:
        return (self.data or {}).get("model", "?")


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every example shares."""
    p = argparse.ArgumentParser(
        description=description,
        epilog="The default model ids are the guide's examples, which your LM Studio may not have: run "
        "`lmstudio-bridge models` to see the ids it has, and pass them with the model options (or the "
        "EXAMPLE_*_MODEL variables).",
    )
    p.add_argument(
        "--task-suffix",
        default=os.environ.get("EXAMPLE_TASK_SUFFIX", ""),
        help="text appended to every task (default: $EXAMPLE_TASK_SUFFIX)",
    )
    p.add_argument(
        "--reasoning-model",
        default=os.environ.get("EXAMPLE_REASONING_MODEL", REASONING_MODEL),
        help=f"model for analysis and planning (default {REASONING_MODEL})",
    )
    p.add_argument(
        "--coding-model",
        default=os.environ.get("EXAMPLE_CODING_MODEL", CODING_MODEL),
        help=f"model for writing code (default {CODING_MODEL})",
    )
    return p


def mcp_option(p: argparse.ArgumentParser, default: str = "filesystem") -> None:
    p.add_argument(
        "--mcp",
        default=os.environ.get("EXAMPLE_MCP", default),
        help=f"MCP server from your MCP config the model works with (default {default}, or $EXAMPLE_MCP)",
    )


def with_suffix(task: str, suffix: str) -> str:
    return f"{task}\n{suffix}" if suffix else task


@asynccontextmanager
async def bridge() -> AsyncIterator[Client]:
    """lmstudio-bridge as a child process, connected over stdio."""
    env = dict(os.environ)
    env.setdefault("LMSTUDIO_BRIDGE_LOG_LEVEL", "WARNING")
    params = StdioServerParameters(command=sys.executable, args=["-m", "lmstudio_bridge"], env=env)
    async with Client(params, read_timeout_seconds=TASK_TIMEOUT) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> Outcome:
    """Calls one bridge tool. Failures come back as error results (text ``Error: ...``), not exceptions."""
    started = time.monotonic()
    who = f"{arguments['model']}: " if arguments.get("model") else ""

    async def progress(done: float, total: float | None, message: str | None) -> None:
        print(f"  [{time.monotonic() - started:5.1f}s] {who}{message or done}", file=sys.stderr, flush=True)

    args = {k: v for k, v in arguments.items() if v is not None}
    result = await client.call_tool(tool, args, progress_callback=progress)
    text = "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
    return Outcome(text=text, data=result.structured_content, is_error=bool(result.is_error))


def show(title: str, outcome: Outcome) -> None:
    """Prints one result under a heading."""
    print(f"=== {title}")
    print(outcome.text)
    print(flush=True)


class StepFailed(Exception):
    """A step came back as an error result; ``run`` reports it and exits with status 1."""


def require(outcome: Outcome, step: str) -> Outcome:
    """The outcome, or ``StepFailed`` when the step came back as an error result."""
    if outcome.is_error:
        raise StepFailed(f"{step} failed: {outcome.text}")
    return outcome


def run(main: Callable[[], Awaitable[int | None]]) -> None:
    """Runs an example's ``main``; exit status 1 when a step failed, else what ``main`` returned."""
    try:
        code = asyncio.run(main())
    except* StepFailed as failed:
        # Raised inside ``async with Client(...)``, the error arrives wrapped in an exception group.
        for exc in _leaves(failed):
            print(exc, file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code or 0)


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for exc in group.exceptions for leaf in _leaves(exc)]
    return [group]
