"""The benchmarks still run: ``python bench/run.py --quick`` prints every section with numbers, in under a minute."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from tests.support.common import ROOT

SECTIONS = {
    "1": "Validation",
    "2": "Bridge overhead per round",
    "3": "Model switching",
    "4": "Parallel scaling",
    "5": "Child servers",
    "6": "Memory",
    "7": "Start-up",
}
NUMBER = re.compile(r"\d+(\.\d+)?")


def test_quick_benchmark_prints_every_figure() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert elapsed < 60, f"--quick took {elapsed:.0f} s\n{out}"
    assert out.startswith("machine: ") and "command: python bench/run.py --quick" in out
    for number, title in SECTIONS.items():
        assert f"== {number}. {title}" in out, f"section {number} missing\n{out}"
    summary = out.split("== Summary ==", 1)[1]
    rows = [line.split("|") for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    for number in SECTIONS:
        mine = [r for r in rows if r[1].strip() == number]
        assert mine, f"no figures for section {number}\n{summary}"
        assert all(NUMBER.search(r[3]) or "skipped" in r[3] for r in mine), f"section {number} without numbers\n{summary}"
    verdicts = [r[5].strip() for r in rows]
    assert verdicts.count("met") + verdicts.count("MISSED") >= 8, summary
