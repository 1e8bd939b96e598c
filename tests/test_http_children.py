"""A child MCP server reached over streamable HTTP (``"type": "http"`` entries)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bridge import bridge_client, text_of
from tests.support.common import http_echo_server, write_config
from tests.support.fake_lmstudio import FakeLMStudio


@pytest.fixture
def http_echo() -> Iterator[str]:
    with http_echo_server("web") as url:
        yield url


async def test_http_entry_is_used(fake: FakeLMStudio, tmp_path: Path, http_echo: str) -> None:
    config = write_config(
        tmp_path / "mcp.json",
        {"web": {"type": "http", "url": http_echo, "headers": {"X-Token": "${WEB_TOKEN:-none}"}}},
    )
    async with bridge_client(fake.base_url, config) as client:
        listing = await client.call_tool("list_mcps", {})
        result = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "web", "task": '@call echo {"text": "over http"}'}
        )
    (entry,) = listing.structured_content["mcps"]
    assert (entry["transport"], entry["url"], entry["usable"]) == ("http", http_echo, True)
    assert not result.is_error, text_of(result)
    assert text_of(result).endswith("last=over http")
