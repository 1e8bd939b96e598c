"""Arguments a caller did not mean: unknown names, loose types, and values too long to repeat.

In process: the MCP server object, the real ``Bridge`` and the fake LM Studio (the ``fake`` fixture).
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from lmstudio_bridge.config import Settings
from lmstudio_bridge.doctor import run_doctor
from lmstudio_bridge.errors import ModelNotFound
from lmstudio_bridge.mcp_config import McpCatalog
from lmstudio_bridge.server import build_server
from lmstudio_bridge.service import Bridge

HUGE = 1_000_000
ECHO_LIMIT = 200
"""No result or log line may repeat more than this many characters of a caller's value."""

MINI_SERVER = """
from mcp.server import MCPServer
server = MCPServer("mini")

@server.tool()
def echo(text: str) -> str:
    return text

server.run()
"""


def config_file(folder: Path) -> Path:
    path = folder / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"echo": {"command": sys.executable, "args": ["-c", MINI_SERVER]}}}))
    return path


@asynccontextmanager
async def connected(fake: Any, tmp_path: Path, **settings: Any) -> AsyncIterator[Client]:
    config = config_file(tmp_path)
    options = Settings(base_url=fake.base_url, **settings)
    catalog = McpCatalog(explicit_paths=[config], cwd=tmp_path, home=tmp_path, environ={})
    async with Bridge(options, catalog=catalog) as bridge, Client(build_server(options, bridge)) as client:
        yield client


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")


def bridge_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the bridge logged. (The SDK logs an unknown tool's whole name at INFO; the bridge's
    stderr shows the SDK's WARNING and above only, see ``cli._setup_logging``.)"""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("lmstudio_bridge"))


def longest_run(text: str, char: str) -> int:
    best = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        best = max(best, run)
    return best


VALID_ARGS = {
    "list_models": {},
    "health_check": {},
    "list_mcps": {},
    "autonomous_with_mcp": {"mcp_name": "echo", "task": "x"},
    "autonomous_with_multiple_mcps": {"mcp_names": ["echo"], "task": "x"},
    "load_model": {"model": "qwen/qwen3-coder-30b"},
    "unload_model": {"model": "qwen/qwen3-coder-30b"},
    "task_status": {"task_id": "x"},
    "task_result": {"task_id": "x"},
    "cancel_task": {"task_id": "x"},
    "list_tasks": {},
    "continue_task": {"task_id": "x", "message": "m"},
}


async def test_every_tool_refuses_an_unknown_argument_and_says_so(fake: Any, tmp_path: Path) -> None:
    async with connected(fake, tmp_path) as client:
        tools = (await client.list_tools()).tools
        assert sorted(t.name for t in tools) == sorted(VALID_ARGS)  # a new tool needs a line above
        for tool in tools:
            result = await client.call_tool(
                tool.name, {**VALID_ARGS[tool.name], "modle": "mistralai/magistral-small-2509"}
            )
            assert result.is_error and result.structured_content is None
            if "model" in tool.input_schema["properties"]:
                assert text_of(result) == "Error: unknown argument 'modle'; did you mean 'model'?"
            elif tool.input_schema["properties"]:
                takes = ", ".join(tool.input_schema["properties"])
                assert text_of(result) == f"Error: unknown argument 'modle'; {tool.name} takes {takes}."
            else:
                assert text_of(result) == f"Error: unknown argument 'modle'; {tool.name} takes no arguments."
    assert fake.chat_requests() == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"mcp_names": ["echo"]}, "Error: unknown argument 'mcp_names'; did you mean 'mcp_name'?"),
        ({"Model": "m"}, "Error: unknown argument 'Model'; did you mean 'model'?"),
        (
            {"colour": "red", "size": 2},
            "Error: unknown arguments 'colour', 'size'; autonomous_with_mcp takes mcp_name, task, model, max_rounds, read_only, include_reasoning, background, allowed_tools.",
        ),
    ],
)
async def test_unknown_arguments_are_named_with_a_suggestion_or_the_list(
    fake: Any, tmp_path: Path, args: dict[str, Any], expected: str
) -> None:
    async with connected(fake, tmp_path) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", **args})
    assert result.is_error and text_of(result) == expected
    assert fake.chat_requests() == []


async def test_the_input_schemas_are_closed_plain_json_schema(fake: Any, tmp_path: Path) -> None:
    import jsonschema

    async with connected(fake, tmp_path) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        schema = tool.input_schema
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert "$ref" not in json.dumps(schema) and "$defs" not in schema
        validator = jsonschema.Draft202012Validator(schema)
        assert validator.is_valid(VALID_ARGS[tool.name])
        assert not validator.is_valid({**VALID_ARGS[tool.name], "modle": "x"})
        for name, prop in schema["properties"].items():
            if "string" in json.dumps(prop):
                assert "maxLength" in json.dumps(prop), f"{tool.name}.{name} has no length limit"
    task_tool = next(t for t in tools if t.name == "autonomous_with_mcp")
    validator = jsonschema.Draft202012Validator(task_tool.input_schema)
    assert not validator.is_valid({"mcp_name": "echo", "task": "x", "model": "m" * 501})
    assert validator.is_valid({"mcp_name": "echo", "task": "x", "max_rounds": 2, "include_reasoning": True})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"max_rounds": "2"}, "max_rounds: expected an integer or null, got the string '2'"),
        ({"max_rounds": True}, "max_rounds: expected an integer or null, got true"),
        ({"max_rounds": 2.5}, "max_rounds: expected an integer or null, got the number 2.5"),
        ({"include_reasoning": "yes"}, "include_reasoning: expected true or false, got the string 'yes'"),
        ({"include_reasoning": "true"}, "include_reasoning: expected true or false, got the string 'true'"),
        ({"include_reasoning": 1}, "include_reasoning: expected true or false, got the number 1"),
    ],
)
async def test_loose_types_are_refused_not_converted(
    fake: Any, tmp_path: Path, args: dict[str, Any], expected: str
) -> None:
    async with connected(fake, tmp_path) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", **args})
    assert result.is_error
    assert text_of(result) == f"Error: invalid arguments for autonomous_with_mcp: {expected}"
    assert fake.chat_requests() == []


