"""Workflow 2: design, implement, test and document in four steps, each on the model that suits it.

python examples/multi_step_pipeline.py [--mcp filesystem] [--reasoning-model M] [--coding-model M]
    [--second-coding-model M]
"""

from __future__ import annotations

import os

from bridge_helpers import (
    SECOND_CODING_MODEL,
    bridge,
    call,
    mcp_option,
    parser,
    require,
    run,
    show,
    with_suffix,
)


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    mcp_option(p)
    p.add_argument(
        "--second-coding-model",
        default=os.environ.get("EXAMPLE_SECOND_CODING_MODEL", SECOND_CODING_MODEL),
        help=f"another coding model, for the tests (default {SECOND_CODING_MODEL})",
    )
    args = p.parse_args()
    async with bridge() as client:

        async def step(title: str, task: str, model: str | None) -> str:
            outcome = require(
                await call(
                    client,
                    "autonomous_with_mcp",
                    mcp_name=args.mcp,
                    task=with_suffix(task, args.task_suffix),
                    model=model,
                ),
                title,
            )
            show(f"{title} ({outcome.model})", outcome)
            return outcome.text

        architecture = await step(
            "Architecture", "Design the module structure for a new authentication system.", args.reasoning_model
        )
        implementation = await step(
            "Implementation", f"Implement the authentication system based on:\n{architecture}", args.coding_model
        )
        await step(
            "Tests",
            f"Generate integration tests for this authentication system:\n{implementation}",
            args.second_coding_model,
        )
        # No model: the bridge's default model writes the documentation.
        await step("Documentation", "Create user-facing documentation for the authentication system.", None)


if __name__ == "__main__":
    run(main)
