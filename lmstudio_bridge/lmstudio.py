"""The only code that speaks LM Studio's HTTP API.

``LMStudioAPI`` owns one ``httpx.AsyncClient`` (one connection pool) and maps
every transport or protocol failure to the bridge's own errors, once, here.
``LLMClient`` is the per-model face of it that the agent loop uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from .config import Settings
from .errors import (
    BadResponse,
    LMStudioAuthError,
    LMStudioError,
    LMStudioHTTPError,
    LMStudioTimeout,
    LMStudioUnreachable,
    NoModelsLoaded,
)

logger = logging.getLogger(__name__)

RETRY_BASE_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
CONNECT_TIMEOUT = 5.0
ModelType = Literal["llm", "vlm", "embeddings", "unknown"]


@dataclass(frozen=True)
class ModelInfo:
    """One entry of LM Studio's model list."""

    id: str
    type: ModelType = "unknown"
    loaded: bool | None = None
    """``None`` when the server does not say (the OpenAI endpoint never does)."""

    @property
    def is_embedding(self) -> bool:
        return self.type == "embeddings" or (self.type == "unknown" and "embed" in self.id.lower())


@dataclass(frozen=True)
class ToolCallRequest:
    """A tool call as the model asked for it; ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class ChatResult:
    """The parts of one chat completion that the agent loop needs."""

    message: dict[str, Any]
    """The assistant message as LM Studio sent it (to append to the conversation)."""
    content: str
    tool_calls: tuple[ToolCallRequest, ...]
    finish_reason: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""


class LMStudioAPI:
    """HTTP access to one LM Studio server, shared by every model and every task."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = settings.base_url
        self.settings = settings
        headers = {"User-Agent": "lmstudio-bridge"}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(settings.request_timeout, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_models(self) -> list[ModelInfo]:
        """LM Studio's model list: its native listing when it has one, else ``/v1/models``."""
        timeout = self.settings.list_timeout
        try:
            body = await self._request("GET", "/api/v0/models", timeout=timeout, retries=0)
            return _parse_native_models(body)
        except LMStudioHTTPError as exc:
            if exc.status_code not in (404, 405):
                raise
        body = await self._request("GET", "/v1/models", timeout=timeout, retries=0)
        return _parse_openai_models(body)

    async def chat(self, payload: Mapping[str, Any]) -> ChatResult:
        """One ``POST /v1/chat/completions``, retried on connection errors, 429 and 5xx."""
        body = await self._request("POST", "/v1/chat/completions", json=payload)
        return parse_chat_completion(body, base_url=self.base_url)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Any:
        retries = self.settings.max_retries if retries is None else retries
        request_timeout = httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)) if timeout else None
        attempt = 0
        while True:
            try:
                kwargs: dict[str, Any] = {"json": json}
                if request_timeout is not None:
                    kwargs["timeout"] = request_timeout
                response = await self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                error = self._map_transport_error(exc, timeout)
                if attempt < retries and isinstance(error, LMStudioUnreachable):
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise error from exc
            if response.status_code == 429 or response.status_code >= 500:
                if attempt < retries:
                    attempt += 1
                    await asyncio.sleep(_retry_after(response) or _backoff(attempt))
                    continue
            if response.status_code >= 400:
                raise self._map_status_error(response, attempts=attempt + 1)
            try:
                return response.json()
            except ValueError:
                raise BadResponse(
                    f"LM Studio at {self.base_url} answered {path} with something that is not JSON: "
                    f"{response.text[:200]!r}",
                    base_url=self.base_url,
                ) from None

    def _map_transport_error(self, exc: httpx.HTTPError, timeout: float | None) -> LMStudioError:
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            return LMStudioUnreachable(self.base_url)
        if isinstance(exc, httpx.TimeoutException):
            waited = timeout or self.settings.request_timeout
            return LMStudioTimeout(
                f"LM Studio at {self.base_url} did not answer within {waited:g} s. A large model may need "
                "longer (LMSTUDIO_BRIDGE_REQUEST_TIMEOUT), or LM Studio may be stuck loading a model.",
                base_url=self.base_url,
            )
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return LMStudioUnreachable(self.base_url, "the connection was dropped mid-request")
        return LMStudioError(f"Request to LM Studio at {self.base_url} failed: {exc}", base_url=self.base_url)

    def _map_status_error(self, response: httpx.Response, *, attempts: int) -> LMStudioError:
        status = response.status_code
        detail = _error_text(response)
        if status in (401, 403):
            return LMStudioAuthError(
                f"LM Studio at {self.base_url} refused the request (HTTP {status}: {detail}). "
                "Set LMSTUDIO_API_KEY (or LM_API_TOKEN) to a valid API token from LM Studio's server settings.",
                base_url=self.base_url,
            )
        if "no models loaded" in detail.lower():
            return NoModelsLoaded(self.base_url)
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return LMStudioHTTPError(
            f"LM Studio at {self.base_url} answered HTTP {status}{tried}: {detail}",
            base_url=self.base_url,
            status_code=status,
        )


