"""Live end to end: a real small model under llama.cpp, real MCP servers, tasks worded as users write them.

Opt in with ``pytest -m live``: it runs ``CI_SUBSET`` of the task set in ``tests/live_tasks.py``
(``python -m bench.live_tasks`` runs all of it and prints the table). ``lmstudio_bridge.llamacpp``, the
embedded model of ``lmstudio-bridge demo``, fetches the model and serves it on 127.0.0.1 with the chat
template that ships in the GGUF. The children are the published servers: ``mcp-server-time``, ``mcp-server-git`` and, installed once
from npm next to the model cache, ``@modelcontextprotocol/server-filesystem``, ``server-memory``
and ``server-everything``. Each task checks what it did and what the answer says, never its wording.

- ``LIVE_MODEL=1.5b`` runs the 1.5B model instead of the 0.5B one.
- ``LIVE_BASE_URL=http://127.0.0.1:PORT/v1`` uses a server that is already running.
- ``LIVE_SAMPLING=default`` leaves temperature and max_tokens unset (default ``small``: 0 and 256).
- ``LIVE_TASKS=all`` (or ``name,name``) runs other tasks than the CI subset; ``LIVE_CAP=S`` caps each
  (default 240 s).
- ``LIVE_TIMES=path`` appends each run's transcript as a JSON line.

Each task's fixtures go under a path of its own name (``$TMPDIR/lmstudio-bridge-live/TASK``), not a
random one, so that at the small-model settings (temperature 0) a task sends the model the same prompt
on every run, and a failure here comes from a change in the bridge, not from the letters of a
temporary directory. ``python -m bench.live_tasks`` keeps random paths: it measures what users get.

The tests without the ``live`` mark run in the main suite: they check the checks, on runs made up
here, so a live task can both pass and fail.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.live_tasks import (
    CI_SUBSET,
    COMMITS,
    MEMORY_GRAPH,
    PROJECT_FILES,
    TASKS,
    WRITE_TOOLS,
    Run,
    Workspace,
    clock_times,
    install_node_servers,
    judge,
    run_live_task,
    tool_annotations,
)

SELECTED = (
    list(TASKS)
    if os.environ.get("LIVE_TASKS") == "all"
    else [n for n in os.environ.get("LIVE_TASKS", "").split(",") if n] or list(CI_SUBSET)
)


# --------------------------------------------------------------------------- live


@pytest.fixture(scope="module")
def live_llm() -> Iterator[str]:
    if os.environ.get("LIVE_BASE_URL"):
        yield os.environ["LIVE_BASE_URL"]
        return
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.fail("xllamacpp is not installed: pip install -e '.[dev,live]'")
    from lmstudio_bridge.llamacpp import start_server

    extra = ["--n-predict", "-1"] if os.environ.get("LIVE_SAMPLING") == "default" else []
    with start_server(model=os.environ.get("LIVE_MODEL", "0.5b"), timeout=1800, extra_args=extra) as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("npm") is None:
        pytest.fail("npm is needed for the live tests' Node servers")
    return install_node_servers()


@pytest.fixture(scope="module")
def read_only_tools(node_modules: Path) -> dict[str, bool]:
    """Each tool's ``readOnlyHint``, as the servers declare it."""
    return asyncio.run(tool_annotations(node_modules))


@pytest.mark.live
@pytest.mark.parametrize("name", SELECTED)
async def test_live_task(name: str, live_llm: str, node_modules: Path, read_only_tools: dict[str, bool]) -> None:
    run = await run_live_task(
        TASKS[name],
        live_llm,
        node_modules,
        sampling=os.environ.get("LIVE_SAMPLING", "small"),
        cap=float(os.environ.get("LIVE_CAP", "240")),
        read_only_tools=read_only_tools,
        root=Path(tempfile.gettempdir()) / "lmstudio-bridge-live" / name,
    )
    record = run.record(os.environ.get("LIVE_MODEL", "0.5b"), os.environ.get("LIVE_SAMPLING", "small"))
    if path := os.environ.get("LIVE_TIMES"):
        with open(path, "a") as out:
            out.write(json.dumps(record) + "\n")
    print(
        f"\n{name}: {run.verdict} in {run.seconds:.1f} s, {record['rounds']} rounds, {record['stop_reason']}\n"
        f"calls: {run.calls}\nanswer: {run.answer}"
    )
    assert run.passed, f"{name}: {run.problems}\ncalls: {run.calls}\nanswer: {run.answer!r}\n{run.bridge_log[-3000:]}"


