"""Tool calls that a model wrote as text in ``message.content`` instead of ``tool_calls``.

Recognised, in this order of precedence:

1. explicit markup: ``<tool_call>{...}</tool_call>`` (the closing tag may be missing),
   ``[TOOL_REQUEST]{...}[END_TOOL_REQUEST]`` and ``[TOOL_CALLS][...]``; a call there
   counts whatever its name, so the caller can tell the model the tool does not exist;
2. otherwise JSON of the shape ``{"name": ..., "arguments"|"parameters": {...}}``, or a
   list of such objects, as the whole of a fenced code block or standing in the prose.
   It counts only when it names an offered tool: it may be JSON the user asked for.
   An answer that opens as such a call but breaks off (out of tokens) counts, with its raw
   arguments, so that the model hears its call was broken; one whose arguments are whole but
   followed by brackets that close nothing (``}]}``) counts with those arguments.

Reasoning (``<think>...</think>``, see ``reasoning.reasoning_spans``) is not searched for calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from .reasoning import reasoning_spans

__all__ = ["TextToolCall", "bare_call", "complete_calls", "extract_tool_calls", "made_up_call"]


@dataclass(frozen=True)
class TextToolCall:
    """One call found in the text."""

    name: str
    arguments: dict[str, Any] | None
    """The arguments; None when they were not a JSON object (see ``raw_arguments``)."""
    raw_arguments: str
    """The arguments as JSON text, or as written when they were not valid JSON."""


@dataclass(frozen=True)
class _Markup:
    open: re.Pattern[str]
    close: str | None


_MARKUPS = (
    _Markup(re.compile(r"<tool_call>", re.IGNORECASE), "</tool_call>"),
    _Markup(re.compile(r"\[TOOL_REQUEST\]", re.IGNORECASE), "[END_TOOL_REQUEST]"),
    _Markup(re.compile(r"\[TOOL_CALLS\]", re.IGNORECASE), None),
)
_FENCE_OPEN = re.compile(r"```[\w+.-]*[ \t]*\n?")
_EMPTY_FENCE = re.compile(r"```[\w+.-]*\s*```")
_JSON_START = re.compile(r"[\[{]\s*[\"{]")
_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGUMENTS_KEY = re.compile(r'"(?:arguments|parameters)"\s*:\s*')
_CALL_KEYS = frozenset({"name", "arguments", "parameters", "type", "id"})
_WRAPPER_KEYS = frozenset({"function", "type", "id"})
_DECODER = json.JSONDecoder()
_CLOSERS = "]} \t\r\n"
"""What may follow a call's whole arguments in a call whose brackets do not match (``_cut_off_call``)."""
_NOT_JSON = (ValueError, RecursionError)
"""What decoding raises: bad JSON, or nesting too deep for the decoder."""

_MAX_REPAIRS = 8
"""Calls missing their closing brackets that one answer may have repaired."""

_Span = tuple[int, int]
_Found = tuple[_Span, list[TextToolCall]]


def extract_tool_calls(content: str | None, offered: Collection[str]) -> tuple[list[TextToolCall], str]:
    """The calls written in ``content``, and ``content`` without them (stripped).

    ``offered`` holds the tool names the model may call. With no call found, the
    content comes back unchanged apart from the stripping.
    """
    text = content or ""
    searchable = _mask_reasoning(text)
    found = _from_markup(text, searchable) or _from_json(searchable, offered)
    if not found:
        return [], text.strip()
    found.sort(key=lambda item: item[0])
    rest = _EMPTY_FENCE.sub("", _remove(text, [span for span, _ in found]))
    return [call for _, calls in found for call in calls], rest.strip()


def bare_call(content: str | None) -> TextToolCall | None:
    """The call when ``content`` is nothing but one call-shaped JSON object (fenced or not), whatever it names.

    A small model that calls a tool that does not exist writes exactly this; it is never an answer.
    """
    found, rest = extract_tool_calls(content, _EVERY_NAME)
    return found[0] if len(found) == 1 and not rest else None


