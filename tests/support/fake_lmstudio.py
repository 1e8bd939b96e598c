"""A scripted stand-in for LM Studio's OpenAI-compatible server, on 127.0.0.1.

Use it in-process::

    async with FakeLMStudio(models=["qwen/qwen3-coder-30b"]) as fake:   # or: with FakeLMStudio() as fake:
        ...  # talk to fake.base_url ("http://127.0.0.1:PORT"); the server runs in its own thread

or as a process (prints ``READY http://127.0.0.1:PORT`` on stdout, serves until killed)::

    python -m tests.support.fake_lmstudio --port 0 --models a,b [--embedding-models e] [--latency S] [--api-key K]
        [--api-version v1|v0|openai]

Endpoints: ``GET /v1/models``, ``GET /api/v0/models``, ``GET /api/v0/models/{id}``,
``POST /v1/chat/completions`` (and ``/api/v0/chat/completions``), with or without ``"stream": true``,
and LM Studio 0.4's native ``GET /api/v1/models``, ``POST /api/v1/models/load`` and
``POST /api/v1/models/unload``. ``fake.api_version`` says which LM Studio it plays: ``"v1"`` (0.4, the
default: every endpoint), ``"v0"`` (0.3: the v1 endpoints answer 404) or ``"openai"`` (another
OpenAI-compatible server: only ``/v1/...``). A 404 body is LM Studio's string ``error``.
Control endpoints (not recorded, never need a key): ``GET /_fake/requests``, ``POST /_fake/reset``,
``POST /_fake/config`` (``{"models", "embedding_models", "not_loaded", "latency", "models_latency",
"require_api_key", "missing_paths", "api_version"}``) and ``POST /_fake/fail`` (the arguments of
:meth:`FakeLMStudio.fail_next`).

Model state
-----------
Each model has a ``FakeModel`` (``fake.model(id)``, or ``fake.set_model(id, ...)``): its maximum
context length, the context length it is loaded with, and its capabilities (vision, trained for
tool use, reasoning). ``fake.not_loaded`` holds the models that are downloaded but not loaded. The v1
listing gives a loaded model one entry in ``loaded_instances`` with ``config.context_length``.
``load`` marks a model loaded (``context_length`` from the request, else the smaller of 4096 and its
maximum) and answers ``{"type", "instance_id", "load_time_seconds", "status": "loaded"}``;
``fake.load_failures[id] = (status, body)`` makes it fail with that answer instead, and
``fake.hold_loads()`` holds load answers until ``fake.release_loads()``. ``unload`` takes an
``instance_id``. A chat request naming a model that is not loaded loads it first, as LM Studio's
just-in-time loading does (``fake.jit = False``: LM Studio's "No models loaded" error instead).

A chat request whose prompt (``len(json.dumps(messages + tools)) // 4`` tokens, the count ``usage``
reports) plus ``max_tokens`` (when sent) does not fit the model's loaded context is refused with
HTTP 400. LM Studio's own text for this is a plain string with no code; the fake answers in the
OpenAI shape (``code: "context_length_exceeded"``) by default, or llama.cpp's
(``type: "exceed_context_size_error"`` with ``n_prompt_tokens`` and ``n_ctx``) when
``fake.overflow_style = "llamacpp"``: the shapes a client can recognise without reading the text.

Cue language
------------
The answer to a chat request is decided by cue lines in the conversation's *first user message*,
so a task text alone scripts a whole agent run. A cue line starts with ``@`` (leading blanks
allowed); every other line is ignored. ARGS is a JSON object and may be left out (``{}``).

Rounds, one per assistant answer; the n-th answer (n = assistant messages already in
``messages``) plays the n-th round:

``@call TOOL [ARGS]``
    one tool call (``finish_reason: "tool_calls"``).
``@call TOOL [ARGS]; TOOL2 [ARGS]``
    several ``tool_calls`` in one answer. ``@and TOOL [ARGS]`` (alias ``@parallel``) on the next
    line adds a call to the previous round instead.
``@textcall TOOL [ARGS]``
    the call as text in ``content``: a ```json fenced ``{"name": ..., "arguments": {...}}`` block,
    ``finish_reason: "stop"``, no ``tool_calls``.
``@tagcall TOOL [ARGS]``
    the same as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` in ``content``.
``@badjson TOOL [RAW]``
    a real tool call whose ``arguments`` string is RAW (default ``{"text": "unterminated``).
``@repeat N``
    the previous round N more times. ``@loop``: the previous round for every later answer.

Modifiers of the next answer (round or final):

``@think TEXT``      ``reasoning_content`` (several lines are joined with newlines).
``@thinktag TEXT``   ``<think>TEXT</think>`` in front of ``content``.
``@delay SECONDS``   wait this long before answering (on top of ``fake.latency``).
``@gap SECONDS``     when streaming, wait this long between chunks (a slow model, or a trickle).
``@endless TEXT``    when streaming, the content is TEXT again and again, never finishing: a runaway
                     small model. The stream ends only when the client closes it (counted in
                     ``fake.streams_cut``); without streaming the request is answered with TEXT 100 times.

Final answer (once the rounds are used up; no tool calls, ``finish_reason: "stop"``):
``FINAL model=<model> tools=<tool messages so far> last=<first 200 chars of the last tool message>``.
``@answer [TEXT]`` replaces it with TEXT (may be empty); ``{model}``, ``{tools}`` and ``{last}`` in TEXT
are filled in the same way. A request without ``tools`` (or with ``tool_choice: "none"``) answers
``SUMMARY model=<model> tools=<n> last=<...>`` whatever the cues.

TOOL is matched against the request's offered functions: the exact name; else a name that ends
in ``__TOOL``, then ``_TOOL``/``-TOOL``/``.TOOL``, optionally followed by a ``_N`` de-duplication
suffix (first offered wins). ``SERVER.TOOL`` prefers ``SERVER__TOOL``, then any TOOL match whose
prefix contains SERVER. Names are compared after replacing characters outside ``[a-zA-Z0-9_-]``
by ``_``. With no match, the name is called as written (to test unknown tools).

Parallel requests: ``fake.hold_answers(N)`` holds chat answers until N chat requests wait at
once, so a test sees requests overlap (``fake.max_in_flight``) without timing anything.

Other behaviour: the requested ``model`` is echoed; when ``fake.models`` is non-empty and the model
is not in it the answer is LM Studio's 400 ``model_not_found``; embedding models refuse chat;
``usage``, ``id``, ``created`` are always present and tool call ids are unique per server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any, Literal

CHAT_PATHS = ("/v1/chat/completions", "/api/v0/chat/completions")
NO_MODELS_LOADED: dict[str, Any] = {
    "error": "No models loaded. Please load a model in the developer page or use the 'lms load' command."
}
FaultKind = Literal["status", "garbage", "drop", "hang"]
Json = dict[str, Any]

_MAX_HEADER_BYTES = 64 * 1024
_IDLE_TIMEOUT = 300.0
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_-]")
_DEDUP_SUFFIX = re.compile(r"_\d+$")
_TOOL_NAME = re.compile(r"\s*([^\s;{]+)\s*")


# ----------------------------------------------------------------------------- cue language


@dataclass
class Call:
    name: str
    arguments: str  # the JSON text as sent (may be invalid on purpose)


@dataclass
class Round:
    kind: Literal["calls", "textcall", "tagcall", "final"] = "final"
    calls: list[Call] = field(default_factory=list)
    think: list[str] = field(default_factory=list)
    thinktag: list[str] = field(default_factory=list)
    delay: float = 0.0
    gap: float = 0.0
    endless: str | None = None
    text: str | None = None  # final answer template (None: the default FINAL line)


@dataclass
class Script:
    rounds: list[Round] = field(default_factory=list)
    final: Round = field(default_factory=Round)
    loop: bool = False

    def round_for(self, answered: int) -> Round:
        if answered < len(self.rounds):
            return self.rounds[answered]
        if self.loop and self.rounds:
            return self.rounds[-1]
        return self.final


class CueError(ValueError):
    """A cue line that cannot be read."""


def _split_calls(text: str) -> list[tuple[str, Json | None]]:
    """``TOOL [ARGS][; TOOL [ARGS]]...`` -> (name, parsed args) pairs; ``;`` inside JSON is fine."""
    decoder = json.JSONDecoder()
    calls: list[tuple[str, Json | None]] = []
    pos = 0
    while True:
        match = _TOOL_NAME.match(text, pos)
        if not match:
            raise CueError(f"expected a tool name in {text!r}")
        name, pos = match.group(1), match.end()
        args: Json | None = None
        if pos < len(text) and text[pos] == "{":
            try:
                args, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise CueError(f"bad JSON arguments in {text!r}: {exc}") from exc
            if not isinstance(args, dict):
                raise CueError(f"arguments must be a JSON object in {text!r}")
        calls.append((name, args))
        rest = text[pos:].lstrip()
        if not rest:
            return calls
        if not rest.startswith(";"):
            raise CueError(f"unexpected text {rest!r} after a call")
        pos = len(text) - len(rest) + 1


def parse_cues(text: str) -> Script:
    """Read the cue lines of a first user message."""
    script = Script()
    pending = Round()

    def take_modifiers(target: Round) -> Round:
        nonlocal pending
        target.think, target.thinktag, target.delay = pending.think, pending.thinktag, pending.delay
        target.gap, target.endless = pending.gap, pending.endless
        pending = Round()
        return target

    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("@"):
            continue
        cue, _, rest = line[1:].partition(" ")
        cue, rest = cue.lower(), rest.strip()
        if cue == "call":
            calls = [Call(n, json.dumps(a or {})) for n, a in _split_calls(rest)]
            script.rounds.append(take_modifiers(Round(kind="calls", calls=calls)))
        elif cue in ("and", "parallel"):
            if not script.rounds or script.rounds[-1].kind != "calls":
                raise CueError(f"@{cue} needs a previous @call")
            script.rounds[-1].calls += [Call(n, json.dumps(a or {})) for n, a in _split_calls(rest)]
        elif cue in ("textcall", "tagcall"):
            name, args = _split_calls(rest)[0]
            kind: Literal["textcall", "tagcall"] = "textcall" if cue == "textcall" else "tagcall"
            script.rounds.append(take_modifiers(Round(kind=kind, calls=[Call(name, json.dumps(args or {}))])))
        elif cue == "badjson":
            name, _, raw_args = rest.partition(" ")
            if not name:
                raise CueError("@badjson needs a tool name")
            call = Call(name, raw_args.strip() or '{"text": "unterminated')
            script.rounds.append(take_modifiers(Round(kind="calls", calls=[call])))
        elif cue == "repeat":
            if not script.rounds:
                raise CueError("@repeat needs a previous round")
            script.rounds += [script.rounds[-1]] * int(rest)
        elif cue == "loop":
            if not script.rounds:
                raise CueError("@loop needs a previous round")
            script.loop = True
        elif cue == "think":
            pending.think.append(rest)
        elif cue == "thinktag":
            pending.thinktag.append(rest)
        elif cue == "delay":
            pending.delay += float(rest)
        elif cue == "gap":
            pending.gap = float(rest)
        elif cue == "endless":
            pending.endless = rest.replace("\\n", "\n") or "again "
        elif cue == "answer":
            script.final.text = rest
        else:
            raise CueError(f"unknown cue @{cue}")
    final_text = script.final.text
    script.final = take_modifiers(Round(kind="final", text=final_text))
    return script


def _clean(name: str) -> str:
    return _INVALID_NAME.sub("_", name)


def resolve_tool(name: str, offered: list[str]) -> str:
    """The offered function a cue's TOOL means (see the module docstring); the name itself if none."""
    if name in offered:
        return name
    cleaned = {_clean(o): o for o in reversed(offered)}
    if _clean(name) in cleaned:
        return cleaned[_clean(name)]
    server, dot, tool = name.partition(".")
    if dot:
        exact = _clean(f"{server}__{tool}")
        if exact in cleaned:
            return cleaned[exact]
        for candidate, prefix in _tool_matches(_clean(tool), offered):
            if _clean(server) in prefix:
                return candidate
    for candidate, _ in _tool_matches(_clean(name), offered):
        return candidate
    return name


