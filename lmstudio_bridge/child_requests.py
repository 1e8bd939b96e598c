"""The child servers' own requests to their client (the bridge), answered for the task they serve.

A child may ask its client for a model reply (``sampling/createMessage``), for the user's input
(``elicitation/create``) or for the client's roots (``roots/list``):

- sampling is answered by the task's local model, within the task's budget (at most ``max_rounds``
  requests per task, replies of at most ``reply_tokens`` tokens), each shown in the task's progress;
- elicitation is forwarded to the calling client when it supports elicitation, and declined otherwise
  (and past ``max_rounds`` questions in one task);
- roots are the calling client's roots when it has them, else the configured list (which may be empty:
  the filesystem server then keeps the directories on its command line).

Children are pooled: one child may serve several tasks over its life, and concurrent tasks may share
it. Each child has a ``ChildRequests`` router; every task that leases the child attaches its
``TaskLink`` for the lease, and a request goes to the task with a tool call in flight on that child
(the most recent one if several have), else to the task that most recently leased it. A request with no
task to answer it (the child asked while idle) is refused, or answered with an empty list of roots.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.client.session import ClientRequestContext
from mcp.types import (
    INVALID_REQUEST,
    CallToolResult,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    ListRootsResult,
    Root,
    TextContent,
    Tool,
)

from .agent import ProgressFn, no_progress
from .errors import BridgeError
from .host import Host
from .lmstudio import LLMClient
from .results import ChildRequestRecord

logger = logging.getLogger(__name__)

ROOTS_TIMEOUT = 10.0
"""Seconds the calling client has to list its roots."""


@dataclass
class TaskLink:
    """What one task lends the children it leases: its model and budget, its caller, its progress."""

    llm: LLMClient | None = None
    request_budget: int = 0
    """Model requests the task's children may make, in all; and questions they may ask the user."""
    reply_tokens: int = 2048
    sampling: dict[str, Any] = field(default_factory=dict)
    host: Host | None = None
    elicitation_timeout: float = 120.0
    roots: tuple[Path, ...] = ()
    """Answered when the calling client has no roots."""
    say: ProgressFn = no_progress
    records: list[ChildRequestRecord] = field(default_factory=list)
    sampled: int = 0
    asked: int = 0
    _client_roots: list[Root] | None = None

    async def sample(self, server: str, params: CreateMessageRequestParams) -> CreateMessageResult | ErrorData:
        if self.llm is None:
            return self._refused(server, "sampling/createMessage", "this task has no model to answer with")
        if self.sampled >= self.request_budget:
            return self._refused(
                server,
                "sampling/createMessage",
                f"the task's budget of {self.request_budget} model requests for its servers is spent",
            )
        self.sampled += 1
        where = f"{server} asks the model ({self.sampled}/{self.request_budget})"
        await self.say(f"{where} · waiting for {self.llm.model}")
        messages: list[dict[str, Any]] = []
        if params.system_prompt:
            messages.append({"role": "system", "content": params.system_prompt})
        messages += [{"role": m.role, "content": _text(m.content)} for m in params.messages]
        options = {**self.sampling, "max_tokens": max(1, min(params.max_tokens, self.reply_tokens))}
        if params.temperature is not None:
            options["temperature"] = params.temperature
        if params.stop_sequences:
            options["stop"] = list(params.stop_sequences)[:4]
        try:
            result = await self.llm.complete(messages, **options)
        except BridgeError as exc:
            return self._refused(server, "sampling/createMessage", f"the local model failed: {exc}")
        tokens = result.usage.completion_tokens
        self.records.append(
            ChildRequestRecord(server=server, method="sampling/createMessage", outcome="answered", tokens=tokens)
        )
        await self.say(f"{where} · answered, {tokens} tokens")
        stop = "maxTokens" if result.finish_reason == "length" else "endTurn"
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=result.content),
            model=self.llm.model,
            stop_reason=stop,
        )

    async def elicit(self, server: str, params: ElicitRequestParams) -> ElicitResult:
        host = self.host
        supported = host is not None and (host.can_open_urls if params.mode == "url" else host.can_elicit)
        if host is None or not supported:
            self._record(
                server, "elicitation/create", "decline", f"the calling client takes no {params.mode} questions"
            )
            return ElicitResult(action="decline")
        if self.asked >= self.request_budget:
            self._record(server, "elicitation/create", "decline", f"more than {self.request_budget} questions")
            return ElicitResult(action="decline")
        self.asked += 1
        shown = params.model_copy(update={"message": f"The MCP server '{server}' asks: {params.message}"})
        await self.say(f"{server} asks the user a question")
        try:
            answer = await host.elicit(shown, timeout=self.elicitation_timeout)
        except TimeoutError:
            self._record(server, "elicitation/create", "cancel", f"no answer within {self.elicitation_timeout:g} s")
            return ElicitResult(action="cancel")
        except Exception as exc:  # noqa: BLE001 - a question that could not be asked is declined
            logger.warning("Forwarding %s's question to the client failed: %s", server, exc)
            self._record(server, "elicitation/create", "decline", "the calling client could not be asked")
            return ElicitResult(action="decline")
        self._record(server, "elicitation/create", answer.action)
        return answer

    async def list_roots(self, server: str) -> ListRootsResult:
        roots = await self._host_roots()
        source = "client"
        if roots is None:
            roots = [Root(uri=path.absolute().as_uri(), name=path.name or str(path)) for path in self.roots]  # type: ignore[arg-type]
            source = "configured"
        self._record(server, "roots/list", "answered", f"{len(roots)} {source} root(s)")
        return ListRootsResult(roots=roots)

    async def _host_roots(self) -> list[Root] | None:
        """The calling client's roots, asked once per task; None when it has none to give."""
        if self._client_roots is not None:
            return self._client_roots
        host = self.host
        if host is None or not host.has_roots:
            return None
        try:
            roots = await host.roots(timeout=ROOTS_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - without the client's roots, the configured ones serve
            logger.info("The calling client did not list its roots: %s", exc)
            return None
        self._client_roots = roots or None
        return self._client_roots

    def _refused(self, server: str, method: str, reason: str) -> ErrorData:
        self._record(server, method, "refused", reason)
        return ErrorData(code=INVALID_REQUEST, message=reason)

    def _record(self, server: str, method: str, outcome: str, detail: str | None = None) -> None:
        self.records.append(ChildRequestRecord(server=server, method=method, outcome=outcome, detail=detail))


class ChildRequests:
    """One child's router: its requests go to the task it serves (see the module's docstring)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._links: list[TaskLink] = []
        self._order: list[TaskLink] = []
        """Links with a call in flight, most recent last."""

    def attach(self, link: TaskLink) -> None:
        if not any(held is link for held in self._links):
            self._links.append(link)

    def detach(self, link: TaskLink) -> None:
        self._links = [held for held in self._links if held is not link]

    @contextlib.contextmanager
    def calling(self, link: TaskLink) -> Iterator[None]:
        """Marks a tool call of ``link``'s task in flight on this child."""
        self._order.append(link)
        try:
            yield
        finally:
            last = max(i for i, held in enumerate(self._order) if held is link)
            del self._order[last]

    def current(self) -> TaskLink | None:
        """The task a request now belongs to."""
        if self._order:
            return self._order[-1]
        return self._links[-1] if self._links else None

    def callbacks(self) -> dict[str, Any]:
        """The MCP client's callbacks for this child (``Client(..., **callbacks)``)."""
        return {
            "sampling_callback": self.sampling,
            "elicitation_callback": self.elicitation,
            "list_roots_callback": self.list_roots,
        }

    async def sampling(
        self, context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | ErrorData:
        link = self.current()
        if link is None:
            return ErrorData(code=INVALID_REQUEST, message="no task is using this server; nothing can answer now")
        return await link.sample(self.server, params)

    async def elicitation(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        link = self.current()
        if link is None:
            return ElicitResult(action="decline")
        return await link.elicit(self.server, params)

    async def list_roots(self, context: ClientRequestContext) -> ListRootsResult:
        link = self.current()
        if link is None:
            return ListRootsResult(roots=[])
        return await link.list_roots(self.server)


class TaskChild:
    """A leased child as one task's toolbox sees it: its calls are marked as that task's."""

    def __init__(self, child: Any, link: TaskLink) -> None:
        self._child = child
        self._link = link

    @property
    def name(self) -> str:
        return str(self._child.name)

    @property
    def tools(self) -> Sequence[Tool]:
        return list(self._child.tools)

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> CallToolResult:
        with self._child.requests.calling(self._link):
            result: CallToolResult = await self._child.call_tool(name, arguments, timeout=timeout)
            return result


def _text(content: Any) -> str:
    """A sampling message's content as text; what is not text is named, not sent."""
    blocks = content if isinstance(content, list) else [content]
    parts = []
    for block in blocks:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    return "\n".join(parts)
