"""A model's reasoning apart from its answer, in an OpenAI-style assistant message.

Reasoning comes from the ``reasoning_content`` or ``reasoning`` field, and from
``<think>...</think>`` blocks written into ``content``: closed blocks anywhere, an
unclosed ``<think>`` that opens the content and runs to its end, and everything
before a lone ``</think>`` that some chat templates leave without its opening tag.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["reasoning_spans", "split_reasoning"]

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


def reasoning_spans(content: str, *, unclosed: bool = True) -> list[tuple[int, int]]:
    """Where ``content`` holds reasoning, tags included, in order: everything up to a lone ``</think>``,
    closed ``<think>`` blocks, and (with ``unclosed``) an unclosed ``<think>`` that opens the rest."""
    spans: list[tuple[int, int]] = []
    position = 0
    lone = content.find(CLOSE)
    if lone >= 0 and OPEN not in content[:lone]:
        position = lone + len(CLOSE)
        spans.append((0, position))
    for match in _BLOCK.finditer(content, position):
        spans.append(match.span())
        position = match.end()
    rest = content[position:]
    if unclosed and rest.lstrip().startswith(OPEN):
        spans.append((position, len(content)))
    return spans


def _split_content(content: str) -> tuple[list[str], str]:
    thoughts: list[str] = []
    answer: list[str] = []
    position = 0
    for start, end in reasoning_spans(content):
        answer.append(content[position:start])
        inner = content[start:end].strip()
        inner = inner.removeprefix(OPEN).removesuffix(CLOSE) if inner.startswith(OPEN) else inner.removesuffix(CLOSE)
        thoughts.append(inner.strip())
        position = end
    answer.append(content[position:])
    return thoughts, "".join(answer).strip()


def _text(content: Any) -> str:
    """``content`` as text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""
