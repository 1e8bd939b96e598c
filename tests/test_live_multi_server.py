"""Live: one bridge over two real llama.cpp servers, each serving a different small model.

Opt in with ``pytest -m live_servers -n 0`` (not in CI's live group: it fetches and runs the 1.5B as well). ``lmstudio_bridge.llamacpp`` serves
Qwen2.5-Coder 0.5B on one port and 1.5B on another; the bridge gets both addresses in
``LMSTUDIO_BASE_URL``. ``list_models`` must show each model with its server, and a task naming
each model must run on the server that has it (the bridge logs ``Using model: ID on URL``), with
the published ``mcp-server-time`` as the tool server.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from tests.support.bridge import bridge_client, text_of
from tests.support.common import time_entry, write_config

TASK = "What is the current time in UTC? Use the time tool."


@pytest.mark.live_servers
async def test_two_llamacpp_servers_behind_one_bridge(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.fail("xllamacpp is not installed: pip install -e '.[dev,live]'")
    from lmstudio_bridge.llamacpp import start_server_async

    config = write_config(tmp_path / "mcp.json", {"time": time_entry()})
    async with (
        start_server_async(model="0.5b", ctx=4096, timeout=1800) as (small_url, small),
        start_server_async(model="1.5b", ctx=4096, timeout=1800) as (large_url, large),
    ):
        small_base, large_base = small_url.removesuffix("/v1"), large_url.removesuffix("/v1")
        env = {"LMSTUDIO_BRIDGE_TEMPERATURE": "0", "LMSTUDIO_BRIDGE_MAX_TOKENS": "256"}
        caplog.set_level(logging.INFO, logger="lmstudio_bridge")
        async with bridge_client(f"{small_url},{large_url}", config, read_timeout=600, **env) as client:
            listed = await client.call_tool("list_models", {})
            health = await client.call_tool("health_check", {})
            results = {}
            for model in (small, large):
                results[model] = await client.call_tool(
                    "autonomous_with_mcp", {"mcp_name": "time", "task": TASK, "model": model}
                )
    lines = text_of(listed).splitlines()
    assert f"1. {small} (on {small_base})" in lines and f"2. {large} (on {large_base})" in lines, lines
    assert text_of(health).startswith("2 of 2 model servers reachable:")
    for model, base in ((small, small_base), (large, large_base)):
        result = results[model]
        assert not result.is_error, text_of(result)
        assert result.structured_content["model"] == model
        assert f"Using model: {model} on {base}" in caplog.text
        print(f"\n{model} on {base}: {result.structured_content['tool_calls']}\nanswer: {text_of(result)[:300]}")
