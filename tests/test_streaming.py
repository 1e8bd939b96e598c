"""Streamed replies: read as they arrive, stopped once settled, bounded in time, validated.

LM Studio is played by an ``httpx.MockTransport`` whose body is an async generator of
server-sent events, so a test can stream forever, trickle, or go silent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import httpx
import pytest
from mcp.types import CallToolResult, TextContent, Tool

from lmstudio_bridge import lmstudio
from lmstudio_bridge.config import Settings
from lmstudio_bridge.errors import BadResponse, LMStudioHTTPError, LMStudioTimeout
from lmstudio_bridge.lmstudio import ChatResult, LLMClient, LMStudioAPI, Progress
from lmstudio_bridge.reply_watch import Cut, Draft, ReplyWatch, counting_loop, loop_start

BASE = "http://lms.test:1234"
OFFERED = frozenset({"get_current_time", "list_directory"})


def event(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    data = {"id": "c1", "object": "chat.completion.chunk", "model": "m", **extra}
    if delta is not None:
        data["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return f"data: {json.dumps(data)}\n\n".encode()


def content(*pieces: str) -> list[bytes]:
    return [event({"content": p}) for p in pieces]


class Stream:
    """A streaming server: ``events`` (a list, or an endless iterator) with ``gap`` seconds between them."""

    def __init__(self, events: Any, *, gap: float = 0.0, first_delay: float = 0.0) -> None:
        self.events = events
        self.gap = gap
        self.first_delay = first_delay
        self.sent = 0
        self.bodies: list[dict[str, Any]] = []

    async def _body(self) -> AsyncIterator[bytes]:
        await asyncio.sleep(self.first_delay)
        for item in self.events:
            self.sent += 1
            yield item
            await asyncio.sleep(self.gap)
        yield b"data: [DONE]\n\n"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=self._body())


async def complete(
    stream: Stream,
    *,
    watch: Callable[[Draft], Cut | None] | None = None,
    progress: Callable[[Progress], Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> ChatResult:
    api = LMStudioAPI.from_settings(
        Settings(base_url=BASE, max_retries=0, **settings), transport=httpx.MockTransport(stream)
    )
    try:
        return await LLMClient(api, "m").complete(
            [{"role": "user", "content": "x"}], tools=tools, watch=watch, progress=progress
        )
    finally:
        await api.aclose()


def watch(offered: frozenset[str] = OFFERED, answer: int = 2048, reasoning: int = 8192) -> ReplyWatch:
    return ReplyWatch(offered, answer, reasoning)


async def test_a_stream_is_assembled_content_reasoning_calls_and_usage() -> None:
    events = [
        event({"role": "assistant", "content": ""}),
        event({"reasoning_content": "The user wants "}),
        event({"reasoning_content": "the time."}),
        *content("Checking", " now."),
        event(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c9",
                        "type": "function",
                        "function": {"name": "get_current_time", "arguments": ""},
                    }
                ]
            }
        ),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '{"timezone": '}}]}),
        event({"tool_calls": [{"index": 0, "function": {"arguments": '"Asia/Tokyo"}'}}]}),
        event({}, "tool_calls"),
        event(usage={"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}, choices=[]),
    ]
    stream = Stream(events)
    result = await complete(stream, tools=[{"type": "function", "function": {"name": "get_current_time"}}])
    assert result.content == "Checking now."
    assert result.message["reasoning_content"] == "The user wants the time."
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("c9", "get_current_time", '{"timezone": "Asia/Tokyo"}')
    ]
    assert result.finish_reason == "tool_calls" and result.usage.total_tokens == 52
    assert result.stats.tokens == 12 and result.stats.first_token_seconds is not None and result.stats.cut is None
    sent = stream.bodies[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_an_endless_repeating_reply_is_stopped_and_kept_once() -> None:
    """A 0.5B model at its server's default sampling: the same sentence until the heat death of the universe."""
    stream = Stream(event({"content": piece}) for piece in itertools.cycle(["The time in ", "Tokyo is 09:00.", "\n"]))
    result = await complete(stream, watch=watch())
    assert stream.sent < 200
    assert result.stats.cut == "repetition" and result.finish_reason == "cut"
    assert result.content.count("Tokyo is 09:00.") == 1 and result.content.startswith("The time in Tokyo is 09:00.")


