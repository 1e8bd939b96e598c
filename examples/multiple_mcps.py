"""Workflow 5: one task with the tools of several MCP servers, on one model.

python examples/multiple_mcps.py [--mcps filesystem,memory,fetch] [--reasoning-model M]
"""

from __future__ import annotations

import os

from bridge_helpers import bridge, call, parser, require, run, show, with_suffix

TASK = """\
1. Analyze the local codebase structure (filesystem).
2. Fetch best practices from documentation online (fetch).
3. Create a knowledge graph comparing our implementation to the best practices (memory).
4. Provide recommendations."""


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--mcps",
        default=os.environ.get("EXAMPLE_MCPS", "filesystem,memory,fetch"),
        help="comma-separated MCP server names from your MCP config",
    )
    args = p.parse_args()
    names = [n.strip() for n in args.mcps.split(",") if n.strip()]
    async with bridge() as client:
        outcome = require(
            await call(
                client,
                "autonomous_with_multiple_mcps",
                mcp_names=names,
                task=with_suffix(TASK, args.task_suffix),
                model=args.reasoning_model,
            ),
            "Task",
        )
    show(f"Answer ({outcome.model}, servers: {', '.join(names)})", outcome)
    calls = (outcome.data or {}).get("tool_calls", [])
    print(f"Tool calls ({len(calls)}):")
    for record in calls:
        print(f"- {record['name']}: {'ok' if record['ok'] else 'failed: ' + str(record['error'])}")


if __name__ == "__main__":
    run(main)