def _tool_matches(tool: str, offered: list[str]) -> list[tuple[str, str]]:
    """(offered name, its prefix before TOOL) for every name matching TOOL, best first."""
    ranked: list[tuple[int, int, str, str]] = []
    for index, original in enumerate(offered):
        for dedup, name in enumerate((_clean(original), _DEDUP_SUFFIX.sub("", _clean(original)))):
            if name == tool:
                ranked.append((dedup * 10, index, original, ""))
            elif name.endswith("__" + tool):
                ranked.append((1 + dedup * 10, index, original, name[: -len(tool) - 2]))
            elif any(name.endswith(sep + tool) for sep in ("_", "-", ".")):
                ranked.append((2 + dedup * 10, index, original, name[: -len(tool) - 1]))
    ranked.sort()
    seen: set[str] = set()
    result: list[tuple[str, str]] = []
    for _, _, original, prefix in ranked:
        if original not in seen:
            seen.add(original)
            result.append((original, prefix))
    return result


def _text_of(content: Any) -> str:
    """A message's text, whether ``content`` is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


# ----------------------------------------------------------------------------- recording and faults


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    raw_body: bytes
    at: float  # time.monotonic()

    @property
    def json(self) -> Json:
        """The body as a dict (``{}`` when it was not a JSON object)."""
        return self.body if isinstance(self.body, dict) else {}


@dataclass
class Fault:
    kind: FaultKind
    times: int
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/v1/chat/completions"  # "*" for every recorded path

    def applies_to(self, path: str) -> bool:
        return self.path == "*" or self.path == path or (self.path in CHAT_PATHS and path in CHAT_PATHS)


@dataclass
class _Hold:
    """Chat answers held back until ``until`` chat requests wait at once (or ``timeout`` passes); then all go."""

    until: int
    timeout: float
    waiting: int = 0
    opened: asyncio.Event | None = None  # made on the fake's event loop by the first held request

    async def wait(self) -> None:
        if self.opened is None:
            self.opened = asyncio.Event()
        self.waiting += 1
        if self.waiting >= self.until:
            self.opened.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.opened.wait(), self.timeout)
        self.opened.set()  # once open (or timed out), the gate stays open


@dataclass
class _Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    events: list[bytes] | AsyncIterator[bytes] | None = None  # server-sent events, for streaming answers
    drop: bool = False

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> _Reply:
        return cls(status=status, body=json.dumps(data).encode(), headers=headers or {})


@dataclass
class FakeModel:
    """What the fake knows about one model besides its id (see "Model state" above)."""

    max_context_length: int = 32768
    context_length: int | None = None
    """The context it is loaded with; None: its maximum."""
    vision: bool = False
    tool_use: bool = True
    reasoning: bool = False


DEFAULT_LOAD_CONTEXT = 4096
"""The context length a load without ``context_length`` gets (LM Studio's default)."""


# ----------------------------------------------------------------------------- the server


class FakeLMStudio:
    """A scripted OpenAI-compatible server; see the module docstring."""

    def __init__(
        self,
        models: list[str] | None = None,
        *,
        embedding_models: list[str] | None = None,
        port: int = 0,
        latency: float = 0.0,
        require_api_key: str | None = None,
    ) -> None:
        self.models: list[str] = list(models) if models is not None else ["fake-model"]
        self.embedding_models: set[str] = set(embedding_models or [])
        self.not_loaded: set[str] = set()
        self.latency = latency
        self.models_latency = 0.0
        self.require_api_key = require_api_key
        self.missing_paths: set[str] = set()
        self.hang_limit = 120.0
        self.api_version: Literal["v1", "v0", "openai"] = "v1"
        self.details: dict[str, FakeModel] = {}
        self.load_failures: dict[str, tuple[int, Any]] = {}
        self.jit = True
        self.overflow_style: Literal["openai", "llamacpp"] = "openai"
        self._loads_held: asyncio.Event | None = None
        self._hold_loads = False
        self.responder: Callable[[Json], Json | None] | None = None
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.streams_cut = 0
        """Streamed answers whose client closed the connection before the end."""
        self._faults: list[Fault] = []
        self._hold: _Hold | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("FakeLMStudio is not started")
        return int(self._sock.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> FakeLMStudio:
        """Serve in a background thread; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._sock = self._bind()
        self._thread = threading.Thread(target=self._thread_main, name=f"fake-lmstudio-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("fake LM Studio did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving; requests still open (hanging ones too) are cut off."""
        if self._thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> FakeLMStudio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeLMStudio:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    async def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve on the current event loop until cancelled (the script mode)."""
        self._sock = self._sock or self._bind()
        await self._serve(on_ready)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def _thread_main(self) -> None:
        asyncio.run(self._serve(None))

    async def _serve(self, on_ready: Callable[[str], None] | None) -> None:
        assert self._sock is not None
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._on_connection, sock=self._sock, limit=_MAX_HEADER_BYTES)
        try:
            self._ready.set()
            if on_ready:
                on_ready(self.base_url)
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), timeout=5)

    # -- test controls

    def fail_next(
        self,
        status: int | None = None,
        body: Any = None,
        *,
        times: int = 1,
        kind: FaultKind = "status",
        headers: dict[str, str] | None = None,
        path: str = "/v1/chat/completions",
    ) -> None:
        """Queue a failure for the next ``times`` requests to ``path`` (``"*"``: any path).

        kind ``"status"``: answer ``status`` (default 503) with ``body`` (dict/list -> JSON, str/bytes
        as is; default ``{"error": "Fake failure: HTTP <status>"}``); ``"garbage"``: ``status``
        (default 200) with a non-JSON body (``body`` if given); ``"drop"``: close the connection without answering; ``"hang"``: never answer
        (until the client gives up, ``fake.hang_limit`` seconds pass, or the fake stops).
        """
        if status is None:
            status = 200 if kind == "garbage" else 503
        with self._lock:
            self._faults.append(Fault(kind, times, status, body, dict(headers or {}), path))

    def no_models_loaded_next(self, times: int = 1) -> None:
        """LM Studio's 400 ``{"error": "No models loaded. ..."}`` (``error`` is a plain string)."""
        self.fail_next(400, NO_MODELS_LOADED, times=times)

    def garbage_next(self, times: int = 1, path: str = "/v1/chat/completions") -> None:
        self.fail_next(kind="garbage", times=times, path=path)

    def drop_next(self, times: int = 1, path: str = "/v1/chat/completions") -> None:
        self.fail_next(kind="drop", times=times, path=path)

    def hang_next(self, times: int = 1, path: str = "/v1/chat/completions") -> None:
        self.fail_next(kind="hang", times=times, path=path)

    def hold_answers(self, until: int, timeout: float = 30.0) -> None:
        """Hold chat answers back until ``until`` chat requests are waiting at once; then answer them all.

        Shows that requests really run in parallel without timing anything: ``max_in_flight``
        reaches ``until``. Requests that come one at a time are all held until ``timeout`` passes
        instead, and ``max_in_flight`` stays low. The gate stays open once it opened; ``reset()``
        removes it.
        """
        self._hold = _Hold(until, timeout)

    def model(self, model_id: str) -> FakeModel:
        """The model's details (made with the defaults on first use)."""
        return self.details.setdefault(model_id, FakeModel())

    def set_model(self, model_id: str, *, loaded: bool = True, **details: Any) -> FakeModel:
        """Adds ``model_id`` (if new) with ``details`` (``FakeModel`` fields); ``loaded=False``: downloaded only."""
        if model_id not in self.models and model_id not in self.embedding_models:
            self.models.append(model_id)
        info = self.model(model_id)
        for key, value in details.items():
            setattr(info, key, value)
        if loaded:
            self.not_loaded.discard(model_id)
        else:
            self.not_loaded.add(model_id)
        return info

    def loaded_context(self, model_id: str) -> int | None:
        """The context length the model is loaded with, or None when it is not loaded."""
        if model_id in self.not_loaded:
            return None
        info = self.model(model_id)
        return info.context_length or info.max_context_length

    def hold_loads(self) -> None:
        """Hold every load answer until ``release_loads()`` (a load that takes a while, without timing)."""
        self._hold_loads = True

    def release_loads(self) -> None:
        self._hold_loads = False
        loop, event = self._loop, self._loads_held
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    def release_answers(self) -> None:
        """Opens the gate of ``hold_answers`` now: every held answer goes."""
        hold, loop = self._hold, self._loop
        if hold is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: hold.opened.set() if hold.opened else None)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget recorded requests, queued faults and held answers."""
        with self._lock:
            self._hold = None
            self._faults.clear()
            self.requests.clear()
            self.max_in_flight = self.in_flight

    # -- inspection

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path in CHAT_PATHS]

    def chat_bodies(self) -> list[Json]:
        return [r.json for r in self.chat_requests()]

    def last_chat(self) -> Json:
        chats = self.chat_requests()
        if not chats:
            raise AssertionError("no chat request was made")
        return chats[-1].json

    def count(self, path: str, method: str | None = None) -> int:
        return sum(1 for r in self.requests if r.path == path and (method is None or r.method == method))

    def counts(self) -> Counter[str]:
        """Requests per path."""
        return Counter(r.path for r in self.requests)

    # -- HTTP plumbing

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                reply = await self._handle(request)
                if reply.drop:
                    transport = writer.transport
                    if isinstance(transport, asyncio.Transport):
                        transport.abort()
                    return
                await self._write(writer, reply, request.headers)
                if reply.events is not None or request.headers.get("connection", "").lower() == "close":
                    return
        except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return  # a closed, idle or malformed connection: drop it
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=2)

    async def _read_request(self, reader: asyncio.StreamReader) -> RecordedRequest | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=_IDLE_TIMEOUT)
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            raw = await self._read_chunked(reader)
        else:
            length = int(headers.get("content-length", "0") or 0)
            raw = await asyncio.wait_for(reader.readexactly(length), timeout=_IDLE_TIMEOUT) if length else b""
        path, _, query = target.partition("?")
        body: Any = None
        if raw:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        return RecordedRequest(method.upper(), path, query, headers, body, raw, time.monotonic())

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout=_IDLE_TIMEOUT)
            size = int(size_line.split(b";")[0].strip(), 16)
            data = await asyncio.wait_for(reader.readexactly(size + 2), timeout=_IDLE_TIMEOUT)
            if size == 0:
                return b"".join(chunks)
            chunks.append(data[:-2])

    async def _write(self, writer: asyncio.StreamWriter, reply: _Reply, request_headers: dict[str, str]) -> None:
        try:
            reason = HTTPStatus(reply.status).phrase
        except ValueError:
            reason = "Unknown"
        head = [f"HTTP/1.1 {reply.status} {reason}", f"Content-Type: {reply.content_type}"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if reply.events is None:
            head += [f"Content-Length: {len(reply.body)}", "Connection: keep-alive"]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
            await asyncio.wait_for(writer.drain(), timeout=_IDLE_TIMEOUT)
            return
        head += ["Cache-Control: no-cache", "Connection: close"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        events = reply.events
        if isinstance(events, list):
            events = _iterate(events)
        try:
            async for event in events:
                if writer.is_closing():
                    raise ConnectionResetError("the client closed the stream")
                writer.write(event)
                await asyncio.wait_for(writer.drain(), timeout=_IDLE_TIMEOUT)
        except ConnectionError:
            self.streams_cut += 1
            raise

    # -- routing

    async def _handle(self, request: RecordedRequest) -> _Reply:
        if request.path.startswith("/_fake/"):
            return self._control(request)
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._route(request)
        finally:
            self.in_flight -= 1

    async def _route(self, request: RecordedRequest) -> _Reply:
        if self.require_api_key is not None and (
            request.headers.get("authorization", "") != f"Bearer {self.require_api_key}"
        ):
            error = {
                "message": "Invalid or missing API token.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
            return _Reply.json(401, {"error": error})
        fault = self._take_fault(request.path)
        if fault is not None:
            return await self._fault_reply(fault)
        key = (request.method, request.path)
        if request.path in self.missing_paths or not self._serves(request.path):
            return self._not_found(request)
        if key in (("GET", "/v1/models"), ("GET", "/api/v0/models"), ("GET", "/api/v1/models")) or (
            request.method == "GET" and request.path.startswith("/api/v0/models/")
        ):
            await asyncio.sleep(self.models_latency)
            return self._models_reply(request.path)
        if key == ("POST", "/api/v1/models/load"):
            return await self._load(request.json)
        if key == ("POST", "/api/v1/models/unload"):
            return self._unload(request.json)
        if request.method == "POST" and request.path in CHAT_PATHS:
            return await self._chat(request.body)
        return self._not_found(request)

    def _serves(self, path: str) -> bool:
        """False for the native endpoints the LM Studio played here does not have."""
        if path.startswith("/api/v1/"):
            return self.api_version == "v1"
        if path.startswith("/api/v0/"):
            return self.api_version in ("v1", "v0")
        return True

    def _not_found(self, request: RecordedRequest) -> _Reply:
        return _Reply.json(404, {"error": f"Unexpected endpoint or method. ({request.method} {request.path})"})

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.applies_to(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    async def _fault_reply(self, fault: Fault) -> _Reply:
        if fault.kind == "drop":
            return _Reply(drop=True)
        if fault.kind == "hang":
            assert self._stopping is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.hang_limit)
            return _Reply(drop=True)
        if fault.kind == "garbage":
            body = fault.body if fault.body is not None else b"<html>this is not JSON {"
            raw = body.encode() if isinstance(body, str) else bytes(body)
            return _Reply(status=fault.status, body=raw, headers=fault.headers, content_type="text/html")
        if fault.body is None:
            return _Reply.json(fault.status, {"error": f"Fake failure: HTTP {fault.status}"}, fault.headers)
        if isinstance(fault.body, (str, bytes)):
            raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
            return _Reply(status=fault.status, body=raw, headers=fault.headers, content_type="text/plain")
        return _Reply.json(fault.status, fault.body, fault.headers)

    def _model_info(self, model_id: str) -> Json:
        embedding = model_id in self.embedding_models
        return {
            "id": model_id,
            "object": "model",
            "type": "embeddings" if embedding else "vlm" if self.model(model_id).vision else "llm",
            "publisher": model_id.split("/")[0] if "/" in model_id else "local",
            "arch": "bert" if embedding else "qwen2",
            "compatibility_type": "gguf",
            "quantization": "Q4_K_M",
            "state": "not-loaded" if model_id in self.not_loaded else "loaded",
            "max_context_length": self.model(model_id).max_context_length,
        }

    def _v1_model(self, model_id: str) -> Json:
        """One entry of ``GET /api/v1/models``."""
        info = self.model(model_id)
        embedding = model_id in self.embedding_models
        context = self.loaded_context(model_id)
        instances = [] if context is None else [{"id": model_id, "config": {"context_length": context}}]
        entry: Json = {
            "type": "embedding" if embedding else "llm",
            "key": model_id,
            "display_name": model_id.split("/")[-1],
            "publisher": model_id.split("/")[0] if "/" in model_id else "local",
            "architecture": "bert" if embedding else "qwen2",
            "quantization": {"name": "Q4_K_M", "bits_per_weight": 4.8},
            "size_bytes": 4_683_073_536,
            "params_string": "7B",
            "max_context_length": info.max_context_length,
            "format": "gguf",
            "loaded_instances": instances,
        }
        if not embedding:
            reasoning = {"allowed_options": ["off", "on"], "default": "on"} if info.reasoning else None
            capabilities: Json = {"vision": info.vision, "trained_for_tool_use": info.tool_use}
            if reasoning is not None:
                capabilities["reasoning"] = reasoning
            entry["capabilities"] = capabilities
        return entry

    async def _load(self, body: Json) -> _Reply:
        model_id = body.get("model")
        if not isinstance(model_id, str) or model_id not in self._all_models():
            return _Reply.json(404, {"error": f'Model "{model_id}" not found'})
        if self._hold_loads:
            self._loads_held = self._loads_held or asyncio.Event()
            await self._loads_held.wait()
        if model_id in self.load_failures:
            status, failure = self.load_failures[model_id]
            return _Reply.json(status, failure)
        info = self.model(model_id)
        requested = body.get("context_length")
        if isinstance(requested, int) and not 0 < requested <= info.max_context_length:
            error = f"context_length must be between 1 and {info.max_context_length}, got {requested}"
            return _Reply.json(400, {"error": error})
        info.context_length = (
            requested if isinstance(requested, int) else min(DEFAULT_LOAD_CONTEXT, info.max_context_length)
        )
        self.not_loaded.discard(model_id)
        kind = "embedding" if model_id in self.embedding_models else "llm"
        return _Reply.json(200, {"type": kind, "instance_id": model_id, "load_time_seconds": 0.1, "status": "loaded"})

    def _unload(self, body: Json) -> _Reply:
        instance = body.get("instance_id")
        if not isinstance(instance, str) or instance not in self._all_models() or instance in self.not_loaded:
            return _Reply.json(404, {"error": f'No loaded model instance "{instance}"'})
        self.not_loaded.add(instance)
        return _Reply.json(200, {"instance_id": instance})

    def _all_models(self) -> list[str]:
        return list(self.models) + sorted(self.embedding_models - set(self.models))

    def _models_reply(self, path: str) -> _Reply:
        if path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "organization_owner"} for m in self._all_models()]
            return _Reply.json(200, {"object": "list", "data": data})
        if path == "/api/v1/models":
            return _Reply.json(200, {"models": [self._v1_model(m) for m in self._all_models()]})
        if path == "/api/v0/models":
            return _Reply.json(200, {"object": "list", "data": [self._model_info(m) for m in self._all_models()]})
        model_id = path.removeprefix("/api/v0/models/")
        if model_id not in self._all_models():
            return _Reply.json(404, {"error": f'Model "{model_id}" not found'})
        return _Reply.json(200, self._model_info(model_id))

    # -- chat

    async def _chat(self, body: Any) -> _Reply:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _Reply.json(400, {"error": "'messages' field is required"})
        known = self._all_models()
        model = body.get("model") or (self.models[0] if self.models else "fake-model")
        if self.models and model not in known:
            error = {
                "message": f'Invalid model identifier "{model}". Please specify a valid downloaded model.',
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
            return _Reply.json(400, {"error": error})
        if model in self.embedding_models:
            return _Reply.json(400, {"error": f'Model "{model}" is an embedding model and cannot be used for chat.'})
        if model in self.not_loaded:
            if not self.jit:
                return _Reply.json(400, NO_MODELS_LOADED)
            self.not_loaded.discard(model)  # just-in-time loading
            self.model(model).context_length = min(DEFAULT_LOAD_CONTEXT, self.model(model).max_context_length)
        overflow = self._overflow(body, model)
        if overflow is not None:
            return overflow
        if (hold := self._hold) is not None:
            await hold.wait()
        if self.responder is not None and (custom := self.responder(body)) is not None:
            await asyncio.sleep(self.latency)
            return _Reply.json(200, custom)
        try:
            message, finish, delay, step = self._decide(body, model)
        except (CueError, ValueError) as exc:
            return _Reply.json(400, {"error": f"fake LM Studio cue error: {exc}"})
        await asyncio.sleep(self.latency + delay)
        completion_id = f"chatcmpl-{next(self._ids)}"
        usage = _usage(body["messages"], message, body.get("tools"))
        if body.get("stream"):
            if step.endless is not None:
                return _Reply(
                    events=_endless(completion_id, model, step.endless, step.gap), content_type="text/event-stream"
                )
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _stream_events(completion_id, model, message, finish, usage if include_usage else None)
            return _Reply(events=_spaced(events, step.gap), content_type="text/event-stream")
        if step.endless is not None:
            message = {"role": "assistant", "content": step.endless * 100}
            finish = "length"
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return _Reply.json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": usage,
                "system_fingerprint": model,
            },
        )

    def _overflow(self, body: Json, model: str) -> _Reply | None:
        """The 400 answer for a prompt that does not fit the model's loaded context, or None."""
        context = self.loaded_context(model)
        if context is None or model not in self._all_models():
            return None
        prompt = _prompt_tokens(body["messages"], body.get("tools"))
        wanted = prompt + (body["max_tokens"] if isinstance(body.get("max_tokens"), int) else 0)
        if wanted <= context:
            return None
        text = f"request ({prompt} tokens) exceeds the available context size ({context} tokens)"
        if self.overflow_style == "llamacpp":
            error: Json = {
                "code": 400, "message": text, "type": "exceed_context_size_error",
                "n_prompt_tokens": prompt, "n_ctx": context,
            }  # fmt: skip
        else:
            error = {
                "message": f"This model's maximum context length is {context} tokens. However, your messages "
                f"resulted in {prompt} tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded",
            }  # fmt: skip
        return _Reply.json(400, {"error": error})

    def _decide(self, body: Json, model: str) -> tuple[Json, str, float, Round]:
        """The assistant message, finish reason and extra delay for this request."""
        messages: list[Any] = [m for m in body["messages"] if isinstance(m, dict)]
        first_user = next((_text_of(m.get("content")) for m in messages if m.get("role") == "user"), "")
        tool_messages = [m for m in messages if m.get("role") == "tool"]
        last = _text_of(tool_messages[-1].get("content")) if tool_messages else ""
        fill = {"{model}": model, "{tools}": str(len(tool_messages)), "{last}": last[:200]}
        tools = body.get("tools") or []
        offered = [t["function"]["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        if not tools or body.get("tool_choice") == "none":
            step = Round(kind="final", text="SUMMARY model={model} tools={tools} last={last}")
        else:
            answered = sum(1 for m in messages if m.get("role") == "assistant")
            step = parse_cues(first_user).round_for(answered)
        message: Json = {"role": "assistant", "content": None}
        finish = "stop"
        if step.kind == "calls":
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids)}",
                    "type": "function",
                    "function": {"name": resolve_tool(c.name, offered), "arguments": c.arguments},
                }
                for c in step.calls
            ]
            finish = "tool_calls"
        elif step.kind in ("textcall", "tagcall"):
            call = step.calls[0]
            payload = json.dumps({"name": resolve_tool(call.name, offered), "arguments": json.loads(call.arguments)})
            message["content"] = (
                f"```json\n{payload}\n```" if step.kind == "textcall" else f"<tool_call>\n{payload}\n</tool_call>"
            )
        else:
            text = step.text if step.text is not None else "FINAL model={model} tools={tools} last={last}"
            for key, value in fill.items():
                text = text.replace(key, value)
            message["content"] = text
        if step.thinktag:
            message["content"] = "<think>" + "\n".join(step.thinktag) + "</think>\n" + (message["content"] or "")
        if step.think:
            message["reasoning_content"] = "\n".join(step.think)
        return message, finish, step.delay, step

    # -- control endpoints (script mode)

    def _control(self, request: RecordedRequest) -> _Reply:
        data = request.json
        if request.path == "/_fake/requests":
            rows = [{k: v for k, v in asdict(r).items() if k != "raw_body"} for r in self.requests]
            return _Reply.json(200, {"requests": rows, "max_in_flight": self.max_in_flight})
        if request.path == "/_fake/reset":
            self.reset()
            return _Reply.json(200, {"ok": True})
        if request.path == "/_fake/config":
            for name in ("models", "latency", "models_latency", "require_api_key", "api_version"):
                if name in data:
                    setattr(self, name, data[name])
            for name in ("embedding_models", "not_loaded", "missing_paths"):
                if name in data:
                    setattr(self, name, set(data[name]))
            return _Reply.json(200, {"ok": True})
        if request.path == "/_fake/fail":
            allowed = {"status", "body", "times", "kind", "headers", "path"}
            self.fail_next(**{k: v for k, v in data.items() if k in allowed})
            return _Reply.json(200, {"ok": True})
        return self._not_found(request)