async def test_endless_text_that_never_repeats_stops_at_the_budget() -> None:
    stream = Stream(event({"content": f"word{n} "}) for n in itertools.count())
    result = await complete(stream, watch=watch(answer=300))
    assert result.stats.cut == "budget"
    assert 300 <= result.stats.tokens <= 302


async def test_a_complete_text_call_ends_the_reply_once_prose_follows() -> None:
    call = '```json\n{"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}\n```'
    babble = (event({"content": "\nThis calls the tool to get the time. "}) for _ in itertools.count())
    stream = Stream(itertools.chain(content(*[call[i : i + 5] for i in range(0, len(call), 5)]), babble))
    result = await complete(stream, watch=watch())
    assert result.stats.cut == "tool_call" and stream.sent < 60
    assert result.content.strip() == call


async def test_a_call_written_again_ends_the_reply_and_two_different_calls_are_both_read() -> None:
    one = '{"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}\n'
    two = '{"name": "get_current_time", "arguments": {"timezone": "Europe/Oslo"}}\n'
    stream = Stream(event({"content": one}) for _ in itertools.count())
    result = await complete(stream, watch=watch())
    assert result.stats.cut == "tool_call" and stream.sent <= 3
    stream = Stream(content(one, two, "Done."))
    result = await complete(stream, watch=watch())
    assert one in result.content and two in result.content


async def test_a_half_written_call_is_not_taken_for_a_whole_one() -> None:
    calls, _ = ReplyWatch(OFFERED, 100, 100), None
    draft = Draft(content='{"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo", "x": ' + " " * 60)
    assert calls(draft) is None


async def test_long_reasoning_is_not_a_runaway_but_has_its_own_budget() -> None:
    thinking = [event({"reasoning_content": "Let me think about the time again. "}) for _ in range(400)]
    stream = Stream([*thinking, *content("It is 09:00 in Tokyo.")])
    result = await complete(stream, watch=watch(answer=50))
    assert result.stats.cut is None and result.content == "It is 09:00 in Tokyo."
    inline = "<think>" + "I should check. " * 300 + "</think>It is 09:00."
    stream = Stream(content(*[inline[i : i + 4] for i in range(0, len(inline), 4)]))
    result = await complete(stream, watch=watch(answer=50))
    assert result.stats.cut is None and result.content.endswith("It is 09:00.")
    stream = Stream(event({"reasoning_content": "hmm "}) for _ in itertools.count())
    result = await complete(stream, watch=watch(reasoning=500))
    assert result.stats.cut == "budget" and stream.sent < 600


async def test_progress_is_reported_while_tokens_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lmstudio, "PROGRESS_INTERVAL", 0.0)
    seen: list[Progress] = []

    async def progress(report: Progress) -> None:
        seen.append(report)

    await complete(Stream(content(*["tok "] * 5)), progress=progress)
    assert [p.tokens for p in seen] == [1, 2, 3, 4, 5]


async def test_progress_is_not_reported_more_often_than_the_interval() -> None:
    seen: list[Progress] = []

    async def progress(report: Progress) -> None:
        seen.append(report)

    await complete(Stream(content(*["tok "] * 50)), progress=progress)
    assert len(seen) == 1  # the first token; the rest came within the interval


