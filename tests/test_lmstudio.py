"""LMStudioAPI and LLMClient against HTTP mocked with respx: retries and error mapping."""

from __future__ import annotations

import httpx
import pytest
import respx

from lmstudio_bridge import lmstudio
from lmstudio_bridge.config import Settings
from lmstudio_bridge.errors import (
    BadResponse,
    ContextExceeded,
    LMStudioAuthError,
    LMStudioHTTPError,
    LMStudioTimeout,
    LMStudioUnreachable,
    ModelLoadFailed,
    NoModelsLoaded,
)
from lmstudio_bridge.lmstudio import LLMClient, LMStudioAPI

BASE = "http://lms.test:1234"


def completion(content: str = "hi", tool_calls: list | None = None, finish: str = "stop") -> dict:
    message: dict = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "c1",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lmstudio, "RETRY_BASE_DELAY", 0.0)


@pytest.fixture
async def api():
    client = LMStudioAPI.from_settings(Settings(base_url=BASE, max_retries=2))
    yield client
    await client.aclose()


@respx.mock
async def test_chat_parses_tool_calls_and_usage(api: LMStudioAPI) -> None:
    calls = [{"id": "365174485", "type": "function", "function": {"name": "search", "arguments": '{"q":"dell"}'}}]
    route = respx.post(f"{BASE}/v1/chat/completions").respond(json=completion("", calls, "tool_calls"))
    result = await LLMClient(api, "qwen/qwen3-coder-30b").complete(
        [{"role": "user", "content": "x"}], tools=[{"type": "function"}]
    )
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0].id == "365174485"
    assert result.tool_calls[0].name == "search"
    assert result.tool_calls[0].arguments == '{"q":"dell"}'
    assert result.usage.total_tokens == 5
    sent = route.calls.last.request
    body = httpx.Request("POST", "/", content=sent.content).read()
    assert b'"model":"qwen/qwen3-coder-30b"' in body.replace(b" ", b"")
    assert b'"tool_choice":"auto"' in body.replace(b" ", b"")


@respx.mock
async def test_retries_5xx_then_succeeds(api: LMStudioAPI) -> None:
    route = respx.post(f"{BASE}/v1/chat/completions").mock(
        side_effect=[httpx.Response(503), httpx.Response(500), httpx.Response(200, json=completion("ok"))]
    )
    result = await api.chat({"model": "m", "messages": []})
    assert result.content == "ok"
    assert route.call_count == 3


@respx.mock
async def test_retries_429_and_connection_errors(api: LMStudioAPI) -> None:
    route = respx.post(f"{BASE}/v1/chat/completions").mock(
        side_effect=[
            httpx.Response(429, headers={"retry-after": "0"}),
            httpx.ConnectError("refused"),
            httpx.Response(200, json=completion("ok")),
        ]
    )
    assert (await api.chat({"model": "m", "messages": []})).content == "ok"
    assert route.call_count == 3


@respx.mock
async def test_gives_up_after_max_retries(api: LMStudioAPI) -> None:
    route = respx.post(f"{BASE}/v1/chat/completions").respond(503, json={"error": "busy"})
    with pytest.raises(LMStudioHTTPError, match=r"HTTP 503 after 3 attempts: busy") as info:
        await api.chat({"model": "m", "messages": []})
    assert info.value.status_code == 503
    assert route.call_count == 3


