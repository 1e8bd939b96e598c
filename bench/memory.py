"""Figure 6: the bridge's memory after one model vs ten, and its RSS and open descriptors over many tasks."""

from __future__ import annotations

from tests.support.fake_lmstudio import FakeLMStudio

from .common import BridgeHandle, Report, Workspace, bridge, echo_task, run_task, say

SECTION = "6"
MODELS = [f"vendor/model-{i}" for i in range(10)]


async def rss_after(ws: Workspace, base_url: str, models: list[str], tasks: int) -> float:
    """RSS (MB) of a fresh bridge after ``tasks`` 2-round tasks spread over ``models``."""
    async with bridge(ws, base_url) as handle:
        for i in range(tasks):
            await run_task(handle, "echo", echo_task(2, f"m{i}"), model=models[i % len(models)], rounds=2)
        return handle.rss_mb()


def snapshot(handle: BridgeHandle) -> tuple[float, int, int]:
    return handle.rss_mb(), handle.fds(), len(handle.process.children(recursive=True))


async def run(report: Report, ws: Workspace) -> None:
    say(f"== {SECTION}. Memory: bridge RSS (psutil on the bridge subprocess) ==")
    tasks = 5 if report.quick else 50
    checkpoints = (5, 10, 20) if report.quick else (100, 200, 300, 400, 500)
    async with FakeLMStudio(models=list(MODELS)) as fake:
        one = await rss_after(ws, fake.base_url, MODELS[:1], tasks)
        ten = await rss_after(ws, fake.base_url, MODELS, tasks)
        say(f"after {tasks} tasks on 1 model     RSS {one:.1f} MB")
        say(f"after {tasks} tasks on 10 models   RSS {ten:.1f} MB   difference {ten - one:+.1f} MB")
        rows = []
        async with bridge(ws, fake.base_url) as handle:
            done = 0
            for mark in checkpoints:
                while done < mark:
                    await run_task(handle, "echo", echo_task(2, f"t{done}"), rounds=2)
                    done += 1
                fake.reset()  # the fake keeps every request; that is this process, not the bridge
                rows.append((mark, *snapshot(handle)))
                say(
                    f"after {mark:>3} tasks  RSS {rows[-1][1]:.1f} MB  open fds {rows[-1][2]}  "
                    f"processes below the bridge {rows[-1][3]}"
                )
    first, last = rows[0], rows[-1]
    growth = (last[1] - first[1]) / (last[0] - first[0]) * 1024
    say(
        f"RSS from {first[0]} to {last[0]} tasks: {last[1] - first[1]:+.1f} MB ({growth:+.1f} KB per task); "
        f"fds {first[2]} -> {last[2]}"
    )
    say()
    report.add(
        SECTION,
        f"RSS after {tasks} tasks: 1 model / 10 models",
        f"{one:.1f} / {ten:.1f} MB (Δ {ten - one:+.1f} MB)",
        "< 10 MB apart",
        abs(ten - one) < 10,
    )
    report.add(
        SECTION,
        f"RSS after {first[0]} / {last[0]} tasks",
        f"{first[1]:.1f} / {last[1]:.1f} MB (Δ {last[1] - first[1]:+.1f} MB, {growth:+.1f} KB/task)",
        "no trend",
        last[1] - first[1] < 5,
    )
    report.add(
        SECTION,
        f"open fds after {first[0]} / {last[0]} tasks",
        f"{first[2]} / {last[2]}",
        "no trend",
        last[2] <= first[2],
    )
