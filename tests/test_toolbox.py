"""Tool names offered to the model: valid for the API, unique across servers, mapped back exactly."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mcp_types import Tool

from lmstudio_bridge.toolbox import Toolbox

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class StubChild:
    name: str
    tools: list[Tool] = field(default_factory=list)


def tool(name: str, schema: dict | None = None) -> Tool:
    return Tool(name=name, description=f"does {name}", input_schema=schema or {"type": "object", "properties": {}})


def test_unique_names_stay_plain_and_schemas_are_kept() -> None:
    schema = {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC"]}}, "required": ["tz"]}
    box = Toolbox([StubChild("time", [tool("get_current_time", schema)])])  # type: ignore[list-item]
    (offered,) = box.openai_tools
    assert offered["type"] == "function"
    assert offered["function"]["name"] == "get_current_time"
    assert offered["function"]["parameters"] == schema
    assert "time" in offered["function"]["description"]


def test_collisions_get_server_prefixes_and_both_resolve() -> None:
    a, b = StubChild("alpha", [tool("read_file")]), StubChild("beta", [tool("read_file"), tool("echo")])
    box = Toolbox([a, b])  # type: ignore[list-item]
    assert box.names == ["alpha__read_file", "beta__read_file", "echo"]
    assert box.lookup("alpha__read_file").child is a  # type: ignore[union-attr]
    assert box.lookup("beta__read_file").child is b  # type: ignore[union-attr]
    assert box.lookup("beta.read_file").child is b  # type: ignore[union-attr]
    assert box.lookup("read_file") is None  # ambiguous
    assert box.lookup("echo").tool.name == "echo"  # type: ignore[union-attr]


def test_invalid_and_long_names_are_made_valid_and_distinct() -> None:
    names = ["get/weather.now", "x" * 100, "x" * 100 + "y", "héllo wörld", "get_weather_now"]
    box = Toolbox([StubChild("s", [tool(n) for n in names])])  # type: ignore[list-item]
    assert all(VALID.match(n) for n in box.names)
    assert len(set(box.names)) == len(names)
    for offered in box.tools:
        assert box.lookup(offered.api_name) is offered
    assert box.lookup(box.names[0]).tool.name == "get/weather.now"  # type: ignore[union-attr]


def test_unknown_name_is_none() -> None:
    box = Toolbox([StubChild("s", [tool("a")])])  # type: ignore[list-item]
    assert box.lookup("nope") is None


def test_missing_schema_becomes_an_empty_object() -> None:
    t = Tool.model_construct(name="bare", description=None, input_schema=None)
    box = Toolbox([StubChild("s", [t])])  # type: ignore[list-item]
    assert box.openai_tools[0]["function"]["parameters"] == {"type": "object", "properties": {}}