@respx.mock
@pytest.mark.parametrize("status", [400, 404, 422])
async def test_never_retries_other_4xx(api: LMStudioAPI, status: int) -> None:
    body = {
        "error": {
            "message": 'Invalid model identifier "x".',
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }
    route = respx.post(f"{BASE}/v1/chat/completions").respond(status, json=body)
    with pytest.raises(LMStudioHTTPError, match="Invalid model identifier"):
        await api.chat({"model": "x", "messages": []})
    assert route.call_count == 1


@respx.mock
async def test_auth_error_says_which_variable(api: LMStudioAPI) -> None:
    respx.post(f"{BASE}/v1/chat/completions").respond(401, json={"error": "Unauthorized"})
    with pytest.raises(LMStudioAuthError, match="LMSTUDIO_API_KEY"):
        await api.chat({"model": "m", "messages": []})


@respx.mock
async def test_plain_string_error_no_models_loaded(api: LMStudioAPI) -> None:
    text = "No models loaded. Please load a model in the developer page or use the 'lms load' command."
    respx.post(f"{BASE}/v1/chat/completions").respond(400, json={"error": text})
    with pytest.raises(NoModelsLoaded, match="lms load"):
        await api.chat({"model": "m", "messages": []})


@respx.mock
async def test_unreachable_names_the_address(api: LMStudioAPI) -> None:
    respx.post(f"{BASE}/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(LMStudioUnreachable) as info:
        await api.chat({"model": "m", "messages": []})
    assert str(info.value).startswith(f"Cannot reach LM Studio at {BASE}")
    assert "lms server start" in str(info.value)


@respx.mock
async def test_read_timeout_is_not_retried(api: LMStudioAPI) -> None:
    route = respx.post(f"{BASE}/v1/chat/completions").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(LMStudioTimeout, match="LMSTUDIO_BRIDGE_REQUEST_TIMEOUT"):
        await api.chat({"model": "m", "messages": []})
    assert route.call_count == 1


@respx.mock
async def test_dropped_connection_is_retried_then_reported(api: LMStudioAPI) -> None:
    route = respx.post(f"{BASE}/v1/chat/completions").mock(side_effect=httpx.RemoteProtocolError("dropped"))
    with pytest.raises(LMStudioUnreachable, match="dropped"):
        await api.chat({"model": "m", "messages": []})
    assert route.call_count == 3


@respx.mock
@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"choices": []}', b'{"unexpected": true}'])
async def test_garbage_is_a_bad_response(api: LMStudioAPI, body: bytes) -> None:
    respx.post(f"{BASE}/v1/chat/completions").respond(200, content=body)
    with pytest.raises(BadResponse):
        await api.chat({"model": "m", "messages": []})


@respx.mock
async def test_list_models_prefers_native_listing(api: LMStudioAPI) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    respx.get(f"{BASE}/api/v0/models").respond(
        json={
            "data": [
                {"id": "qwen/qwen3-coder-30b", "type": "llm", "state": "loaded"},
                {"id": "text-embedding-nomic", "type": "embeddings", "state": "not-loaded"},
            ]
        }
    )
    openai = respx.get(f"{BASE}/v1/models")
    models = await api.list_models()
    assert [(m.id, m.type, m.loaded) for m in models] == [
        ("qwen/qwen3-coder-30b", "llm", True),
        ("text-embedding-nomic", "embeddings", False),
    ]
    assert not openai.called


@respx.mock
async def test_list_models_falls_back_to_openai_endpoint_on_404(api: LMStudioAPI) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    respx.get(f"{BASE}/api/v0/models").respond(404)
    respx.get(f"{BASE}/v1/models").respond(json={"object": "list", "data": [{"id": "a", "object": "model"}]})
    models = await api.list_models()
    assert [(m.id, m.loaded) for m in models] == [("a", None)]


@respx.mock
async def test_api_key_sent_as_bearer() -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    route = respx.get(f"{BASE}/api/v0/models").respond(json={"data": []})
    api = LMStudioAPI.from_settings(Settings(base_url=BASE, api_key="s3cret"))
    try:
        await api.list_models()
    finally:
        await api.aclose()
    assert route.calls.last.request.headers["authorization"] == "Bearer s3cret"


# --- LM Studio's native API and the context error -------------------------------


@respx.mock
async def test_the_v1_listing_is_read_and_the_answering_listing_remembered(api: LMStudioAPI) -> None:
    v1 = respx.get(f"{BASE}/api/v1/models").respond(
        json={
            "models": [
                {
                    "type": "llm",
                    "key": "qwen/qwen3-vl-8b",
                    "max_context_length": 262144,
                    "loaded_instances": [
                        {"id": "qwen/qwen3-vl-8b", "config": {"context_length": 8192}},
                        {"id": "qwen/qwen3-vl-8b:2", "config": {"context_length": 4096}},
                    ],
                    "capabilities": {
                        "vision": True,
                        "trained_for_tool_use": True,
                        "reasoning": {"allowed_options": ["on", "off"], "default": "on"},
                    },
                },
                {"type": "embedding", "key": "nomic-embed", "max_context_length": 2048, "loaded_instances": []},
            ]
        }
    )
    v0 = respx.get(f"{BASE}/api/v0/models")
    models = await api.list_models()
    await api.list_models()
    vl, embed = models
    assert (vl.type, vl.loaded, vl.context_length, vl.max_context_length) == ("vlm", True, 8192, 262144)
    assert vl.capabilities == ["tool_use", "vision", "reasoning"] and vl.instances == (
        "qwen/qwen3-vl-8b",
        "qwen/qwen3-vl-8b:2",
    )
    assert (embed.type, embed.loaded, embed.is_embedding) == ("embeddings", False, True)
    assert v1.call_count == 2 and not v0.called and api.dialect == "v1" and api.can_load


@respx.mock
@pytest.mark.parametrize(
    "error",
    [
        {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"},
        {"code": 400, "message": "too long", "type": "exceed_context_size_error", "n_ctx": 4096},
    ],
)
async def test_a_prompt_too_long_is_known_by_its_code_or_type(api: LMStudioAPI, error: dict) -> None:
    respx.post(f"{BASE}/v1/chat/completions").respond(400, json={"error": error})
    with pytest.raises(ContextExceeded) as caught:
        await api.stream_chat({"model": "m", "messages": []})
    assert caught.value.context_length == error.get("n_ctx")


@respx.mock
async def test_words_alone_do_not_make_a_context_error(api: LMStudioAPI) -> None:
    text = "Trying to keep the first 5000 tokens when context the overflows. ... context length of only 4096 tokens"
    respx.post(f"{BASE}/v1/chat/completions").respond(400, json={"error": text})
    with pytest.raises(LMStudioHTTPError) as caught:
        await api.stream_chat({"model": "m", "messages": []})
    assert not isinstance(caught.value, ContextExceeded)


@respx.mock
async def test_a_failed_load_carries_lm_studios_message(api: LMStudioAPI) -> None:
    respx.post(f"{BASE}/api/v1/models/load").respond(500, json={"error": "Not enough memory to load the model."})
    with pytest.raises(ModelLoadFailed) as caught:
        await api.load_model("big/model", context_length=8192, timeout=5)
    assert str(caught.value) == f"LM Studio at {BASE} could not load big/model: Not enough memory to load the model."
