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
from abc import ABCMeta, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from .config import ENV_NAMES, SETTINGS, Settings
from .context_window import FIRST_CHARS_PER_TOKEN, ContextWindow
from .errors import (
    BadResponse,
    ContextExceeded,
    LMStudioAuthError,
    LMStudioError,
    LMStudioHTTPError,
    LMStudioTimeout,
    LMStudioUnreachable,
    ModelLoadFailed,
    NoModelsLoaded,
    ServerDidNotStart,
    capitalized,
)
from .lmstudio_native import (
    LISTINGS,
    LOAD_PATH,
    UNLOAD_PATH,
    Dialect,
    LoadResult,
    ModelInfo,
    ModelType,
    UnexpectedListing,
    parse_listing,
    parse_load,
)
from .reply_watch import Cut, Draft

__all__ = [
    "Dialect",
    "LoadResult",
    "ModelInfo",
    "ModelType",
]  # re-exported: the model list's types live in lmstudio_native

logger = logging.getLogger(__name__)

_API_KEY_ENV = next(s.env for s in SETTINGS if s.field == "api_key")
PROGRESS_INTERVAL = 2.0
"""Seconds between progress reports while a reply streams in."""
WAITING_INTERVAL = 5.0
"""Seconds between progress reports while a reply has no token yet: the 1.5B on two CPU cores read a prompt of 2,451
tokens (a filesystem server's tools) for 52 s before its first token."""
RETRY_BASE_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
CONNECT_TIMEOUT = 5.0


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
class GenerationStats:
    """How one reply was generated, as the bridge saw it."""

    first_token_seconds: float | None = None
    """From sending the request to the first token (the prompt is read in this time)."""
    generation_seconds: float = 0.0
    """From the first token to the last."""
    tokens: int = 0
    cut: str | None = None
    """Why the bridge stopped the reply early (see ``reply_watch.Cut``), if it did."""

    @property
    def tokens_per_second(self) -> float | None:
        return round(self.tokens / self.generation_seconds, 1) if self.generation_seconds > 0 else None


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
    stats: GenerationStats = field(default_factory=GenerationStats)


Watch = Callable[[Draft], Cut | None]
"""Looks at a reply as it streams in; a ``Cut`` stops it (see ``reply_watch.ReplyWatch``)."""
OnProgress = Callable[["Progress"], Awaitable[None]]


@dataclass(frozen=True)
class Progress:
    """A reply being written: reported about every ``PROGRESS_INTERVAL`` seconds while tokens arrive, and every
    ``WAITING_INTERVAL`` seconds before the first (``tokens`` 0, ``waited`` above 0)."""

    tokens: int
    seconds: float
    """Since the first token."""
    waited: float = 0.0
    """Before the first token: seconds since the request (the server reading the prompt, or busy)."""

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ServerOptions:
    """What ``LMStudioAPI`` needs to know: where the server is, its key, and how long to wait for it."""

    base_url: str
    api_key: SecretStr | None
    list_timeout: float
    request_timeout: float
    first_token_timeout: float
    stream_idle_timeout: float
    max_retries: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerOptions:
        return cls(
            base_url=settings.base_url,
            api_key=settings.api_key,
            list_timeout=settings.list_timeout,
            request_timeout=settings.request_timeout,
            first_token_timeout=settings.first_token_timeout,
            stream_idle_timeout=settings.stream_idle_timeout,
            max_retries=settings.max_retries,
        )


class ServerNotStarted(httpx.ConnectError):
    """Raised by a ``ManagedServer`` whose server did not start; ``reason`` says why."""

    def __init__(self, reason: str, *, request: httpx.Request) -> None:
        super().__init__(reason, request=request)
        self.reason = reason


