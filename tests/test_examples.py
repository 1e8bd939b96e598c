"""Each script in examples/ runs as a user would run it, against the fake LM Studio and real child servers.

The examples append ``--task-suffix`` to every task; here that carries cues for the scripted server,
so the "model" really calls the children's tools. The scripts run in this process with the bridge
in this process (``tests.support.examples``); the last tests run one as a real process, with the
bridge it starts over stdio.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.common import GUIDE_MODELS
from tests.support.examples import EXAMPLES
from tests.support.examples import run_example as run_script
from tests.support.fake_lmstudio import FakeLMStudio

CODING, REASONING, OTHER_CODING = GUIDE_MODELS
READ_NOTES = '@call read_file {"path": "notes.txt"}'
NOTES = "the secret word is pineapple"


def environment(fake: FakeLMStudio, config: Path) -> dict[str, str]:
    return {"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config)}


def run_example(name: str, fake: FakeLMStudio, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_script(name, *args, env=environment(fake, config), cwd=config.parent)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def headings(stdout: str) -> list[str]:
    return [line.removeprefix("=== ") for line in stdout.splitlines() if line.startswith("=== ")]


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"bridge_helpers.py"}
    tested = {
        "analysis_then_implementation.py",
        "multi_step_pipeline.py",
        "parallel_models.py",
        "model_switching.py",
        "multiple_mcps.py",
        "model_fallback.py",
    }
    assert scripts == tested


def test_analysis_then_implementation(fake: FakeLMStudio, mcp_config: Path) -> None:
    out = ok(run_example("analysis_then_implementation.py", fake, mcp_config, "--task-suffix", READ_NOTES))
    assert headings(out) == [f"Analysis ({REASONING})", f"Tests ({CODING})"]
    assert f"FINAL model={REASONING} tools=1 last={NOTES}" in out
    assert f"FINAL model={CODING} tools=1 last={NOTES}" in out
    second_task = fake.chat_bodies()[-1]["messages"][1]["content"]
    assert f"FINAL model={REASONING}" in second_task  # the analysis fed the second task


def test_multi_step_pipeline_uses_each_model_and_then_the_default(fake: FakeLMStudio, mcp_config: Path) -> None:
    out = ok(run_example("multi_step_pipeline.py", fake, mcp_config, "--task-suffix", '@call echo {"text": "step"}'))
    assert headings(out) == [
        f"Architecture ({REASONING})",
        f"Implementation ({CODING})",
        f"Tests ({OTHER_CODING})",
        f"Documentation ({CODING})",  # no model given: the default, the first loaded one
    ]
    assert fake.chat_bodies()[-1]["model"] == CODING
    assert out.count("tools=1 last=step") == 4


def test_parallel_models_overlap(fake: FakeLMStudio, mcp_config: Path) -> None:
    fake.hold_answers(until=2)  # each answer waits until both tasks ask at once
    out = ok(run_example("parallel_models.py", fake, mcp_config, "--task-suffix", READ_NOTES))
    assert headings(out) == [REASONING, CODING]
    assert out.count(NOTES) == 2
    assert "2 tasks in" in out
    assert fake.max_in_flight >= 2  # the two tasks really ran at the same time


def test_parallel_models_reports_a_missing_model_and_fails(fake: FakeLMStudio, mcp_config: Path) -> None:
    done = run_example("parallel_models.py", fake, mcp_config, "--models", f"nonexistent-model,{CODING}")
    assert done.returncode == 1
    assert headings(done.stdout) == ["nonexistent-model (error)", CODING]
    assert "Error: Model 'nonexistent-model' not found. Available models: " + ", ".join(GUIDE_MODELS) in done.stdout


def test_model_switching_keeps_one_child(fake: FakeLMStudio, mcp_config: Path) -> None:
    out = ok(run_example("model_switching.py", fake, mcp_config, "--task-suffix", "@call counter"))
    assert headings(out) == [f"Count files ({CODING})", f"Architecture ({REASONING})", f"Helpers ({CODING})"]
    assert [f'"count": {n}' in out for n in (1, 2, 3)] == [True, True, True]  # one warm child served all three


def test_multiple_mcps_in_one_task(fake: FakeLMStudio, mcp_config: Path) -> None:
    cues = "\n".join(
        [
            '@call filesystem.read_file {"path": "notes.txt"}',
            '@call fetch.echo {"text": "best practices"}',
            '@call memory.echo {"text": "graph stored"}',
        ]
    )
    out = ok(run_example("multiple_mcps.py", fake, mcp_config, "--task-suffix", cues))
    assert headings(out) == [f"Answer ({REASONING}, servers: filesystem, memory, fetch)"]
    assert out.splitlines()[-4:] == [
        "Tool calls (3):",
        "- filesystem.read_file: ok",
        "- fetch.echo: ok",
        "- memory.echo: ok",
    ]
    assert {b["model"] for b in fake.chat_bodies()} == {REASONING}


def test_model_fallback_to_the_fallback_model(fake: FakeLMStudio, mcp_config: Path) -> None:
    done = run_example(
        "model_fallback.py", fake, mcp_config, "--preferred", "nonexistent-model", "--task-suffix", READ_NOTES
    )
    out = ok(done)
    assert out.splitlines()[:2] == [
        "Error: Model 'nonexistent-model' not found. Available models: " + ", ".join(GUIDE_MODELS),
        f"Model nonexistent-model not available, using fallback {CODING}",
    ]
    assert headings(out) == [f"Answer ({CODING})"]
    assert f"last={NOTES}" in out


def test_model_fallback_to_the_default_model(fake: FakeLMStudio, mcp_config: Path) -> None:
    out = ok(run_example("model_fallback.py", fake, mcp_config, "--preferred", "gone", "--fallback", "also-gone"))
    assert "Using the default model" in out
    assert headings(out) == [f"Answer ({CODING})"]
    assert fake.chat_bodies()[-1]["model"] == CODING


def test_model_fallback_keeps_the_preferred_model_when_it_exists(fake: FakeLMStudio, mcp_config: Path) -> None:
    out = ok(run_example("model_fallback.py", fake, mcp_config))
    assert headings(out) == [f"Answer ({REASONING})"]
    assert "fallback" not in out


def test_a_failed_step_exits_1_with_the_error_on_stderr(fake: FakeLMStudio, mcp_config: Path) -> None:
    done = run_example("model_switching.py", fake, mcp_config, "--mcp", "nope")
    assert done.returncode == 1
    assert "Count files failed: Error: MCP 'nope' not found. Available MCPs: " in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "bridge_helpers.py"))
def test_examples_explain_themselves(script: str) -> None:
    done = run_script(script, "--help")
    assert done.returncode == 0
    assert "--task-suffix" in done.stdout


# ----------------------------------------------------------------------------- as a process


def run_process(name: str, fake: FakeLMStudio, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python examples/NAME ARGS``: the script starts ``python -m lmstudio_bridge`` over stdio itself."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env={**os.environ, **environment(fake, config)},
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_example_as_a_process_with_the_bridge_over_stdio(fake: FakeLMStudio, mcp_config: Path) -> None:
    fake.hold_answers(until=2)  # the two tasks share one stdio connection, and still overlap
    out = ok(run_process("parallel_models.py", fake, mcp_config, "--task-suffix", READ_NOTES))
    assert headings(out) == [REASONING, CODING]
    assert out.count(NOTES) == 2
    assert fake.max_in_flight >= 2
