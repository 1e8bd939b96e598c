"""Workflow 4: one MCP server throughout, a different model per task (default, reasoning, coding).

python examples/model_switching.py [--mcp filesystem] [--reasoning-model M] [--coding-model M]
"""

from __future__ import annotations

from bridge_helpers import bridge, call, mcp_option, parser, require, run, show, with_suffix


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    mcp_option(p)
    args = p.parse_args()
    steps = [
        ("Count files", "Count all Python files in the project.", None),  # simple: the default model
        ("Architecture", "Analyze the project architecture and identify design patterns.", args.reasoning_model),
        ("Helpers", "Generate helper functions based on the architecture of the project.", args.coding_model),
    ]
    async with bridge() as client:
        for title, task, model in steps:
            task = with_suffix(task, args.task_suffix)
            outcome = require(
                await call(client, "autonomous_with_mcp", mcp_name=args.mcp, task=task, model=model), title
            )
            show(f"{title} ({outcome.model})", outcome)


if __name__ == "__main__":
    run(main)
