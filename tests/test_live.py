"""Live end to end: a real small model (llama.cpp, Qwen2.5-Coder 0.5B with its stock template) and real MCP servers.

Opt in with ``pytest -m live``. ``scripts/llamacpp_server.py`` fetches the model (491 MB) and
serves it on 127.0.0.1; the assertions check effects and answers, not wording.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, bridge_client, echo_entry, text_of, time_entry, write_config

pytestmark = pytest.mark.live

sys.path.insert(0, str(ROOT / "scripts"))


@pytest.fixture(scope="module")
def live_llm() -> Iterator[tuple[str, str]]:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.fail("xllamacpp is not installed: pip install xllamacpp==2026.10.11549")
    from llamacpp_server import start_server

    with start_server(model="0.5b", timeout=1800, extra_args=["--n-predict", "384"]) as (base_url, model_id):
        yield base_url, model_id


def config(tmp_path: Path) -> Path:
    files = tmp_path / "files"
    files.mkdir(exist_ok=True)
    (files / "inventory.txt").write_text("apples: 17\npears: 4\n")
    return write_config(tmp_path / "mcp.json", {"time": time_entry(), "files": echo_entry("files", root=files)})


LIVE_ENV = {"LMSTUDIO_BRIDGE_REQUEST_TIMEOUT": "300", "LMSTUDIO_BRIDGE_MAX_ROUNDS": "4"}


async def test_time_in_a_zone(live_llm: tuple[str, str], tmp_path: Path) -> None:
    base_url, _ = live_llm
    async with bridge_client(base_url, config(tmp_path), read_timeout=600, **LIVE_ENV) as client:
        result = await client.call_tool(
            "autonomous_with_mcp",
            {"mcp_name": "time", "task": "What is the current time in the Asia/Tokyo timezone? Use the tool."},
        )
    assert not result.is_error, text_of(result)
    calls = result.structured_content["tool_calls"]
    assert any(c["name"] == "time.get_current_time" and c["ok"] for c in calls)
    assert re.search(r"\d{1,2}:\d{2}", text_of(result))


async def test_a_sum(live_llm: tuple[str, str], tmp_path: Path) -> None:
    base_url, _ = live_llm
    async with bridge_client(base_url, config(tmp_path), read_timeout=600, **LIVE_ENV) as client:
        result = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "files", "task": "Use the add tool to add 1234 and 4321. Report the sum."}
        )
    assert not result.is_error, text_of(result)
    assert any(c["name"] == "files.add" and c["ok"] for c in result.structured_content["tool_calls"])
    assert "5555" in text_of(result)


async def test_a_file_read(live_llm: tuple[str, str], tmp_path: Path) -> None:
    base_url, _ = live_llm
    async with bridge_client(base_url, config(tmp_path), read_timeout=600, **LIVE_ENV) as client:
        result = await client.call_tool(
            "autonomous_with_mcp",
            {"mcp_name": "files", "task": "Read the file inventory.txt with read_file and tell me how many apples there are."},
        )
    assert not result.is_error, text_of(result)
    assert any(c["name"] == "files.read_file" and c["ok"] for c in result.structured_content["tool_calls"])
    assert "17" in text_of(result)
