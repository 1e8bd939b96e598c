"""A model's reasoning apart from its answer, in an OpenAI-style assistant message.

Reasoning comes from the ``reasoning_content`` or ``reasoning`` field, and from
``<think>...</think>`` blocks written into ``content``: closed blocks anywhere, an
unclosed ``<think>`` that opens the content and runs to its end, and everything
before a lone ``</think>`` that some chat templates leave without its opening tag.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["split_reasoning"]

OPEN, CLOSE = "<think>", "</think>"
_REASONING_FIELDS = ("reasoning_content", "reasoning")
_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def split_reasoning(message: dict[str, Any]) -> tuple[str, str]:
    """``(reasoning, answer)``, both stripped; parts of the reasoning joined by a blank line."""
    parts: list[str] = []
    for key in _REASONING_FIELDS:
        value = message.get(key)
        if isinstance(value, str) and value.strip() and value.strip() not in parts:
            parts.append(value.strip())
    thoughts, answer = _split_content(_text(message.get("content")))
    parts.extend(thought for thought in thoughts if thought)
    return "\n\n".join(parts), answer


def _split_content(content: str) -> tuple[list[str], str]:
    thoughts: list[str] = []
    lone = content.find(CLOSE)
    if lone >= 0 and OPEN not in content[:lone]:
        thoughts.append(content[:lone].strip())
        content = content[lone + len(CLOSE) :]
    thoughts.extend(match.group(1).strip() for match in _BLOCK.finditer(content))
    content = _BLOCK.sub("", content)
    stripped = content.lstrip()
    if stripped.startswith(OPEN):
        thoughts.append(stripped[len(OPEN) :].strip())
        content = ""
    return thoughts, content.strip()


def _text(content: Any) -> str:
    """``content`` as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
