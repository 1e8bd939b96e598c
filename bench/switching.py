"""Figure 3: model switching. Three models in turn against one model repeated, same tasks, one bridge."""

from __future__ import annotations

import statistics

from tests.support.fake_lmstudio import FakeLMStudio

from .common import Report, Stats, Workspace, bridge, echo_task, run_task, say

SECTION = "3"
MODELS = ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509", "deepseek/deepseek-coder-33b"]
ROUNDS = 2


async def run(report: Report, ws: Workspace) -> None:
    say(f"== {SECTION}. Model switching: three models alternating vs one model repeated ({ROUNDS}-round tasks) ==")
    blocks = 2 if report.quick else 60
    same: list[float] = []
    switching: list[float] = []
    block_ratios: list[float] = []
    async with FakeLMStudio(models=list(MODELS)) as fake, bridge(ws, fake.base_url) as handle:
        for model in MODELS * 2:  # warm: child started, every model's client made, list cached
            await run_task(handle, "echo", echo_task(ROUNDS), model=model)
        for block in range(blocks):
            # Blocks of three tasks, the two kinds taking turns to go first, so drift hits both alike.
            order = [(same, [MODELS[0]] * 3), (switching, MODELS)]
            for samples, models in order if block % 2 == 0 else order[::-1]:
                for model in models:
                    samples.append(await run_task(handle, "echo", echo_task(ROUNDS, f"b{block}"), model=model))
            block_ratios.append(sum(switching[-3:]) / sum(same[-3:]))
    one, three = Stats(same), Stats(switching)
    ratio = three.p50 / one.p50
    low, high = quartiles(block_ratios)
    say(f"one model repeated             {one.show('ms')}")
    say(f"three models alternating       {three.show('ms')}")
    say(f"ratio of medians               {ratio:.3f}")
    say(
        f"per-block ratios               median {statistics.median(block_ratios):.3f}  "
        f"interquartile range {low:.3f}–{high:.3f}  n={len(block_ratios)}  (noise: 1.00 inside it)"
    )
    say()
    report.add(
        SECTION,
        "task p50: one model / three alternating",
        f"{one.p50 * 1e3:.2f} / {three.p50 * 1e3:.2f} ms (n={one.n} each)",
    )
    report.add(
        SECTION,
        "switching ratio (three / one): medians; per-block IQR",
        f"{ratio:.3f}; {low:.3f}–{high:.3f} (n={len(block_ratios)})",
        "1.00 ± noise",
        low <= 1.0 <= high,
    )


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]
