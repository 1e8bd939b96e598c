"""Live end to end: a real small model under llama.cpp, real MCP servers, real tasks.

Opt in with ``pytest -m live``. ``scripts/llamacpp_server.py`` fetches the model and serves it
on 127.0.0.1 with the chat template that ships in the GGUF. The children are published servers
(``mcp-server-time``, ``mcp-server-git``, ``@modelcontextprotocol/server-filesystem`` and
``server-memory``, installed once from npm into the model cache) and our echo server. Each test
checks what the task did and what the answer says, never its wording.

- ``LIVE_MODEL=1.5b`` runs the 1.5B model instead of the 0.5B one.
- ``LIVE_BASE_URL=http://127.0.0.1:PORT/v1`` uses a server that is already running.
- ``LIVE_TEMPERATURE=T`` sets the sampling temperature (default 0; empty: the server's own).
- ``LIVE_TIMES=path`` appends one JSON line per task (name, seconds, rounds, stop reason, calls).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bridge import stdio_bridge_client as bridge_client
from tests.support.bridge import text_of
from tests.support.common import ROOT, echo_entry, time_entry, write_config

pytestmark = pytest.mark.live

sys.path.insert(0, str(ROOT / "scripts"))

NODE_SERVERS = ("@modelcontextprotocol/server-filesystem@2026.8.31", "@modelcontextprotocol/server-memory@2026.8.31")
LIVE_ENV = {
    "LMSTUDIO_BRIDGE_REQUEST_TIMEOUT": "300",
    "LMSTUDIO_BRIDGE_MAX_ROUNDS": "4",
    "LMSTUDIO_BRIDGE_MAX_TOKENS": "256",
    "LMSTUDIO_BRIDGE_TEMPERATURE": os.environ.get("LIVE_TEMPERATURE", "0"),
    "LMSTUDIO_BRIDGE_CHILD_START_TIMEOUT": "60",
}


@pytest.fixture(scope="module")
def live_llm() -> Iterator[str]:
    if os.environ.get("LIVE_BASE_URL"):
        yield os.environ["LIVE_BASE_URL"]
        return
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.fail("xllamacpp is not installed: pip install -e '.[dev,live]'")
    from llamacpp_server import start_server

    with start_server(model=os.environ.get("LIVE_MODEL", "0.5b"), timeout=1800) as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The published Node servers, installed once with npm into the model cache."""
    cache = Path(os.environ.get("LMSTUDIO_BRIDGE_MODEL_CACHE") or Path.home() / ".cache" / "lmstudio-bridge" / "models")
    prefix = cache.parent / "node"
    marker = prefix / (".installed-" + "-".join(p.rsplit("/", 1)[-1] for p in NODE_SERVERS))
    if not marker.exists():
        if shutil.which("npm") is None:
            pytest.fail("npm is needed for the live tests' Node servers")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", *NODE_SERVERS],
            check=True, timeout=600, stdout=subprocess.DEVNULL,
        )
        marker.touch()
    return prefix / "node_modules" / "@modelcontextprotocol"


def node_entry(node_modules: Path, package: str, *args: str, **env: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"command": "node", "args": [str(node_modules / package / "dist" / "index.js"), *args]}
    if env:
        entry["env"] = env
    return entry


async def run_task(
    request: pytest.FixtureRequest, base_url: str, config: Path, mcp_name: str, task: str
) -> tuple[str, dict[str, Any]]:
    """Runs one task through the bridge over stdio; records its time for the notes."""
    started = time.perf_counter()
    outcome: dict[str, Any] = {}
    try:
        async with bridge_client(base_url, config, read_timeout=900, **LIVE_ENV) as client:
            result = await client.call_tool("autonomous_with_mcp", {"mcp_name": mcp_name, "task": task})
        assert not result.is_error, text_of(result)
        outcome = result.structured_content
        print(f"\n{request.node.name}: {outcome['stop_reason']}, {outcome['rounds']} rounds\n{text_of(result)}")
        return text_of(result), outcome
    finally:
        if path := os.environ.get("LIVE_TIMES"):
            record = {"test": request.node.name, "seconds": round(time.perf_counter() - started, 1),
                      "rounds": outcome.get("rounds"), "stop_reason": outcome.get("stop_reason"),
                      "calls": [c["name"] for c in outcome.get("tool_calls", [])]}
            with open(path, "a") as out:
                out.write(json.dumps(record) + "\n")


