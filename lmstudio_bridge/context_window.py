"""Keeps a conversation within the context the model is loaded with.

Before each request the conversation's size is estimated in tokens: characters divided by the
characters per token the server's own ``usage.prompt_tokens`` showed for the requests before
(a cautious ratio until the first answer). What does not fit, less room for the reply, is cut
from the tool results, oldest first: each keeps its call, the start of its text and a line
saying how much was cut. The conversation is shortened in place, so later rounds send the same
(shortened) messages again and the server can reuse its prompt cache.

A request that cannot be made to fit is never sent: ``ContextExceeded`` says the model's
context length and how to raise it. When the server still answers that the context is exceeded,
``LLMClient`` asks for a tighter fit (``fit(..., tighter=True)``) and retries once.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from .errors import ContextExceeded

logger = logging.getLogger(__name__)

FIRST_CHARS_PER_TOKEN = 3.0
"""Until the server has counted a prompt: fewer characters per token than most text has, so the
first estimate errs on the large side."""
MIN_CHARS_PER_TOKEN = 1.5
MESSAGE_TOKENS = 8
"""Per message, for the chat template's markers around it."""
KEEP_CHARS = 400
"""The start of a tool result kept when it is shortened (before results are cut to nothing)."""
TIGHTER = 0.8
"""After the server refused a request as too long, the next one aims at this share of the budget."""
SLACK_TOKENS = 16
"""Cut this much more than the estimate says, so rounding never leaves a few tokens over."""
MARKER_CHARS = 100
"""Room for the line that says how much was cut."""
IMAGE_TOKENS = 768
"""What an image part is counted as (its base64 text says nothing of its cost in tokens)."""


class ContextWindow:
    """The budget of one model's context for one conversation (see the module docstring)."""

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        context_length: int | None,
        reply_tokens: int,
        max_tokens: int | None = None,
        resize_hint: str | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.resize_hint = resize_hint
        """What to do about a context that is too small, when it is not LM Studio's advice (the embedded model)."""
        self.context_length = context_length
        self.reply_tokens = reply_tokens
        self.max_tokens = max_tokens
        self.chars_per_token = FIRST_CHARS_PER_TOKEN
        self._scale = 1.0
        self._original: dict[int, int] = {}

    # -- the budget

    @property
    def budget(self) -> int | None:
        """Tokens the prompt may take: the context less room for the reply; None when the context is unknown."""
        if self.context_length is None:
            return None
        reserve = self.max_tokens or min(self.reply_tokens, self.context_length // 4)
        return int((self.context_length - reserve) * self._scale)

    def estimate(self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None) -> int:
        chars = sum(_chars(m) for m in messages) + (len(json.dumps(list(tools))) if tools else 0)
        images = sum(_images(m) for m in messages)
        return round(chars / self.chars_per_token) + MESSAGE_TOKENS * len(messages) + IMAGE_TOKENS * images

    def observe(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None, prompt_tokens: int
    ) -> None:
        """Learns the server's characters per token from the prompt it just counted."""
        if prompt_tokens <= 0:
            return
        chars = sum(_chars(m) for m in messages) + (len(json.dumps(list(tools))) if tools else 0)
        counted = prompt_tokens - MESSAGE_TOKENS * len(messages) - IMAGE_TOKENS * sum(_images(m) for m in messages)
        if counted > 0:
            self.chars_per_token = max(MIN_CHARS_PER_TOKEN, chars / counted)

    def learn(self, context_length: int | None) -> None:
        """The server named its context length (in an error): use it from now on."""
        if context_length is not None:
            self.context_length = context_length

    # -- fitting

    def fit(
        self,
        messages: Sequence[MutableMapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None,
        *,
        tighter: bool = False,
    ) -> None:
        """Shortens ``messages`` in place until they fit; raises ``ContextExceeded`` when they cannot."""
        if tighter:
            self._scale *= TIGHTER
            if self.context_length is None:
                # The server refused without saying its context: aim below what was just sent.
                self.context_length = int(self.estimate(messages, tools) * TIGHTER) + self._reserve_unknown()
                self._scale = 1.0
        budget = self.budget
        if budget is None:
            return
        for keep in (KEEP_CHARS, 0):
            for message in self._cuttable(messages):
                over = self.estimate(messages, tools) - budget
                if over <= 0:
                    return
                self._shorten(message, over + SLACK_TOKENS, keep)
        needed = self.estimate(messages, tools)
        if needed > budget:
            raise self.overflow(needed)

    def overflow(self, needed: int | None = None) -> ContextExceeded:
        """The error for a conversation that cannot be made to fit."""
        context = self.context_length
        size = f" (about {needed:,} tokens are needed)" if needed else ""
        if context is None:
            where = "the model's context"
            raise_it = "Raise the context length the model is served with"
        else:
            where = f"its context of {context:,} tokens"
            raise_it = f"Load it with a larger context: `lms load {self.model} --context-length {_larger(context)}`"
        advice = (
            f"{raise_it}, or raise Context Length in LM Studio's settings for the model (My Models)"
            if self.resize_hint is None
            else self.resize_hint
        )
        return ContextExceeded(
            f"The conversation with {self.model} at {self.base_url} does not fit {where}{size}, even with the "
            f"tool results shortened. {advice}; or give the task less to read at once.",
            base_url=self.base_url,
            context_length=context,
        )

    def _reserve_unknown(self) -> int:
        return self.max_tokens or self.reply_tokens // 4

    def _cuttable(self, messages: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
        """Tool results, oldest first; then the longest text past the task itself (an answer step's digest)."""
        results = [m for m in messages if m.get("role") == "tool" and isinstance(m.get("content"), str)]
        if results:
            return results
        users = [m for m in messages if m.get("role") == "user" and isinstance(m.get("content"), str)]
        return sorted(users, key=lambda m: -len(m["content"]))[:1]

    def _shorten(self, message: MutableMapping[str, Any], over: int, keep: int) -> None:
        """Cuts ``message`` by up to ``over`` tokens, keeping its first ``keep`` characters."""
        text: str = message["content"]
        original = self._original.get(id(message), len(text))
        head = text.split("\n[… ", 1)[0] if id(message) in self._original else text
        target = max(keep, len(head) - math.ceil(over * self.chars_per_token) - MARKER_CHARS)
        if target >= len(head):
            return
        removed = original - target
        marker = (
            f"\n[… {removed:,} of {original:,} characters cut to fit {self.model}'s context"
            f"{f' of {self.context_length:,} tokens' if self.context_length else ''}]"
        )
        message["content"] = head[:target] + marker
        self._original[id(message)] = original
        logger.info("Shortened a tool result from %d to %d characters to fit the context", len(text), target)


def _chars(message: Mapping[str, Any]) -> int:
    """Characters of a message as sent, image data left out (``IMAGE_TOKENS`` counts each image)."""
    content = message.get("content")
    if isinstance(content, list):
        rest = {k: v for k, v in message.items() if k != "content"}
        text = sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
        return len(json.dumps(rest)) + text
    return len(json.dumps(message))


def _images(message: Mapping[str, Any]) -> int:
    content = message.get("content")
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")


def _larger(context: int) -> int:
    """A context length to suggest: the next power of two above twice the current one, at least 8192."""
    size = 8192
    while size < context * 2:
        size *= 2
    return size
