"""ContextWindow on its own: what is cut, in which order, and when it gives up."""

from __future__ import annotations

import pytest

from lmstudio_bridge.context_window import KEEP_CHARS, ContextWindow
from lmstudio_bridge.errors import ContextExceeded


def window(context_length: int | None = 4096) -> ContextWindow:
    made = ContextWindow(model="m", base_url="http://lms", context_length=context_length, reply_tokens=2048)
    made.chars_per_token = 4.0
    return made


def conversation(*results: int) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the task"}]
    for number, size in enumerate(results):
        messages.append({"role": "tool", "tool_call_id": str(number), "content": "x" * size})
    return messages


def test_the_oldest_results_are_cut_first_and_keep_their_start() -> None:
    messages = conversation(20_000, 20_000, 2_000)
    window().fit(messages, None)
    first, second, third = (m["content"] for m in messages[2:])
    assert first.startswith("x" * KEEP_CHARS) and first[KEEP_CHARS:].startswith("\n[… 19,600 of 20,000 characters cut")
    assert first.endswith("to fit m's context of 4,096 tokens]")
    assert 3_000 < len(second) < 20_000 and third == "x" * 2_000
    assert window().estimate(messages, None) <= 3072


def test_the_servers_count_sets_the_characters_per_token() -> None:
    fitted = window()
    messages = conversation(4_000)
    fitted.observe(messages, None, prompt_tokens=2 * 8 + 3 * 8 + 1_000)
    assert 4.0 < fitted.chars_per_token < 4.2


def test_a_conversation_that_cannot_fit_is_never_sent() -> None:
    messages = [{"role": "system", "content": "s" * 20_000}, {"role": "user", "content": "task"}]
    with pytest.raises(ContextExceeded, match=r"does not fit its context of 4,096 tokens .*--context-length 8192"):
        window().fit(messages, None)


def test_an_unknown_context_is_left_alone_until_the_server_refuses() -> None:
    unknown = window(None)
    messages = conversation(20_000)
    unknown.fit(messages, None)
    assert len(messages[2]["content"]) == 20_000
    unknown.fit(messages, None, tighter=True)  # the server said it was too long
    assert len(messages[2]["content"]) < 20_000 and unknown.context_length is not None
