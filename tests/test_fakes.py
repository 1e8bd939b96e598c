"""The test doubles behave as documented: the fake LM Studio's cues and faults, and the echo MCP server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
from mcp import Client, StdioServerParameters

from tests.support import echo_server
from tests.support.common import ECHO_SERVER
from tests.support.common import ROOT as REPO
from tests.support.fake_lmstudio import NO_MODELS_LOADED, FakeLMStudio, parse_cues, resolve_tool

MODEL = "qwen/qwen3-coder-30b"
TOOLS = ["time__get_current_time", "echo", "add", "a__read_file", "b__read_file", "big_2"]


def offered(*names: str) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in names]


def chat_body(
    task: str, *, tools: list[str] | None = TOOLS, history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": task}, *(history or [])],
    }
    if tools:
        body["tools"] = offered(*tools)
    return body


def answer_turn(message: dict[str, Any], result: str = "ok") -> list[dict[str, Any]]:
    """The assistant message plus one tool message per call, as an agent loop would append them."""
    turn = [message]
    for call in message.get("tool_calls") or []:
        turn.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    return turn


@pytest.fixture
async def fake() -> AsyncIterator[FakeLMStudio]:
    async with FakeLMStudio(models=[MODEL, "other/model"], embedding_models=["nomic-embed"]) as server:
        yield server


@pytest.fixture
async def http(fake: FakeLMStudio) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, timeout=10) as client:
        yield client


async def chat(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# ----------------------------------------------------------------------------- models


async def test_model_listings(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    openai = (await http.get("/v1/models")).json()
    assert openai["object"] == "list"
    assert [m["id"] for m in openai["data"]] == [MODEL, "other/model", "nomic-embed"]
    native = {m["id"]: m for m in (await http.get("/api/v0/models")).json()["data"]}
    assert native[MODEL]["type"] == "llm" and native[MODEL]["state"] == "loaded"
    assert native["nomic-embed"]["type"] == "embeddings"
    fake.models.append("late/model")
    fake.not_loaded.add("late/model")
    one = (await http.get("/api/v0/models/late/model")).json()
    assert one["state"] == "not-loaded"
    assert (await http.get("/api/v0/models/nope")).status_code == 404
    fake.missing_paths.add("/api/v0/models")
    assert (await http.get("/api/v0/models")).status_code == 404
    assert fake.counts()["/api/v0/models"] == 2


async def test_unknown_and_embedding_models_are_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={**chat_body("hi"), "model": "nope"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_found"
    response = await http.post("/v1/chat/completions", json={**chat_body("hi"), "model": "nomic-embed"})
    assert response.status_code == 400 and isinstance(response.json()["error"], str)


# ----------------------------------------------------------------------------- cues


async def test_a_task_scripts_a_whole_run(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    task = 'What time is it?\n@call get_current_time {"timezone": "UTC"}\n@call echo {"text": "second"}\n'
    first = await chat(http, chat_body(task))
    assert first["model"] == MODEL and first["object"] == "chat.completion"
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} <= first["usage"].keys()
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "time__get_current_time"
    assert json.loads(call["function"]["arguments"]) == {"timezone": "UTC"}

    history = answer_turn(choice["message"], "12:00 UTC")
    second = (await chat(http, chat_body(task, history=history)))["choices"][0]
    assert second["message"]["tool_calls"][0]["function"]["name"] == "echo"
    assert second["message"]["tool_calls"][0]["id"] != call["id"]

    history += answer_turn(second["message"], "second")
    final = (await chat(http, chat_body(task, history=history)))["choices"][0]
    assert final["finish_reason"] == "stop" and "tool_calls" not in final["message"]
    assert final["message"]["content"] == f"FINAL model={MODEL} tools=2 last=second"
    assert len(fake.chat_requests()) == 3
    assert fake.last_chat()["messages"][-1]["content"] == "second"


async def test_parallel_calls(http: httpx.AsyncClient) -> None:
    task = '@call echo {"text": "a; b"}; add {"a": 1, "b": 2}\n@and time.get_current_time\n'
    calls = (await chat(http, chat_body(task)))["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["echo", "add", "time__get_current_time"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"text": "a; b"}
    assert json.loads(calls[2]["function"]["arguments"]) == {}
    assert len({c["id"] for c in calls}) == 3


async def test_text_tag_and_bad_json_calls(http: httpx.AsyncClient) -> None:
    task = '@textcall echo {"text": "hi"}\n@tagcall add {"a": 1, "b": 2}\n@badjson echo {"text": \n'
    message = (await chat(http, chat_body(task)))["choices"][0]
    assert message["finish_reason"] == "stop" and "tool_calls" not in message["message"]
    content = message["message"]["content"]
    assert content.startswith("```json\n") and content.endswith("\n```")
    assert json.loads(content[len("```json\n") : -len("\n```")]) == {"name": "echo", "arguments": {"text": "hi"}}

    history = answer_turn(message["message"])
    tagged = (await chat(http, chat_body(task, history=history)))["choices"][0]["message"]["content"]
    assert tagged.startswith("<tool_call>") and tagged.endswith("</tool_call>")
    assert json.loads(tagged.removeprefix("<tool_call>").removesuffix("</tool_call>"))["arguments"] == {"a": 1, "b": 2}

    history.append({"role": "assistant", "content": tagged})
    bad = (await chat(http, chat_body(task, history=history)))["choices"][0]
    assert bad["finish_reason"] == "tool_calls"
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad["message"]["tool_calls"][0]["function"]["arguments"])


async def test_thinking_and_custom_answer(http: httpx.AsyncClient) -> None:
    task = '@think plan first\n@call echo {"text": "x"}\n@thinktag hmm\n@answer done: {last} by {model}\n'
    first = (await chat(http, chat_body(task)))["choices"][0]["message"]
    assert first["reasoning_content"] == "plan first"
    final = (await chat(http, chat_body(task, history=answer_turn(first, "echoed"))))["choices"][0]["message"]
    assert final["content"] == f"<think>hmm</think>\ndone: echoed by {MODEL}"
    assert "reasoning_content" not in final


async def test_empty_answer_with_reasoning(http: httpx.AsyncClient) -> None:
    message = (await chat(http, chat_body("@think the answer is 4\n@answer")))["choices"][0]["message"]
    assert message["content"] == "" and message["reasoning_content"] == "the answer is 4"


async def test_repeat_and_loop(http: httpx.AsyncClient) -> None:
    async def rounds_until_final(task: str, limit: int) -> int:
        history: list[dict[str, Any]] = []
        for n in range(limit):
            message = (await chat(http, chat_body(task, history=history)))["choices"][0]["message"]
            if not message.get("tool_calls"):
                return n
            history += answer_turn(message)
        return limit

    assert await rounds_until_final('@call echo {"text": "x"}\n@repeat 3', 10) == 4
    assert await rounds_until_final('@call add {"a": 1, "b": 1}\n@loop', 8) == 8


async def test_no_tools_means_summary(http: httpx.AsyncClient) -> None:
    history = [
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "1", "content": "r"},
    ]
    message = await chat(http, chat_body("@call echo", tools=None, history=history))
    assert message["choices"][0]["message"]["content"] == f"SUMMARY model={MODEL} tools=1 last=r"
    body = {**chat_body("@call echo"), "tool_choice": "none"}
    assert (await chat(http, body))["choices"][0]["message"]["content"].startswith("SUMMARY ")


async def test_unknown_cue_is_a_clear_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json=chat_body("@frobnicate now"))
    assert response.status_code == 400 and "@frobnicate" in response.json()["error"]


def test_tool_resolution() -> None:
    assert resolve_tool("echo", TOOLS) == "echo"
    assert resolve_tool("get_current_time", TOOLS) == "time__get_current_time"
    assert resolve_tool("time.get_current_time", TOOLS) == "time__get_current_time"
    assert resolve_tool("b.read_file", TOOLS) == "b__read_file"
    assert resolve_tool("read_file", TOOLS) == "a__read_file"
    assert resolve_tool("big", TOOLS) == "big_2"
    assert resolve_tool("dotted.echo", ["dotted_echo", "echo"]) == "dotted_echo"
    assert resolve_tool("missing", TOOLS) == "missing"


def test_cue_parsing_ignores_prose() -> None:
    script = parse_cues('Please help.\nEmail me @ home.\n  @call echo {"text": "@call inside"}\n')
    assert len(script.rounds) == 1 and script.rounds[0].calls[0].name == "echo"


# ----------------------------------------------------------------------------- streaming


async def test_streaming_tool_call_reassembles(http: httpx.AsyncClient) -> None:
    body = {
        **chat_body('@call echo {"text": "streamed words here"}'),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    calls: dict[int, dict[str, str]] = {}
    finish, usage = None, None
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk["choices"]:
                finish = choice["finish_reason"] or finish
                for piece in choice["delta"].get("tool_calls") or []:
                    slot = calls.setdefault(piece["index"], {"name": "", "arguments": ""})
                    slot["name"] += piece.get("function", {}).get("name", "")
                    slot["arguments"] += piece.get("function", {}).get("arguments", "")
    assert finish == "tool_calls" and usage is not None
    assert calls[0]["name"] == "echo" and json.loads(calls[0]["arguments"]) == {"text": "streamed words here"}


# ----------------------------------------------------------------------------- faults


async def test_fail_next_then_recover(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.fail_next(503, times=2, headers={"Retry-After": "0"})
    for _ in range(2):
        response = await http.post("/v1/chat/completions", json=chat_body("hi"))
        assert response.status_code == 503 and response.headers["retry-after"] == "0"
    assert (await http.post("/v1/chat/completions", json=chat_body("hi"))).status_code == 200
    assert fake.count("/v1/chat/completions") == 3


async def test_no_models_loaded_error(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.no_models_loaded_next()
    response = await http.post("/v1/chat/completions", json=chat_body("hi"))
    assert response.status_code == 400 and response.json() == NO_MODELS_LOADED


async def test_garbage_drop_and_hang(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.garbage_next()
    response = await http.post("/v1/chat/completions", json=chat_body("hi"))
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()

    fake.drop_next()
    with pytest.raises(httpx.TransportError):
        await http.post("/v1/chat/completions", json=chat_body("hi"))

    fake.hang_next()
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/v1/chat/completions", json=chat_body("hi"), timeout=0.5)
    assert time.monotonic() - started < 3
    assert (await http.post("/v1/chat/completions", json=chat_body("hi"))).status_code == 200


async def test_faults_can_target_model_listing(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.fail_next(500, {"error": "boom"}, path="/api/v0/models")
    assert (await http.get("/api/v0/models")).status_code == 500
    assert (await http.post("/v1/chat/completions", json=chat_body("hi"))).status_code == 200
    assert (await http.get("/api/v0/models")).status_code == 200


async def test_api_key(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.require_api_key = "secret"
    assert (await http.get("/v1/models")).status_code == 401
    assert (await http.get("/v1/models", headers={"Authorization": "Bearer wrong"})).status_code == 401
    response = await http.get("/v1/models", headers={"Authorization": "Bearer secret"})
    assert response.status_code == 200
    assert fake.requests[-1].headers["authorization"] == "Bearer secret"


async def test_latency_overlaps_concurrent_requests(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.latency = 0.4
    started = time.monotonic()
    results = await asyncio.gather(*(chat(http, chat_body("hi")) for _ in range(4)))
    assert time.monotonic() - started < 1.55  # one after another they would take at least 1.6 s
    assert len({r["id"] for r in results}) == 4
    assert fake.max_in_flight == 4


async def test_held_answers_go_once_enough_requests_wait(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.hold_answers(until=3)
    results = await asyncio.gather(*(chat(http, chat_body("hi")) for _ in range(3)))
    assert len({r["id"] for r in results}) == 3 and fake.max_in_flight == 3
    await chat(http, chat_body("hi"))  # the gate stays open
    fake.reset()
    fake.hold_answers(until=2, timeout=0.3)
    started = time.monotonic()
    alone = await chat(http, chat_body("hi"))  # nobody joins it: it goes after the timeout
    assert time.monotonic() - started >= 0.3
    assert alone["choices"][0]["finish_reason"] == "stop" and fake.max_in_flight == 1


async def test_delay_cue_and_models_latency(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    await chat(http, chat_body("@delay 0.3"))
    assert time.monotonic() - started >= 0.3
    fake.models_latency = 0.3
    started = time.monotonic()
    await http.get("/v1/models")
    assert time.monotonic() - started >= 0.3


def test_sync_use_and_custom_responder() -> None:
    with FakeLMStudio(models=[]) as fake:
        fake.responder = lambda body: {"choices": [{"message": {"role": "assistant", "content": "custom"}}]}
        response = httpx.post(f"{fake.base_url}/v1/chat/completions", json=chat_body("hi"), timeout=5)
        assert response.json()["choices"][0]["message"]["content"] == "custom"
        fake.responder = None
        body = {**chat_body("hi"), "model": "anything"}
        response = httpx.post(f"{fake.base_url}/v1/chat/completions", json=body, timeout=5)
        assert response.json()["model"] == "anything"  # an empty model list accepts any name


def test_script_mode() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_lmstudio", "--port", "0", "--models", "a,b"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(process, timeout=10)
        assert line.startswith("READY http://127.0.0.1:")
        url = line.split()[1]
        assert [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=5).json()["data"]] == ["a", "b"]
        httpx.post(f"{url}/_fake/fail", json={"status": 502, "times": 1}, timeout=5)
        assert (
            httpx.post(f"{url}/v1/chat/completions", json={**chat_body("hi"), "model": "a"}, timeout=5).status_code
            == 502
        )
        recorded = httpx.get(f"{url}/_fake/requests", timeout=5).json()["requests"]
        assert [r["path"] for r in recorded] == ["/v1/models", "/v1/chat/completions"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line, read in a thread so a silent process cannot block the test forever."""
    result: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert result, "no READY line"
    return result[0]