@pytest.mark.live
def test_the_demo_answers_with_the_embedded_model_and_stops_everything(tmp_path: Path) -> None:
    """The README's first command, after the install: ``lmstudio-bridge demo`` with no LM Studio."""
    import psutil

    from lmstudio_bridge.llamacpp import resolve_cache_dir

    if importlib.util.find_spec("xllamacpp") is None:
        pytest.fail("xllamacpp is not installed: pip install -e '.[dev,live]'")
    cache = tmp_path / "cache"  # the user's cache under a name of its own, to find this run's server by
    cache.symlink_to(resolve_cache_dir(), target_is_directory=True)
    started = datetime.now(UTC)
    done = subprocess.run(
        [sys.executable, "-m", "lmstudio_bridge", "demo", "--local", "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
    )
    ended = datetime.now(UTC)
    print(done.stderr[-3000:])
    assert done.returncode == 0, done.stderr[-3000:]
    tokyo = ZoneInfo("Asia/Tokyo")
    window = {
        (
            (started + timedelta(minutes=m)).astimezone(tokyo).hour,
            (started + timedelta(minutes=m)).astimezone(tokyo).minute,
        )
        for m in range(-2, int((ended - started).total_seconds() // 60) + 3)
    }
    assert clock_times(done.stdout) & window, f"no time in Tokyo in the answer: {done.stdout!r}"
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"]
        and (str(cache) in p.info["cmdline"] or p.info["cmdline"][:3] == [sys.executable, "-m", "mcp_server_time"])
    ]
    assert left == [], f"left running: {left}"


# --------------------------------------------------------------------------- the checks, on made-up runs


def ok(*names: str) -> list[dict[str, Any]]:
    """Tool call records; a name ending in ``!`` failed."""
    return [
        {"name": n.rstrip("!"), "ok": not n.endswith("!"), "ms": 1.0, "error": "failed" if n.endswith("!") else None}
        for n in names
    ]


def _now(zone: str, **delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).astimezone(ZoneInfo(zone)).strftime("%H:%M")


def _london_930() -> str:
    today = datetime.now(ZoneInfo("America/New_York")).date()
    moment = datetime(today.year, today.month, today.day, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    return moment.astimezone(ZoneInfo("Europe/London")).strftime("%-I:%M %p")


def _write(path: str, text: str) -> Any:
    def act(ws: Workspace) -> None:
        (ws.root / path).write_text(text)

    return act


def _memory_add(*items: dict[str, Any]) -> Any:
    def act(ws: Workspace) -> None:
        graph = ws.memory()
        for item in items:
            same = [g for g in graph if g.get("type") == "entity" and g.get("name") == item.get("name")]
            if same and item.get("observations"):
                same[0]["observations"] += item["observations"]
            elif not same:
                graph.append(item)
        ws.memory_file.write_text("".join(json.dumps(g) + "\n" for g in graph))

    return act


GOOD: dict[str, tuple[Any, list[str], Any]] = {
    # task: (answer, or a function of nothing giving it; tools that ran ok; side effect on the workspace)
    "time_tokyo": (lambda: f"It is {_now('Asia/Tokyo')} in Tokyo.", ["time.get_current_time"], None),
    "time_convert": (lambda: f"It is {_london_930()} in London.", ["time.convert_time"], None),
    "sum_tool": ("1234 plus 4321 is 5,555.", ["everything.get-sum"], None),
    "env_var": ("DEPLOY_REGION is moon-base-7.", ["everything.get-env"], None),
    "weather_chicago": (
        "Chicago: 36 degrees, light rain / drizzle, 82% humidity.",
        ["everything.get-structured-content"],
        None,
    ),
    "notes_read": (
        "Buy oat milk, and call the plumber about the sink on Thursday.",
        ["filesystem.read_text_file"],
        None,
    ),
    "git_last_message": ("Teach the widget factory to frobnicate", ["git.git_log"], None),
    "git_show_latest": ("Its message is 'Teach the widget factory to frobnicate'.", ["git.git_show"], None),
    "git_author": ("Grace Hopper made it.", ["git.git_log"], None),
    "git_branches": ("feature/login, main and release-1.2", ["git.git_branch"], None),
    "memory_lookup": (
        "Marie Curie was a physicist and chemist who won two Nobel Prizes.",
        ["memory.search_nodes"],
        None,
    ),
    "fs_yaml_search": ("There is one: deploy.yaml", ["filesystem.search_files"], None),
    "fs_find_then_read": (
        "It sets db-billing.internal (port 5433).",
        ["filesystem.search_files", "filesystem.read_file"],
        None,
    ),
    "fs_count_csv": ("There are 3 CSV files.", ["filesystem.list_directory"], None),
    "git_count": ("The repository has four commits.", ["git.git_log"], None),
    "git_last_change": (
        "It raised the timeout in config.toml from 30 to 45 and added frobnicate.py.",
        ["git.git_show"],
        None,
    ),
    "fs_copy": (
        "Done.",
        ["filesystem.read_text_file", "filesystem.write_file"],
        _write("project/greeting-copy.txt", PROJECT_FILES["greeting.txt"]),
    ),
    "fs_remove_line": (
        "Removed it.",
        ["filesystem.read_text_file", "filesystem.write_file"],
        _write("project/notes.txt", "Buy oat milk.\n"),
    ),
    "memory_create": (
        "I created Ada Lovelace.",
        ["memory.create_entities"],
        _memory_add(
            {
                "type": "entity",
                "name": "Ada Lovelace",
                "entityType": "person",
                "observations": ["wrote the first program"],
            }
        ),
    ),
    "memory_add_fact": (
        "Added.",
        ["memory.add_observations"],
        _memory_add({"type": "entity", "name": "Marie Curie", "observations": ["born in Warsaw"]}),
    ),
    "time_to_file": ("Written.", ["time.get_current_time", "filesystem.write_file"], None),  # the file is written below
    "contact_to_memory": (
        "Saved Linus Pauling.",
        ["filesystem.read_file", "memory.create_entities"],
        _memory_add({"type": "entity", "name": "Linus Pauling", "entityType": "person", "observations": ["chemist"]}),
    ),
    "author_to_memory": (
        "Grace Hopper is in the graph now.",
        ["git.git_log", "memory.create_entities"],
        _memory_add({"type": "entity", "name": "Grace Hopper", "entityType": "person", "observations": []}),
    ),
    "time_three_cities": (
        lambda: f"Tokyo {_now('Asia/Tokyo')}, London {_now('Europe/London')}, New York {_now('America/New_York')}.",
        ["time.get_current_time"] * 3,
        None,
    ),
    "fs_two_ports": ("api.env sets 8081 and web.env sets 3005.", ["filesystem.read_multiple_files"], None),
    "weather_two_cities": ("New York 33, Los Angeles 73.", ["everything.get-structured-content"] * 2, None),
    "fs_missing_file": ("There is no TODO.md in that folder.", ["filesystem.read_text_file!"], None),
    "git_no_such_word": ("No, none of the four commit messages mentions a database.", ["git.git_log"], None),
    "memory_no_such_entity": ("No, Alan Turing is not in the knowledge graph.", ["memory.search_nodes"], None),
}


@pytest.fixture
def made_up(tmp_path: Path) -> Any:
    """A run of a task as if the bridge had returned ``answer`` after ``calls``, with ``effect`` done."""

    def make(name: str, answer: Any, calls: list[dict[str, Any]], effect: Any = None, stop: str = "answered") -> Run:
        live = TASKS[name]
        ws = Workspace(Path(tempfile.mkdtemp(prefix="live-", dir=tmp_path)), tmp_path / "node_modules")
        ws.build(live.servers, live.memory_seed)
        run = Run(task=live, ws=ws, started=datetime.now(UTC) - timedelta(seconds=5))
        run.before = ws.snapshot()
        if effect:
            effect(ws)
        if name == "time_to_file" and effect is None and calls:
            (ws.project / "stamp.txt").write_text(datetime.now(UTC).isoformat())
        run.ended = datetime.now(UTC)
        run.answer = answer() if callable(answer) else answer
        run.outcome = {"answer": run.answer, "stop_reason": stop, "rounds": 2, "tool_calls": calls}
        judge(run)
        return run

    return make


def test_the_task_set_is_broad() -> None:
    assert len(TASKS) >= 20
    servers = {s for t in TASKS.values() for s in t.servers}
    assert servers == {"time", "git", "filesystem", "memory", "everything"}
    assert sum(len(t.servers) > 1 for t in TASKS.values()) >= 2
    assert sum("absent" in t.kind for t in TASKS.values()) >= 3
    assert set(CI_SUBSET) <= set(TASKS) and set(GOOD) == set(TASKS)


@pytest.mark.parametrize("name", list(TASKS))
def test_a_right_run_passes(name: str, made_up: Any) -> None:
    answer, tools, effect = GOOD[name]
    run = made_up(name, answer, ok(*tools), effect)
    assert run.passed, run.problems


@pytest.mark.parametrize("name", list(TASKS))
def test_a_run_without_tools_or_answer_fails(name: str, made_up: Any) -> None:
    assert not made_up(name, "", []).passed


@pytest.mark.parametrize("name", list(TASKS))
def test_a_raw_tool_dump_fails(name: str, made_up: Any) -> None:
    """The bridge's fallback when the model gave no answer holds the values, but is not an answer."""
    answer, tools, effect = GOOD[name]
    run = made_up(name, answer, ok(*tools), effect, stop="no_answer")
    assert any("no answer" in p for p in run.problems)


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if t.read_only])
def test_a_write_tool_fails_a_read_only_task(name: str, made_up: Any) -> None:
    answer, tools, effect = GOOD[name]
    server = TASKS[name].servers[0]
    write = sorted(w for w in WRITE_TOOLS if w.startswith(server + "."))[0]
    calls = [*ok(*tools), {"name": write, "ok": False, "ms": 1.0, "error": "bad arguments"}]
    run = made_up(name, answer, calls, effect)
    assert run.write_calls == [f"{write} (failed)"] and not run.passed


def test_side_effects_in_the_repository_are_seen(made_up: Any) -> None:
    def stage(ws: Workspace) -> None:
        (ws.repo / "new.txt").write_text("x")
        subprocess.run(["git", "-C", str(ws.repo), "add", "new.txt"], check=True)

    run = made_up("git_last_message", "Teach the widget factory to frobnicate", ok("git.git_log"), stage)
    assert any("git index" in p for p in run.problems), run.problems


def test_wrong_values_fail(made_up: Any) -> None:
    assert not made_up(
        "time_tokyo", lambda: f"It is {_now('Asia/Tokyo', hours=1)} in Tokyo.", ok("time.get_current_time")
    ).passed
    assert not made_up("git_count", "It has 3 commits.", ok("git.git_log")).passed
    assert not made_up(
        "memory_no_such_entity", "Yes, Alan Turing is a person in the graph, not an element.", ok("memory.search_nodes")
    ).passed
    assert not made_up("fs_missing_file", "TODO.md says: buy oat milk.", ok("filesystem.read_file")).passed
    assert not made_up("fs_missing_file", "It does not say anything about TODO.md.", ok("filesystem.read_file!")).passed
    assert not made_up("git_branches", "The domain has feature/login and release-1.2.", ok("git.git_branch")).passed
    assert not made_up("fs_yaml_search", "deploy.yaml, README.md, main.py", ok("filesystem.list_directory")).passed
    assert not made_up(  # the first line removed
        "fs_remove_line",
        "Done.",
        ok("filesystem.edit_file"),
        _write("project/notes.txt", PROJECT_FILES["notes.txt"][14:]),
    ).passed
    assert not made_up(
        "memory_add_fact",
        "Added.",
        ok("memory.delete_entities"),
        lambda ws: ws.memory_file.write_text(json.dumps({**MEMORY_GRAPH[0], "observations": ["born in Warsaw"]})),
    ).passed


def test_clock_times() -> None:
    assert clock_times("It is 2:30 PM.") == {(14, 30)}
    assert clock_times("2026-11-29T14:21:07+09:00") >= {(14, 21)}
    assert clock_times("at 9:05") == {(9, 5), (21, 5)}
    assert clock_times("14:30 am") == {(14, 30)} and clock_times("12:10 am") == {(0, 10)}
    assert clock_times("at 25:61 or 3.30") == set()


def test_the_fixtures_are_what_the_checks_expect(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", tmp_path / "node_modules")
    ws.build(("git", "filesystem", "memory"), memory_seed=True)
    log = subprocess.run(["git", "-C", str(ws.repo), "log", "--format=%an|%s"], capture_output=True, text=True).stdout
    assert log.splitlines() == [f"{a}|{m}" for a, _, m in reversed(COMMITS)]
    assert len(list((ws.project / "data").glob("*.csv"))) == 3 and not (ws.project / "TODO.md").exists()
    assert "database" not in log.lower() and ws.entity("Alan Turing") is None
