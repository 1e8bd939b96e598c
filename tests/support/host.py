"""A host's side of the bridge's questions: an elicitation callback for the MCP client that plays the host."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.client.session import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult


class Asker:
    """A host's elicitation callback that answers every question the same way, and keeps the questions."""

    def __init__(self, action: str = "decline", content: dict[str, Any] | None = None, hang: bool = False) -> None:
        self.action = action
        self.content = content
        self.hang = hang
        self.questions: list[ElicitRequestParams] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params)
        if self.hang:
            await anyio.Event().wait()
        return ElicitResult(action=self.action, content=self.content)  # type: ignore[arg-type]

    @property
    def callbacks(self) -> dict[str, Any]:
        return {"elicitation_callback": self}