# ----------------------------------------------------------------------------- echo MCP server


def echo_params(*flags: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(ECHO_SERVER), *flags], cwd=str(REPO))


def text(result: Any) -> str:
    return "".join(block.text for block in result.content)


def echo_in_process(root: Path, *, weird_names: bool = False) -> Client:
    """The echo server's tools in this process; the tests below run it as a process where that matters."""
    return Client(
        echo_server.build_server("alpha", root, echo_server.CallHooks(False, None), weird_names), mode="legacy"
    )


async def test_echo_server_tools(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("hello file")
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    with anyio.fail_after(20):
        async with echo_in_process(tmp_path) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert names == {"echo", "add", "read_file", "fail", "slow", "big", "crash", "spawn_grandchild", "counter"}
            assert text(await client.call_tool("echo", {"text": "hi"})) == "hi"
            assert text(await client.call_tool("add", {"a": 2, "b": 3})) == "5"
            assert text(await client.call_tool("read_file", {"path": "note.txt"})) == "hello file"
            outside = await client.call_tool("read_file", {"path": "../etc/passwd"})
            assert outside.is_error and "outside" in text(outside)
            failed = await client.call_tool("fail", {"message": "Error: nope"})
            assert failed.is_error and text(failed) == "Error: nope"
            assert len(text(await client.call_tool("big", {"chars": 12345}))) == 12345
            assert text(await client.call_tool("slow", {"seconds": 0.2}, progress_callback=on_progress)) == "slept 0.2"
            assert progress == [1.0, 2.0]
            first = (await client.call_tool("counter", {})).structured_content
            second = (await client.call_tool("counter", {})).structured_content
            assert first is not None and second is not None
            assert (first["count"], second["count"]) == (1, 2) and first["pid"] == second["pid"] == os.getpid()


async def test_echo_server_weird_names(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        async with echo_in_process(tmp_path, weird_names=True) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert "dotted.echo" in names and any(" " in n and len(n) > 64 for n in names)
            assert text(await client.call_tool("dotted.echo", {"text": "x"})) == "x"


async def test_echo_server_crash_and_exit_after() -> None:
    with anyio.fail_after(20):
        async with Client(echo_params(), mode="legacy") as client:
            with pytest.raises(Exception, match="Connection closed"):
                await client.call_tool("crash", {}, read_timeout_seconds=5)
        async with Client(echo_params("--exit-after", "2"), mode="legacy") as client:
            assert text(await client.call_tool("echo", {"text": "1"})) == "1"
            assert text(await client.call_tool("echo", {"text": "2"})) == "2"
            with pytest.raises(Exception, match="Connection closed"):
                await client.call_tool("echo", {"text": "3"}, read_timeout_seconds=5)


async def test_echo_server_bad_starts() -> None:
    with anyio.fail_after(20):
        with pytest.raises(BaseException) as crashed:
            async with Client(echo_params("--crash-on-start"), mode="legacy"):
                pass
        assert "Connection closed" in repr(crashed.value)
        with anyio.move_on_after(1.5) as scope:
            async with Client(echo_params("--hang-on-start"), mode="legacy"):
                pytest.fail("a hanging server should never finish initialize")
        assert scope.cancelled_caught


async def test_echo_server_stderr_flood() -> None:
    with anyio.fail_after(30):
        async with Client(echo_params("--stderr-flood"), mode="legacy") as client:
            assert text(await client.call_tool("echo", {"text": "still here"})) == "still here"


async def test_echo_server_grandchild_outlives_it() -> None:
    pid = 0
    try:
        with anyio.fail_after(20):
            async with Client(echo_params(), mode="legacy") as client:
                pid = int(text(await client.call_tool("spawn_grandchild", {})))
                assert psutil.pid_exists(pid)
        await anyio.sleep(0.2)
        assert psutil.Process(pid).is_running() and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        if pid and psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- native API (LM Studio 0.4 and 0.3)


async def test_v1_listing_says_state_context_and_capabilities(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.set_model("vision/model", vision=True, context_length=8192, max_context_length=65536)
    fake.set_model("cold/model", loaded=False)
    models = {m["key"]: m for m in (await http.get("/api/v1/models")).json()["models"]}
    assert models[MODEL]["type"] == "llm" and models[MODEL]["loaded_instances"] == [
        {"id": MODEL, "config": {"context_length": 32768}}
    ]
    assert models[MODEL]["capabilities"] == {"vision": False, "trained_for_tool_use": True}
    assert models["vision/model"]["capabilities"]["vision"] is True
    assert models["vision/model"]["loaded_instances"][0]["config"]["context_length"] == 8192
    assert models["vision/model"]["max_context_length"] == 65536
    assert models["cold/model"]["loaded_instances"] == []
    assert models["nomic-embed"]["type"] == "embedding" and "capabilities" not in models["nomic-embed"]
    v0 = {m["id"]: m for m in (await http.get("/api/v0/models")).json()["data"]}
    assert v0["vision/model"]["type"] == "vlm" and v0["cold/model"]["state"] == "not-loaded"


async def test_older_versions_answer_404_with_a_string_error(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.api_version = "v0"
    missing = await http.get("/api/v1/models")
    assert missing.status_code == 404 and isinstance(missing.json()["error"], str)
    assert (await http.get("/api/v0/models")).status_code == 200
    fake.api_version = "openai"
    assert (await http.get("/api/v0/models")).status_code == 404
    assert (await http.post("/api/v1/models/load", json={"model": MODEL})).status_code == 404
    assert (await http.get("/v1/models")).status_code == 200


async def test_load_and_unload(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.set_model("cold/model", loaded=False, max_context_length=16384)
    loaded = await http.post("/api/v1/models/load", json={"model": "cold/model", "context_length": 8192})
    assert loaded.status_code == 200
    assert loaded.json() == {"type": "llm", "instance_id": "cold/model", "load_time_seconds": 0.1, "status": "loaded"}
    assert fake.loaded_context("cold/model") == 8192
    too_big = await http.post("/api/v1/models/load", json={"model": "cold/model", "context_length": 100000})
    assert too_big.status_code == 400 and isinstance(too_big.json()["error"], str)
    unloaded = await http.post("/api/v1/models/unload", json={"instance_id": "cold/model"})
    assert unloaded.status_code == 200 and fake.loaded_context("cold/model") is None
    again = await http.post("/api/v1/models/unload", json={"instance_id": "cold/model"})
    assert again.status_code == 404 and isinstance(again.json()["error"], str)
    assert (await http.post("/api/v1/models/load", json={"model": "nope"})).status_code == 404
    fake.load_failures["cold/model"] = (500, {"error": "Failed to load model: insufficient system resources"})
    failed = await http.post("/api/v1/models/load", json={"model": "cold/model"})
    assert failed.status_code == 500 and "insufficient" in failed.json()["error"]


async def test_chat_loads_just_in_time_or_refuses(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.set_model("cold/model", loaded=False)
    fake.jit = False
    refused = await http.post("/v1/chat/completions", json={**chat_body("hi"), "model": "cold/model"})
    assert refused.status_code == 400 and refused.json()["error"].startswith("No models loaded")
    fake.jit = True
    await chat(http, {**chat_body("hi"), "model": "cold/model"})
    assert fake.loaded_context("cold/model") == 4096


async def test_a_prompt_past_the_loaded_context_is_refused(fake: FakeLMStudio, http: httpx.AsyncClient) -> None:
    fake.set_model(MODEL, context_length=1024)
    big = chat_body("x" * 5000)
    refused = await http.post("/v1/chat/completions", json=big)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"
    fake.overflow_style = "llamacpp"
    refused = await http.post("/v1/chat/completions", json=big)
    error = refused.json()["error"]
    assert error["type"] == "exceed_context_size_error" and error["n_ctx"] == 1024
    assert (await http.post("/v1/chat/completions", json=chat_body("small"))).status_code == 200