def called(outcome: dict[str, Any], *names: str) -> bool:
    """Whether one of these tools ran without error."""
    return any(c["name"] in names and c["ok"] for c in outcome["tool_calls"])


def model_answered(outcome: dict[str, Any]) -> bool:
    """The answer came from the model, not from the bridge listing raw tool results."""
    return outcome["stop_reason"] != "no_answer"


async def test_time_in_a_zone(request: pytest.FixtureRequest, live_llm: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"time": time_entry()})
    answer, outcome = await run_task(request, live_llm, config, "time", "What's the current time in Tokyo?")
    assert called(outcome, "time.get_current_time") and model_answered(outcome)
    assert re.search(r"\b\d{1,2}:\d{2}", answer)


async def test_a_sum(request: pytest.FixtureRequest, live_llm: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"calc": echo_entry("calc")})
    answer, outcome = await run_task(request, live_llm, config, "calc", "How much is 1234 plus 4321? Use the add tool.")
    assert called(outcome, "calc.add") and model_answered(outcome)
    assert "5555" in answer.replace(",", "")


async def test_a_file_found_in_a_directory(
    request: pytest.FixtureRequest, live_llm: str, node_modules: Path, tmp_path: Path
) -> None:
    # A short path, as a user's would be (pytest's tmp_path holds the test's name).
    project = Path(tempfile.mkdtemp(prefix="project-"))
    request.addfinalizer(lambda: shutil.rmtree(project, ignore_errors=True))
    for name, text in {"README.md": "# project\n", "main.py": "print('hello')\n", "src/util.py": "", "deploy.yaml": "port: 8080\n"}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    config = write_config(tmp_path / "mcp.json", {"filesystem": node_entry(node_modules, "server-filesystem", str(project))})
    answer, outcome = await run_task(
        request, live_llm, config, "filesystem", f"Search {project} for YAML files and give me their names."
    )
    finding = ("search_files", "directory_tree", "list_directory", "list_directory_with_sizes")
    assert called(outcome, *(f"filesystem.{name}" for name in finding)) and model_answered(outcome)
    assert "deploy.yaml" in answer and "README.md" not in answer  # the YAML file, not a whole listing


async def test_an_entity_written_to_memory(
    request: pytest.FixtureRequest, live_llm: str, node_modules: Path, tmp_path: Path
) -> None:
    memory_file = tmp_path / "memory.jsonl"
    config = write_config(
        tmp_path / "mcp.json", {"memory": node_entry(node_modules, "server-memory", MEMORY_FILE_PATH=str(memory_file))}
    )
    answer, outcome = await run_task(
        request, live_llm, config, "memory",
        "Create an entity in the knowledge graph: a person named Ada Lovelace, with the observation that she wrote the first program.",
    )
    assert called(outcome, "memory.create_entities")
    entities = [json.loads(line) for line in memory_file.read_text().splitlines() if line.strip()]
    assert any(e.get("type") == "entity" and "Ada Lovelace" in e.get("name", "") for e in entities), entities
    assert model_answered(outcome) and "Ada" in answer


async def test_the_last_commit_message(request: pytest.FixtureRequest, live_llm: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=30)
    for name, message in (("a.txt", "Start the widget factory"), ("b.txt", "Teach the widget factory to frobnicate")):
        (repo / name).write_text(name)
        subprocess.run([*git, "add", name], check=True, timeout=30)
        subprocess.run([*git, "commit", "-q", "-m", message], check=True, timeout=30)
    config = write_config(
        tmp_path / "mcp.json", {"git": {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(repo)]}}
    )
    answer, outcome = await run_task(
        request, live_llm, config, "git", f"Show the latest commit of the git repository at {repo} and tell me its message."
    )
    assert called(outcome, "git.git_log", "git.git_show") and model_answered(outcome)
    assert "frobnicate" in answer
