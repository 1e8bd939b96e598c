"""Best practice 6: try a preferred model; when the bridge says it is not found, fall back.

The bridge reports failures as error results (``is_error`` set, text starting with
``Error: ``), not as exceptions, so the fallback checks the result.

    python examples/model_fallback.py [--mcp filesystem] [--preferred M] [--fallback M]
"""

from __future__ import annotations

import os

from bridge_helpers import (
    REASONING_MODEL,
    Outcome,
    bridge,
    call,
    mcp_option,
    parser,
    require,
    run,
    show,
    with_suffix,
)
from mcp import Client


def model_missing(outcome: Outcome, model: str) -> bool:
    return outcome.is_error and outcome.text.startswith(f"Error: Model '{model}' not found.")


async def with_fallback(client: Client, mcp_name: str, task: str, preferred: str, fallback: str | None) -> Outcome:
    """The preferred model; else the fallback model; else the bridge's default model."""
    outcome = await call(client, "autonomous_with_mcp", mcp_name=mcp_name, task=task, model=preferred)
    if not model_missing(outcome, preferred):
        return outcome
    print(outcome.text)
    if fallback:
        print(f"Model {preferred} not available, using fallback {fallback}")
        outcome = await call(client, "autonomous_with_mcp", mcp_name=mcp_name, task=task, model=fallback)
        if not model_missing(outcome, fallback):
            return outcome
        print(outcome.text)
    print("Using the default model")
    return await call(client, "autonomous_with_mcp", mcp_name=mcp_name, task=task)


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    mcp_option(p)
    p.add_argument(
        "--preferred", default=os.environ.get("EXAMPLE_PREFERRED_MODEL", REASONING_MODEL), help="model to try first"
    )
    p.add_argument(
        "--fallback",
        default=os.environ.get("EXAMPLE_FALLBACK_MODEL"),
        help="model to try next (default: the coding model; '' goes straight to the default model)",
    )
    args = p.parse_args()
    fallback = args.coding_model if args.fallback is None else args.fallback
    task = with_suffix("Analyze the code in this project and summarize what it does.", args.task_suffix)
    async with bridge() as client:
        outcome = require(await with_fallback(client, args.mcp, task, args.preferred, fallback), "Task")
    show(f"Answer ({outcome.model})", outcome)


if __name__ == "__main__":
    run(main)
