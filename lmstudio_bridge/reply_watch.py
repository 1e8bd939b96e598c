"""Deciding, while a reply streams in, that the rest is not worth waiting for.

A small local model at its server's default sampling can write thousands of
tokens after the part that matters: the same tool call again and again, blank
lines, a paragraph in a loop. The bridge reads the reply as it arrives and stops
it (closing the stream stops generation in LM Studio and llama.cpp) once it is
settled:

- a tool call written as text for an offered tool is complete, and what follows
  it is not another call;
- the answer text has started to repeat itself (the same block of up to 400
  characters, or the same whole line of any length, three times in a row at its end);
- the answer text, or the reasoning, ran past its budget.

Reasoning (``reasoning_content``, ``<think>``) has its own, larger budget and is
never taken for a loop: a model may go over the same ground while it thinks.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from .reasoning import reasoning_spans
from .text_tool_calls import complete_calls

MIN_PERIOD = 1
MAX_PERIOD = 400
REPEATS = 3
"""A block at the end of the answer repeated this many times in a row is a loop."""
MIN_LOOP_CHARS = 120
"""...as long as the repeated stretch is at least this long (so "ha ha ha" is not one)."""
CHECK_EVERY_CHARS = 48
"""The loop check runs after this much new text (it looks at the last 1,200 characters)."""
COUNTING_REPEATS = 30
COUNTING_MAX_PERIOD = 60
COUNTING_MIN_CHARS = 300
"""A counting loop (``counting_loop``): this many items in a row, each at most this long, in all at least this long."""
_DIGIT = re.compile(r"\d")
_CALL_OPENERS = ("{", "[", "<tool_call", "```", "[TOOL_")
_CALL_CLOSERS = ("```", "</tool_call>", "[END_TOOL_REQUEST]")


@dataclass(frozen=True)
class Cut:
    """Why a reply was stopped, and how much of its content to keep."""

    reason: str
    """``tool_call`` (the call is complete), ``repetition`` or ``budget``."""
    keep_chars: int | None = None
    """Content characters to keep (a loop is kept once), or None for all of it."""


@dataclass
class Draft:
    """A reply as it has arrived so far."""

    content: str = ""
    reasoning: str = ""
    content_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class ReplyWatch:
    """Checks a draft after each piece; returns a ``Cut`` once the reply is settled."""

    offered: Collection[str]
    """Tool names a complete text call may name; empty for a request without tools."""
    max_answer_tokens: int
    max_reasoning_tokens: int
    _checked_at: int = field(default=0, init=False)

    def __call__(self, draft: Draft) -> Cut | None:
        content = draft.content
        spans = reasoning_spans(content)
        thinking = sum(end - start for start, end in spans)
        answer_share = (len(content) - thinking) / len(content) if content else 0.0
        answer_tokens = round(draft.content_tokens * answer_share)
        reasoning_tokens = draft.reasoning_tokens + draft.content_tokens - answer_tokens
        if reasoning_tokens > self.max_reasoning_tokens:
            return Cut("budget")
        if answer_tokens > self.max_answer_tokens:
            return Cut("budget")
        if len(content) - self._checked_at < CHECK_EVERY_CHARS:
            return None
        self._checked_at = len(content)
        if spans and spans[-1][1] == len(content):
            return None  # still thinking
        if self.offered and (cut := self._settled_call(content)):
            return cut
        loop_at = loop_start(content)
        if loop_at is None and '"arguments"' in content:
            loop_at = counting_loop(content)
        if loop_at is not None and not any(start <= loop_at < end for start, end in spans):
            return Cut("repetition", keep_chars=loop_at)
        return None

    def _settled_call(self, content: str) -> Cut | None:
        calls, after = complete_calls(content, self.offered)
        if not calls:
            return None
        if len({(c.name, c.raw_arguments) for c in calls}) < len(calls):
            return Cut("tool_call")  # the same call written again: the rest is more of it
        rest = after.lstrip()
        for closer in _CALL_CLOSERS:
            rest = rest.removeprefix(closer).lstrip()
        if not rest or any(rest.startswith(o) or o.startswith(rest) for o in _CALL_OPENERS):
            return None  # another call may be coming
        return Cut("tool_call", keep_chars=len(content) - len(rest))


def loop_start(text: str) -> int | None:
    """Where ``text`` should end to keep one copy of the loop it ends in, if it ends in one."""
    return _block_loop(text) or _line_loop(text)


def counting_loop(text: str) -> int | None:
    """Where ``text`` should end if it ends in a short item written again and again with only its digits
    changing: the 0.5B filled a call's observation list with ``"1905-05-15", "1905-05-16", ...`` until
    its reply budget. It takes ``COUNTING_REPEATS`` items in a row of at most ``COUNTING_MAX_PERIOD``
    characters each; the watch looks for it only in a call's arguments, since real answers list
    numbered rows (``file_001.csv``, ``file_002.csv``, ...)."""
    window = COUNTING_MAX_PERIOD * (COUNTING_REPEATS + 1)
    offset = max(0, len(text) - window)
    shape = _DIGIT.sub("0", text[offset:])
    found = _block_loop(shape, COUNTING_REPEATS, COUNTING_MAX_PERIOD, COUNTING_MIN_CHARS)
    return None if found is None else offset + found


def _line_loop(text: str) -> int | None:
    """A whole line written again and again, however long (a small model repeating a call-shaped line of
    500 characters), where the last one may still be arriving."""
    end = text.rfind("\n") + 1
    if end == 0:
        return None
    line_start = text.rfind("\n", 0, end - 1) + 1
    line = text[line_start:end]
    if not line.strip() or text[end:] != line[: len(text) - end]:
        return None
    start, repeats = line_start, 1
    while start >= len(line) and text[start - len(line) : start] == line:
        start -= len(line)
        repeats += 1
    if repeats >= REPEATS and repeats * len(line) >= MIN_LOOP_CHARS:
        return start + len(line)
    return None


def _block_loop(
    text: str, needed: int = REPEATS, max_period: int = MAX_PERIOD, min_chars: int = MIN_LOOP_CHARS
) -> int | None:
    tail = text[-(max_period * needed + max_period) :]
    for period in range(MIN_PERIOD, min(max_period, len(tail) // needed) + 1):
        block = tail[-period:]
        repeats = 1
        while repeats * period + period <= len(tail) and tail[-(repeats + 1) * period : -repeats * period] == block:
            repeats += 1
        if repeats >= needed and repeats * period >= min_chars:
            start = len(text) - repeats * period
            while start > 0 and text[start - 1] == text[start - 1 + period]:
                start -= 1  # the loop may have begun mid-block
            return start + period
    return None
