"""A child MCP server reached over streamable HTTP (``"type": "http"`` entries)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ECHO_SERVER, bridge_client, text_of, write_config
from tests.fakes.fake_lmstudio import FakeLMStudio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_echo(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, ECHO_SERVER, "--name", "web", "--http-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the HTTP echo server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_http_entry_is_used(fake: FakeLMStudio, tmp_path: Path, http_echo: str) -> None:
    config = write_config(
        tmp_path / "mcp.json",
        {"web": {"type": "http", "url": http_echo, "headers": {"X-Token": "${WEB_TOKEN:-none}"}}},
    )
    async with bridge_client(fake.base_url, config) as client:
        listing = await client.call_tool("list_mcps", {})
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "web", "task": '@call echo {"text": "over http"}'})
    (entry,) = listing.structured_content["mcps"]
    assert (entry["transport"], entry["url"], entry["usable"]) == ("http", http_echo, True)
    assert not result.is_error, text_of(result)
    assert text_of(result).endswith("last=over http")
