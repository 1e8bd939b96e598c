"""LM Studio as a platform, against the scripted LM Studio: model state, loading on demand, load and
unload, the context window, and images for vision models.

The bridge runs in this process (``bridge_client``); the child MCP servers are real processes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from lmstudio_bridge.config import Settings
from lmstudio_bridge.context_window import FIRST_CHARS_PER_TOKEN
from lmstudio_bridge.errors import InvalidRequest
from lmstudio_bridge.service import Bridge
from tests.support.bridge import bridge_client, text_of
from tests.support.common import ECHO_SERVER, GUIDE_MODELS, echo_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio, _prompt_tokens

CODING, REASONING, OTHER = GUIDE_MODELS
COLD = "google/gemma-3-12b"


def progress_log() -> tuple[list[str], Any]:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    return seen, on_progress


async def quiet(_: str) -> None:
    pass


# ----------------------------------------------------------------------------- model state


async def test_list_models_shows_state_context_and_capabilities(fake: FakeLMStudio) -> None:
    fake.set_model(CODING, context_length=8192, max_context_length=262144)
    fake.set_model(REASONING, vision=True, reasoning=True, max_context_length=131072, loaded=False)
    fake.set_model(OTHER, tool_use=False, context_length=16384, max_context_length=16384)
    fake.embedding_models.add("nomic-embed-text")
    async with bridge_client(fake.base_url) as client:
        result = await client.call_tool("list_models", {})
    assert text_of(result).splitlines() == [
        "Available models (3):",
        f"1. {CODING} (loaded, llm, context 8192 of 262144, tool use)",
        f"2. {REASONING} (not loaded, vlm, max context 131072, tool use, vision, reasoning)",
        f"3. {OTHER} (loaded, llm, context 16384 of 16384)",
        "",
        f"Default model: {CODING}",
    ]
    first = result.structured_content["models"][0]
    assert first["context_length"] == 8192 and first["max_context_length"] == 262144
    assert first["capabilities"] == ["tool_use"] and first["loaded"] is True and first["type"] == "llm"
    assert fake.counts()["/api/v1/models"] == 1 and fake.count("/api/v0/models") == 0


async def test_embedding_models_are_never_the_default(fake: FakeLMStudio) -> None:
    fake.models.insert(0, "text-embedding-nomic-embed-text-v1.5")
    fake.embedding_models.add("text-embedding-nomic-embed-text-v1.5")
    fake.not_loaded.add(CODING)
    async with bridge_client(fake.base_url) as client:
        result = await client.call_tool("list_models", {})
    assert result.structured_content["default_model"] == REASONING  # the first loaded chat model
    assert "embed" not in text_of(result)


@pytest.mark.parametrize(
    ("version", "line", "asked"),
    [
        ("v0", f"1. {CODING} (loaded, llm, max context 32768)", ["/api/v1/models", "/api/v0/models"]),
        ("openai", f"1. {CODING}", ["/api/v1/models", "/api/v0/models", "/v1/models"]),
    ],
)
async def test_older_servers_are_asked_once_per_listing_and_remembered(
    fake: FakeLMStudio, version: str, line: str, asked: list[str]
) -> None:
    fake.api_version = version  # type: ignore[assignment]
    async with bridge_client(fake.base_url) as client:
        first = await client.call_tool("list_models", {})
        await client.call_tool("list_models", {})
    assert text_of(first).splitlines()[1] == line
    listing_paths = [r.path for r in fake.requests if r.method == "GET"]
    assert listing_paths == [*asked, asked[-1]]  # the second listing goes straight to the one that answered


# ----------------------------------------------------------------------------- loading on demand


async def test_a_task_on_a_model_that_is_not_loaded_loads_it_first_with_progress(
    fake: FakeLMStudio, mcp_config: Path
) -> None:
    fake.set_model(COLD, loaded=False, max_context_length=8192)
    seen, on_progress = progress_log()
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(
            "autonomous_with_mcp",
            {"mcp_name": "echo", "task": '@call echo {"text": "x"}', "model": COLD},
            progress_callback=on_progress,
        )
        listed = await client.call_tool("list_models", {})
    assert not result.is_error, text_of(result)
    assert [r.json for r in fake.requests if r.path == "/api/v1/models/load"] == [
        {"model": COLD, "context_length": 8192}  # the setting (16384), within the model's maximum
    ]
    assert "loading google/gemma-3-12b with a context of 8,192 tokens" in seen
    assert "loaded google/gemma-3-12b in 0.1 s" in seen
    loaded_at = next(i for i, r in enumerate(fake.requests) if r.path == "/api/v1/models/load")
    assert all(i > loaded_at for i, r in enumerate(fake.requests) if r.path == "/v1/chat/completions")
    assert f"{COLD} (loaded, llm, context 8192 of 8192, tool use)" in text_of(listed)


async def test_concurrent_tasks_on_one_unloaded_model_load_it_once(fake: FakeLMStudio, mcp_config: Path) -> None:
    fake.set_model(COLD, loaded=False)
    fake.hold_loads()
    logs: list[list[str]] = [[], []]
    both_waiting = asyncio.Event()

    def watcher(log: list[str]) -> Any:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            log.append(message or "")
            if all(any(m.startswith(("loading", "waiting for google")) for m in entry) for entry in logs):
                both_waiting.set()

        return on_progress

    async def release_when_both_wait() -> None:
        await asyncio.wait_for(both_waiting.wait(), 30)
        fake.release_loads()

    async with bridge_client(fake.base_url, mcp_config) as client:
        args = {"mcp_name": "echo", "task": '@call echo {"text": "x"}', "model": COLD}
        first, second, _ = await asyncio.gather(
            client.call_tool("autonomous_with_mcp", args, progress_callback=watcher(logs[0])),
            client.call_tool("autonomous_with_mcp", args, progress_callback=watcher(logs[1])),
            release_when_both_wait(),
        )
    assert not first.is_error and not second.is_error
    assert fake.count("/api/v1/models/load") == 1
    assert sorted(m for log in logs for m in log if m.startswith(("loading google", "waiting for google"))) == [
        "loading google/gemma-3-12b with a context of 16,384 tokens",
        "waiting for google/gemma-3-12b to load",
    ]


async def test_a_failed_load_says_lm_studios_own_reason(fake: FakeLMStudio, mcp_config: Path) -> None:
    fake.set_model(COLD, loaded=False)
    reason = "Failed to load model: not enough memory for google/gemma-3-12b at 16384 tokens of context"
    fake.load_failures[COLD] = (500, {"error": reason})
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "model": COLD})
    assert result.is_error
    assert text_of(result) == f"Error: LM Studio at {fake.base_url} could not load {COLD}: {reason}"
    assert fake.chat_requests() == []


async def test_load_and_unload_tools(fake: FakeLMStudio) -> None:
    fake.set_model(COLD, loaded=False, max_context_length=32768)
    async with bridge_client(fake.base_url) as client:
        too_big = await client.call_tool("load_model", {"model": COLD, "context_length": 100000})
        loaded = await client.call_tool("load_model", {"model": COLD, "context_length": 12288})
        again = await client.call_tool("load_model", {"model": COLD})
        other = await client.call_tool("load_model", {"model": COLD, "context_length": 4096})
        unloaded = await client.call_tool("unload_model", {"model": COLD})
        nothing = await client.call_tool("unload_model", {"model": COLD})
        unknown = await client.call_tool("unload_model", {"model": "no/such-model"})
    assert too_big.is_error and "between 512 and 32,768" in text_of(too_big)
    assert text_of(loaded) == f"Loaded {COLD} on {fake.base_url} with a context of 12,288 tokens in 0.1 s."
    assert loaded.structured_content["instance_id"] == COLD
    assert text_of(again) == f"{COLD} is loaded already on {fake.base_url} with a context of 12,288 tokens."
    assert other.is_error and "Unload it (unload_model) first" in text_of(other)
    assert text_of(unloaded) == f"Unloaded {COLD} on {fake.base_url}."
    assert nothing.is_error and "is not loaded" in text_of(nothing)
    assert unknown.is_error and text_of(unknown).startswith("Error: Model 'no/such-model' not found.")
    assert [r.json for r in fake.requests if r.path == "/api/v1/models/unload"] == [{"instance_id": COLD}]


async def test_a_model_in_use_is_never_unloaded(fake: FakeLMStudio) -> None:
    async with Bridge(Settings(base_url=fake.base_url)) as bridge:
        route = await bridge.fleet.route(CODING)
        async with bridge.fleet.use(route, quiet):
            with pytest.raises(InvalidRequest, match="in use by 1 running task"):
                await bridge.unload_model(CODING)
        await bridge.unload_model(CODING)
    assert fake.count("/api/v1/models/unload") == 1


async def test_lm_studio_03_loads_just_in_time(fake: FakeLMStudio, mcp_config: Path) -> None:
    fake.api_version = "v0"
    fake.set_model(COLD, loaded=False)
    seen, on_progress = progress_log()
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "model": COLD}, progress_callback=on_progress
        )
    assert not result.is_error
    assert f"{COLD} is not loaded; the server loads it with the first request" in seen
    assert fake.count("/api/v1/models/load") == 0


# ----------------------------------------------------------------------------- the context window

BIG_RESULTS = '@call big {"chars": 20000}\n@call big {"chars": 20001}\n@call big {"chars": 20002}\n@answer done'


async def test_three_large_tool_results_fit_a_4096_token_context(fake: FakeLMStudio, mcp_config: Path) -> None:
    fake.set_model(CODING, context_length=4096)
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": BIG_RESULTS})
    assert not result.is_error, text_of(result)
    data = result.structured_content
    assert data["answer"] == "done" and [c["ok"] for c in data["tool_calls"]] == [True, True, True]
    bodies = fake.chat_bodies()
    assert len(bodies) == 4  # one per round: no request was refused as too long
    assert all(_prompt_tokens(b["messages"], b.get("tools")) <= 4096 for b in bodies)
    tool_messages = [m for m in bodies[-1]["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 3 and all(m["content"].startswith("0123456789") for m in tool_messages)
    assert "characters cut to fit qwen/qwen3-coder-30b's context of 4,096 tokens]" in tool_messages[0]["content"]
    calls = [m for m in bodies[-1]["messages"] if m.get("tool_calls")]
    assert [json.loads(m["tool_calls"][0]["function"]["arguments"]) for m in calls] == [
        {"chars": 20000},
        {"chars": 20001},
        {"chars": 20002},
    ]


async def test_a_refused_request_is_shortened_further_and_sent_once_more(fake: FakeLMStudio, mcp_config: Path) -> None:
    fake.set_model(CODING, context_length=4096)
    async with bridge_client(fake.base_url, mcp_config) as client:
        await client.call_tool("list_models", {})  # the bridge now believes 4096 tokens
        fake.set_model(CODING, context_length=3000)  # ... but the server holds fewer
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": BIG_RESULTS})
    assert not result.is_error, text_of(result)
    bodies = fake.chat_bodies()
    assert len(bodies) == 5  # one round was refused and sent again, shorter
    assert _prompt_tokens(bodies[-1]["messages"], bodies[-1].get("tools")) <= 3000


async def test_a_conversation_that_cannot_fit_fails_naming_the_context_and_the_fix(
    fake: FakeLMStudio, mcp_config: Path
) -> None:
    fake.set_model(CODING, context_length=4096)
    fake.overflow_style = "llamacpp"
    async with bridge_client(fake.base_url, mcp_config) as client:
        await client.call_tool("list_models", {})
        fake.set_model(CODING, context_length=300)  # less than the tool list alone
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": BIG_RESULTS})
    assert result.is_error
    text = text_of(result)
    assert text.startswith(f"Error: The conversation with {CODING} at {fake.base_url} does not fit its context of 300")
    assert f"`lms load {CODING} --context-length 8192`" in text and "LM Studio's settings" in text
    assert len(fake.chat_bodies()) == 1  # refused once; the second, known to overflow, was never sent


async def test_tasks_on_one_model_share_its_client_and_a_reload_gives_it_the_new_context(fake: FakeLMStudio) -> None:
    fake.set_model(CODING, context_length=8192, max_context_length=32768)
    fake.set_model(REASONING, vision=True)
    async with Bridge(Settings(base_url=fake.base_url)) as bridge:
        fleet = bridge.fleet
        async with (
            fleet.use(await fleet.route(CODING), quiet) as first,
            fleet.use(await fleet.route(CODING), quiet) as second,
        ):
            assert second is first and first.context_length == 8192 and not first.sees_images
        async with fleet.use(await fleet.route(REASONING), quiet) as other:
            assert other is not first and other.sees_images and other.model == REASONING
        await bridge.unload_model(CODING)
        await bridge.load_model(CODING, context_length=4096)
        async with fleet.use(await fleet.route(CODING), quiet) as again:
            assert again is first and again.context_length == 4096
        assert set(fleet.primary.clients) == {CODING, REASONING}


async def test_each_task_shortens_only_its_own_conversation_on_the_shared_client(fake: FakeLMStudio) -> None:
    fake.set_model(CODING, context_length=4096)

    def conversation(result_chars: int) -> list[dict[str, Any]]:
        return [
            {"role": "user", "content": "the task"},
            {"role": "tool", "tool_call_id": "0", "content": "x" * result_chars},
        ]

    async with (
        Bridge(Settings(base_url=fake.base_url)) as bridge,
        bridge.fleet.use(await bridge.fleet.route(CODING), quiet) as llm,
    ):
        long, short = conversation(20_000), conversation(2_000)
        long_window, short_window = llm.window(reply_tokens=1024), llm.window(reply_tokens=1024)
        await llm.complete(long, window=long_window)
        long_window.fit(long, None, tighter=True)  # as after the server refused it
        await llm.complete(short, window=short_window)
    assert "characters cut to fit" in long[1]["content"] and short[1]["content"] == "x" * 2_000
    assert short_window.budget == llm.window(reply_tokens=1024).budget == 4096 - 1024
    assert long_window.budget is not None and long_window.budget < 4096 - 1024
    # the server's count of characters per token is the model's, and the next task starts from it
    assert llm.chars_per_token == short_window.chars_per_token != FIRST_CHARS_PER_TOKEN


# ----------------------------------------------------------------------------- images


@pytest.fixture
def screenshot_config(tmp_path: Path) -> Path:
    entry = {"command": sys.executable, "args": [ECHO_SERVER, "--name", "screen", "--screenshot"]}
    return write_config(tmp_path / "mcp.json", {"screen": entry, "echo": echo_entry()})


async def test_a_vision_model_gets_tool_images_as_image_parts(fake: FakeLMStudio, screenshot_config: Path) -> None:
    fake.set_model(REASONING, vision=True)
    async with bridge_client(fake.base_url, screenshot_config) as client:
        result = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "screen", "task": "@call screenshot", "model": REASONING}
        )
    assert not result.is_error, text_of(result)
    messages = fake.chat_bodies()[-1]["messages"]
    tool, shown = messages[-2], messages[-1]
    assert tool["role"] == "tool" and tool["content"].startswith("a screenshot of the login page\n[image: image/png")
    assert shown["role"] == "user"
    assert shown["content"][1:] == [
        {"type": "text", "text": "Image 1, from screen.screenshot:"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + TINY_PNG}},
    ]


async def test_other_models_get_the_placeholder_only(fake: FakeLMStudio, screenshot_config: Path) -> None:
    async with bridge_client(fake.base_url, screenshot_config) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "screen", "task": "@call screenshot"})
    assert not result.is_error
    body = json.dumps(fake.chat_bodies())
    assert "[image: image/png, " in body and "image_url" not in body and "base64" not in body


TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