async def test_exact_types_still_work(fake: Any, tmp_path: Path) -> None:
    async with connected(fake, tmp_path) as client:
        for extra in ({"max_rounds": 2, "include_reasoning": True}, {"max_rounds": 2.0}, {"max_rounds": None}):
            result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@answer ok", **extra})
            assert not result.is_error, text_of(result)
            assert text_of(result) == "ok"
        refused = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "max_rounds": "2"})
        assert refused.is_error
    assert len(fake.chat_requests()) == 3


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        (
            "autonomous_with_mcp",
            {"mcp_name": "echo", "task": "x", "model": "m" * HUGE},
            "Error: The model name is 1,000,000 characters long; model ids are at most 500. "
            "Copy an id from list_models, or leave model out for the default model.",
        ),
        (
            "autonomous_with_multiple_mcps",
            {"mcp_names": ["echo"], "task": "x", "model": "m" * 501},
            "Error: The model name is 501 characters long; model ids are at most 500.",
        ),
        ("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "m" * HUGE: 1}, "Error: unknown argument 'mmmm"),
        (
            "autonomous_with_mcp",
            {"mcp_name": "echo", "task": "x", "max_rounds": 10**40},
            "Error: max_rounds must be between",
        ),
        ("m" * HUGE, {}, "Error: unknown tool 'mmmm"),
        ("autonomous_with_mcp", {"mcp_name": "m" * 150, "task": "x"}, "Error: MCP 'mmmm"),
        ("autonomous_with_multiple_mcps", {"mcp_names": ["m" * 150], "task": "x"}, "Error: MCP 'mmmm"),
    ],
)
async def test_huge_values_are_refused_without_being_repeated(
    fake: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, tool: str, args: dict[str, Any], expected: str
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with connected(fake, tmp_path) as client:
            result = await client.call_tool(tool, args)
    assert result.is_error and text_of(result).startswith(expected), text_of(result)[:300]
    assert len(text_of(result)) < 400
    logged = bridge_log(caplog)
    assert longest_run(logged, "m") <= ECHO_LIMIT, "the log repeats the value"
    assert "0" * 30 not in text_of(result) + logged, "the number is repeated"
    assert longest_run(text_of(result), "m") <= 100, "the result repeats more than 100 characters"
    assert fake.chat_requests() == []


async def test_a_model_name_near_the_limit_is_still_looked_up(fake: Any, tmp_path: Path) -> None:
    name = "lab/" + "m" * 496
    async with connected(fake, tmp_path) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "model": name})
    assert result.is_error
    assert text_of(result).startswith("Error: Model 'lab/mmm")
    assert "' (500 characters) not found. Available models: qwen/qwen3-coder-30b, " in text_of(result)
    assert len(text_of(result)) < 400


def test_model_not_found_keeps_its_shape_and_shortens_a_huge_name() -> None:
    available = ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509"]
    assert str(ModelNotFound("nonexistent-model", available)) == (
        "Model 'nonexistent-model' not found. Available models: qwen/qwen3-coder-30b, mistralai/magistral-small-2509"
    )
    huge = str(ModelNotFound("x" * HUGE, available))
    assert huge.startswith("Model 'xxxx") and huge.endswith(
        "…' (1,000,000 characters) not found. Available models: qwen/qwen3-coder-30b, mistralai/magistral-small-2509"
    )
    assert len(huge) < 300


async def test_a_huge_default_model_is_not_repeated_by_run_or_doctor(
    fake: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(base_url=fake.base_url, default_model="d" * HUGE)
    catalog = McpCatalog(explicit_paths=[config_file(tmp_path)], cwd=tmp_path, home=tmp_path, environ={})
    out = io.StringIO()
    with caplog.at_level(logging.DEBUG):
        async with Bridge(settings, catalog=catalog) as bridge:
            with pytest.raises(ModelNotFound) as raised:
                await bridge.run_task(["echo"], "x")
            assert not await run_doctor(bridge, out=out)
    assert len(str(raised.value)) < 400
    assert "LMSTUDIO_DEFAULT_MODEL='dddd" in out.getvalue()
    assert longest_run(out.getvalue() + bridge_log(caplog), "d") <= ECHO_LIMIT, "the name is repeated"


def test_troubleshooting_has_the_new_messages() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs"
    guide = (docs / "troubleshooting.md").read_text()
    for message in (
        "unknown argument 'NAME'; did you mean 'OTHER'?",
        "The model name is N characters long; model ids are at most 500. Copy an id from list_models, "
        "or leave model out for the default model.",
        "max_rounds: expected an integer or null, got the string '2'",
        "include_reasoning: expected true or false, got the string 'yes'",
    ):
        assert message in guide, message
    assert "additionalProperties: false" in (docs / "tools.md").read_text()
