"""The benchmarks still run: every section of ``bench/run.py --quick``, and a failed one fails its test.

Each section runs in this process with the bridge in this process (``--in-process``; start-up still
spawns it) and without the Node child (``--no-node``: no npm install). A test fails when the runner
exits non-zero or the summary has an ERROR row (a benchmark that raised), or when a section gives no
figures or figures without numbers. The figures are not held to their targets here: a busy machine
misses them; ``python bench/run.py`` is where they are measured (docs/performance.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run, validation
from bench.common import Report
from tests.support.bridge import run_in_process
from tests.support.common import ROOT

SECTIONS = {
    "1": "Validation",
    "2": "Bridge overhead per round",
    "3": "Model switching",
    "4": "Parallel scaling",
    "5": "Child servers",
    "6": "Memory",
    "7": "Start-up",
    "8": "Load",
}
NUMBER = re.compile(r"\d+(\.\d+)?")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    """``python bench/run.py ARGS`` in this process."""
    return run_in_process(lambda: run.cli(list(args)), ["bench/run.py", *args])


def summary_rows(out: str) -> list[list[str]]:
    """The summary table's rows, split into cells: ``["", section, figure, measured, target, verdict, ""]``."""
    summary = out.split("== Summary ==", 1)[1]
    return [line.split("|") for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| #")]


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_each_benchmark_runs_and_gives_its_figures(section: str) -> None:
    done = bench("--quick", "--in-process", "--no-node", "--only", section)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert out.startswith("machine: ") and "command: python bench/run.py --quick --in-process --no-node" in out
    assert f"== {section}. {SECTIONS[section]}" in out
    rows = summary_rows(out)
    assert rows and all(r[1].strip() == section for r in rows), out
    assert not [r for r in rows if r[5].strip() == "ERROR"], out
    assert all(NUMBER.search(r[3]) or "skipped" in r[3] for r in rows), f"figures without numbers\n{out}"


async def broken_benchmark(report: Report) -> None:
    raise RuntimeError("the fake LM Studio went away")


def test_a_failing_benchmark_fails_the_run_and_the_others_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "run", broken_benchmark)
    done = bench("--quick", "--in-process", "--only", "1,3")
    assert done.returncode == 1
    rows = summary_rows(done.stdout)
    assert ["1", "benchmark failed", "RuntimeError: the fake LM Studio went away", "", "ERROR"] in [
        [cell.strip() for cell in r[1:6]] for r in rows
    ]
    assert any(r[1].strip() == "3" and NUMBER.search(r[3]) for r in rows)  # section 3 ran all the same
    assert "1 benchmark(s) failed" in done.stdout
    assert "Traceback" in done.stderr and "the fake LM Studio went away" in done.stderr


def test_the_runner_is_a_script_that_needs_no_path_setup(tmp_path: Path) -> None:
    """``python bench/run.py`` from any folder: bench and tests.support import without sys.path edits."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== 1. Validation" in done.stdout and "| 1 | cached resolve p50 / p99 |" in done.stdout


def test_the_live_task_table_counts_the_answers_the_caller_is_told_to_check(tmp_path: Path) -> None:
    from datetime import datetime

    from bench.live_tasks import table
    from tests.live_tasks import TASKS, Run, Workspace

    def one(name: str, problems: list[str], **outcome: list[str] | str) -> Run:
        ws = Workspace(tmp_path, tmp_path)
        return Run(TASKS[name], ws, datetime.now(), answer="x", outcome=dict(outcome), problems=problems, seconds=1)

    runs = {
        "git_last_change": [one("git_last_change", ["made up"], unfounded_names=["README.md"])],
        "git_count": [one("git_count", [], unfounded_numbers=["12", "34"]), one("git_count", [])],
        "fs_remove_line": [one("fs_remove_line", ["not removed"], unfounded_change="removed")],
        "time_three_cities": [one("time_three_cities", ["no London"], unfounded_items=["London"])],
        "git_no_such_word": [one("git_no_such_word", ["no log"], unfounded_answer=["git.git_diff"])],
    }
    text = table(runs, 2)
    assert (
        "answers the caller is told to check (numbers, names or items from nowhere, or from no result): 4, 1 of "
        "them in runs that passed;" in text
    )
    assert "answers saying a change was made when no call made one (the caller is told): 1, 0 of them" in text
    assert "failed runs whose answer the caller is told to check or told was not done: 4 of 4." in text
