"""``lmstudio-bridge tasks`` (recent tasks, a table) and ``lmstudio-bridge tasks show ID`` (a transcript)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from .task_store import TASK_STATES
from .task_views import render_list, render_transcript, transcript_data

if TYPE_CHECKING:
    from .service import Bridge

EXIT_OK = 0


def add_tasks_command(commands: Any, common: argparse.ArgumentParser) -> None:
    tasks = commands.add_parser(
        "tasks", parents=[common], help="List recent tasks; `tasks show ID` prints one's transcript."
    )
    tasks.add_argument("--json", action="store_true", help="Print JSON.")
    tasks.add_argument("--state", choices=TASK_STATES, help="Only tasks in this state.")
    tasks.add_argument("--limit", type=int, default=20, metavar="N", help="Most tasks to list (default 20).")
    shows = tasks.add_subparsers(dest="tasks_command", metavar="show")
    show = shows.add_parser("show", parents=[common], help="Print a task's transcript.")
    show.add_argument("task_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="Print the task, its result and its messages as JSON.")


async def tasks_command(bridge: Bridge, args: argparse.Namespace) -> int:
    """Raises ``BridgeError`` (an unknown id) for the caller to report."""
    if getattr(args, "tasks_command", None) == "show":
        record = await bridge.tasks.transcript(args.task_id.strip())
        if args.json:
            print(json.dumps(transcript_data(record), ensure_ascii=False, indent=2))  # stdout-ok
        else:
            print(render_transcript(record))  # stdout-ok
        return EXIT_OK
    listing = await bridge.tasks.list(state=args.state, limit=args.limit)
    if listing.history_problem:
        print(f"lmstudio-bridge: the task history is off: {listing.history_problem}", file=sys.stderr)
    if args.json:
        print(listing.model_dump_json(indent=2))  # stdout-ok
    else:
        print(render_list(listing))  # stdout-ok
    return EXIT_OK
