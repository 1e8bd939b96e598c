"""Workflow 3: the same task on several models at once (asyncio.gather over one bridge), to compare answers.

python examples/parallel_models.py [--mcp filesystem] [--models M1,M2,...]
"""

from __future__ import annotations

import asyncio
import os
import time

from bridge_helpers import (
    CODING_MODEL,
    REASONING_MODEL,
    bridge,
    call,
    mcp_option,
    parser,
    run,
    show,
    with_suffix,
)

TASK = "Identify security vulnerabilities in the authentication module."


async def main() -> int:
    p = parser(__doc__.splitlines()[0])
    mcp_option(p)
    p.add_argument(
        "--models",
        default=os.environ.get("EXAMPLE_MODELS", f"{REASONING_MODEL},{CODING_MODEL}"),
        help="comma-separated model ids to run side by side",
    )
    args = p.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    task = with_suffix(TASK, args.task_suffix)
    started = time.monotonic()
    async with bridge() as client:
        # One bridge serves all of them: the calls run concurrently over the same connection.
        outcomes = await asyncio.gather(
            *(call(client, "autonomous_with_mcp", mcp_name=args.mcp, task=task, model=m) for m in models)
        )
    for model, outcome in zip(models, outcomes, strict=True):
        show(f"{model}{' (error)' if outcome.is_error else ''}", outcome)
    print(f"{len(models)} tasks in {time.monotonic() - started:.1f} s")
    return 1 if any(o.is_error for o in outcomes) else 0


if __name__ == "__main__":
    run(main)
