"""The foundation as an MCP host sees it: list_models, health_check and model validation.

The bridge runs in this process (``bridge_client``); tests/test_stdio.py covers the same tools over a real pipe.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.support.bridge import bridge_client, text_of
from tests.support.fake_lmstudio import FakeLMStudio


async def test_list_models_text_and_structure(fake: FakeLMStudio) -> None:
    async with bridge_client(fake.base_url) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {
            "list_models",
            "health_check",
            "list_mcps",
            "autonomous_with_mcp",
            "autonomous_with_multiple_mcps",
        } <= tools
        result = await client.call_tool("list_models", {})
    assert not result.is_error
    assert text_of(result).splitlines()[:4] == [
        "Available models (3):",
        "1. qwen/qwen3-coder-30b (loaded, llm, context 32768 of 32768, tool use)",
        "2. mistralai/magistral-small-2509 (loaded, llm, context 32768 of 32768, tool use)",
        "3. deepseek/deepseek-coder-33b (loaded, llm, context 32768 of 32768, tool use)",
    ]
    data = result.structured_content
    assert data["default_model"] == "qwen/qwen3-coder-30b"
    assert [m["id"] for m in data["models"]] == [
        "qwen/qwen3-coder-30b",
        "mistralai/magistral-small-2509",
        "deepseek/deepseek-coder-33b",
    ]
    assert [m["is_default"] for m in data["models"]] == [True, False, False]


async def test_no_models_loaded_says_how_to_load_one() -> None:
    with FakeLMStudio(models=[]) as fake:
        async with bridge_client(fake.base_url) as client:
            result = await client.call_tool("list_models", {})
    assert "No models are loaded" in text_of(result) and "lms load" in text_of(result)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_lmstudio_is_a_clear_error_and_the_bridge_keeps_serving() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with bridge_client(url) as client:
        started = time.monotonic()
        result = await client.call_tool("list_models", {})
        assert time.monotonic() - started < 10
        assert result.is_error
        text = text_of(result)
        assert text.startswith(f"Error: Cannot reach LM Studio at {url}")
        assert "Developer tab" in text and "lms server start" in text
        health = await client.call_tool("health_check", {})
        assert not health.is_error and health.structured_content["reachable"] is False


async def test_health_check(fake: FakeLMStudio) -> None:
    async with bridge_client(fake.base_url) as client:
        result = await client.call_tool("health_check", {})
    data = result.structured_content
    assert data["reachable"] is True and data["base_url"] == fake.base_url
    assert data["model_count"] == 3 and data["round_trip_ms"] >= 0
    assert "reachable, 3 model(s)" in text_of(result)


async def test_unknown_model_exact_error_before_any_chat_request(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "echo", "task": "task", "model": "nonexistent-model"}
        )
    assert result.is_error
    assert text_of(result) == (
        "Error: Model 'nonexistent-model' not found. Available models: "
        "qwen/qwen3-coder-30b, mistralai/magistral-small-2509, deepseek/deepseek-coder-33b"
    )
    assert fake.chat_requests() == []


async def test_api_key_is_sent(mcp_config: Path) -> None:
    with FakeLMStudio(models=["m"], require_api_key="tok-123") as fake:
        async with bridge_client(fake.base_url, mcp_config, LM_API_TOKEN="tok-123") as client:
            ok = await client.call_tool("list_models", {})
        async with bridge_client(fake.base_url, mcp_config) as client:
            refused = await client.call_tool("list_models", {})
    assert not ok.is_error
    assert refused.is_error and "LMSTUDIO_API_KEY" in text_of(refused)
    assert "tok-123" not in text_of(refused)
