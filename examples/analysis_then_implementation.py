"""Workflow 1: a reasoning model analyses, then a coding model implements what the analysis found.

python examples/analysis_then_implementation.py [--mcp filesystem] [--reasoning-model M] [--coding-model M]
"""

from __future__ import annotations

from bridge_helpers import bridge, call, mcp_option, parser, require, run, show, with_suffix


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    mcp_option(p)
    args = p.parse_args()
    async with bridge() as client:
        analysis = require(
            await call(
                client,
                "autonomous_with_mcp",
                mcp_name=args.mcp,
                task=with_suffix(
                    "Analyze the codebase structure and identify the functions that have no unit tests.",
                    args.task_suffix,
                ),
                model=args.reasoning_model,
            ),
            "Analysis",
        )
        show(f"Analysis ({analysis.model})", analysis)

        tests = require(
            await call(
                client,
                "autonomous_with_mcp",
                mcp_name=args.mcp,
                task=with_suffix(
                    f"Based on this analysis:\n{analysis.text}\n\n"
                    "Generate unit tests for the functions it names. Use pytest and follow the existing test patterns.",
                    args.task_suffix,
                ),
                model=args.coding_model,
            ),
            "Implementation",
        )
        show(f"Tests ({tests.model})", tests)


if __name__ == "__main__":
    run(main)