def made_up_call(content: str | None, offered: Collection[str], tool_name: re.Pattern[str]) -> TextToolCall | None:
    """The call ``content`` makes of a tool not in ``offered``: the whole of it when it is nothing but one call
    (what ``bare_call`` finds), else the first call-shaped object in a fenced block or the prose that names
    no offered tool, with a name ``tool_name`` matches."""
    found, rest = extract_tool_calls(content, _EVERY_NAME)
    if len(found) == 1 and not rest:
        return found[0]
    return next((c for c in found if c.name not in offered and tool_name.fullmatch(c.name)), None)


def complete_calls(content: str, offered: Collection[str]) -> tuple[list[TextToolCall], str]:
    """Calls of offered tools that are already whole in ``content`` (valid JSON, nothing repaired), and
    the text after the last one. For a reply still arriving: a half-written call is not in the list."""
    searchable = _mask_reasoning(content)
    calls: list[TextToolCall] = []
    after = 0
    position = 0
    while match := _JSON_START.search(searchable, position):
        try:
            value, end = _DECODER.raw_decode(searchable, match.start())
        except _NOT_JSON:
            position = match.start() + 1
            continue
        found = _offered_calls(value, offered)
        if found:
            calls.extend(found)
            after = end
        position = end
    return calls, content[after:] if calls else ""