async def test_progress_is_reported_while_no_token_has_come_and_stops_at_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lmstudio, "WAITING_INTERVAL", 0.01)
    seen: list[Progress] = []

    async def progress(report: Progress) -> None:
        seen.append(report)

    # Tokens 0.1 s apart: a report that went on past the first token would come between them.
    result = await complete(Stream(content("It is", " nine."), first_delay=0.3, gap=0.1), progress=progress)
    assert result.content == "It is nine."
    first = next(i for i, p in enumerate(seen) if p.tokens > 0)
    waiting = seen[:first]
    assert waiting and all(p.tokens == 0 and p.waited > 0 for p in waiting)
    assert [p.waited for p in waiting] == sorted(p.waited for p in waiting)
    assert all(p.waited == 0 for p in seen[first:])


async def test_no_first_token_in_time_is_a_timeout_that_says_so() -> None:
    with pytest.raises(LMStudioTimeout) as raised:
        await complete(Stream(content("late"), first_delay=5), first_token_timeout=0.2)
    assert "wrote nothing within 0.2 s" in str(raised.value) and "LMSTUDIO_BRIDGE_FIRST_TOKEN_TIMEOUT" in str(
        raised.value
    )
    assert "large model" not in str(raised.value) and "loading" not in str(raised.value)


async def test_silence_mid_reply_is_a_timeout() -> None:
    stream = Stream(content("It is", " nine"), gap=5)
    with pytest.raises(LMStudioTimeout) as raised:
        await complete(stream, stream_idle_timeout=0.2)
    assert "went silent for 0.2 s" in str(raised.value) and "after 1 tokens" in str(raised.value)


async def test_a_trickle_is_bounded_by_the_total_time_per_reply() -> None:
    """One byte every 50 ms never trips the silence bound; the total does."""
    stream = Stream((event({"content": "x"}) for _ in itertools.count()), gap=0.05)
    with pytest.raises(LMStudioTimeout) as raised:
        await complete(stream, request_timeout=0.5, stream_idle_timeout=5)
    message = str(raised.value)
    assert (
        "still writing after 0.5 s" in message and "tokens" in message and "LMSTUDIO_BRIDGE_REQUEST_TIMEOUT" in message
    )


@pytest.mark.parametrize(
    ("delta", "shown"),
    [
        ({"tool_calls": [None]}, "a tool call that is not an object"),
        ({"tool_calls": "echo"}, "'tool_calls' that is not a list"),
        ({"tool_calls": [{"index": 0, "function": "echo"}]}, "a tool call that is not an object"),
        ({"content": 42}, "'content' that is not text: '42'"),
    ],
)
async def test_malformed_events_name_the_server_and_what_it_sent(delta: dict[str, Any], shown: str) -> None:
    with pytest.raises(BadResponse) as raised:
        await complete(Stream([event(delta)]))
    assert f"The model server at {BASE} sent {shown}" in str(raised.value)


async def test_usable_replies_survive_a_malformed_usage() -> None:
    result = await complete(Stream([*content("fine"), event(usage="many", choices=[])]))
    assert result.content == "fine" and result.usage.completion_tokens == 1


async def test_an_error_event_mid_stream_is_an_error() -> None:
    with pytest.raises(LMStudioHTTPError) as raised:
        await complete(
            Stream([*content("a"), f"data: {json.dumps({'error': {'message': 'Context overflow'}})}\n\n".encode()])
        )
    assert "Context overflow" in str(raised.value)


async def test_a_server_that_ignores_stream_answers_with_one_body() -> None:
    def plain(request: httpx.Request) -> httpx.Response:
        message = {"role": "assistant", "content": "whole"}
        return httpx.Response(200, json={"choices": [{"message": message, "finish_reason": "stop"}]})

    api = LMStudioAPI.from_settings(Settings(base_url=BASE), transport=httpx.MockTransport(plain))
    result = await LLMClient(api, "m").complete([{"role": "user", "content": "x"}])
    await api.aclose()
    assert result.content == "whole"


