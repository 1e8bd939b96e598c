"""What the local model may touch: allow and deny lists, approval through the host, read-only tasks.

The bridge runs in this process (``bridge_client``), its children are real processes: our
``asking_server.py`` (tools that say they read or write, and requests of its own) and the published
git server. The MCP client plays the host: with an elicitation callback it is a host that can ask
its user (Claude Code), without one it is a host that cannot (Claude Desktop).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp.types import Tool, ToolAnnotations

from lmstudio_bridge.errors import ConfigError, InvalidRequest
from lmstudio_bridge.policy import ServerRules, ToolPolicy, check_allowed_tools, load_tool_rules, matches
from tests.support.bridge import bridge_client, run_cli, stdio_bridge_client, text_of
from tests.support.common import asking_entry, echo_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio
from tests.support.host import Asker


@pytest.fixture
def asking(tmp_path: Path) -> tuple[Path, Path]:
    """A config with the asking server (and the echo server); and the file write_note appends to."""
    log = tmp_path / "writes.log"
    config = write_config(
        tmp_path / "mcp.json", {"asking": asking_entry(log=log), "echo": echo_entry("echo", root=tmp_path)}
    )
    return config, log


def written(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def tool_messages(fake: FakeLMStudio) -> list[str]:
    return [m["content"] for m in fake.last_chat()["messages"] if m["role"] == "tool"]


WRITE = '@call write_note {"text": "x"}'


# --- Approval through the host --------------------------------------------------------------------


async def test_a_write_from_a_client_with_elicitation_is_asked_for_and_declined(
    fake: FakeLMStudio, asking: tuple[Path, Path]
) -> None:
    config, log = asking
    asker = Asker("decline")
    async with bridge_client(fake.base_url, config, callbacks=asker.callbacks) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": WRITE})
    assert not result.is_error, text_of(result)
    assert written(log) == []
    (question,) = asker.questions
    assert "write_note" in question.message and "'asking'" in question.message and '"text": "x"' in question.message
    assert [o["const"] for o in question.requested_schema["properties"]["allow"]["oneOf"]] == ["once", "task"]
    assert tool_messages(fake)[0].startswith("Error: the user declined asking.write_note")
    assert "[Calls that did not run: asking.write_note (declined by the user).]" in text_of(result)
    refused = result.structured_content["refused_calls"]
    assert refused == [{"name": "asking.write_note", "by": "user", "reason": refused[0]["reason"]}]
    assert result.structured_content["tool_calls"][0]["ok"] is False


async def test_over_stdio_too_a_declined_write_never_reaches_the_server(
    fake: FakeLMStudio, asking: tuple[Path, Path]
) -> None:
    config, log = asking
    asker = Asker("decline")
    async with stdio_bridge_client(fake.base_url, config, callbacks=asker.callbacks) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": WRITE})
    assert len(asker.questions) == 1 and written(log) == []
    assert [r["by"] for r in result.structured_content["refused_calls"]] == ["user"]


async def test_allow_for_the_task_asks_once_and_allow_once_asks_every_time(
    fake: FakeLMStudio, asking: tuple[Path, Path]
) -> None:
    config, log = asking
    task = '@call write_note {"text": "a"}\n@call write_note {"text": "b"}'
    for answer, questions in (("task", 1), ("once", 2)):
        asker = Asker("accept", {"allow": answer})
        async with bridge_client(fake.base_url, config, callbacks=asker.callbacks) as client:
            result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": task})
        assert not result.is_error and result.structured_content["refused_calls"] == []
        assert len(asker.questions) == questions, answer
    assert written(log) == ["wrote a", "wrote b"] * 2


async def test_tools_that_only_read_are_never_asked_for(fake: FakeLMStudio, asking: tuple[Path, Path]) -> None:
    config, _ = asking
    asker = Asker("decline")
    async with bridge_client(fake.base_url, config, callbacks=asker.callbacks) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": "@call read_note"})
    assert asker.questions == [] and "the note says hello" in text_of(result)


async def test_an_unanswered_question_times_out_and_the_call_does_not_run(
    fake: FakeLMStudio, asking: tuple[Path, Path]
) -> None:
    config, log = asking
    asker = Asker(hang=True)
    async with bridge_client(
        fake.base_url, config, callbacks=asker.callbacks, LMSTUDIO_BRIDGE_APPROVAL_TIMEOUT="0.5"
    ) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": WRITE})
    assert not result.is_error, text_of(result)
    assert len(asker.questions) == 1 and written(log) == []
    (refused,) = result.structured_content["refused_calls"]
    assert refused["by"] == "timeout" and "within 0.5 s" in refused["reason"]
    assert tool_messages(fake)[0].startswith("Error: the user did not approve asking.write_note within 0.5 s")


@pytest.mark.parametrize(("fallback", "runs"), [("run", True), ("refuse", False)])
async def test_a_client_without_elicitation_gets_the_fallback_never_a_hang(
    fake: FakeLMStudio, asking: tuple[Path, Path], fallback: str, runs: bool
) -> None:
    config, log = asking
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_APPROVAL_FALLBACK=fallback) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": WRITE})
    assert not result.is_error, text_of(result)
    assert written(log) == (["wrote x"] if runs else [])
    refused = result.structured_content["refused_calls"]
    assert [r["by"] for r in refused] == ([] if runs else ["approval"])
    if not runs:
        assert "does not support elicitation" in tool_messages(fake)[0]


@pytest.mark.parametrize(("approval", "runs"), [("run", True), ("refuse", False)])
async def test_run_and_refuse_never_ask(
    fake: FakeLMStudio, asking: tuple[Path, Path], approval: str, runs: bool
) -> None:
    config, log = asking
    asker = Asker("decline")
    async with bridge_client(
        fake.base_url, config, callbacks=asker.callbacks, LMSTUDIO_BRIDGE_APPROVAL=approval
    ) as client:
        await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": WRITE})
    assert asker.questions == [] and written(log) == (["wrote x"] if runs else [])


# --- Allow and deny lists -------------------------------------------------------------------------


async def test_allowed_tools_offers_only_what_it_names(fake: FakeLMStudio, asking: tuple[Path, Path]) -> None:
    config, log = asking
    args = {"mcp_name": "asking", "task": WRITE, "allowed_tools": ["read_*"]}
    async with bridge_client(fake.base_url, config) as client:
        result = await client.call_tool("autonomous_with_mcp", args)
        nothing = await client.call_tool("autonomous_with_mcp", {**args, "allowed_tools": ["echo.*"]})
    assert not result.is_error, text_of(result)
    assert result.structured_content["tools_offered"] == ["asking.read_note"]
    assert [t["function"]["name"] for t in fake.chat_bodies()[0]["tools"]] == ["read_note"]
    assert written(log) == []
    (refused,) = result.structured_content["refused_calls"]
    assert refused["by"] == "allowed_tools" and refused["name"] == "asking.write_note"
    assert nothing.is_error and "no tool of asking is left to offer" in text_of(nothing)


async def test_the_tool_rules_file_denies_a_tool_for_good(
    fake: FakeLMStudio, asking: tuple[Path, Path], tmp_path: Path
) -> None:
    config, log = asking
    rules = tmp_path / "tools.json"
    rules.write_text(json.dumps({"servers": {"asking": {"deny": ["write_*"]}}}))
    task = '@textcall write_note {"text": "x"}'  # written as text: still refused
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_TOOL_RULES=str(rules)) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": task})
        listing = await client.call_tool("list_mcps", {})
    assert written(log) == []
    assert "asking.write_note" in result.structured_content["tools_withheld"]
    assert "write_note" not in [t["function"]["name"] for t in fake.chat_bodies()[0]["tools"]]
    assert [r["by"] for r in result.structured_content["refused_calls"]] == ["rules"]
    entry = next(m for m in listing.structured_content["mcps"] if m["name"] == "asking")
    assert entry["deny"] == ["write_*"] and "write_note" not in entry["tools"] and "read_note" in entry["tools"]
    assert "- asking (" in text_of(listing) and "deny: write_*" in text_of(listing)


async def test_a_denied_tool_named_with_another_servers_prefix_is_not_run(
    fake: FakeLMStudio, asking: tuple[Path, Path], tmp_path: Path
) -> None:
    config, log = asking
    rules = tmp_path / "tools.json"
    rules.write_text(json.dumps({"servers": {"asking": {"deny": ["asking.write_note"]}}}))
    task = '@call echo.write_note {"text": "x"}\n@call echo__write_note {"text": "x"}\n@call asking__write_note {"text": "x"}'
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_TOOL_RULES=str(rules)) as client:
        result = await client.call_tool(
            "autonomous_with_multiple_mcps", {"mcp_names": ["asking", "echo"], "task": task}
        )
    assert not result.is_error, text_of(result)
    assert written(log) == []
    assert all(not call["ok"] for call in result.structured_content["tool_calls"])


async def test_a_broken_tool_rules_file_is_an_error_that_says_what_is_wrong(
    fake: FakeLMStudio, asking: tuple[Path, Path], tmp_path: Path
) -> None:
    config, _ = asking
    rules = tmp_path / "tools.json"
    rules.write_text(json.dumps({"servers": {"asking": {"block": ["x"]}}}))
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_TOOL_RULES=str(rules)) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": "x"})
        listing = await client.call_tool("list_mcps", {})
    assert result.is_error and "servers.asking has unknown keys block" in text_of(result)
    assert any("unknown keys block" in p for p in listing.structured_content["problems"])
    assert fake.chat_requests() == []


@pytest.mark.parametrize(
    ("pattern", "server", "tool", "expected"),
    [
        ("git_log", "git", "git_log", True),
        ("git_*", "git", "git_commit", True),
        ("git.*", "git", "git_commit", True),
        ("git.git_commit", "git", "git_commit", True),
        ("git.git_commit", "other", "git_commit", False),
        ("other.*", "git", "git_commit", False),
        ("Git_log", "git", "git_log", False),
    ],
)
def test_patterns_match_bare_names_and_server_qualified_names(
    pattern: str, server: str, tool: str, expected: bool
) -> None:
    assert matches([pattern], server, tool) is expected


def test_deny_wins_over_allow() -> None:
    policy = ToolPolicy(rules={"git": ServerRules(allow=("git_*",), deny=("git_commit",))})
    tool = Tool(name="git_commit", input_schema={"type": "object"})
    assert policy.withheld("git", tool) == ("rules", "the user's tool rules deny git.git_commit")
    assert policy.withheld("git", tool.model_copy(update={"name": "git_log"})) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", 'needs a "servers" object'),
        ('{"servers": {"git": {"deny": "git_commit"}}}', "servers.git.deny must be a list"),
        ('{"servers": {"git": {"approval": "maybe"}}}', "approval must be run, ask or refuse"),
    ],
)
def test_tool_rules_files_are_checked(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tools.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_tool_rules(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_tool_rules(tmp_path / "missing.json")


def test_allowed_tools_are_checked() -> None:
    assert check_allowed_tools(None) is None and check_allowed_tools([" git_log "]) == ("git_log",)
    for bad in ([], [""], ["x" * 201], ["a"] * 101):
        with pytest.raises(InvalidRequest):
            check_allowed_tools(bad)


async def test_a_server_can_ask_for_every_call_through_its_own_rules(
    fake: FakeLMStudio, asking: tuple[Path, Path], tmp_path: Path
) -> None:
    config, log = asking
    rules = tmp_path / "tools.json"
    rules.write_text(json.dumps({"servers": {"asking": {"approval": "refuse"}}}))
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_TOOL_RULES=str(rules)) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": WRITE})
    assert written(log) == [] and [r["by"] for r in result.structured_content["refused_calls"]] == ["approval"]


# --- Read-only tasks: nothing escapes -------------------------------------------------------------


async def test_annotations_that_change_when_the_child_restarts_are_read_again(
    fake: FakeLMStudio, tmp_path: Path
) -> None:
    hints = tmp_path / "hints.json"
    log = tmp_path / "writes.log"
    config = write_config(tmp_path / "mcp.json", {"asking": asking_entry(annotations=hints, log=log)})
    args = {"mcp_name": "asking", "task": WRITE, "read_only": True}
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_CHILD_IDLE_TIMEOUT="0") as client:
        hints.write_text(json.dumps({"read_note": True, "write_note": True}))  # says it only reads
        before = await client.call_tool("autonomous_with_mcp", args)
        hints.write_text(json.dumps({"read_note": True, "write_note": False}))  # the next start says otherwise
        after = await client.call_tool("autonomous_with_mcp", args)
    assert before.structured_content["tools_offered"] == ["asking.read_note", "asking.write_note"]
    assert after.structured_content["tools_offered"] == ["asking.read_note"]
    assert written(log) == ["wrote x"]  # the first task's call only
    assert [r["by"] for r in after.structured_content["refused_calls"]] == ["read_only"]


async def test_a_read_only_task_on_a_server_without_annotations_is_refused_with_the_reason(
    fake: FakeLMStudio, tmp_path: Path
) -> None:
    hints = tmp_path / "hints.json"
    hints.write_text("{}")
    config = write_config(tmp_path / "mcp.json", {"asking": asking_entry(annotations=hints)})
    async with bridge_client(fake.base_url, config) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": "x", "read_only": True})
    assert result.is_error
    assert text_of(result).startswith("Error: read_only: none of the tools of asking declares readOnlyHint")
    assert fake.chat_requests() == []


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    import git

    repo_path = tmp_path / "repo"
    repo = git.Repo.init(repo_path)
    (repo_path / "README.md").write_text("widgets\n")
    repo.index.add(["README.md"])
    repo.index.commit("Frobnicate the widgets")
    (repo_path / "new.txt").write_text("staged?\n")
    return repo_path


@pytest.mark.parametrize("cue", ["@call", "@textcall", "@tagcall"])
async def test_a_read_only_task_on_the_git_server_never_reaches_git_commit(
    fake: FakeLMStudio, tmp_path: Path, git_repo: Path, cue: str
) -> None:
    import sys

    import git

    entry = {"command": sys.executable, "args": ["-m", "mcp_server_git", "--repository", str(git_repo)]}
    config = write_config(tmp_path / "mcp.json", {"git": entry})
    task = (
        "What is the message of the latest commit?\n"
        f'{cue} git_add {{"repo_path": "{git_repo}", "files": ["new.txt"]}}\n'
        f'@call git_commit {{"repo_path": "{git_repo}", "message": "oops"}}\n'
        f'@call git_log {{"repo_path": "{git_repo}", "max_count": 1}}\n'
        "@answer {last}"
    )
    async with bridge_client(fake.base_url, config) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "git", "task": task, "read_only": True})
    assert not result.is_error, text_of(result)
    repo = git.Repo(git_repo)
    assert [c.message for c in repo.iter_commits()] == ["Frobnicate the widgets"]
    assert not repo.index.diff("HEAD")  # nothing staged
    offered = result.structured_content["tools_offered"]
    assert "git.git_log" in offered and "git.git_commit" not in offered and "git.git_add" not in offered
    refused = {r["name"] for r in result.structured_content["refused_calls"]}
    if cue == "@call":
        assert refused == {"git.git_add", "git.git_commit"}
        assert "Frobnicate the widgets" in text_of(result)
    else:
        # After a refused call written as text comes the answer step, a request without tools, which the
        # scripted model answers: its later calls are never made.
        assert refused == {"git.git_add"}
        assert "git.git_add (not read-only, in a read-only task)" in text_of(result)


def test_toolpolicy_read_only_needs_the_hint() -> None:
    reads = Tool(name="r", input_schema={"type": "object"}, annotations=ToolAnnotations(read_only_hint=True))
    says_nothing = Tool(name="w", input_schema={"type": "object"})
    policy = ToolPolicy(read_only=True)
    assert policy.withheld("s", reads) is None
    assert policy.withheld("s", says_nothing) == (
        "read_only",
        "this task is read-only, and s.w does not declare that it changes nothing",
    )


def test_run_takes_allowed_tools_and_refuses_under_the_fallback(
    fake: FakeLMStudio, asking: tuple[Path, Path], tmp_path: Path
) -> None:
    config, log = asking
    env = {"LMSTUDIO_BASE_URL": fake.base_url, "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config)}
    task = f"{WRITE}\n@call read_note"
    narrowed = run_cli("run", "--mcp", "asking", "--allowed-tools", "read_*,list_roots", "--json", task, env=env)
    assert narrowed.returncode == 0, narrowed.stderr
    assert json.loads(narrowed.stdout)["tools_offered"] == ["asking.list_roots", "asking.read_note"]
    refusing = {**env, "LMSTUDIO_BRIDGE_APPROVAL_FALLBACK": "refuse"}
    refused = run_cli("run", "--mcp", "asking", task, env=refusing, cwd=tmp_path)
    assert refused.returncode == 0, refused.stderr
    assert "[Calls that did not run: asking.write_note (refused by the approval setting).]" in refused.stdout
    assert written(log) == []
    empty = run_cli("run", "--mcp", "asking", "--allowed-tools", "", task, env=env)
    assert empty.returncode == 2 and "allowed_tools holds an empty name" in empty.stderr
