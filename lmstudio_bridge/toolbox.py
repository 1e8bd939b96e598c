"""The children's tools as OpenAI functions: valid, unique names, mapped back exactly."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp_types import Tool

if TYPE_CHECKING:
    from .children import Child

MAX_NAME = 64
_INVALID = re.compile(r"[^a-zA-Z0-9_-]+")
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class OfferedTool:
    """One tool as the model sees it, and where it really lives."""

    api_name: str
    child: Child
    tool: Tool

    @property
    def label(self) -> str:
        """``server.tool``, for progress messages and results."""
        return f"{self.child.name}.{self.tool.name}"

    def to_openai(self) -> dict[str, Any]:
        schema = self.tool.input_schema or _EMPTY_SCHEMA
        function: dict[str, Any] = {"name": self.api_name, "parameters": schema}
        description = (self.tool.description or self.tool.title or "").strip()
        function["description"] = f"{description} (MCP server '{self.child.name}')".strip()
        return {"type": "function", "function": function}


class Toolbox:
    """Every tool of a task's children. Built once per task, so the tool list is byte-identical each round."""

    def __init__(self, children: Sequence[Child]) -> None:
        pairs = [(child, tool) for child in children for tool in child.tools]
        base_counts = Counter(_clean(tool.name) for _, tool in pairs)
        self.tools: list[OfferedTool] = []
        self._by_name: dict[str, OfferedTool] = {}
        for child, tool in pairs:
            base = _clean(tool.name)
            wanted = base if base_counts[base] == 1 else _clean(f"{child.name}__{tool.name}")
            name = self._unique(wanted)
            offered = OfferedTool(api_name=name, child=child, tool=tool)
            self.tools.append(offered)
            self._by_name[name] = offered
        self.openai_tools = [t.to_openai() for t in self.tools]

    def _unique(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self._by_name:
            suffix = f"_{n}"
            candidate = name[: MAX_NAME - len(suffix)] + suffix
            n += 1
        return candidate

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    @property
    def known_names(self) -> set[str]:
        """Every name ``lookup`` accepts, to recognise calls a model wrote as text."""
        names = set(self._by_name)
        for t in self.tools:
            names |= {t.label, f"{t.child.name}__{t.tool.name}", t.tool.name}
        return names

    def lookup(self, name: str) -> OfferedTool | None:
        """The tool the model meant: its exact name, else ``server.tool``/``server__tool``, else a unique bare name."""
        if found := self._by_name.get(name):
            return found
        matches = [t for t in self.tools if name in (t.label, f"{t.child.name}__{t.tool.name}", t.tool.name)]
        if len(matches) == 1:
            return matches[0]
        folded = [t for t in self.tools if t.api_name.lower() == name.lower()]
        return folded[0] if len(folded) == 1 else None


def _clean(name: str) -> str:
    cleaned = _INVALID.sub("_", name).strip("_") or "tool"
    if len(cleaned) <= MAX_NAME:
        return cleaned
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{cleaned[: MAX_NAME - 9]}_{digest}"
