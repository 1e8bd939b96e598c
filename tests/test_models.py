"""ModelValidator: TTL, single flight, refresh on miss, exact errors, models downloaded but not loaded."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx

from lmstudio_bridge.config import Settings
from lmstudio_bridge.errors import ModelNotFound, NoModelsLoaded
from lmstudio_bridge.lmstudio import LMStudioAPI
from lmstudio_bridge.models import ModelValidator

BASE = "http://lms.test:1234"
MODELS = ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def listing(ids: list[str], loaded: bool = True) -> dict:
    return {"data": [{"id": i, "type": "llm", "state": "loaded" if loaded else "not-loaded"} for i in ids]}


@pytest.fixture
async def api():
    client = LMStudioAPI.from_settings(Settings(base_url=BASE))
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@respx.mock
async def test_cached_within_ttl_and_refetched_after(api: LMStudioAPI, clock: Clock) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    route = respx.get(f"{BASE}/api/v0/models").respond(json=listing(MODELS))
    validator = ModelValidator(api, ttl=60, clock=clock)
    assert await validator.resolve("qwen/qwen3-coder-30b") == "qwen/qwen3-coder-30b"
    clock.now += 59
    assert await validator.resolve("mistralai/magistral-small-2509") == "mistralai/magistral-small-2509"
    assert route.call_count == 1
    clock.now += 2
    await validator.resolve("qwen/qwen3-coder-30b")
    assert route.call_count == 2


@respx.mock
async def test_twenty_cold_calls_make_one_request(api: LMStudioAPI, clock: Clock) -> None:
    async def slow_listing(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return httpx.Response(200, json=listing(MODELS))

    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    route = respx.get(f"{BASE}/api/v0/models").mock(side_effect=slow_listing)
    validator = ModelValidator(api, ttl=60, clock=clock)
    results = await asyncio.gather(*(validator.resolve("qwen/qwen3-coder-30b") for _ in range(20)))
    assert set(results) == {"qwen/qwen3-coder-30b"}
    assert route.call_count == 1


@respx.mock
async def test_single_flight_failure_reaches_every_waiter_then_recovers(api: LMStudioAPI, clock: Clock) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    route = respx.get(f"{BASE}/api/v0/models").mock(
        side_effect=[httpx.ConnectError("down"), httpx.Response(200, json=listing(MODELS))]
    )
    validator = ModelValidator(api, ttl=60, clock=clock)
    outcomes = await asyncio.gather(*(validator.resolve(None) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(o, Exception) and "Cannot reach LM Studio" in str(o) for o in outcomes)
    assert await validator.resolve(None) == MODELS[0]
    assert route.call_count == 2


@respx.mock
async def test_miss_refreshes_once_so_a_just_loaded_model_is_found(api: LMStudioAPI, clock: Clock) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    route = respx.get(f"{BASE}/api/v0/models").mock(
        side_effect=[
            httpx.Response(200, json=listing(MODELS[:1])),
            httpx.Response(200, json=listing(MODELS)),
        ]
    )
    validator = ModelValidator(api, ttl=60, clock=clock)
    await validator.resolve(MODELS[0])
    assert await validator.resolve(MODELS[1]) == MODELS[1]
    assert route.call_count == 2


@respx.mock
async def test_unknown_model_error_text_is_exact(api: LMStudioAPI, clock: Clock) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    route = respx.get(f"{BASE}/api/v0/models").respond(json=listing(MODELS))
    validator = ModelValidator(api, ttl=60, clock=clock)
    with pytest.raises(ModelNotFound) as info:
        await validator.resolve("nonexistent-model")
    assert str(info.value) == (
        "Model 'nonexistent-model' not found. Available models: qwen/qwen3-coder-30b, mistralai/magistral-small-2509"
    )
    assert route.call_count == 2  # the cached list, then one refresh before rejecting


@respx.mock
@pytest.mark.parametrize("wrong", ["qwen3-coder", "Qwen/Qwen3-Coder-30B", "qwen-coder", "qwen/qwen3-coder"])
async def test_names_match_exactly(api: LMStudioAPI, clock: Clock, wrong: str) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    respx.get(f"{BASE}/api/v0/models").respond(json=listing(MODELS))
    with pytest.raises(ModelNotFound):
        await ModelValidator(api, ttl=60, clock=clock).resolve(wrong)


@respx.mock
async def test_loaded_instance_suffix(api: LMStudioAPI, clock: Clock) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    respx.get(f"{BASE}/api/v0/models").respond(json=listing(["qwen/qwen3-coder-30b", "gemma:2"]))
    validator = ModelValidator(api, ttl=60, clock=clock)
    assert await validator.resolve("qwen/qwen3-coder-30b:2") == "qwen/qwen3-coder-30b:2"
    assert await validator.resolve("gemma") == "gemma:2"
    with pytest.raises(ModelNotFound):
        await validator.resolve("other:2")


@respx.mock
@pytest.mark.parametrize("requested", [None, "", "default", "DEFAULT"])
async def test_default_is_first_loaded_chat_model(api: LMStudioAPI, clock: Clock, requested: str | None) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    respx.get(f"{BASE}/api/v0/models").respond(
        json={
            "data": [
                {"id": "nomic-embed", "type": "embeddings", "state": "loaded"},
                {"id": "big-unloaded", "type": "llm", "state": "not-loaded"},
                {"id": "small-loaded", "type": "llm", "state": "loaded"},
            ]
        }
    )
    assert await ModelValidator(api, ttl=60, clock=clock).resolve(requested) == "small-loaded"


@respx.mock
async def test_configured_default_wins_and_is_validated(api: LMStudioAPI, clock: Clock) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    respx.get(f"{BASE}/api/v0/models").respond(json=listing(MODELS))
    assert await ModelValidator(api, ttl=60, default_model=MODELS[1], clock=clock).resolve(None) == MODELS[1]
    with pytest.raises(ModelNotFound, match="Model 'gone' not found"):
        await ModelValidator(api, ttl=60, default_model="gone", clock=clock).resolve("default")


@respx.mock
async def test_embedding_models_are_not_offered(api: LMStudioAPI, clock: Clock) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    respx.get(f"{BASE}/api/v0/models").respond(
        json={"data": [{"id": "nomic-embed", "type": "embeddings"}, {"id": "chat", "type": "llm"}]}
    )
    with pytest.raises(ModelNotFound, match=r"Available models: chat$"):
        await ModelValidator(api, ttl=60, clock=clock).resolve("nomic-embed")


@respx.mock
async def test_no_models_loaded(api: LMStudioAPI, clock: Clock) -> None:
    respx.get(f"{BASE}/api/v1/models").respond(404)  # LM Studio 0.3
    respx.get(f"{BASE}/api/v0/models").respond(json={"data": []})
    with pytest.raises(NoModelsLoaded, match="lms load"):
        await ModelValidator(api, ttl=60, clock=clock).resolve(None)