def test_loop_start_keeps_one_copy() -> None:
    text = "Intro. " + "The same line again.\n" * 10
    at = loop_start(text)
    assert at is not None and text[:at] == "Intro. The same line again.\n"
    assert loop_start("A normal answer that ends here.") is None
    assert loop_start("ha " * 5) is None  # short repetition is not a loop
    assert loop_start("x" + "\n" * 200) == 2


def test_an_item_counted_up_again_and_again_in_a_call_is_a_loop() -> None:
    """The 0.5B, asked to add that Marie Curie was born in Warsaw, listed dates counting up inside a call's
    arguments until its reply budget (two minutes)."""
    days = ", ".join(f'"1905-{month:02d}-{day:02d}"' for month in range(1, 13) for day in range(1, 29))
    call = '{"name": "add_observations", "arguments": {"entityName": "Marie Curie", "contents": [' + days
    watch = ReplyWatch((), 2048, 8192)
    cut = None
    for end in range(48, len(call), 48):  # as the reply streams in
        if cut := watch(Draft(content=call[:end], content_tokens=end // 3)):
            break
    assert cut is not None and cut.reason == "repetition" and end < 700
    assert cut.keep_chars is not None and call[: cut.keep_chars].startswith('{"name": "add_observations"')
    # Numbered rows in an answer are not cut; fewer numbers in a row, or each with its own words, are no loop.
    rows = "\n".join(f"file_{n:03d}.csv" for n in range(60))
    assert ReplyWatch((), 2048, 8192)(Draft(content=rows, content_tokens=len(rows) // 3)) is None
    assert counting_loop("Ports in use: " + ", ".join(str(8000 + n) for n in range(25)) + ".") is None
    assert counting_loop("\n".join(f"{n}. {w} {n * 7}" for n, w in enumerate(["ada", "bob", "cy"] * 20))) is None


# --- Against the scripted LM Studio, over a real socket ------------------------------------------


async def test_the_scripted_server_s_endless_reply_is_cut_and_its_stream_closed() -> None:
    from lmstudio_bridge.agent import LoopLimits, run_agent
    from lmstudio_bridge.toolbox import Toolbox
    from tests.support.fake_lmstudio import FakeLMStudio

    async with FakeLMStudio(models=["m"]) as fake:
        api = LMStudioAPI.from_settings(Settings(base_url=fake.base_url))
        try:
            result = await run_agent(
                llm=LLMClient(api, "m"),
                toolbox=Toolbox([_Idle()]),
                task="@endless Tokyo is at UTC+9, so it is 09:00 there.\\n",
                servers=[],
                limits=LoopLimits(max_rounds=3, tool_timeout=5, result_chars=1000, reply_tokens=500),
            )
        finally:
            await api.aclose()
        assert result.answer == "Tokyo is at UTC+9, so it is 09:00 there."
        assert result.generation.replies_cut == 1 and result.generation.tokens < 100
        assert result.generation.answer_cut == "repetition"
        assert await _eventually(lambda: fake.streams_cut == 1)


class _Idle:
    name = "idle"
    tools: ClassVar[list[Tool]] = [Tool(name="noop", input_schema={"type": "object", "properties": {}})]

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> CallToolResult:
        raise AssertionError("never called")


async def _eventually(check: Callable[[], bool], within: float = 5.0) -> bool:
    """The server notices a closed stream on its next write; give it a moment, polling."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not check() and loop.time() < end:
        await asyncio.sleep(0.01)
    return check()


def test_a_long_line_written_again_and_again_is_a_loop() -> None:
    """The 0.5B, told a tool does not exist, wrote one 480-character call-shaped line 2,000 tokens long."""
    line = '{"name": "Error", "arguments": {"tool": "copy_file", "message": "' + "x" * 400 + '"}}\n'
    text = "I see.\n" + line * 3 + line[:100]
    assert loop_start(text) == len("I see.\n") + len(line)
    assert loop_start("I see.\n" + line * 2) is None
    assert loop_start("I see.\n" + line * 3 + "Something else") is None


async def test_a_call_at_the_answer_step_ends_that_reply() -> None:
    """The 1.5B, asked for the answer or one more call, wrote the call, then explained it and wrote it again
    until its reply budget: 2,048 tokens and 190 s for a call of 20 tokens."""
    from lmstudio_bridge.agent import LoopLimits, run_agent
    from lmstudio_bridge.toolbox import Toolbox

    def call(zone: str) -> str:
        return f'```json\n{{"name": "get_current_time", "arguments": {{"timezone": "{zone}"}}}}\n```\n'

    words = ("".join(letters) for letters in itertools.product("abcdefgh", repeat=4))  # no loop, no counting
    babble = (event({"content": f"Then we read {word} in it. "}) for word in words)
    replies = iter(
        [
            Stream(content(call("Asia/Tokyo"))),
            Stream(itertools.chain(content("We need Oslo too.\n", call("Europe/Oslo")), babble)),
            Stream(content("Tokyo 09:00, Oslo 09:00.")),
        ]
    )
    sent: list[dict[str, Any]] = []

    def serve(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return next(replies)(request)

    api = LMStudioAPI.from_settings(Settings(base_url=BASE, max_retries=0), transport=httpx.MockTransport(serve))
    clock = _Clock()
    try:
        result = await run_agent(
            llm=LLMClient(api, "m"),
            toolbox=Toolbox([clock]),
            task="What time is it in Tokyo and Oslo?",
            servers=["clock"],
            limits=LoopLimits(max_rounds=5, tool_timeout=5, result_chars=1000, reply_tokens=400),
        )
    finally:
        await api.aclose()
    assert clock.zones == ["Asia/Tokyo", "Europe/Oslo"] and result.answer == "Tokyo 09:00, Oslo 09:00."
    assert "tools" not in sent[1] and result.generation.replies_cut == 1
    assert result.generation.tokens < 60  # not the 400-token budget


async def test_an_answer_step_s_reply_is_bounded_by_what_it_restates() -> None:
    """The 0.5B, asked for the answer after its calls failed, wrote the steps it would take until the reply
    budget: 2,048 tokens and 116 s. An answer restates the task and the results at most."""
    from lmstudio_bridge.agent import ANSWER_TOKENS, LoopLimits, run_agent
    from lmstudio_bridge.toolbox import Toolbox

    call = '{"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}'
    words = ("".join(letters) for letters in itertools.product("abcdefgh", repeat=4))
    babble = (event({"content": f"Step: we check {word} first. "}) for word in words)
    replies = iter([Stream(content(call)), Stream(babble)])
    sent: list[dict[str, Any]] = []

    def serve(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return next(replies)(request)

    api = LMStudioAPI.from_settings(Settings(base_url=BASE, max_retries=0), transport=httpx.MockTransport(serve))
    try:
        result = await run_agent(
            llm=LLMClient(api, "m"),
            toolbox=Toolbox([_Clock()]),
            task="What time is it in Tokyo?",
            servers=["clock"],
            limits=LoopLimits(max_rounds=5, tool_timeout=5, result_chars=1000, reply_tokens=2048),
        )
    finally:
        await api.aclose()
    asked = len(sent[1]["messages"][1]["content"])
    assert result.generation.answer_cut == "budget" and result.answer.startswith("Step: we check aaaa first.")
    answer_tokens = result.generation.tokens - 1  # the first reply, the call, came as one token
    assert ANSWER_TOKENS <= answer_tokens <= ANSWER_TOKENS + asked // 3 + 2 < 2048


class _Clock:
    name = "clock"
    tools: ClassVar[list[Tool]] = [
        Tool(
            name="get_current_time",
            input_schema={"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
        )
    ]

    def __init__(self) -> None:
        self.zones: list[str] = []

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> CallToolResult:
        self.zones.append(arguments["timezone"])
        return CallToolResult(content=[TextContent(type="text", text=f"{arguments['timezone']}: 09:00")])
