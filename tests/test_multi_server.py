"""One bridge over several model servers (``LMSTUDIO_BASE_URL=URL,URL``), against two scripted LM Studios.

The bridge runs in this process (``bridge_client``); the child MCP servers are real processes.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from lmstudio_bridge.config import load_settings
from lmstudio_bridge.errors import ConfigError
from lmstudio_bridge.fleet import server_options
from tests.support.bridge import bridge_client, text_of
from tests.support.fake_lmstudio import FakeLMStudio

FIRST = "qwen/qwen3-coder-30b"
SECOND = "second/model"
SHARED = "shared/model"
TASK = '@call echo {"text": "x"}'


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def task(model: str) -> dict[str, Any]:
    return {"mcp_name": "echo", "task": TASK, "model": model}


async def test_list_models_merges_the_servers_and_says_which_has_each(
    fake: FakeLMStudio, second_fake: FakeLMStudio
) -> None:
    async with bridge_client(f"{fake.base_url},{second_fake.base_url}") as client:
        result = await client.call_tool("list_models", {})
    lines = text_of(result).splitlines()
    assert lines[0] == "Available models (4):"
    assert lines[1] == f"1. {FIRST} (loaded, llm, context 32768 of 32768, tool use, on {fake.base_url})"
    assert lines[4] == f"4. {SECOND} (loaded, llm, context 32768 of 32768, tool use, on {second_fake.base_url})"
    data = result.structured_content
    assert data["servers"] == [fake.base_url, second_fake.base_url] and data["default_model"] == FIRST
    assert [m["server"] for m in data["models"]] == [fake.base_url] * 3 + [second_fake.base_url]


async def test_each_task_goes_to_the_server_that_has_its_model(
    fake: FakeLMStudio, second_fake: FakeLMStudio, mcp_config: Path
) -> None:
    async with bridge_client(f"{fake.base_url},{second_fake.base_url}", mcp_config) as client:
        on_second = await client.call_tool("autonomous_with_mcp", task(SECOND))
        on_first = await client.call_tool("autonomous_with_mcp", task(FIRST))
        default = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": TASK})
    assert not on_second.is_error and not on_first.is_error and not default.is_error
    assert {b["model"] for b in second_fake.chat_bodies()} == {SECOND}
    assert [b["model"] for b in fake.chat_bodies()] == [FIRST] * 4


async def test_a_server_with_the_model_loaded_comes_before_one_that_must_load_it(
    fake: FakeLMStudio, second_fake: FakeLMStudio, mcp_config: Path
) -> None:
    fake.set_model(SHARED, loaded=False)
    second_fake.set_model(SHARED)
    async with bridge_client(f"{fake.base_url},{second_fake.base_url}", mcp_config) as client:
        result = await client.call_tool("autonomous_with_mcp", task(SHARED))
    assert not result.is_error
    assert fake.chat_requests() == [] and fake.count("/api/v1/models/load") == 0
    assert len(second_fake.chat_requests()) == 2


async def test_a_server_that_can_load_the_model_comes_before_one_that_cannot(
    fake: FakeLMStudio, second_fake: FakeLMStudio, mcp_config: Path
) -> None:
    fake.api_version = "v0"  # LM Studio 0.3: no load endpoint
    fake.set_model(SHARED, loaded=False)
    second_fake.set_model(SHARED, loaded=False)
    async with bridge_client(f"{fake.base_url},{second_fake.base_url}", mcp_config) as client:
        result = await client.call_tool("autonomous_with_mcp", task(SHARED))
    assert not result.is_error
    assert second_fake.count("/api/v1/models/load") == 1 and fake.chat_requests() == []


async def test_one_model_on_two_servers_serves_two_tasks_at_once(
    fake: FakeLMStudio, second_fake: FakeLMStudio, mcp_config: Path
) -> None:
    fake.set_model(SHARED)
    second_fake.set_model(SHARED)
    fake.hold_answers(until=2, timeout=60)  # the first task stays busy on the first server ...
    first_waiting = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if (message or "").startswith("round 1/"):
            first_waiting.set()

    async with bridge_client(f"{fake.base_url},{second_fake.base_url}", mcp_config) as client:
        first = asyncio.create_task(
            client.call_tool("autonomous_with_mcp", task(SHARED), progress_callback=on_progress)
        )
        await asyncio.wait_for(first_waiting.wait(), 30)
        second = await client.call_tool("autonomous_with_mcp", task(SHARED))  # ... so this one goes to the other
        fake.release_answers()
        first_result = await first
    assert not first_result.is_error and not second.is_error
    assert len(fake.chat_requests()) == 2 and len(second_fake.chat_requests()) == 2


async def test_a_server_that_is_down_is_skipped_with_a_note(
    fake: FakeLMStudio, second_fake: FakeLMStudio, mcp_config: Path
) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    async with bridge_client(f"{down},{fake.base_url},{second_fake.base_url}", mcp_config) as client:
        listed = await client.call_tool("list_models", {})
        result = await client.call_tool("autonomous_with_mcp", task(SECOND))
        health = await client.call_tool("health_check", {})
    assert not listed.is_error
    assert f"{down} skipped: Cannot reach LM Studio at {down}" in text_of(listed)
    assert listed.structured_content["default_model"] == FIRST
    assert not result.is_error
    lines = text_of(health).splitlines()
    assert lines[0] == "2 of 3 model servers reachable:"
    assert lines[1].startswith(f"- {down}: not reachable. Cannot reach LM Studio")
    assert lines[2].startswith(f"- {fake.base_url}: reachable (v1), 3 model(s), round trip ")
    data = health.structured_content
    assert data["reachable"] is True and [s["reachable"] for s in data["servers"]] == [False, True, True]


async def test_each_server_gets_its_own_key(mcp_config: Path) -> None:
    with (
        FakeLMStudio(models=[FIRST], require_api_key="key-one") as one,
        FakeLMStudio(models=[SECOND], require_api_key="key-two") as two,
    ):
        async with bridge_client(f"{one.base_url},{two.base_url}", LMSTUDIO_API_KEY="key-one,key-two") as client:
            result = await client.call_tool("list_models", {})
    assert not result.is_error and result.structured_content["notes"] == []
    assert len(result.structured_content["models"]) == 2


def test_a_key_list_that_does_not_match_the_servers_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^LMSTUDIO_API_KEY=\*\*\*: holds 2 keys for 3 servers"):
        load_settings({"LMSTUDIO_BASE_URL": "http://a:1,http://b:2,http://c:3", "LMSTUDIO_API_KEY": "x,y"})
    one_key = server_options(load_settings({"LMSTUDIO_BASE_URL": "http://a:1,http://b:2", "LMSTUDIO_API_KEY": "k"}))
    assert [o.api_key.get_secret_value() for o in one_key if o.api_key] == ["k", "k"]
    paired = server_options(load_settings({"LMSTUDIO_BASE_URL": "http://a:1/v1,http://b:2", "LMSTUDIO_API_KEY": ",k"}))
    assert [o.base_url for o in paired] == ["http://a:1", "http://b:2"]
    assert paired[0].api_key is None and paired[1].api_key is not None


async def test_a_servers_file_gives_each_server_its_address_and_key(tmp_path: Path) -> None:
    with (
        FakeLMStudio(models=[FIRST], require_api_key="key-one") as one,
        FakeLMStudio(models=[SECOND]) as two,
    ):
        servers = tmp_path / "servers.json"
        servers.write_text(
            json.dumps({"servers": [{"url": f"{one.base_url}/v1", "api_key": "key-one"}, {"url": two.base_url}]})
        )
        async with bridge_client("http://127.0.0.1:9", LMSTUDIO_BRIDGE_SERVERS=str(servers)) as client:
            result = await client.call_tool("list_models", {})
        urls = [one.base_url, two.base_url]
    assert not result.is_error, text_of(result)
    assert result.structured_content["servers"] == urls
    assert [m["server"] for m in result.structured_content["models"]] == urls
    assert "authorization" not in two.requests[0].headers


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("{", "is not JSON"),
        ('{"servers": []}', 'needs {"servers": ['),
        ('{"servers": [{"api_key": "k"}]}', 'server 1 needs a "url"'),
        ('{"servers": [{"url": "http://a:1"}, {"url": "ftp://b"}]}', "server 2: url must look like http://HOST:PORT"),
        ('{"servers": [{"url": "http://a:1", "key": "k"}]}', "server 1 has keys this file does not use: key"),
    ],
)
def test_a_bad_servers_file_is_a_configuration_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "servers.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings({"LMSTUDIO_BRIDGE_SERVERS": str(path)})
    assert str(caught.value).startswith(f"LMSTUDIO_BRIDGE_SERVERS='{path}': ")
    assert message in str(caught.value)
