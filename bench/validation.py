"""Figure 1: ``ModelValidator.resolve``, cached and cold, in-process against the fake on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

from lmstudio_bridge.config import Settings
from lmstudio_bridge.lmstudio import LMStudioAPI
from lmstudio_bridge.models import ModelValidator
from tests.support.fake_lmstudio import FakeLMStudio

from .common import Report, Stats, say

SECTION = "1"
MODELS = ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509", "deepseek/deepseek-coder-33b"]
LIST_PATH = "/api/v1/models"  # LM Studio 0.4, as the fake plays it by default


async def cached_resolve(fake: FakeLMStudio, calls: int) -> Stats:
    """Per-call time of ``resolve`` once the list is cached (each call timed on its own)."""
    api = LMStudioAPI.from_settings(Settings(base_url=fake.base_url))
    validator = ModelValidator(api, ttl=3600)
    try:
        await validator.resolve(MODELS[0])
        samples = []
        for i in range(calls):
            name = MODELS[i % len(MODELS)]
            started = time.perf_counter_ns()
            await validator.resolve(name)
            samples.append((time.perf_counter_ns() - started) / 1e9)
        return Stats(samples)
    finally:
        await api.aclose()


async def cold_resolve(fake: FakeLMStudio, runs: int, *, new_connection: bool) -> tuple[Stats, float]:
    """Time of the first ``resolve`` with nothing cached; and list requests made per cold call."""
    settings = Settings(base_url=fake.base_url)
    shared = None if new_connection else LMStudioAPI.from_settings(settings)
    samples = []
    fake.reset()
    for _ in range(runs):
        api = shared or LMStudioAPI.from_settings(settings)
        validator = ModelValidator(api, ttl=3600)
        if shared is not None:
            await validator.resolve(MODELS[0])  # open the connection, then forget the list
            validator.invalidate()
            fake.reset()
        started = time.perf_counter()
        await validator.resolve(MODELS[1])
        samples.append(time.perf_counter() - started)
        if shared is None:
            await api.aclose()
    requests = fake.count(LIST_PATH) / (1 if shared is not None else runs)
    if shared is not None:
        await shared.aclose()
    return Stats(samples), requests


async def concurrent_cold(fake: FakeLMStudio, callers: int) -> tuple[float, int]:
    """``callers`` cold resolves at once on one fresh validator: wall time and list requests made."""
    api = LMStudioAPI.from_settings(Settings(base_url=fake.base_url))
    validator = ModelValidator(api, ttl=3600)
    fake.reset()
    try:
        started = time.perf_counter()
        await asyncio.gather(*(validator.resolve(MODELS[i % len(MODELS)]) for i in range(callers)))
        return time.perf_counter() - started, fake.count(LIST_PATH)
    finally:
        await api.aclose()


async def run(report: Report) -> None:
    say(f"== {SECTION}. Validation: ModelValidator.resolve, in-process, fake on 127.0.0.1 ==")
    calls, runs = (2_000, 10) if report.quick else (50_000, 50)
    async with FakeLMStudio(models=list(MODELS)) as fake:
        cached = await cached_resolve(fake, calls)
        say(f"cached resolve                 {cached.show('us')}")
        cold_new, per_new = await cold_resolve(fake, runs, new_connection=True)
        say(f"cold, new connection           {cold_new.show('ms')}  list requests per call {per_new:g}")
        cold_warm, per_warm = await cold_resolve(fake, runs, new_connection=False)
        say(f"cold, kept-alive connection    {cold_warm.show('ms')}  list requests per call {per_warm:g}")
        wall, requests = await concurrent_cold(fake, 20)
        say(f"20 concurrent cold resolves    wall {wall * 1e3:.3g} ms  list requests {requests}")
    say()
    report.add(
        SECTION,
        "cached resolve p50 / p99",
        f"{cached.p50 * 1e6:.2f} / {cached.p99 * 1e6:.2f} µs (n={cached.n})",
        "< 100 µs (hope < 10 µs)",
        cached.p99 < 100e-6,
    )
    report.add(
        SECTION,
        "cold resolve, new connection, p50 [min–max]",
        f"{cold_new.p50 * 1e3:.2f} ms [{cold_new.min * 1e3:.2f}–{cold_new.max * 1e3:.2f}] (n={cold_new.n})",
        "~100–200 ms (guide)",
        cold_new.p50 < 0.2,
    )
    report.add(SECTION, "list requests per cold resolve", f"{per_new:g}", "1", per_new == 1)
    report.add(
        SECTION,
        "20 concurrent cold resolves: list requests (wall)",
        f"{requests} ({wall * 1e3:.1f} ms)",
        "1",
        requests == 1,
    )
