"""An earlier conversation, made to fit the model's context before a follow-up (``continue_task``).

Sizes are estimated, not counted: about 4 characters a token, as for English text and JSON with
common tokenizers (a safe side for code, which takes fewer). Within ``budget`` tokens:

1. tool results are shortened first, oldest first, to their first ``KEPT_RESULT_CHARS``
   characters and a note saying how much was left out (the latest round's results last);
2. if that is not enough, whole exchanges after the original task are dropped, oldest first (an
   assistant message goes together with its tool results, so the conversation stays valid);
3. last, any message still longer than ``KEPT_MESSAGE_CHARS`` is cut.

The system prompt and the original task always stay. A tool call without its result (the task was
stopped while it ran) is left out first.
"""

from __future__ import annotations

import json
from typing import Any

CHARS_PER_TOKEN = 4
KEPT_RESULT_CHARS = 300
KEPT_MESSAGE_CHARS = 2000

Message = dict[str, Any]


def estimated_tokens(messages: list[Message]) -> int:
    return sum(len(json.dumps(m, ensure_ascii=False)) for m in messages) // CHARS_PER_TOKEN + 4 * len(messages)


def fit_history(messages: list[Message], budget: int) -> list[Message]:
    """A copy of ``messages`` that fits ``budget`` estimated tokens (see the module docstring)."""
    history = _answered([dict(m) for m in messages])
    if estimated_tokens(history) <= budget:
        return history
    for index, message in enumerate(history):
        if message.get("role") == "tool" and isinstance(message.get("content"), str):
            history[index] = {**message, "content": _shortened(message["content"], KEPT_RESULT_CHARS)}
            if estimated_tokens(history) <= budget:
                return history
    head = _head_length(history)
    while estimated_tokens(history) > budget and len(history) > head + 2:
        end = head + 1
        while end < len(history) and history[end].get("role") == "tool":
            end += 1  # an assistant message leaves with its tool results
        del history[head:end]
        while len(history) > head and history[head].get("role") == "tool":
            del history[head]
    if estimated_tokens(history) > budget:
        history = [
            {**m, "content": _shortened(m["content"], KEPT_MESSAGE_CHARS)} if isinstance(m.get("content"), str) else m
            for m in history
        ]
    return history


def _answered(history: list[Message]) -> list[Message]:
    """Without tool calls that have no result (a task stopped while they ran): servers refuse a
    conversation in which a call is not followed by its result."""
    kept: list[Message] = []
    index = 0
    while index < len(history):
        message = history[index]
        end = index + 1
        while end < len(history) and history[end].get("role") == "tool":
            end += 1
        calls = {c.get("id") for c in message.get("tool_calls") or ()}
        answered = {m.get("tool_call_id") for m in history[index + 1 : end]}
        if message.get("role") == "tool" or (calls and not calls <= answered):
            index = end if calls else index + 1  # the call goes, with whatever results it got
            continue
        kept.extend(history[index:end] if calls else [message])
        index = end if calls else index + 1
    return kept


def _head_length(history: list[Message]) -> int:
    """The system prompt and the first user message: never dropped."""
    for index, message in enumerate(history):
        if message.get("role") == "user":
            return index + 1
    return min(1, len(history))


def _shortened(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    return f"{text[:keep]}\n[shortened by the bridge to fit the model's context: {len(text) - keep:,} more characters]"
