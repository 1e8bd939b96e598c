"""Round latency against a real model: does the second round reuse the server's prompt cache?

    python bench/live_rounds.py                          # starts llama.cpp with the 0.5B model
    python bench/live_rounds.py --model 1.5b --tasks 5
    python bench/live_rounds.py --base-url http://127.0.0.1:8080/v1   # a server already running

Each task runs in the bridge (in this process) with two child servers, ``mcp-server-time`` and
our echo server, so the tool list is a realistic size. The bridge keeps the system prompt, the
tool list and the history byte-identical from round to round; a server with a prompt cache then
only has to read what is new. Printed: the latency of each tool round and of the answer step,
per task, and the medians of round 1 and round 2 with their ratio.

Round 1 of the first task reads the whole prompt cold. Later tasks start with the same system
prompt and tool list, so their round 1 is partly cached too: the first task is shown apart.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from lmstudio_bridge.config import Settings  # noqa: E402
from lmstudio_bridge.service import Bridge  # noqa: E402

CITIES = ("Tokyo", "Paris", "New York", "Sydney", "Cairo", "Lima", "Oslo", "Delhi")


async def one_task(bridge: Bridge, city: str) -> list[tuple[str, float]]:
    """The task's steps as (label, seconds): ``round N`` for tool rounds, ``answer`` for the answer step."""
    steps: list[tuple[str, float]] = []
    current: list[object] = [None, 0.0]

    async def progress(line: str) -> None:
        now = time.perf_counter()
        if current[0] is not None:
            steps.append((str(current[0]), now - float(current[1])))
            current[0] = None
        if "waiting for" in line:
            current[:] = [line.split(" · ")[0], now]
        elif "asking for the answer" in line:
            current[:] = ["answer", now]

    result = await bridge.run_task(["time", "echo"], f"What's the current time in {city}?", progress=progress)
    if current[0] is not None:
        steps.append((str(current[0]), time.perf_counter() - float(current[1])))
    print(f"  {city:9} {result.stop_reason:14} " + "  ".join(f"{label} {seconds:5.2f} s" for label, seconds in steps))
    return steps


async def run(base_url: str, tasks: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lmstudio-bridge-live-") as tmp:
        config = Path(tmp) / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {
            "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
            "echo": {"command": sys.executable, "args": [str(ROOT / "tests" / "servers" / "echo_server.py")]},
        }}))
        settings = Settings(base_url=base_url, mcp_config=(config,), max_rounds=4, max_tokens=256, temperature=0)
        async with Bridge(settings) as bridge:
            print(f"{tasks} tasks against {base_url}:")
            runs = [await one_task(bridge, CITIES[i % len(CITIES)]) for i in range(tasks)]
    first = [dict(steps) for steps in runs]
    r1 = [s["round 1/4"] for s in first[1:] if "round 1/4" in s]
    r2 = [s["round 2/4"] for s in first[1:] if "round 2/4" in s]
    print(f"\nfirst task:  round 1 {first[0].get('round 1/4', float('nan')):.2f} s (cold prompt), "
          f"round 2 {first[0].get('round 2/4', float('nan')):.2f} s")
    if r1 and r2:
        m1, m2 = statistics.median(r1), statistics.median(r2)
        print(f"later tasks: round 1 median {m1:.2f} s, round 2 median {m2:.2f} s, ratio round 2 / round 1 {m2 / m1:.2f} "
              f"(n={len(r1)}, {len(r2)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="0.5b", choices=("0.5b", "1.5b"))
    parser.add_argument("--base-url", help="use this server instead of starting llama.cpp")
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args()
    with ExitStack() as stack:
        base_url = args.base_url
        if base_url is None:
            from llamacpp_server import start_server

            base_url = stack.enter_context(start_server(model=args.model, timeout=1800)).base_url
        asyncio.run(run(base_url.removesuffix("/v1"), args.tasks))


if __name__ == "__main__":
    main()
