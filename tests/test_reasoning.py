"""Reasoning apart from the answer, from reasoning fields and ``<think>`` tags."""

from __future__ import annotations

from typing import Any

import pytest

from lmstudio_bridge.reasoning import split_reasoning


@pytest.mark.parametrize(
    ("message", "reasoning", "answer"),
    [
        pytest.param({"content": "It is 14:05."}, "", "It is 14:05.", id="no-reasoning"),
        pytest.param({"content": "  It is 14:05.\n"}, "", "It is 14:05.", id="answer-stripped"),
        pytest.param({"content": None}, "", "", id="content-none"),
        pytest.param({}, "", "", id="no-content-key"),
        pytest.param(
            {"content": "4", "reasoning_content": " 2+2 is 4. "},
            "2+2 is 4.",
            "4",
            id="reasoning_content-field",
        ),
        pytest.param({"content": "4", "reasoning": "add them"}, "add them", "4", id="reasoning-field"),
        pytest.param(
            {"content": "4", "reasoning_content": "first", "reasoning": "second"},
            "first\n\nsecond",
            "4",
            id="both-fields",
        ),
        pytest.param(
            {"content": "4", "reasoning_content": "same", "reasoning": "same"},
            "same",
            "4",
            id="both-fields-equal-given-once",
        ),
        pytest.param(
            {"content": "4", "reasoning_content": "   ", "reasoning": None},
            "",
            "4",
            id="blank-fields",
        ),
        pytest.param(
            {"content": "<think>\nadd 2 and 2\n</think>\n\n4"},
            "add 2 and 2",
            "4",
            id="inline-think",
        ),
        pytest.param(
            {"content": "<think>a</think>Part one. <think>b</think>Part two."},
            "a\n\nb",
            "Part one. Part two.",
            id="several-think-blocks",
        ),
        pytest.param(
            {"content": "<think></think>\n\n4"},
            "",
            "4",
            id="empty-think-block",
        ),
        pytest.param(
            {"content": "<think>still thinking when it stopped"},
            "still thinking when it stopped",
            "",
            id="unclosed-think-at-start",
        ),
        pytest.param(
            {"content": "\n  <think>still thinking"},
            "still thinking",
            "",
            id="unclosed-think-after-whitespace",
        ),
        pytest.param(
            {"content": "<think>a</think>\n<think>b runs on"},
            "a\n\nb runs on",
            "",
            id="closed-then-unclosed",
        ),
        pytest.param(
            {"content": "Wrap thoughts in a <think> tag."},
            "",
            "Wrap thoughts in a <think> tag.",
            id="unclosed-think-mid-answer-is-text",
        ),
        pytest.param(
            {"content": "the template opened it\n</think>\n\nThe answer."},
            "the template opened it",
            "The answer.",
            id="lone-closing-tag",
        ),
        pytest.param(
            {"content": "early</think>middle<think>late</think>end"},
            "early\n\nlate",
            "middleend",
            id="lone-closing-tag-then-block",
        ),
        pytest.param(
            {"content": "<think>x</think>done</think>"},
            "x",
            "done</think>",
            id="stray-closing-tag-after-a-block-stays",
        ),
        pytest.param(
            {"content": "<think>in the tag</think>4", "reasoning_content": "in the field"},
            "in the field\n\nin the tag",
            "4",
            id="field-and-tag",
        ),
        pytest.param(
            {"content": "<think>\nÜberlegung: 東京 → 🙂\n</think>\nAntwort: ja"},
            "Überlegung: 東京 → 🙂",
            "Antwort: ja",
            id="unicode",
        ),
        pytest.param(
            {"content": [{"type": "text", "text": "<think>r</think>"}, {"type": "text", "text": "a"}]},
            "r",
            "a",
            id="content-parts",
        ),
        pytest.param(
            {"content": "<think>\n</think>4", "reasoning_content": "r"},
            "r",
            "4",
            id="empty-think-block-adds-nothing",
        ),
        pytest.param(
            {"content": [{"type": "input_audio", "text": "not this"}, {"type": "text", "text": "a"}]},
            "",
            "a",
            id="content-parts-non-text-skipped",
        ),
        pytest.param(
            {"content": "", "reasoning_content": "The answer is 4."},
            "The answer is 4.",
            "",
            id="lmstudio-empty-content",
        ),
    ],
)
def test_split_reasoning(message: dict[str, Any], reasoning: str, answer: str) -> None:
    assert split_reasoning(message) == (reasoning, answer)


def test_split_reasoning_leaves_the_message_alone() -> None:
    message = {"content": "<think>r</think>a", "reasoning_content": "f"}
    split_reasoning(message)
    assert message == {"content": "<think>r</think>a", "reasoning_content": "f"}