class ManagedServer(httpx.AsyncBaseTransport, metaclass=ABCMeta):
    """A transport that is itself the model server: one the bridge runs (the embedded model), which answers
    at its own address rather than the configured one. Messages and results name it by what it says here."""

    label: str
    """What it is, to begin a sentence with: ``the embedded model 0.5b``."""

    @abstractmethod
    def address(self) -> str | None:
        """Its root URL (``http://127.0.0.1:PORT``) while it runs; None before it has started."""

    @abstractmethod
    def name(self) -> str:
        """The label with where it is (``... at URL``), or why it has no address yet."""

    @abstractmethod
    def unreachable_hint(self) -> str:
        """What to do when it does not answer or did not start: a sentence."""

    def context_hint(self) -> str | None:
        """What to do when a conversation does not fit its context; None for LM Studio's advice."""
        return None


class LMStudioAPI:
    """HTTP access to one model server (LM Studio's, or a ``ManagedServer``), shared by every model and every task."""

    def __init__(self, options: ServerOptions, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.configured_url = options.base_url
        self.managed = transport if isinstance(transport, ManagedServer) else None
        """The server when the transport is the server itself (the embedded model), else None."""
        self.options = options
        self.dialect: Dialect | None = None
        """Which model list the server answered (see ``list_models``); None until it has answered."""
        headers = {"User-Agent": "lmstudio-bridge"}
        if options.api_key is not None:
            headers["Authorization"] = f"Bearer {options.api_key.get_secret_value()}"
        self._http = httpx.AsyncClient(
            base_url=self.configured_url,
            headers=headers,
            timeout=httpx.Timeout(options.request_timeout, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> LMStudioAPI:
        return cls(ServerOptions.from_settings(settings), transport=transport)

    @property
    def base_url(self) -> str:
        """Where the server is, as results and messages show it: the configured address, or a managed server's
        own once it runs (before that, its name)."""
        if self.managed is None:
            return self.configured_url
        return self.managed.address() or self.managed.name()

    @property
    def server_name(self) -> str:
        """The server in a sentence: ``LM Studio at URL``, or the managed server's name."""
        return f"LM Studio at {self.configured_url}" if self.managed is None else self.managed.name()

    @property
    def starting(self) -> bool:
        """A managed server that has no address yet: a request now waits for it to start."""
        return self.managed is not None and self.managed.address() is None

    def unreachable(self, detail: str = "") -> LMStudioUnreachable:
        if self.managed is None:
            return LMStudioUnreachable(self.base_url, detail)
        return LMStudioUnreachable(
            self.base_url, detail, server=self.managed.name(), hint=self.managed.unreachable_hint()
        )

    def no_models_loaded(self) -> NoModelsLoaded:
        if self.managed is None:
            return NoModelsLoaded(self.base_url)
        return NoModelsLoaded(self.base_url, server=self.managed.name(), hint=self.managed.unreachable_hint())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_models(self) -> list[ModelInfo]:
        """The server's model list: LM Studio's v1 listing, else its v0 one, else ``/v1/models``.

        Each is asked for once; the first that answers is remembered (``dialect``), and an older
        server's 404 (or 405) is the answer "not here", not a failure.
        """
        timeout = self.options.list_timeout
        candidates = [(d, p) for d, p in LISTINGS if self.dialect is None or d == self.dialect]
        for dialect, path in candidates:
            try:
                body = await self._request("GET", path, timeout=timeout, retries=0)
            except LMStudioHTTPError as exc:
                if exc.status_code in (404, 405) and dialect != "openai":
                    continue
                raise
            try:
                models = parse_listing(dialect, body)
            except UnexpectedListing as exc:
                raise BadResponse(
                    f"Unexpected model list from the server at {self.base_url} ({path}): {exc}", base_url=self.base_url
                ) from None
            if self.dialect is None:
                logger.info("The server at %s lists its models at %s", self.base_url, path)
            self.dialect = dialect
            return models
        raise BadResponse(f"The server at {self.base_url} has no model list.", base_url=self.base_url)

    @property
    def can_load(self) -> bool:
        """The server loads and unloads models through its API (LM Studio 0.4 or later)."""
        return self.dialect == "v1"

    async def load_model(self, model: str, *, context_length: int | None, timeout: float) -> LoadResult:
        """``POST /api/v1/models/load``; raises ``ModelLoadFailed`` with LM Studio's own message."""
        body: dict[str, Any] = {"model": model}
        if context_length is not None:
            body["context_length"] = context_length
        try:
            answer = await self._request("POST", LOAD_PATH, json=body, timeout=timeout, retries=0)
            return parse_load(model, answer, context_length)
        except (LMStudioHTTPError, UnexpectedListing) as exc:
            raise ModelLoadFailed(
                f"{capitalized(self.server_name)} could not load {model}: {_reason(exc)}", base_url=self.base_url
            ) from None

    async def unload_model(self, instance_id: str) -> None:
        """``POST /api/v1/models/unload``; raises ``ModelLoadFailed`` with LM Studio's own message."""
        try:
            await self._request(
                "POST", UNLOAD_PATH, json={"instance_id": instance_id}, timeout=self.options.list_timeout, retries=0
            )
        except LMStudioHTTPError as exc:
            raise ModelLoadFailed(
                f"{capitalized(self.server_name)} could not unload {instance_id}: {_reason(exc)}",
                base_url=self.base_url,
            ) from None

    async def chat(self, payload: Mapping[str, Any]) -> ChatResult:
        """One ``POST /v1/chat/completions`` without streaming, retried on connection errors, 429 and 5xx."""
        body = await self._request("POST", "/v1/chat/completions", json=payload)
        return parse_chat_completion(body, base_url=self.base_url)

    async def stream_chat(
        self, payload: Mapping[str, Any], *, watch: Watch | None = None, progress: OnProgress | None = None
    ) -> ChatResult:
        """One streamed chat completion, read as it arrives and stopped as soon as ``watch`` says so.

        Retried like ``chat`` while nothing has arrived yet. Three bounds hold: the first token within
        ``first_token_timeout``, no silence longer than ``stream_idle_timeout`` after it, and the whole
        reply within ``request_timeout``.
        """
        body = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        attempt = 0
        while True:
            try:
                return await _StreamReader(self, body, watch, progress).read()
            except _Retry as retry:
                if attempt >= self.options.max_retries:
                    if retry.response is not None:
                        raise self._map_status_error(retry.response, attempts=attempt + 1) from None
                    raise retry.error from None
                attempt += 1
                await asyncio.sleep(retry.delay or _backoff(attempt))

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Any:
        retries = self.options.max_retries if retries is None else retries
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
                if attempt < retries and _worth_retrying(error):
                    attempt += 1
                    await asyncio.sleep(_backoff(attempt))
                    continue
                raise error from exc
            if (response.status_code == 429 or response.status_code >= 500) and attempt < retries:
                attempt += 1
                await asyncio.sleep(_retry_after(response) or _backoff(attempt))
                continue
            if response.status_code >= 400:
                raise self._map_status_error(response, attempts=attempt + 1)
            try:
                return response.json()
            except ValueError:
                raise BadResponse(
                    f"{capitalized(self.server_name)} answered {path} with something that is not JSON: "
                    f"{response.text[:200]!r}",
                    base_url=self.base_url,
                ) from None

    def _map_transport_error(self, exc: httpx.HTTPError, timeout: float | None) -> LMStudioError:
        if isinstance(exc, ServerNotStarted) and self.managed is not None:
            return ServerDidNotStart(
                self.managed.label, exc.reason.rstrip("."), self.managed.unreachable_hint(), base_url=self.base_url
            )
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            return self.unreachable()
        if isinstance(exc, httpx.TimeoutException):
            waited = timeout or self.options.request_timeout
            bound = ENV_NAMES["list_timeout" if timeout else "request_timeout"]
            return LMStudioTimeout(
                f"{capitalized(self.server_name)} did not answer within {waited:g} s ({bound}).",
                base_url=self.base_url,
            )
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return self.unreachable("the connection was dropped mid-request")
        return LMStudioError(f"Request to {self.server_name} failed: {exc}", base_url=self.base_url)

    def _map_status_error(self, response: httpx.Response, *, attempts: int) -> LMStudioError:
        status = response.status_code
        detail = _error_text(response)
        if status in (401, 403):
            return LMStudioAuthError(
                f"{capitalized(self.server_name)} refused the request (HTTP {status}: {detail}). "
                f"Set {_API_KEY_ENV[0]} (or {_API_KEY_ENV[1]}) to a valid API token from LM Studio's server settings.",
                base_url=self.base_url,
            )
        if "no models loaded" in detail.lower():
            return self.no_models_loaded()
        exceeded = _context_exceeded(_error_value(response), self.base_url, f"HTTP {status}: {detail}")
        if exceeded is not None:
            return exceeded
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return LMStudioHTTPError(
            f"{capitalized(self.server_name)} answered HTTP {status}{tried}: {detail}",
            base_url=self.base_url,
            status_code=status,
        )


class _Retry(Exception):
    """The request failed before any of the reply arrived, in a way worth another try."""

    def __init__(self, error: LMStudioError, response: httpx.Response | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.response = response
        self.delay = _retry_after(response) if response is not None else None


class _StreamReader:
    """Reads one streamed reply (server-sent events) into a ``ChatResult``."""

    def __init__(
        self, api: LMStudioAPI, body: dict[str, Any], watch: Watch | None, progress: OnProgress | None
    ) -> None:
        self.api = api
        self.body = body
        self.watch = watch
        self.progress = progress
        self.draft = Draft()
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason = ""
        self.usage: Usage | None = None
        self.model = ""
        self.cut: Cut | None = None
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.last_token_at = self.started
        self._reported = 0.0

    async def read(self) -> ChatResult:
        settings = self.api.options
        loop = asyncio.get_running_loop()
        end_by = loop.time() + settings.request_timeout
        phase = "first_token"
        waiting = asyncio.create_task(self._report_waiting(self.progress)) if self.progress is not None else None
        try:
            async with asyncio.timeout_at(min(end_by, loop.time() + settings.first_token_timeout)) as deadline:
                request = self.api._http.build_request(
                    "POST", "/v1/chat/completions", json=self.body, timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT)
                )
                response = await self.api._http.send(request, stream=True)
                try:
                    await self._check_status(response)
                    if "text/event-stream" not in response.headers.get("content-type", ""):
                        # A server that ignores "stream": the whole completion in one body.
                        return parse_chat_completion(
                            _json(await response.aread(), self.api.base_url), base_url=self.api.base_url
                        )
                    async for data in _events(response):
                        had_token = self.first_token_at is not None
                        if self._take(data) and self.watch is not None and (cut := self.watch(self.draft)):
                            self.cut = cut
                            break
                        if self.first_token_at is not None:
                            phase = "idle"
                            deadline.reschedule(min(end_by, loop.time() + settings.stream_idle_timeout))
                            if not had_token or time.perf_counter() - self._reported >= PROGRESS_INTERVAL:
                                await self._report()
                finally:
                    await response.aclose()
        except TimeoutError:
            raise self._timeout(phase if loop.time() < end_by - 0.01 else "total") from None
        except httpx.HTTPError as exc:
            error = self.api._map_transport_error(exc, None)
            if self.first_token_at is None and _worth_retrying(error):
                raise _Retry(error) from exc
            raise error from exc
        finally:
            if waiting is not None:
                waiting.cancel()
        return self._result()

    async def _report_waiting(self, progress: OnProgress) -> None:
        """Progress every ``WAITING_INTERVAL`` seconds until the first token comes."""
        while True:
            await asyncio.sleep(WAITING_INTERVAL)
            if self.first_token_at is not None:
                return
            await progress(Progress(0, 0.0, waited=time.perf_counter() - self.started))

    async def _report(self) -> None:
        self._reported = time.perf_counter()
        if self.progress is not None and self.first_token_at is not None:
            await self.progress(Progress(self._tokens(), self.last_token_at - self.first_token_at))

    async def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        await response.aread()
        error = self.api._map_status_error(response, attempts=1)
        if status == 429 or status >= 500:
            raise _Retry(error, response)
        raise error

    def _take(self, data: str) -> bool:
        """Adds one event to the draft; True when it brought content, reasoning or a call."""
        chunk = _json(data.encode(), self.api.base_url, what="a stream event")
        if not isinstance(chunk, dict):
            raise self._bad(f"an event that is not a JSON object: {data[:200]!r}")
        if "error" in chunk:
            detail = _error_detail(chunk["error"])
            exceeded = _context_exceeded(chunk["error"], self.api.base_url, detail)
            if exceeded is not None:
                raise exceeded
            raise LMStudioHTTPError(
                f"{capitalized(self.api.server_name)} reported an error mid-reply: {detail}",
                base_url=self.api.base_url,
            )
        self.model = self.model or str(chunk.get("model") or "")
        if chunk.get("usage") is not None:
            self.usage = _usage(chunk["usage"])
        choices = chunk.get("choices")
        if choices is None or choices == []:
            return False
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._bad(f"'choices' that is not a list of objects: {str(choices)[:200]!r}")
        choice = choices[0]
        delta = choice.get("delta") if choice.get("delta") is not None else choice.get("message") or {}
        if not isinstance(delta, dict):
            raise self._bad(f"a 'delta' that is not an object: {str(delta)[:200]!r}")
        self.finish_reason = str(choice.get("finish_reason") or self.finish_reason)
        brought = False
        for key, into in (("content", "content"), ("reasoning_content", "reasoning"), ("reasoning", "reasoning")):
            piece = delta.get(key)
            if piece is None or piece == "":
                continue
            if not isinstance(piece, str):
                raise self._bad(f"'{key}' that is not text: {str(piece)[:200]!r}")
            setattr(self.draft, into, getattr(self.draft, into) + piece)
            if into == "content":
                self.draft.content_tokens += 1
            else:
                self.draft.reasoning_tokens += 1
            brought = True
        calls = delta.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise self._bad(f"'tool_calls' that is not a list: {str(calls)[:200]!r}")
            for piece in calls:
                self._take_call(piece)
                brought = True
        if brought:
            now = time.perf_counter()
            self.first_token_at = self.first_token_at or now
            self.last_token_at = now
        return brought

    def _take_call(self, piece: Any) -> None:
        function = piece.get("function") if isinstance(piece, dict) else None
        if not isinstance(function, dict):
            raise self._bad(f"a tool call that is not an object with a 'function' object: {str(piece)[:200]!r}")
        index = piece.get("index", len(self.calls))
        if not isinstance(index, int):
            index = len(self.calls)
        call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        if piece.get("id"):
            call["id"] = str(piece["id"])
        name, arguments = function.get("name"), function.get("arguments")
        if isinstance(name, str) and name and name != call["name"]:
            call["name"] += name
        if isinstance(arguments, str):
            call["arguments"] += arguments
        elif arguments is not None:
            call["arguments"] = json.dumps(arguments)

    def _tokens(self) -> int:
        return self.draft.content_tokens + self.draft.reasoning_tokens + len(self.calls)

    def _result(self) -> ChatResult:
        content = self.draft.content
        if self.cut is not None and self.cut.keep_chars is not None:
            content = content[: self.cut.keep_chars]
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if self.draft.reasoning:
            message["reasoning_content"] = self.draft.reasoning
        calls = tuple(
            ToolCallRequest(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"] or "{}")
            for i, c in sorted(self.calls.items())
        )
        if calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
            ]
        first = self.first_token_at
        stats = GenerationStats(
            first_token_seconds=round(first - self.started, 3) if first is not None else None,
            generation_seconds=round(self.last_token_at - first, 3) if first is not None else 0.0,
            tokens=self.usage.completion_tokens if self.usage and self.usage.completion_tokens else self._tokens(),
            cut=self.cut.reason if self.cut else None,
        )
        return ChatResult(
            message=message,
            content=content,
            tool_calls=calls,
            finish_reason="cut" if self.cut else self.finish_reason,
            usage=self.usage or Usage(completion_tokens=stats.tokens, total_tokens=stats.tokens),
            model=self.model,
            stats=stats,
        )

    def _bad(self, what: str) -> BadResponse:
        return BadResponse(
            f"The model server at {self.api.base_url} sent {what}. It does not follow the OpenAI chat "
            "completions stream format; check that LMSTUDIO_BASE_URL points at LM Studio or another "
            "OpenAI-compatible server.",
            base_url=self.api.base_url,
        )

    def _timeout(self, phase: str) -> LMStudioTimeout:
        settings = self.api.options
        base = self.api.base_url
        if self.first_token_at is None:
            waited, setting = min(
                (settings.first_token_timeout, ENV_NAMES["first_token_timeout"]),
                (settings.request_timeout, ENV_NAMES["request_timeout"]),
            )
            return LMStudioTimeout(
                f"The model at {base} wrote nothing within {waited:g} s of the request ({setting} bounds the "
                "wait for the first token, which includes reading the prompt).",
                base_url=base,
            )
        written = self._tokens()
        since = self.last_token_at - (self.first_token_at or self.started)
        rate = f", {written / since:.1f} tokens/s" if since > 0 else ""
        if phase == "idle":
            return LMStudioTimeout(
                f"The model at {base} went silent for {settings.stream_idle_timeout:g} s in the middle of its "
                f"reply, after {written} tokens ({ENV_NAMES['stream_idle_timeout']}).",
                base_url=base,
            )
        return LMStudioTimeout(
            f"The model at {base} was still writing after {settings.request_timeout:g} s: {written} tokens "
            f"in {since:.0f} s{rate}. {ENV_NAMES['request_timeout']} bounds one reply; "
            f"{ENV_NAMES['max_tokens']} bounds its length.",
            base_url=base,
        )


async def _events(response: httpx.Response) -> AsyncIterator[str]:
    """The data of each server-sent event, up to ``[DONE]``."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        if data:
            yield data


def _json(raw: bytes, base_url: str, *, what: str = "a reply") -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadResponse(
            f"The model server at {base_url} sent something that is not JSON as {what}: {raw[:200]!r}",
            base_url=base_url,
        ) from None


def _error_detail(error: Any) -> str:
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:500]


def _usage(raw: Any) -> Usage | None:
    """Token counts, or None (logged) when the server sent something else."""
    if not isinstance(raw, dict):
        logger.warning("Ignoring a 'usage' that is not an object: %.200r", raw)
        return None
    try:
        return Usage(**{k: int(raw.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")})
    except (TypeError, ValueError):
        logger.warning("Ignoring a 'usage' with counts that are not numbers: %.200r", raw)
        return None


class LLMClient:
    """Chat completions with one model on one server: one per model, shared by every task on it
    (all clients of a server share its ``LMStudioAPI``).

    It keeps what is true of the model: whether it takes image parts (``sees_images``), the
    context it is loaded with (``context_length``) and the characters per token the server's
    counts showed (``chars_per_token``). What belongs to one conversation (which messages were
    shortened, a tighter fit after a refusal) is that task's own ``ContextWindow`` from
    ``window()``, passed to ``complete``: the conversation is shortened before it is sent, and
    once more, then retried once, when the server answers that it does not fit.
    """

    def __init__(
        self, api: LMStudioAPI, model: str, *, context_length: int | None = None, sees_images: bool = False
    ) -> None:
        self.api = api
        self.model = model
        self.context_length = context_length
        self.sees_images = sees_images
        self.chars_per_token = FIRST_CHARS_PER_TOKEN

    def window(self, *, reply_tokens: int, max_tokens: int | None = None) -> ContextWindow:
        """A context window for one conversation, starting from what is known of the model."""
        window = ContextWindow(
            model=self.model,
            base_url=self.api.base_url,
            resize_hint=self.api.managed.context_hint() if self.api.managed is not None else None,
            context_length=self.context_length,
            reply_tokens=reply_tokens,
            max_tokens=max_tokens,
        )
        window.chars_per_token = self.chars_per_token
        return window

    async def complete(
        self,
        messages: Sequence[MutableMapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        window: ContextWindow | None = None,
        watch: Watch | None = None,
        progress: OnProgress | None = None,
        **params: Any,
    ) -> ChatResult:
        """One reply, streamed; ``watch`` may stop it early, ``progress`` hears about it while it is written.

        With a ``window``, ``messages`` may be shortened in place to fit the model's context.
        """
        if window is not None:
            window.fit(messages, tools)
        payload: dict[str, Any] = {"model": self.model, "messages": list(messages), **params}
        if tools:
            payload["tools"] = list(tools)
            payload.setdefault("tool_choice", "auto")
        try:
            result = await self.api.stream_chat(payload, watch=watch, progress=progress)
        except ContextExceeded as exc:
            if window is None:
                raise
            logger.info("%s refused the request as too long for its context; shortening and retrying once", self.model)
            window.learn(exc.context_length)
            window.fit(messages, tools, tighter=True)
            payload["messages"] = list(messages)
            try:
                result = await self.api.stream_chat(payload, watch=watch, progress=progress)
            except ContextExceeded as again:
                window.learn(again.context_length)
                raise window.overflow() from None
        if window is not None:
            window.observe(messages, tools, result.usage.prompt_tokens)
            self.chars_per_token = window.chars_per_token  # the next task starts from the server's count
        stats = result.stats
        logger.debug(
            "chat %s: first token %.2f s, %d tokens at %s tok/s, finish=%s",
            self.model, stats.first_token_seconds or 0, stats.tokens, stats.tokens_per_second, result.finish_reason,
        )  # fmt: skip
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
            ToolCallRequest(
                id=str(raw.get("id") or f"call_{index}"), name=str(function.get("name") or ""), arguments=arguments
            )
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


CONTEXT_ERROR_CODES = frozenset({"context_length_exceeded"})
"""``error.code`` of a prompt that does not fit: OpenAI's, which vLLM and others also send."""
CONTEXT_ERROR_TYPES = frozenset({"exceed_context_size_error"})
"""``error.type`` of the same: llama.cpp's server (with ``n_ctx``, the context it has)."""


def _worth_retrying(error: LMStudioError) -> bool:
    """A connection that failed or dropped: tried again after a pause. A server the bridge starts that did not
    start is not: the next request starts it anew."""
    return isinstance(error, LMStudioUnreachable) and not isinstance(error, ServerDidNotStart)


def _context_exceeded(error: Any, base_url: str, detail: str) -> ContextExceeded | None:
    """``ContextExceeded`` when the server's ``error`` object says the prompt does not fit, by its code or type."""
    if not isinstance(error, dict):
        return None
    if error.get("code") not in CONTEXT_ERROR_CODES and error.get("type") not in CONTEXT_ERROR_TYPES:
        return None
    n_ctx = error.get("n_ctx")
    return ContextExceeded(
        f"The model server at {base_url} refused the request: it does not fit the model's context ({detail}).",
        base_url=base_url,
        context_length=n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None,
    )


def _error_value(response: httpx.Response) -> Any:
    """The ``error`` member of an error body (a string or an object), or None."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def _reason(exc: Exception) -> str:
    """The server's own words from an error this module raised."""
    text = str(exc)
    return text.split(": ", 1)[1] if isinstance(exc, LMStudioHTTPError) and ": " in text else text


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
    delay: float = min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** (attempt - 1))
    return delay * random.uniform(0.8, 1.2)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(RETRY_MAX_DELAY, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return None
