"""autonomous_with_mcp / autonomous_with_multiple_mcps as an MCP host sees them, with real child MCP servers.

The bridge runs in this process (``bridge_client``: the MCP client and server exchange the same JSON-RPC
messages as over stdio, through memory); its children are real processes. What needs the bridge as a
process (stdout as the wire, exit, signals) is in tests/test_stdio.py and tests/test_reliability.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.bridge import bridge_client, text_of
from tests.support.common import echo_entry, time_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio


def tool_messages(body: dict) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def test_one_server_round_trip(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "echo", "task": 'Say hello.\n@call echo {"text": "hello there"}'}
        )
    assert not result.is_error, text_of(result)
    assert text_of(result) == "FINAL model=qwen/qwen3-coder-30b tools=1 last=hello there"
    data = result.structured_content
    assert data["model"] == "qwen/qwen3-coder-30b" and data["rounds"] == 2 and data["stop_reason"] == "answered"
    assert data["tool_calls"][0]["name"] == "echo.echo" and data["tool_calls"][0]["ok"] is True
    assert data["usage"]["total_tokens"] > 0 and data["mcps"] == ["echo"]
    first = fake.chat_bodies()[0]
    assert {t["function"]["name"] for t in first["tools"]} >= {"echo", "add", "read_file", "fail", "slow"}
    add = next(t for t in first["tools"] if t["function"]["name"] == "add")
    assert set(add["function"]["parameters"]["properties"]) == {"a", "b"}


async def test_published_time_server(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(
            "autonomous_with_mcp",
            {"mcp_name": "time", "task": '@call get_current_time {"timezone": "Asia/Tokyo"}'},
        )
    assert not result.is_error, text_of(result)
    reply = tool_messages(fake.last_chat())[0]
    assert json.loads(reply)["timezone"] == "Asia/Tokyo"
    assert "Asia/Tokyo" in text_of(result)


async def test_several_servers_with_a_name_collision(fake: FakeLMStudio, mcp_config: Path) -> None:
    task = '@call echo.read_file {"path": "notes.txt"}; echo2.read_file {"path": "notes.txt"}\n@call time.get_current_time {"timezone": "UTC"}'
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(
            "autonomous_with_multiple_mcps", {"mcp_names": ["echo", "echo2", "time"], "task": task}
        )
    assert not result.is_error, text_of(result)
    names = {t["function"]["name"] for t in fake.chat_bodies()[0]["tools"]}
    assert {"echo__read_file", "echo2__read_file", "get_current_time"} <= names
    calls = [c["name"] for c in result.structured_content["tool_calls"]]
    assert sorted(calls[:2]) == ["echo.read_file", "echo2.read_file"] and calls[2] == "time.get_current_time"
    replies = tool_messages(fake.last_chat())
    assert replies[0] == replies[1] == "the secret word is pineapple"
    assert "You complete the user's task" in fake.chat_bodies()[0]["messages"][0]["content"]
    assert "echo, echo2, time" in fake.chat_bodies()[0]["messages"][0]["content"]


async def test_each_request_carries_the_model_asked_for(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        for model in ["mistralai/magistral-small-2509", "qwen/qwen3-coder-30b", None, "default"]:
            args = {"mcp_name": "echo", "task": '@call echo {"text": "x"}'}
            if model:
                args["model"] = model
            result = await client.call_tool("autonomous_with_mcp", args)
            assert result.structured_content["model"] == (
                model if model not in (None, "default") else "qwen/qwen3-coder-30b"
            )
    models = [b["model"] for b in fake.chat_bodies()]
    assert models == ["mistralai/magistral-small-2509"] * 2 + ["qwen/qwen3-coder-30b"] * 6
    assert fake.count("/api/v1/models") == 1  # validated from the cache after the first call


async def test_small_model_mistakes_go_back_to_the_model(fake: FakeLMStudio, mcp_config: Path) -> None:
    task = "\n".join(
        [
            '@badjson echo {"text": "unterminated',
            "@call no_such_tool {}",
            '@call fail {"message": "the disk is full"}',
            '@call add {"a": "not a number", "b": 1}',
            '@tagcall echo {"text": "in tags"}',
        ]
    )
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": task})
    assert not result.is_error, text_of(result)
    *rounds, last = fake.chat_bodies()
    replies = tool_messages(rounds[-1])
    assert replies[0].startswith("Error: the arguments are not valid JSON")
    assert replies[1].startswith("Error: there is no tool named 'no_such_tool'")
    assert replies[2] == "Error: the disk is full"
    assert replies[3].startswith("Error:") and "a" in replies[3]
    # The call written as text worked: its result goes to a request without tools, for the answer.
    assert "tools" not in last
    assert 'echo {"text": "in tags"}:\nin tags' in last["messages"][1]["content"]
    oks = [c["ok"] for c in result.structured_content["tool_calls"]]
    assert oks == [False, False, False, False, True]
    assert result.structured_content["stop_reason"] == "answered"


async def test_round_limit_sums_up_and_says_so(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(
            "autonomous_with_mcp",
            {
                "mcp_name": "echo",
                "task": '@call echo {"text": "a"}\n@call echo {"text": "b"}\n@call echo {"text": "c"}\n@call echo {"text": "d"}',
                "max_rounds": 3,
            },
        )
    assert not result.is_error
    assert result.structured_content["stop_reason"] == "round_limit"
    assert text_of(result).startswith("SUMMARY model=qwen/qwen3-coder-30b")
    assert "Round limit reached" in text_of(result)
    assert "tools" not in fake.last_chat()
    assert len(fake.chat_requests()) == 4


async def test_temperature_and_max_tokens_from_environment_reach_every_request(
    fake: FakeLMStudio, mcp_config: Path
) -> None:
    env = {"LMSTUDIO_BRIDGE_TEMPERATURE": "0.2", "LMSTUDIO_BRIDGE_MAX_TOKENS": "300"}
    async with bridge_client(fake.base_url, mcp_config, **env) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": '@call echo {"text": "a"}'})
    assert not result.is_error, text_of(result)
    bodies = fake.chat_bodies()
    assert len(bodies) == 2 and all((b["temperature"], b["max_tokens"]) == (0.2, 300) for b in bodies)


async def test_round_limit_from_environment(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config, LMSTUDIO_BRIDGE_MAX_ROUNDS="2") as client:
        task = '@call echo {"text": "1"}\n@call echo {"text": "2"}\n@call echo {"text": "3"}'
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": task})
    assert result.structured_content["stop_reason"] == "round_limit"
    assert len(fake.chat_requests()) == 3


async def test_huge_tool_output_is_cut(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": '@call big {"chars": 2000000}'})
    (reply,) = tool_messages(fake.last_chat())
    assert len(reply) < 20_200
    assert reply.endswith("[... 1,980,000 of 2,000,000 characters cut ...]")


async def test_progress_notifications(fake: FakeLMStudio, mcp_config: Path) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with bridge_client(fake.base_url, mcp_config) as client:
        await client.call_tool(
            "autonomous_with_mcp",
            {"mcp_name": "echo", "task": '@call echo {"text": "x"}; add {"a": 1, "b": 2}'},
            progress_callback=on_progress,
        )
    messages = [m for _, m in seen]
    assert "round 1/25 · echo.echo" in messages and "round 1/25 · echo.add" in messages
    assert "round 2/25 · waiting for qwen/qwen3-coder-30b" in messages
    counts = [p for p, _ in seen]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


async def test_config_edits_take_effect_without_restart(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    async with bridge_client(fake.base_url, config) as client:
        missing = await client.call_tool("autonomous_with_mcp", {"mcp_name": "time", "task": "x"})
        assert missing.is_error and text_of(missing) == "Error: MCP 'time' not found. Available MCPs: echo"
        write_config(config, {"echo": echo_entry("echo"), "time": time_entry()})
        found = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "time", "task": '@call get_current_time {"timezone": "UTC"}'}
        )
        assert not found.is_error, text_of(found)
        listing = await client.call_tool("list_mcps", {})
        assert {m["name"] for m in listing.structured_content["mcps"]} == {"echo", "time"}


async def test_the_bridge_never_runs_itself(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "mcp.json",
        {
            "lmstudio": {"command": "uvx", "args": ["lmstudio-bridge"]},
            "echo": echo_entry("echo"),
            "off": {**echo_entry("off"), "disabled": True},
        },
    )
    async with bridge_client(fake.base_url, config) as client:
        listing = await client.call_tool("list_mcps", {})
        itself = await client.call_tool("autonomous_with_mcp", {"mcp_name": "lmstudio", "task": "x"})
        off = await client.call_tool("autonomous_with_mcp", {"mcp_name": "off", "task": "x"})
        unknown = await client.call_tool("autonomous_with_mcp", {"mcp_name": "nope", "task": "x"})
    usable = {m["name"]: m["usable"] for m in listing.structured_content["mcps"]}
    assert usable == {"echo": True, "lmstudio": False, "off": False}
    assert itself.is_error and text_of(itself).startswith("Error: MCP 'lmstudio'") and "itself" in text_of(itself)
    assert off.is_error and "disabled" in text_of(off) and '"disabled": true' in text_of(off)
    assert text_of(unknown) == "Error: MCP 'nope' not found. Available MCPs: echo"


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"command": "/nonexistent/server-binary"}, "cannot run"),
        (echo_entry("crashy", "--crash-on-start"), "failed to start"),
        (echo_entry("hangs", "--hang-on-start"), "no answer to initialize within 8 s"),
    ],
)
async def test_a_broken_child_is_an_error_not_a_hang(
    fake: FakeLMStudio, tmp_path: Path, entry: dict, reason: str
) -> None:
    config = write_config(tmp_path / "mcp.json", {"broken": entry, "echo": echo_entry("echo")})
    # The start timeout bounds the hanging child's wait, and the healthy echo child's start as well: on two busy
    # cores the echo child (Python and the MCP SDK) once took more than 3 s to answer initialize.
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_CHILD_START_TIMEOUT="8") as client:
        started = time.monotonic()
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "broken", "task": "x"})
        assert time.monotonic() - started < 45  # a hang would last until the client's 60 s timeout
        assert result.is_error
        assert text_of(result).startswith("Error: MCP 'broken' failed to start: ")
        assert reason in text_of(result)
        after = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "echo", "task": '@call echo {"text": "still here"}'}
        )
        assert not after.is_error and "still here" in text_of(after)


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("autonomous_with_mcp", {"mcp_name": "echo", "task": "   "}, "Error: The task is empty"),
        (
            "autonomous_with_mcp",
            {"mcp_name": "echo", "task": "x" * 100_001},
            "Error: The task is 100,001 characters long",
        ),
        ("autonomous_with_multiple_mcps", {"mcp_names": [], "task": "x"}, "Error: Name at least one MCP server"),
        (
            "autonomous_with_mcp",
            {"mcp_name": None, "task": "x"},
            "Error: invalid arguments for autonomous_with_mcp: mcp_name",
        ),
        (
            "autonomous_with_mcp",
            {"mcp_name": 42, "task": "x"},
            "Error: invalid arguments for autonomous_with_mcp: mcp_name",
        ),
        ("autonomous_with_mcp", {"mcp_name": "../../bin/sh", "task": "x"}, "Error: MCP '../../bin/sh' not found."),
        (
            "autonomous_with_mcp",
            {"mcp_name": "echo", "task": "x", "max_rounds": 0},
            "Error: max_rounds must be between",
        ),
        ("autonomous_with_mcp", {"task": "x"}, "Error: invalid arguments for autonomous_with_mcp: mcp_name"),
    ],
)
async def test_bad_input_is_a_clear_error(
    fake: FakeLMStudio, mcp_config: Path, tool: str, args: dict, expected: str
) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(tool, args)
    assert result.is_error
    assert text_of(result).startswith(expected), text_of(result)
    assert fake.chat_requests() == []


async def test_reasoning_is_separate_unless_asked(fake: FakeLMStudio, mcp_config: Path) -> None:
    task = "@think I should answer 4.\n@answer The answer is 4."
    async with bridge_client(fake.base_url, mcp_config) as client:
        plain = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": task})
        shown = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "echo", "task": task, "include_reasoning": True}
        )
    assert text_of(plain) == "The answer is 4." and plain.structured_content["reasoning"] == "I should answer 4."
    assert shown.structured_content["reasoning"] == "I should answer 4."
    assert "I should answer 4." in text_of(shown)


async def test_read_only_offers_only_tools_that_say_they_only_read(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        timed = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "time", "task": "@answer fine", "read_only": True}
        )
        echo = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "read_only": True})
    assert not timed.is_error, text_of(timed)
    assert timed.structured_content["tools_offered"] == ["time.get_current_time", "time.convert_time"]
    # Our echo server's tools carry no annotations: a read-only task could use none of them.
    assert echo.is_error and text_of(echo).startswith(
        "Error: read_only: none of the tools of echo declares readOnlyHint"
    )
