"""The task history's cost: writes per task and a listing, on this machine's disk.

    python bench/task_history.py [--tasks N]

Each task does what a task of the bridge does: one insert, three progress updates with a batch of
two messages each (a 200-character reply and a 2,000-character tool result), and the final write
(which also prunes). Every call runs in a worker thread, as in the bridge. Prints ms per task,
ms per write, ms per listing of 20 tasks, and the file size.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from lmstudio_bridge.task_store import TaskRecord, TaskStore

MESSAGES = [{"role": "assistant", "content": "x" * 200}, {"role": "tool", "tool_call_id": "a", "content": "y" * 2000}]
WRITES_PER_TASK = 8


async def measure(tasks: int) -> str:
    with tempfile.TemporaryDirectory(prefix="lmstudio-bridge-history-") as tmp:
        store = TaskStore(Path(tmp), retention_days=30, retention_count=1000)
        await store.open()
        started = time.perf_counter()
        for n in range(tasks):
            now = time.time()
            await store.insert(
                TaskRecord(
                    id=f"t{n}", state="running", task="task " * 20, mcps=["echo"], created_at=now, updated_at=now
                )
            )
            for k in range(3):
                await store.progress(f"t{n}", model="m", rounds=k, tool_calls=k, last_progress="round")
                await store.add_messages(f"t{n}", 2 * k, MESSAGES)
            await store.finish(f"t{n}", "completed", result={"answer": "a" * 500}, last_progress="done")
        per_task = (time.perf_counter() - started) / tasks
        started = time.perf_counter()
        for _ in range(50):
            await store.recent(limit=20)
        listing = (time.perf_counter() - started) / 50
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        await store.aclose()
    return (
        f"{tasks} tasks: {per_task * 1e3:.2f} ms per task, {per_task * 1e3 / WRITES_PER_TASK:.2f} ms per write; "
        f"a listing of 20: {listing * 1e3:.2f} ms; file and WAL {size / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    print(asyncio.run(measure(parser.parse_args().tasks)))  # stdout-ok


if __name__ == "__main__":
    main()