def _prompt_tokens(messages: list[Any], tools: Any = None) -> int:
    """The fake's token count of a prompt: a token per four characters of its JSON."""
    return max(1, (len(json.dumps(messages)) + (len(json.dumps(tools)) if tools else 0)) // 4)


def _usage(messages: list[Any], message: Json, tools: Any = None) -> Json:
    prompt = _prompt_tokens(messages, tools)
    completion = max(1, len(json.dumps(message)) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _iterate(events: list[bytes]) -> AsyncIterator[bytes]:
    for item in events:
        yield item


async def _spaced(events: list[bytes], gap: float) -> AsyncIterator[bytes]:
    for index, item in enumerate(events):
        if index and gap:
            await asyncio.sleep(gap)
        yield item


async def _endless(completion_id: str, model: str, text: str, gap: float) -> AsyncIterator[bytes]:
    """``text`` as content chunks, forever: only the client can end it."""
    created = int(time.time())
    for index in itertools.count():
        piece = text if index else ""
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
        yield f"data: {json.dumps(data)}\n\n".encode()
        await asyncio.sleep(gap or 0.001)


def _stream_events(completion_id: str, model: str, message: Json, finish: str, usage: Json | None) -> list[bytes]:
    """The answer as OpenAI-style chunks: content in pieces, tool call arguments in fragments."""
    created = int(time.time())

    def chunk(delta: Json, finish_reason: str | None = None, **extra: Any) -> bytes:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            **extra,
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    events = [chunk({"role": "assistant", "content": ""})]
    if message.get("reasoning_content"):
        events.append(chunk({"reasoning_content": message["reasoning_content"]}))
    content = message.get("content") or ""
    events += [chunk({"content": content[i : i + 16]}) for i in range(0, len(content), 16)]
    for index, call in enumerate(message.get("tool_calls") or []):
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        events.append(chunk({"tool_calls": [head]}))
        arguments = call["function"]["arguments"]
        for i in range(0, len(arguments), 8):
            events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[i : i + 8]}}]}))
    events.append(chunk({}, finish))
    if usage is not None:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        events.append(f"data: {json.dumps(data)}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    return events


# ----------------------------------------------------------------------------- script mode


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scripted LM Studio stand-in on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--models", default="fake-model", help="comma-separated model ids ('' for none)")
    parser.add_argument("--embedding-models", default="", help="comma-separated embedding model ids")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat answer")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--api-version", default="v1", choices=["v1", "v0", "openai"], help="which server to play")
    args = parser.parse_args(argv)
    fake = FakeLMStudio(
        [m for m in args.models.split(",") if m],
        embedding_models=[m for m in args.embedding_models.split(",") if m],
        port=args.port,
        latency=args.latency,
        require_api_key=args.api_key,
    )
    fake.api_version = args.api_version

    def ready(url: str) -> None:
        sys.stdout.write(f"READY {url}\n")
        sys.stdout.flush()

    async def run() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, lambda: task.cancel() if task else None)
        with contextlib.suppress(asyncio.CancelledError):
            await fake.serve_forever(ready)

    asyncio.run(run())


if __name__ == "__main__":
    main()
