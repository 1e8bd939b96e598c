"""The calling MCP client (the host: Claude Code, Claude Desktop, ...) as a task may ask it things.

During a task the bridge may ask its caller two things: the user's approval, or a child server's own
question (``elicitation/create``), and the client's roots (``roots/list``). Both go back over the
session of the tool call that runs the task, only when the client declared the capability, and each
with a timeout: an unanswered question never holds a task up for longer than that.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from mcp import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types import (
    REQUEST_TIMEOUT,
    ClientCapabilities,
    ElicitationCapability,
    ElicitRequest,
    ElicitRequestParams,
    ElicitResult,
    ListRootsRequest,
    ListRootsResult,
    Root,
    RootsCapability,
)

logger = logging.getLogger(__name__)

ANSWER_GRACE = 2.0
"""Seconds past a request's own timeout after which the bridge stops waiting regardless."""


class Host(Protocol):
    """What a task may ask of its caller."""

    @property
    def can_elicit(self) -> bool: ...

    @property
    def can_open_urls(self) -> bool: ...

    @property
    def has_roots(self) -> bool: ...

    async def elicit(self, params: ElicitRequestParams, *, timeout: float) -> ElicitResult:
        """The user's answer; raises ``TimeoutError`` when none comes within ``timeout`` seconds."""
        ...

    async def roots(self, *, timeout: float) -> list[Root]:
        """The client's roots; raises ``TimeoutError`` when they do not come within ``timeout`` seconds."""
        ...


class McpHost:
    """The client of one ``tools/call``: its session, and the request's id that questions relate to."""

    def __init__(self, session: Any, request_id: Any = None) -> None:
        self._session = session
        self._request_id = request_id

    @property
    def can_elicit(self) -> bool:
        """Whether the client takes form questions (an empty ``elicitation`` capability means form mode)."""
        elicitation = self._elicitation()
        return elicitation is not None and (elicitation.form is not None or elicitation.url is None)

    @property
    def can_open_urls(self) -> bool:
        """Whether the client takes URL-mode questions (a server sending the user to a web page)."""
        elicitation = self._elicitation()
        return elicitation is not None and elicitation.url is not None

    def _elicitation(self) -> ElicitationCapability | None:
        if not self._has(ClientCapabilities(elicitation=ElicitationCapability())):
            return None
        capabilities = getattr(self._session, "client_capabilities", None)
        return getattr(capabilities, "elicitation", None) or ElicitationCapability()

    @property
    def has_roots(self) -> bool:
        return self._has(ClientCapabilities(roots=RootsCapability()))

    def _has(self, capability: ClientCapabilities) -> bool:
        try:
            return bool(self._session.check_client_capability(capability))
        except Exception:  # noqa: BLE001 - a session that cannot say has no capabilities
            return False

    async def elicit(self, params: ElicitRequestParams, *, timeout: float) -> ElicitResult:
        result: ElicitResult = await self._request(ElicitRequest(params=params), ElicitResult, timeout)
        return result

    async def roots(self, *, timeout: float) -> list[Root]:
        result = await self._request(ListRootsRequest(), ListRootsResult, timeout)
        return list(result.roots)

    async def _request(self, request: Any, result_type: Any, timeout: float) -> Any:
        metadata = ServerMessageMetadata(related_request_id=self._request_id) if self._request_id is not None else None
        try:
            async with asyncio.timeout(timeout + ANSWER_GRACE):
                return await self._session.send_request(
                    request, result_type, request_read_timeout_seconds=timeout, metadata=metadata
                )
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise TimeoutError from None
            raise