class _EveryName(Collection[str]):
    """Offered names that include every name."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_EVERY_NAME = _EveryName()


# --- explicit markup ---------------------------------------------------------------


def _from_markup(text: str, searchable: str) -> list[_Found]:
    opens = sorted(
        ((match.start(), match.end(), markup) for markup in _MARKUPS for match in markup.open.finditer(searchable)),
        key=lambda item: item[0],
    )
    found: list[_Found] = []
    consumed = 0
    for start, body_start, markup in opens:
        if start < consumed:
            continue
        end, calls = _read_markup(text, body_start, markup)
        if calls:
            found.append(((start, end), calls))
            consumed = end
    return found


def _read_markup(text: str, start: int, markup: _Markup) -> tuple[int, list[TextToolCall]]:
    """Where the markup whose body starts at ``start`` ends, and the calls in it."""
    body_start = _skip_space(text, start)
    try:
        value, json_end = _DECODER.raw_decode(text, body_start)
    except _NOT_JSON:
        return _read_broken_markup(text, body_start, markup)
    end = json_end
    close = markup.close
    after = _skip_space(text, json_end)
    if close and text[after : after + len(close)].lower() == close.lower():
        end = after + len(close)
    return end, _calls_in(value, strict=False) or []


def _read_broken_markup(text: str, body_start: int, markup: _Markup) -> tuple[int, list[TextToolCall]]:
    """A call whose JSON does not parse: its name, if written, and the arguments as they are."""
    body_end = end = len(text)
    if markup.close and (close_at := text.lower().find(markup.close.lower(), body_start)) >= 0:
        body_end, end = close_at, close_at + len(markup.close)
    if (next_open := markup.open.search(text, body_start, body_end)) is not None:
        body_end = end = next_open.start()
    body = text[body_start:body_end].strip()
    name = _NAME.search(body)
    if name is None:
        return end, []
    key = _ARGUMENTS_KEY.search(body, name.end()) or _ARGUMENTS_KEY.search(body)
    raw = body[key.end() :].rstrip() if key else body
    if key and raw.endswith("}"):
        raw = raw[:-1].rstrip()
    return end, [TextToolCall(_unescape(name.group(1)), None, raw)]


def _unescape(json_string_body: str) -> str:
    try:
        return str(json.loads(f'"{json_string_body}"'))
    except _NOT_JSON:
        return json_string_body


# --- JSON in fences or prose -------------------------------------------------------


def _from_json(searchable: str, offered: Collection[str]) -> list[_Found]:
    found: list[_Found] = []
    fences: list[_Span] = []
    for span, value in _fences(searchable):
        fences.append(span)
        if (calls := _offered_calls(value, offered)) is not None:
            found.append((span, calls))
    if '"name"' in searchable:
        found.extend(_prose_calls(searchable, fences, offered))
    return found or _cut_off_call(searchable, offered)


_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _lenient_escapes(text: str) -> str:
    """``text`` with each backslash that starts no JSON escape doubled, so that it reads as a backslash."""
    return _ESCAPE.sub(lambda m: m.group(0) if m.group(1) in '\\"/bfnrtu' else "\\\\" + m.group(1), text)


def _cut_off_call(text: str, offered: Collection[str]) -> list[_Found]:
    """A whole answer that opens as a call to an offered tool but is not valid JSON.

    Typically a small model that ran out of tokens mid-call. Returned with its raw arguments,
    so the model is told its arguments are broken instead of the fragment becoming the answer.
    """
    start = _skip_space(text, 0)
    if opening := _FENCE_OPEN.match(text, start):
        start = _skip_space(text, opening.end())
    if not text.startswith("{", start):
        return []
    try:
        _DECODER.raw_decode(text, start)
        return []  # valid JSON that is not a call
    except _NOT_JSON:
        pass
    try:  # a backslash JSON does not allow (the 0.5B's pattern ".*\.csv") read as a backslash
        value, _ = _DECODER.raw_decode(_lenient_escapes(text[start:]))
    except _NOT_JSON:
        value = None
    if (calls := _offered_calls(value, offered)) is not None:
        return [((0, len(text)), calls)]
    name = _NAME.match(text, _skip_space(text, start + 1))
    if name is None or _unescape(name.group(1)) not in offered:
        return []
    key = _ARGUMENTS_KEY.search(text, name.end())
    raw = text[key.end() :].strip().removesuffix("```").rstrip() if key else ""
    try:  # whole arguments, then brackets that close nothing: the 0.5B ended a call with "}]}"
        value, end = _DECODER.raw_decode(raw)
    except _NOT_JSON:
        value, end = None, 0
    if isinstance(value, dict) and not raw[end:].strip(_CLOSERS):
        return [((0, len(text)), [_with_arguments(_unescape(name.group(1)), value)])]
    return [((0, len(text)), [TextToolCall(_unescape(name.group(1)), None, raw)])]


def _fences(text: str) -> Iterator[tuple[_Span, Any]]:
    """Each fenced code block, with its JSON value when it holds exactly one (else None)."""
    position = 0
    while opening := _FENCE_OPEN.search(text, position):
        value, end = _fenced_json(text, opening.end())
        if end is None:
            close = text.find("```", opening.end())
            end = len(text) if close < 0 else close + 3
        yield (opening.start(), end), value
        position = end


def _fenced_json(text: str, body_start: int) -> tuple[Any, int | None]:
    """The JSON filling the fence body at ``body_start`` and the fence's end, if so.

    Several values one after another (a model writing one call per item, all in one block)
    come back as a list of them.
    """
    start = _skip_space(text, body_start)
    try:
        value, json_end = _DECODER.raw_decode(text, start)
    except _NOT_JSON:
        close = text.find("```", start)
        end = len(text) if close < 0 else close
        value = _unclosed_json(text[start:end])
        if value is None:
            return None, None
        return value, len(text) if close < 0 else close + 3
    values = [value]
    after = _skip_space(text, json_end)
    while after < len(text) and text[after] in "{[":
        try:
            more, json_end = _DECODER.raw_decode(text, after)
        except _NOT_JSON:
            return None, None
        values.append(more)
        after = _skip_space(text, json_end)
    found = values[0] if len(values) == 1 else values
    if text.startswith("```", after):
        return found, after + 3
    return (found, after) if after == len(text) else (None, None)


def _prose_calls(text: str, fences: list[_Span], offered: Collection[str]) -> Iterator[_Found]:
    """JSON calls standing in the prose, outside code fences."""
    position = 0
    repairs = _MAX_REPAIRS
    while match := _JSON_START.search(text, position):
        start = match.start()
        if (fence := next((f for f in fences if f[0] <= start < f[1]), None)) is not None:
            position = fence[1]
            continue
        try:
            value, end = _DECODER.raw_decode(text, start)
        except _NOT_JSON:
            line_end = text.find("\n", start)
            end = len(text) if line_end < 0 else line_end
            # Only what opens like a call is worth repairing, a few times at most: each try reads to the line's end.
            value = None
            if repairs and _NAME.search(text, start, min(end, start + 80)):
                repairs -= 1
                value = _unclosed_json(text[start:end])
            if value is None:
                position = start + 1
                continue
        if (calls := _offered_calls(value, offered)) is not None:
            yield (start, end), calls
        position = end


def _offered_calls(value: Any, offered: Collection[str]) -> list[TextToolCall] | None:
    """The calls ``value`` is written as, if it is call-shaped and names an offered tool.

    In a list every item must be call-shaped; once one names an offered tool all are
    returned, so a misspelt neighbour can still be reported to the model.
    """
    calls = _calls_in(value, strict=True)
    if calls and any(call.name in offered for call in calls):
        return calls
    return None


def _unclosed_json(segment: str) -> Any:
    """The JSON value in ``segment`` if all it lacks is closing brackets at the end, else None.

    Small models often drop the last ``}`` of a call: ``{"name": "f", "arguments": {"a": 1}``.
    """
    closers: list[str] = []
    in_string = escaped = False
    for char in segment:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]" and (not closers or closers.pop() != char):
            return None
    if in_string or not closers:
        return None
    try:
        return json.loads(segment.rstrip().rstrip(",") + "".join(reversed(closers)))
    except _NOT_JSON:
        return None


def complete_fields(raw: str) -> dict[str, Any] | None:
    """The fields of a JSON object cut off before its end that were written whole, in order, up to the first
    that was not; None when ``raw`` is no such object or holds none. ``{"a": 1, "b": "x", "c": "unfini`` gives
    ``{"a": 1, "b": "x"}``: a value is kept only as it was written to its end, never cut short."""
    position = _skip_space(raw, 0)
    if not raw.startswith("{", position):
        return None
    fields: dict[str, Any] = {}
    position += 1
    while True:
        position = _skip_space(raw, position)
        try:
            key, position = _DECODER.raw_decode(raw, position)
            position = _skip_space(raw, position)
            if not isinstance(key, str) or not raw.startswith(":", position):
                break
            value, end = _DECODER.raw_decode(raw, _skip_space(raw, position + 1))
        except _NOT_JSON:
            break
        after = _skip_space(raw, end)
        if not raw.startswith((",", "}"), after):
            break  # a value whose end was not written: what follows is not known
        fields.setdefault(key, value)
        position = after + 1
        if raw.startswith("}", after):
            break
    return fields or None


# --- shapes ------------------------------------------------------------------------


def _calls_in(value: Any, *, strict: bool) -> list[TextToolCall] | None:
    """The calls ``value`` is written as: one call object, or a non-empty list of them.

    ``strict`` refuses objects with keys a call does not have.
    """
    items = value if isinstance(value, list) else [value]
    calls = [_call_from(item, strict=strict) for item in items]
    if not calls or None in calls:
        return None
    return [call for call in calls if call is not None]


def _call_from(item: Any, *, strict: bool) -> TextToolCall | None:
    if not isinstance(item, dict):
        return None
    if "name" not in item and isinstance(item.get("function"), dict):
        if strict and not item.keys() <= _WRAPPER_KEYS:
            return None
        item = item["function"]
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    if strict and not item.keys() <= _CALL_KEYS:
        return None
    return _with_arguments(name.strip(), item.get("arguments", item.get("parameters")))


def _with_arguments(name: str, value: Any) -> TextToolCall:
    if value is None:
        return TextToolCall(name, {}, "{}")
    if isinstance(value, dict):
        return TextToolCall(name, value, json.dumps(value, ensure_ascii=False))
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.strip() else {}
        except _NOT_JSON:
            parsed = None
        return TextToolCall(name, parsed if isinstance(parsed, dict) else None, value)
    return TextToolCall(name, None, json.dumps(value, ensure_ascii=False))


# --- text helpers ------------------------------------------------------------------


def _mask_reasoning(text: str) -> str:
    """``text`` with its closed reasoning blanked out, so positions stay the same.

    A call after an unclosed ``<think>`` counts: the model may have forgotten to close it.
    """
    masked = text
    for start, end in reasoning_spans(text, unclosed=False):
        masked = masked[:start] + " " * (end - start) + masked[end:]
    return masked


def _remove(text: str, spans: list[_Span]) -> str:
    """``text`` without ``spans``; a gap that had a line break around it becomes one blank line."""
    rest, position = "", 0
    for start, end in [*spans, (len(text), len(text))]:
        piece = text[position:start]
        if rest and "\n" in rest[len(rest.rstrip()) :] + piece[: len(piece) - len(piece.lstrip())]:
            rest, piece = rest.rstrip() + "\n\n", piece.lstrip()
        rest += piece
        position = end
    return rest


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position
