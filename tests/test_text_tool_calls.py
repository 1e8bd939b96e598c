"""Tool calls written as text: every format, what counts as a call, and what is left."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lmstudio_bridge.text_tool_calls import TextToolCall, complete_fields, extract_tool_calls

OFFERED = frozenset({"get_time", "search", "write_file"})


def call(name: str, arguments: dict[str, Any]) -> TextToolCall:
    return TextToolCall(name, arguments, json.dumps(arguments, ensure_ascii=False))


def names_and_arguments(calls: list[TextToolCall]) -> list[tuple[str, dict[str, Any] | None]]:
    return [(c.name, c.arguments) for c in calls]


FENCE = "```"


@pytest.mark.parametrize(
    ("content", "expected", "rest"),
    [
        pytest.param(
            '<tool_call>{"name": "get_time", "arguments": {"timezone": "UTC"}}</tool_call>',
            [("get_time", {"timezone": "UTC"})],
            "",
            id="hermes",
        ),
        pytest.param(
            '<tool_call>\n{"name": "get_time", "arguments": {"timezone": "UTC"}}\n</tool_call>\n',
            [("get_time", {"timezone": "UTC"})],
            "",
            id="hermes-with-newlines",
        ),
        pytest.param(
            'Let me check.\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\nOne moment.',
            [("get_time", {})],
            "Let me check.\n\nOne moment.",
            id="hermes-with-prose",
        ),
        pytest.param(
            '<tool_call>{"name": "get_time", "arguments": {"timezone": "UTC"}}</tool_call>\n'
            '<tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>',
            [("get_time", {"timezone": "UTC"}), ("search", {"q": "x"})],
            "",
            id="hermes-two-calls",
        ),
        pytest.param(
            '<tool_call>{"name": "get_time", "arguments": {"timezone": "UTC"}}',
            [("get_time", {"timezone": "UTC"})],
            "",
            id="hermes-missing-closing-tag",
        ),
        pytest.param(
            '<tool_call>{"name": "get_time", "arguments": {}}\n'
            '<tool_call>{"name": "search", "arguments": {"q": "y"}}</tool_call>',
            [("get_time", {}), ("search", {"q": "y"})],
            "",
            id="hermes-first-closing-tag-missing",
        ),
        pytest.param(
            '<TOOL_CALL>{"name": "get_time", "arguments": {}}</TOOL_CALL>',
            [("get_time", {})],
            "",
            id="hermes-upper-case-tags",
        ),
        pytest.param(
            '[TOOL_REQUEST]{"name": "search", "arguments": {"q": "lm studio"}}[END_TOOL_REQUEST]',
            [("search", {"q": "lm studio"})],
            "",
            id="lmstudio",
        ),
        pytest.param(
            'Sure.\n[TOOL_REQUEST]\n{"name": "search", "arguments": {"q": "a"}}\n[END_TOOL_REQUEST]\n'
            '[TOOL_REQUEST]{"name": "get_time", "arguments": {}}[END_TOOL_REQUEST]',
            [("search", {"q": "a"}), ("get_time", {})],
            "Sure.",
            id="lmstudio-two-calls-and-prose",
        ),
        pytest.param(
            '[TOOL_CALLS][{"name": "search", "arguments": {"q": "a"}}, {"name": "get_time", "arguments": {}}]',
            [("search", {"q": "a"}), ("get_time", {})],
            "",
            id="mistral-list",
        ),
        pytest.param(
            f'{FENCE}json\n{{"name": "get_time", "arguments": {{"timezone": "Europe/Paris"}}}}\n{FENCE}',
            [("get_time", {"timezone": "Europe/Paris"})],
            "",
            id="fenced-json",
        ),
        pytest.param(
            f'{FENCE}\n{{"name": "get_time", "arguments": {{}}}}\n{FENCE}',
            [("get_time", {})],
            "",
            id="fenced-plain",
        ),
        pytest.param(
            f'I will look it up.\n\n{FENCE}json\n{{"name": "search", "parameters": {{"q": "z"}}}}\n{FENCE}\n\nDone.',
            [("search", {"q": "z"})],
            "I will look it up.\n\nDone.",
            id="fenced-parameters-with-prose",
        ),
        pytest.param(
            f'{FENCE}json\n[{{"name": "search", "arguments": {{"q": "a"}}}}, '
            f'{{"name": "get_time", "arguments": {{}}}}]\n{FENCE}',
            [("search", {"q": "a"}), ("get_time", {})],
            "",
            id="fenced-list",
        ),
        pytest.param(
            f'{FENCE}json\n{{"name": "get_time", "arguments": {{"timezone": "Asia/Tokyo"}}}}\n'
            f'{{"name": "get_time", "arguments": {{"timezone": "Europe/London"}}}}\n{FENCE}',
            [("get_time", {"timezone": "Asia/Tokyo"}), ("get_time", {"timezone": "Europe/London"})],
            "",
            id="one-fence-two-calls-one-after-the-other",
        ),
        pytest.param(
            f'{FENCE}json\n{{"name": "search", "arguments": {{"q": "a"}}}}\n{FENCE}\n'
            f'{FENCE}json\n{{"name": "get_time", "arguments": {{}}}}\n{FENCE}',
            [("search", {"q": "a"}), ("get_time", {})],
            "",
            id="two-fenced-blocks",
        ),
        pytest.param(
            f'{FENCE}json\n{{"name": "get_time", "arguments": {{}}}}\n',
            [("get_time", {})],
            "",
            id="fence-left-open-at-the-end",
        ),
        pytest.param(
            '{"name": "get_time", "arguments": {"timezone": "UTC"}}',
            [("get_time", {"timezone": "UTC"})],
            "",
            id="bare-object",
        ),
        pytest.param(
            '  \n {"name": "search", "parameters": {"q": "llama"}}\n\n',
            [("search", {"q": "llama"})],
            "",
            id="bare-parameters-with-whitespace",
        ),
        pytest.param(
            '[{"name": "search", "arguments": {"q": "a"}}, {"name": "get_time", "arguments": {}}]',
            [("search", {"q": "a"}), ("get_time", {})],
            "",
            id="bare-list",
        ),
        pytest.param(
            'To answer, I call {"name": "get_time", "arguments": {"timezone": "UTC"}} and wait.',
            [("get_time", {"timezone": "UTC"})],
            "To answer, I call  and wait.",
            id="object-in-prose",
        ),
        pytest.param(
            '{"type": "function", "function": {"name": "search", "arguments": "{\\"q\\": \\"a\\"}"}}',
            [("search", {"q": "a"})],
            "",
            id="openai-shaped-object",
        ),
        pytest.param(
            '{"name": "get_time"}',
            [("get_time", {})],
            "",
            id="arguments-left-out",
        ),
        pytest.param(
            '<tool_call>{"name": "get_time", "arguments": null}</tool_call>',
            [("get_time", {})],
            "",
            id="arguments-null",
        ),
    ],
)
def test_recognised_formats(content: str, expected: list[tuple[str, Any]], rest: str) -> None:
    calls, left = extract_tool_calls(content, OFFERED)
    assert names_and_arguments(calls) == expected
    assert left == rest


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("The time in Paris is 14:05.", id="plain-answer"),
        pytest.param("", id="empty"),
        pytest.param('{"name": "Alice", "age": 31}', id="user-json-with-a-name"),
        pytest.param('{"name": "translate", "arguments": {"text": "hi"}}', id="bare-unknown-tool"),
        pytest.param(
            f'Here is the JSON you asked for:\n{FENCE}json\n{{"name": "summarise", "arguments": {{"n": 3}}}}\n{FENCE}',
            id="fenced-unknown-tool",
        ),
        pytest.param(
            '[{"name": "translate", "arguments": {}}, {"name": "convert", "arguments": {}}]',
            id="list-of-unknown-tools",
        ),
        pytest.param('{"name": "search", "results": ["a", "b"]}', id="offered-name-but-not-call-shaped"),
        pytest.param(
            '[{"name": "search", "arguments": {}}, {"title": "not a call"}]',
            id="list-with-an-item-not-call-shaped",
        ),
        pytest.param(
            f'{FENCE}python\nclient.call({{"name": "get_time", "arguments": {{}}}})\n{FENCE}',
            id="call-inside-code-that-is-not-only-json",
        ),
        pytest.param("Use <tool_call> tags to call tools.", id="markup-mentioned-in-prose"),
        pytest.param("<tool_call>not json at all</tool_call>", id="markup-without-a-name"),
        pytest.param('<tool_call>{"tool": "get_time"}</tool_call>', id="markup-json-not-call-shaped"),
        pytest.param('{"name": "", "arguments": {}}', id="empty-name"),
        pytest.param('{"name": 3, "arguments": {}}', id="name-not-a-string"),
        pytest.param("Sets look like {1, 2} and dicts like {'name': 'get_time'}.", id="braces-in-prose"),
    ],
)
def test_not_a_call(content: str) -> None:
    calls, rest = extract_tool_calls(content, OFFERED)
    assert calls == []
    assert rest == content.strip()


@pytest.mark.parametrize(
    ("content", "expected_name"),
    [
        pytest.param(
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>', "get_weather", id="hermes"
        ),
        pytest.param(
            '[TOOL_REQUEST]{"name": "get_weather", "arguments": {}}[END_TOOL_REQUEST]', "get_weather", id="lmstudio"
        ),
        pytest.param('[TOOL_CALLS][{"name": "get_weather", "arguments": {}}]', "get_weather", id="mistral"),
    ],
)
def test_unknown_name_in_markup_is_returned(content: str, expected_name: str) -> None:
    calls, rest = extract_tool_calls(content, OFFERED)
    assert [c.name for c in calls] == [expected_name]
    assert rest == ""


def test_markup_counts_even_with_nothing_offered() -> None:
    calls, rest = extract_tool_calls('Done.<tool_call>{"name": "search", "arguments": {}}</tool_call>', ())
    assert names_and_arguments(calls) == [("search", {})]
    assert rest == "Done."


def test_list_naming_one_offered_tool_returns_its_misspelt_neighbour_too() -> None:
    content = '[{"name": "search", "arguments": {"q": "a"}}, {"name": "get_tme", "arguments": {}}]'
    calls, _ = extract_tool_calls(content, OFFERED)
    assert [c.name for c in calls] == ["search", "get_tme"]


@pytest.mark.parametrize(
    ("content", "arguments", "raw"),
    [
        pytest.param(
            '<tool_call>{"name": "search", "arguments": "{\\"q\\": \\"a\\"}"}</tool_call>',
            {"q": "a"},
            '{"q": "a"}',
            id="string-holding-an-object",
        ),
        pytest.param(
            f'{FENCE}json\n{{"name": "search", "arguments": "{{\\"q\\": 1}}"}}\n{FENCE}',
            {"q": 1},
            '{"q": 1}',
            id="string-in-fence",
        ),
        pytest.param(
            '<tool_call>{"name": "search", "arguments": "{q: a}"}</tool_call>',
            None,
            "{q: a}",
            id="string-not-json",
        ),
        pytest.param(
            '<tool_call>{"name": "search", "arguments": "[1, 2]"}</tool_call>',
            None,
            "[1, 2]",
            id="string-holding-a-list",
        ),
        pytest.param(
            '<tool_call>{"name": "search", "arguments": [1, 2]}</tool_call>',
            None,
            "[1, 2]",
            id="list",
        ),
        pytest.param(
            '<tool_call>{"name": "search", "arguments": "a"}</tool_call>',
            None,
            "a",
            id="plain-string",
        ),
        pytest.param(
            '<tool_call>{"name": "search", "arguments": ""}</tool_call>',
            {},
            "",
            id="empty-string",
        ),
    ],
)
def test_arguments_forms(content: str, arguments: dict[str, Any] | None, raw: str) -> None:
    calls, rest = extract_tool_calls(content, OFFERED)
    assert calls == [TextToolCall("search", arguments, raw)]
    assert rest == ""


def test_object_arguments_are_given_back_as_json_text() -> None:
    args = {"path": "/tmp/ä.txt", "text": "naïve — 東京 🙂", "lines": [1, 2], "opts": {"a": None}}
    payload = json.dumps({"name": "write_file", "arguments": args})
    calls, _ = extract_tool_calls(f"<tool_call>{payload}</tool_call>", OFFERED)
    assert calls == [call("write_file", args)]
    assert json.loads(calls[0].raw_arguments) == args
    assert "東京" in calls[0].raw_arguments


@pytest.mark.parametrize(
    ("content", "raw"),
    [
        pytest.param(
            '<tool_call>{"name": "search", "arguments": {"q": "a",}}</tool_call>',
            '{"q": "a",}',
            id="trailing-comma",
        ),
        pytest.param(
            "<tool_call>{'name': 'x'}</tool_call>",
            None,
            id="single-quotes-no-name-found",
        ),
        pytest.param(
            '<tool_call>{"name": "search", "arguments": {"q": "a"}</tool_call>',
            '{"q": "a"',
            id="unbalanced-braces",
        ),
        pytest.param(
            '[TOOL_REQUEST]{"name": "search", "arguments": {q: 1}}[END_TOOL_REQUEST]',
            "{q: 1}",
            id="lmstudio-unquoted-key",
        ),
        pytest.param(
            '<tool_call>{"name": "search", "arguments": {"q": "a"',
            '{"q": "a"',
            id="cut-off-at-the-end",
        ),
    ],
)
def test_invalid_json_inside_markup_keeps_the_raw_arguments(content: str, raw: str | None) -> None:
    calls, rest = extract_tool_calls(content, OFFERED)
    if raw is None:
        assert calls == []
        assert rest == content
    else:
        assert calls == [TextToolCall("search", None, raw)]
        assert rest == ""


def test_invalid_markup_call_does_not_swallow_the_next_one() -> None:
    content = (
        '<tool_call>{"name": "search", "arguments": {"q": "a",}}\n'
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    )
    calls, rest = extract_tool_calls(content, OFFERED)
    assert calls == [TextToolCall("search", None, '{"q": "a",}'), call("get_time", {})]
    assert rest == ""


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(
            '<tool_call>{"name": "write_file", "arguments": {"text": "if (a) { b(); }}"}}</tool_call>',
            id="hermes",
        ),
        pytest.param(
            f'{FENCE}json\n{{"name": "write_file", "arguments": {{"text": "if (a) {{ b(); }}}}"}}}}\n{FENCE}',
            id="fenced",
        ),
        pytest.param(
            'Writing: {"name": "write_file", "arguments": {"text": "if (a) { b(); }}"}} now',
            id="prose",
        ),
    ],
)
def test_braces_inside_strings(content: str) -> None:
    calls, _ = extract_tool_calls(content, OFFERED)
    assert calls == [call("write_file", {"text": "if (a) { b(); }}"})]


def test_fence_markers_inside_arguments() -> None:
    text = "```python\nprint('hi')\n```\n"
    payload = json.dumps({"name": "write_file", "arguments": {"path": "a.md", "text": text}})
    calls, rest = extract_tool_calls(f"Saving it.\n{FENCE}json\n{payload}\n{FENCE}\nThen done.", OFFERED)
    assert calls == [call("write_file", {"path": "a.md", "text": text})]
    assert rest == "Saving it.\n\nThen done."


def test_closing_tag_inside_arguments() -> None:
    args = {"path": "notes.txt", "text": "literal </tool_call> and [END_TOOL_REQUEST] and <tool_call>"}
    content = f"<tool_call>{json.dumps({'name': 'write_file', 'arguments': args})}</tool_call> after"
    calls, rest = extract_tool_calls(content, OFFERED)
    assert calls == [call("write_file", args)]
    assert rest == "after"


def test_nested_objects_in_arguments() -> None:
    args = {"filter": {"and": [{"field": "a", "eq": {"x": [1, {"y": "}"}]}}]}}
    calls, _ = extract_tool_calls(json.dumps({"name": "search", "parameters": args}), OFFERED)
    assert calls == [call("search", args)]


def test_unicode_name_and_arguments() -> None:
    offered = {"météo_ville"}
    content = '<tool_call>{"name": "m\\u00e9t\\u00e9o_ville", "arguments": {"ville": "Zürich"}}</tool_call>'
    calls, _ = extract_tool_calls(content, offered)
    assert calls == [call("météo_ville", {"ville": "Zürich"})]
    calls, _ = extract_tool_calls('{"name": "météo_ville", "arguments": {"ville": "北京"}}', offered)
    assert calls == [call("météo_ville", {"ville": "北京"})]


def test_markup_takes_precedence_over_json() -> None:
    content = (
        '{"name": "search", "arguments": {"q": "draft"}}\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    )
    calls, rest = extract_tool_calls(content, OFFERED)
    assert names_and_arguments(calls) == [("get_time", {})]
    assert rest == '{"name": "search", "arguments": {"q": "draft"}}'


def test_fenced_and_bare_calls_come_back_in_order() -> None:
    content = (
        f'{{"name": "search", "arguments": {{"q": "1"}}}}\n'
        f'{FENCE}json\n{{"name": "get_time", "arguments": {{}}}}\n{FENCE}'
    )
    calls, rest = extract_tool_calls(content, OFFERED)
    assert [c.name for c in calls] == ["search", "get_time"]
    assert rest == ""


def test_a_fenced_answer_is_kept_next_to_a_fenced_call() -> None:
    answer = f'{FENCE}json\n{{"city": "Oslo", "temp": 4}}\n{FENCE}'
    content = f'{FENCE}json\n{{"name": "get_time", "arguments": {{}}}}\n{FENCE}\n{answer}'
    calls, rest = extract_tool_calls(content, OFFERED)
    assert [c.name for c in calls] == ["get_time"]
    assert rest == answer


@pytest.mark.parametrize(
    ("content", "expected", "rest"),
    [
        pytest.param(
            '<think>I could write <tool_call>{"name": "search", "arguments": {}}</tool_call></think>'
            '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
            ["get_time"],
            '<think>I could write <tool_call>{"name": "search", "arguments": {}}</tool_call></think>',
            id="draft-in-closed-think-ignored",
        ),
        pytest.param(
            '<think>maybe {"name": "search", "arguments": {}}</think>The answer is 4.',
            [],
            '<think>maybe {"name": "search", "arguments": {}}</think>The answer is 4.',
            id="json-in-think-is-no-call",
        ),
        pytest.param(
            'thinking {"name": "search", "arguments": {}}</think>\n{"name": "get_time", "arguments": {}}',
            ["get_time"],
            'thinking {"name": "search", "arguments": {}}</think>',
            id="before-lone-closing-tag-ignored",
        ),
        pytest.param(
            '<think>I need the time.\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
            ["get_time"],
            "<think>I need the time.",
            id="call-in-unclosed-think-counts",
        ),
    ],
)
def test_reasoning_is_not_searched(content: str, expected: list[str], rest: str) -> None:
    calls, left = extract_tool_calls(content, OFFERED)
    assert [c.name for c in calls] == expected
    assert left == rest


def test_none_content() -> None:
    assert extract_tool_calls(None, OFFERED) == ([], "")


def test_markup_inside_a_fence_leaves_no_empty_fence() -> None:
    content = f'Calling:\n{FENCE}\n<tool_call>{{"name": "get_time", "arguments": {{}}}}</tool_call>\n{FENCE}'
    calls, rest = extract_tool_calls(content, OFFERED)
    assert [c.name for c in calls] == ["get_time"]
    assert rest == "Calling:"


def test_offered_may_be_any_collection() -> None:
    content = '{"name": "search", "arguments": {}}'
    for offered in (["search"], ("search",), {"search": object()}.keys(), frozenset({"search"})):
        calls, _ = extract_tool_calls(content, offered)
        assert [c.name for c in calls] == ["search"]


def test_long_prose_with_many_braces_is_handled() -> None:
    noise = 'x = {"a": [' * 2000 + "} {" * 2000
    content = noise + '{"name": "search", "arguments": {"q": "end"}}'
    calls, _ = extract_tool_calls(content, OFFERED)
    assert calls == [call("search", {"q": "end"})]


@pytest.mark.parametrize(
    "noise",
    [
        pytest.param('{"name": ' * 5000, id="deep-unclosed-objects"),
        pytest.param('"name" ' + "[" * 5000 + '{"', id="deep-unclosed-lists"),
        pytest.param(f"{FENCE}json\n" + '{"name": ' * 5000 + "\n" + FENCE, id="deep-in-fence"),
        pytest.param("<tool_call>" + '{"a": ' * 5000, id="deep-json-in-markup"),
    ],
)
def test_nesting_too_deep_for_the_decoder_is_not_a_call(noise: str) -> None:
    calls, rest = extract_tool_calls(noise, OFFERED)
    assert calls == []
    assert rest == noise.strip()


def test_invalid_markup_call_with_escaped_name() -> None:
    calls, _ = extract_tool_calls('<tool_call>{"name": "m\\u00e9t\\u00e9o", "arguments": {"a": 1,}}</tool_call>', ())
    assert calls == [TextToolCall("météo", None, '{"a": 1,}')]


def test_name_is_stripped() -> None:
    calls, _ = extract_tool_calls('{"name": " get_time ", "arguments": {}}', OFFERED)
    assert calls == [call("get_time", {})]


@pytest.mark.parametrize(
    ("content", "rest"),
    [
        pytest.param('{"name": "search", "arguments": {"q": [{"a": "x"}]}', "", id="bare-last-brace-missing"),
        pytest.param(f'{FENCE}json\n{{"name": "search", "arguments": {{"q": [{{"a": "x"}}]\n{FENCE}', "", id="fenced"),
        pytest.param(
            f'{FENCE}json\n{{"name": "search", "arguments": {{"q": [{{"a": "x"}}', "", id="fence-never-closed"
        ),
        pytest.param('{"name": "search", "arguments": {"q": [{"a": "x"}]}\nDone.', "Done.", id="prose-after-it"),
    ],
)
def test_a_call_missing_its_closing_brackets_is_recovered(content: str, rest: str) -> None:
    calls, left = extract_tool_calls(content, OFFERED)
    assert names_and_arguments(calls) == [("search", {"q": [{"a": "x"}]})]
    assert left == rest


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"name": "search", "arguments": {"q": "db", "deep": {"q": 1}}]}', id="bare"),
        pytest.param(
            f'{FENCE}json\n{{"name": "search", "arguments": {{"q": "db", "deep": {{"q": 1}}}}]}}\n{FENCE}', id="fenced"
        ),
    ],
)
def test_whole_arguments_followed_by_brackets_that_close_nothing_are_the_call(content: str) -> None:
    """The 0.5B ended a git_diff call with "}]}"; its arguments were whole, and the call was refused as not JSON."""
    calls, rest = extract_tool_calls(content, OFFERED)
    assert names_and_arguments(calls) == [("search", {"q": "db", "deep": {"q": 1}})] and rest == ""


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"name": "search", "arguments": {"q": "unfinished', id="inside-a-string"),
        pytest.param('{"name": "search", "arguments": {"q": 1]}', id="mismatched"),
        pytest.param('{"name": "search", "arguments": {"q": }', id="broken-not-just-unclosed"),
    ],
)
def test_json_that_is_broken_in_other_ways_is_not_repaired(content: str) -> None:
    """Still an answer that opens as a call: the model hears its arguments are broken."""
    calls, rest = extract_tool_calls(content, OFFERED)
    assert [(c.name, c.arguments) for c in calls] == [("search", None)] and rest == ""


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"name": "search", "arguments": {"q": "ab", "deep": {"q": "ab", "deep": {"q": "a', id="bare"),
        pytest.param(f'{FENCE}json\n{{"name": "search", "arguments": {{"q": "ab", "deep": {{"q": "a', id="fenced"),
    ],
)
def test_an_answer_that_breaks_off_mid_call_is_a_broken_call(content: str) -> None:
    calls, rest = extract_tool_calls(content, OFFERED)
    assert [(c.name, c.arguments) for c in calls] == [("search", None)]
    assert calls[0].raw_arguments.startswith('{"q": "ab"') and rest == ""


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"name": "Ada", "arguments": {"q": "a', id="unknown-name"),
        pytest.param('Here: {"name": "get_time", "arguments": {"a": 1,}}', id="prose-first"),
    ],
)
def test_broken_json_is_a_call_only_when_the_whole_answer_opens_as_one(content: str) -> None:
    assert extract_tool_calls(content, OFFERED) == ([], content)


def test_repairs_are_bounded_so_brace_heavy_text_stays_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmstudio_bridge.text_tool_calls as module

    tries: list[int] = []
    real = module._unclosed_json
    monkeypatch.setattr(module, "_unclosed_json", lambda segment: tries.append(len(segment)) or real(segment))
    text = '{"name": "search", "arguments": {"q": ' * 500
    assert extract_tool_calls(text, OFFERED)[0][0].arguments is None  # still a broken call, reported as one
    assert len(tries) <= module._MAX_REPAIRS


@pytest.mark.parametrize(
    "content",
    [
        '{"name": "search_files", "arguments": {"path": "/data", "pattern": ".*\\.csv"}}',
        '```json\n{"name": "search_files", "arguments": {"path": "/data", "pattern": ".*\\.csv"}}\n```',
    ],
)
def test_a_backslash_that_starts_no_json_escape_is_read_as_a_backslash(content: str) -> None:
    """The 0.5B writes a regular expression's ``\\.`` into a JSON string, which JSON does not allow."""
    found, rest = extract_tool_calls(content, {"search_files"})
    assert [(c.name, json.loads(c.raw_arguments)) for c in found] == [
        ("search_files", {"path": "/data", "pattern": ".*\\.csv"})
    ]
    assert rest == ""


def test_the_fields_of_an_object_cut_off_are_kept_only_as_written_whole() -> None:
    assert complete_fields('{"a": 1, "b": "x", "c": "unfini') == {"a": 1, "b": "x"}
    assert complete_fields('{"a": "x", "b": [1, 2') == {"a": "x"}
    assert complete_fields('{"a": "x", "n": 12') == {"a": "x"}  # 12 may have gone on: 120, 12.5
    assert complete_fields('{"a": "x", "a": "again", "b') == {"a": "x"}  # a repeat keeps the first
    assert complete_fields('{"a": {"b": 1}}') == {"a": {"b": 1}}
    for nothing in ('{"c": "unfini', "[1, 2", '"a"', "", '{"a" 1}'):
        assert complete_fields(nothing) is None
