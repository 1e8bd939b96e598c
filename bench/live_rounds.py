"""Round latency against a real model: does a later round reuse the server's prompt cache?

    python bench/live_rounds.py                          # starts llama.cpp with the 0.5B model
    python bench/live_rounds.py --model 1.5b --tasks 6
    python bench/live_rounds.py --base-url http://127.0.0.1:8080/v1   # a server already running

Tasks run in the bridge (in this process) with two child servers, ``mcp-server-time`` and our
echo server, so the tool list is a realistic size. They alternate between two kinds:

- "What's the current time in CITY?": round 1, then the answer step (no tools);
- "Read the file missing-N.txt ...": the file does not exist, so round 1's call fails and
  round 2 goes back to the model with the same system prompt, tool list and history, plus
  the failed call and its error.

The bridge keeps that prefix byte-identical, so a server with a prompt cache only reads what
is new in round 2. Printed: each step's latency per task, then medians. Round 1 of the first
task reads the whole prompt cold; later tasks share the system prompt and tool list with it.
A second pass sends the same tasks with llama.cpp's ``cache_prompt: false``, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from lmstudio_bridge.config import Settings
from lmstudio_bridge.service import Bridge
from tests.support.common import ECHO_SERVER

CITIES = ("Tokyo", "Paris", "New York", "Sydney", "Cairo", "Lima", "Oslo", "Delhi")


async def one_task(bridge: Bridge, task: str) -> dict[str, float]:
    """The task's requests and their latency: ``round N`` for tool rounds, ``answer`` for the answer step."""
    steps: dict[str, float] = {}
    current: list[Any] = [None, 0.0]

    async def progress(line: str) -> None:
        now = time.perf_counter()
        if current[0] is not None:
            steps[current[0]] = now - current[1]
            current[0] = None
        if "waiting for" in line:
            current[:] = [line.split(" · ")[0].split("/")[0], now]
        elif "asking for the answer" in line:
            current[:] = ["answer", now]

    result = await bridge.run_task(["time", "echo"], task, progress=progress)
    if current[0] is not None:
        steps[current[0]] = time.perf_counter() - current[1]
    shown = "  ".join(f"{label} {seconds:5.2f} s" for label, seconds in steps.items())
    print(f"  {task[:44]:46} {result.stop_reason:14} {shown}", flush=True)
    return steps


class _NoPromptCache(httpx.AsyncHTTPTransport):
    """Adds llama.cpp's ``cache_prompt: false`` to every chat request."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            body = json.loads(request.content)
            body["cache_prompt"] = False
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            request = httpx.Request(request.method, request.url, headers=headers, json=body)
        return await super().handle_async_request(request)


async def run(base_url: str, tasks: int) -> None:
    cached = await run_pass(base_url, tasks, None)
    print("\nThe same tasks without the prompt cache:")
    uncached = await run_pass(base_url, tasks, _NoPromptCache())
    for label, runs in (("with the prompt cache", cached), ("without it", uncached)):
        pairs = [(s["round 1"], s["round 2"]) for s in runs[1:] if "round 1" in s and "round 2" in s]
        if pairs:
            m1, m2 = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
            print(
                f"{label:22} round 1 {m1:5.2f} s, round 2 {m2:5.2f} s, round 2 / round 1 {m2 / m1:.2f} (n={len(pairs)})"
            )


async def run_pass(base_url: str, tasks: int, transport: httpx.AsyncBaseTransport | None) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="lmstudio-bridge-live-") as tmp:
        config = Path(tmp) / "mcp.json"
        config.write_text(
            json.dumps(
                {
                    "mcpServers": {
                        "time": {
                            "command": sys.executable,
                            "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
                        },
                        "echo": {"command": sys.executable, "args": [ECHO_SERVER, "--root", tmp]},
                    }
                }
            )
        )
        settings = Settings(base_url=base_url, mcp_config=(config,), max_rounds=4, max_tokens=256, temperature=0)
        async with Bridge(settings, transport=transport) as bridge:
            print(f"{tasks} tasks against {base_url}:")
            runs = []
            for i in range(tasks):
                if i % 2 == 0:
                    task = f"What's the current time in {CITIES[i // 2 % len(CITIES)]}?"
                else:
                    task = f"Read the file missing-{i}.txt with read_file and tell me what it says."
                runs.append(await one_task(bridge, task))

    def median(label: str, from_task: int = 1) -> str:
        values = [steps[label] for steps in runs[from_task:] if label in steps]
        return f"{statistics.median(values):.2f} s (n={len(values)})" if values else "-"

    print(
        f"round 1, first task: {runs[0].get('round 1', float('nan')):.2f} s; later tasks: {median('round 1')}; "
        f"round 2 (after a failed call): {median('round 2', 0)}; answer step: {median('answer', 0)}"
    )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="0.5b", choices=("0.5b", "1.5b"))
    parser.add_argument("--base-url", help="use this server instead of starting llama.cpp")
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args()
    with ExitStack() as stack:
        base_url = args.base_url
        if base_url is None:
            from lmstudio_bridge.llamacpp import start_server

            base_url = stack.enter_context(start_server(model=args.model, timeout=1800)).base_url
        asyncio.run(run(base_url.removesuffix("/v1"), args.tasks))


if __name__ == "__main__":
    main()