class LLMClient:
    """Chat completions with one model. Cheap: all clients share one ``LMStudioAPI``."""

    def __init__(self, api: LMStudioAPI, model: str) -> None:
        self.api = api
        self.model = model

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> ChatResult:
        payload: dict[str, Any] = {"model": self.model, "messages": list(messages), "stream": False, **params}
        if tools:
            payload["tools"] = list(tools)
            payload.setdefault("tool_choice", "auto")
        started = time.perf_counter()
        result = await self.api.chat(payload)
        logger.debug("chat %s: %.0f ms, finish=%s", self.model, (time.perf_counter() - started) * 1000, result.finish_reason)
        return result


def parse_chat_completion(body: Any, *, base_url: str = "") -> ChatResult:
    """Reads an OpenAI chat completion body; raises ``BadResponse`` when it is not one."""
    try:
        choice = body["choices"][0]
        message = dict(choice["message"])
    except (KeyError, IndexError, TypeError):
        raise BadResponse(
            f"LM Studio at {base_url} answered with something that is not a chat completion: {str(body)[:200]!r}",
            base_url=base_url,
        ) from None
    calls = []
    for index, raw in enumerate(message.get("tool_calls") or ()):
        function = (raw or {}).get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        calls.append(
            ToolCallRequest(id=str(raw.get("id") or f"call_{index}"), name=str(function.get("name") or ""), arguments=arguments)
        )
    usage = body.get("usage") or {}
    return ChatResult(
        message=message,
        content=message.get("content") or "",
        tool_calls=tuple(calls),
        finish_reason=str(choice.get("finish_reason") or ""),
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            total_tokens=int(usage.get("total_tokens") or 0),
        ),
        model=str(body.get("model") or ""),
    )


def _parse_native_models(body: Any) -> list[ModelInfo]:
    try:
        entries = body["data"]
        return [
            ModelInfo(
                id=str(e["id"]),
                type=e.get("type") if e.get("type") in ("llm", "vlm", "embeddings") else "unknown",
                loaded=e.get("state") == "loaded" if "state" in e else None,
            )
            for e in entries
        ]
    except (KeyError, TypeError):
        raise BadResponse(f"Unexpected model list from LM Studio: {str(body)[:200]!r}") from None


def _parse_openai_models(body: Any) -> list[ModelInfo]:
    try:
        return [ModelInfo(id=str(e["id"])) for e in body["data"]]
    except (KeyError, TypeError):
        raise BadResponse(f"Unexpected model list from the server: {str(body)[:200]!r}") from None


def _error_text(response: httpx.Response) -> str:
    """LM Studio's error text: ``error`` is a string or an object with ``message``."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("message", body))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:500]
    return str(body)[:300]


def _backoff(attempt: int) -> float:
    delay = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (attempt - 1))
    return delay * random.uniform(0.8, 1.2)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(RETRY_MAX_DELAY, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return None
