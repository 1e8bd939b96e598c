"""The agent loop with a mocked LM Studio (respx) and stub children: every branch a small model can take."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
import respx
from mcp.types import CallToolResult, TextContent, Tool, ToolAnnotations

from lmstudio_bridge.agent import LoopLimits, _looked_for, _writing, read_reply, run_agent
from lmstudio_bridge.config import Settings
from lmstudio_bridge.errors import ToolCallFailed, ToolTimeout
from lmstudio_bridge.grounding import Made
from lmstudio_bridge.lmstudio import LLMClient, LMStudioAPI, Progress
from lmstudio_bridge.prompts import ANSWER_NOW, ANSWER_OR_CALL, ANSWER_PROMPT, CALL_OR_ANSWER
from lmstudio_bridge.results import TaskResult
from lmstudio_bridge.toolbox import Toolbox, truncate

BASE = "http://lms.test:1234"
LIMITS = LoopLimits(max_rounds=5, tool_timeout=2.0, result_chars=1000)


@dataclass(eq=False)
class StubChild:
    name: str
    tools: list[Tool]
    handler: Callable[[str, dict[str, Any]], Any]
    broken: str | None = None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> CallToolResult:
        self.calls.append((name, arguments))
        out = self.handler(name, arguments)
        if asyncio.iscoroutine(out):
            out = await out
        if isinstance(out, CallToolResult):
            return out
        return CallToolResult(content=[TextContent(type="text", text=str(out))])


def tool(name: str, schema: dict[str, Any] | None = None) -> Tool:
    return Tool(name=name, input_schema=schema or {"type": "object"})


def answer(content: str | None = None, calls: list[tuple[str, Any]] | None = None, **extra: Any) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content, **extra}
    if calls:
        message["tool_calls"] = [
            {
                "id": f"id{i}",
                "type": "function",
                "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)},
            }
            for i, (n, a) in enumerate(calls)
        ]
    finish = "tool_calls" if calls else "stop"
    return {
        "choices": [{"message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class Script:
    """Serves the given answers in order and keeps every request body."""

    def __init__(self, *answers: dict) -> None:
        self.answers = list(answers)
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        return httpx.Response(200, json=self.answers.pop(0) if self.answers else answer("done"))


@pytest.fixture
async def llm():
    api = LMStudioAPI.from_settings(Settings(base_url=BASE, max_retries=0))
    yield LLMClient(api, "test-model")
    await api.aclose()


def echo_child(name: str = "echo") -> StubChild:
    return StubChild(name, [tool("echo"), tool("add")], lambda n, a: f"{n}:{json.dumps(a, sort_keys=True)}")


async def run(
    llm: LLMClient,
    script: Script,
    children: list[StubChild],
    limits: LoopLimits = LIMITS,
    task: str = "do it",
    **kw: Any,
):
    with respx.mock:
        respx.post(f"{BASE}/v1/chat/completions").mock(side_effect=script)
        return await run_agent(
            llm=llm, toolbox=Toolbox(children), task=task, servers=[c.name for c in children], limits=limits, **kw
        )


async def test_tool_call_then_answer(llm: LLMClient) -> None:
    child = echo_child()
    script = Script(answer(calls=[("echo", {"text": "hi"})]), answer("all done"))
    result = await run(llm, script, [child])
    assert result.answer == "all done"
    assert (result.rounds, result.stop_reason, result.model) == (2, "answered", "test-model")
    assert child.calls == [("echo", {"text": "hi"})]
    assert [(r.name, r.ok) for r in result.tool_calls] == [("echo.echo", True)]
    assert result.usage.total_tokens == 30
    second = script.bodies[1]["messages"]
    assert second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["id"] == "id0"
    assert second[-1] == {"role": "tool", "tool_call_id": "id0", "content": 'echo:{"text": "hi"}'}


async def test_prompt_prefix_is_identical_across_rounds(llm: LLMClient) -> None:
    script = Script(answer(calls=[("echo", {})]), answer(calls=[("add", {})]), answer("ok"))
    await run(llm, script, [echo_child()])
    first, *rest = script.bodies
    for body in rest:
        assert body["tools"] == first["tools"]
        assert body["messages"][: len(first["messages"])] == first["messages"]
    assert first["messages"][0]["role"] == "system" and "echo" in first["messages"][0]["content"]


async def test_parallel_calls_run_concurrently(llm: LLMClient) -> None:
    running, peak = 0, 0

    async def slow(name: str, args: dict) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        return "ok"

    child = StubChild("s", [tool("slow")], slow)
    script = Script(answer(calls=[("slow", {"n": i}) for i in range(4)]), answer("done"))
    result = await run(llm, script, [child])
    assert peak == 4
    assert [m["tool_call_id"] for m in script.bodies[1]["messages"] if m["role"] == "tool"] == [
        "id0",
        "id1",
        "id2",
        "id3",
    ]
    assert result.answer == "done"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (("echo", "{not json"), "Error: the arguments are not valid JSON"),
        (("echo", "[1, 2]"), "Error: the arguments must be a JSON object"),
        (("nope", {}), "Error: there is no tool named 'nope'. Available tools: echo, add"),
        (("ech", {}), "Error: there is no tool named 'ech'. Did you mean echo? Available tools: echo, add"),
    ],
)
async def test_bad_calls_go_back_to_the_model(llm: LLMClient, call: tuple[str, Any], expected: str) -> None:
    child = echo_child()
    script = Script(answer(calls=[call]), answer("recovered"))
    result = await run(llm, script, [child])
    assert script.bodies[1]["messages"][-1]["content"].startswith(expected)
    assert result.answer == "recovered" and not result.tool_calls[0].ok
    assert child.calls == []
    # The history sent back is valid JSON throughout: llama.cpp answers HTTP 500 to broken arguments.
    kept = script.bodies[1]["messages"][-2]["tool_calls"][0]["function"]["arguments"]
    json.loads(kept)


async def test_tool_error_and_exception_and_timeout_go_back(llm: LLMClient) -> None:
    async def handler(name: str, args: dict) -> Any:
        if name == "fails":
            return CallToolResult(content=[TextContent(type="text", text="disk full")], is_error=True)
        if name == "raises":
            raise ToolCallFailed("s.raises failed: boom", name="s", tool=name)
        raise ToolTimeout("s.hangs did not finish within 0.2 s", name="s", tool=name)

    child = StubChild("s", [tool("fails"), tool("raises"), tool("hangs")], handler)
    script = Script(answer(calls=[("fails", {}), ("raises", {}), ("hangs", {})]), answer("ok"))
    limits = LoopLimits(max_rounds=5, tool_timeout=0.2, result_chars=1000)
    result = await run(llm, script, [child], limits)
    contents = [m["content"] for m in script.bodies[1]["messages"] if m["role"] == "tool"]
    assert contents[0] == "Error: disk full"
    assert contents[1] == "Error: s.raises failed: boom"
    assert contents[2] == "Error: s.hangs did not finish within 0.2 s"
    assert [r.ok for r in result.tool_calls] == [False, False, False]
    assert result.answer == "ok"


@pytest.mark.parametrize(
    "content",
    [
        '```json\n{"name": "echo", "arguments": {"text": "x"}}\n```',
        '<tool_call>{"name": "echo", "arguments": {"text": "x"}}</tool_call>',
        '[TOOL_REQUEST]{"name": "echo", "arguments": {"text": "x"}}[END_TOOL_REQUEST]',
        '{"name": "echo", "arguments": {"text": "x"}}',
    ],
)
async def test_calls_written_as_text_are_run(llm: LLMClient, content: str) -> None:
    child = echo_child()
    script = Script(answer(content), answer("final"))
    result = await run(llm, script, [child])
    assert child.calls == [("echo", {"text": "x"})]
    # A model that writes its calls as text gets its results in a request without tools, which
    # names the tools it may still call.
    assert "tools" not in script.bodies[1]
    assert 'echo {"text": "x"}:\necho:{"text": "x"}' in script.bodies[1]["messages"][1]["content"]
    assert "one of: echo, add" in script.bodies[1]["messages"][0]["content"]
    assert result.answer == "final" and result.stop_reason == "answered" and result.rounds == 2


async def test_calls_written_one_per_reply_all_run_before_the_answer(llm: LLMClient) -> None:
    """A task that needs a tool several times: a small model writes one call per reply."""
    child = echo_child()
    cities = ["Oslo", "Lima", "Pune"]
    calls = [answer(f'{{"name": "echo", "arguments": {{"text": "{c}"}}}}') for c in cities]
    script = Script(*calls, calls[-1], answer("Oslo, Lima and Pune"))
    result = await run(llm, script, [child])
    assert child.calls == [("echo", {"text": c}) for c in cities]
    # Each answer step may name one more call; the repeated last call is not run, and the answer
    # step after it may name no call: it has every result.
    assert ["tools" in body for body in script.bodies] == [True, False, False, False, False]
    assert "one of:" not in script.bodies[-1]["messages"][0]["content"]
    digest = script.bodies[-1]["messages"][1]["content"]
    assert all(f'echo {{"text": "{c}"}}:\necho:{{"text": "{c}"}}' in digest for c in cities)
    assert result.answer == "Oslo, Lima and Pune" and result.stop_reason == "answered" and result.rounds == 5


async def test_a_new_call_in_the_answer_step_continues_the_task(llm: LLMClient) -> None:
    child = echo_child()
    script = Script(
        answer(calls=[("echo", {"text": "x"})]),
        answer(calls=[("echo", {"text": "x"})]),
        answer('{"name": "add", "arguments": {"a": 1, "b": 2}}'),
        answer("x and 3"),
    )
    result = await run(llm, script, [child])
    assert child.calls == [("echo", {"text": "x"}), ("add", {"a": 1, "b": 2})]
    assert ["tools" in body for body in script.bodies] == [True, True, False, False]
    assert result.answer == "x and 3" and result.stop_reason == "answered" and result.rounds == 4


async def test_new_calls_from_the_answer_step_stop_at_the_round_limit(llm: LLMClient) -> None:
    child = echo_child()
    script = Script(*(answer(f'{{"name": "echo", "arguments": {{"text": "{i}"}}}}') for i in range(10)))
    result = await run(llm, script, [child], LoopLimits(max_rounds=4, tool_timeout=2.0, result_chars=1000))
    assert len(script.bodies) == 5 and result.rounds == 5 and "tools" not in script.bodies[-1]
    assert [c[1]["text"] for c in child.calls] == ["0", "1", "2"]
    assert result.stop_reason == "no_answer" and 'echo {"text": "2"}:\necho:{"text": "2"}' in result.answer


async def test_a_call_already_made_in_the_answer_step_gives_the_results(llm: LLMClient) -> None:
    child = echo_child()
    call = '{"name": "echo", "arguments": {"text": "x"}}'
    script = Script(answer(call), answer(call), answer(call))
    result = await run(llm, script, [child])
    # The answer step named the call again: one more, that may name no call, then the results.
    assert child.calls == [("echo", {"text": "x"})] and len(script.bodies) == 3
    assert result.stop_reason == "no_answer" and 'echo {"text": "x"}:\necho:{"text": "x"}' in result.answer


async def test_a_bare_call_of_a_tool_that_does_not_exist_is_a_failed_call_not_the_answer(llm: LLMClient) -> None:
    child = StubChild("fs", [tool("list_directory"), tool("read_file")], lambda n, a: "a.txt")
    for content in (
        '{"name": "read_directory", "arguments": {"path": "/srv"}}',
        '```json\n{"name": "read_directory", "arguments": {"path": "/srv"}}\n```',
    ):
        script = Script(answer(content), answer("There is one file, a.txt."))
        result = await run(llm, script, [child])
        told = script.bodies[1]["messages"][-1]["content"]
        assert told.startswith("Error: there is no tool named 'read_directory'. Did you mean list_directory")
        assert result.answer == "There is one file, a.txt." and result.tool_calls[0].ok is False


async def test_an_answer_is_never_a_bare_call(llm: LLMClient) -> None:
    bare = '{"name": "read_directory", "arguments": {"path": "/srv"}}'
    script = Script(*[answer(bare)] * 3)
    result = await run(llm, script, [echo_child()], LoopLimits(max_rounds=1, tool_timeout=2.0, result_chars=1000))
    assert result.stop_reason == "no_answer" and result.answer.startswith("The model gave no answer")


async def test_the_answer_step_holds_nothing_a_model_could_parrot(llm: LLMClient) -> None:
    """Small models repeat an example's facts as their answer ("It is 4 °C in Oslo, and it is raining."
    for a task that stored an entity). This scripted model does exactly that when the prompt shows one."""

    def parrot(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "tools" in body:
            return httpx.Response(200, json=answer(calls=[("echo", {"text": "Ada Lovelace"})]))
        system = body["messages"][0]["content"]
        example = [line.removeprefix("Answer: ") for line in system.splitlines() if line.startswith("Answer: ")]
        digest = body["messages"][1]["content"]
        return httpx.Response(200, json=answer(example[0] if example else f"Stored. {digest}"))

    with respx.mock:
        respx.post(f"{BASE}/v1/chat/completions").mock(side_effect=parrot)
        result = await run_agent(
            llm=llm, toolbox=Toolbox([echo_child()]), task="Record Ada Lovelace", servers=["echo"], limits=LIMITS
        )
    assert "Oslo" not in result.answer and "Ada Lovelace" in result.answer
    assert not any(char.isdigit() for char in ANSWER_PROMPT)


async def test_a_failed_text_call_leads_to_the_answer_step_which_may_write_it_again(llm: LLMClient) -> None:
    """Given the tool list again after "no such file", the 0.5B called ten tools in one reply; the answer step
    lists the failed call, and a call the task still needs (the failed one written again) may follow."""
    child = echo_child()
    script = Script(
        answer('{"name": "echo", "arguments": {"text": 1,}}'),
        answer('{"name": "echo", "arguments": {"text": "1"}}'),
        answer("The echo said 1."),
    )
    result = await run(llm, script, [child])
    step = script.bodies[1]
    assert "tools" not in step and "Calls that failed:\n- echo" in step["messages"][1]["content"]
    assert "reply with only that call" in step["messages"][1]["content"]
    assert child.calls == [("echo", {"text": "1"})] and result.answer == "The echo said 1."


async def test_json_answer_that_is_not_a_call_ends_the_task(llm: LLMClient) -> None:
    script = Script(answer('```json\n{"name": "Ada", "age": 36}\n```'))
    result = await run(llm, script, [echo_child()])
    assert result.rounds == 1 and '"Ada"' in result.answer


async def test_round_limit_asks_for_a_summary_without_tools(llm: LLMClient) -> None:
    looping = [answer(calls=[("echo", {"n": i})]) for i in range(10)]
    script = Script(*looping[:3], answer("here is my summary"))
    limits = LoopLimits(max_rounds=3, tool_timeout=2.0, result_chars=1000)
    result = await run(llm, script, [echo_child()], limits)
    assert result.stop_reason == "round_limit"
    assert result.answer == "here is my summary"
    assert len(script.bodies) == 4 and "tools" not in script.bodies[-1]
    final = script.bodies[-1]["messages"]
    assert [m["role"] for m in final] == ["system", "user"] and "No more tools can be called" in final[0]["content"]
    # The task and every call with its own result, even though this server reuses call ids each round.
    assert final[1]["content"].startswith("Task: do it")
    # Asked for "the values that answer it", the 0.5B gave one of several (a humidity, not the temperature).
    assert final[1]["content"].endswith("for every item it asks about.")
    for i in range(3):
        assert f'echo {{"n": {i}}}:\necho:{{"n": {i}}}' in final[1]["content"]


async def test_a_round_that_repeats_the_last_one_goes_to_the_answer_step(llm: LLMClient) -> None:
    child = echo_child()
    same = answer(calls=[("echo", {"text": "again"})])
    script = Script(same, same, answer("the echo said again"))
    result = await run(llm, script, [child], LoopLimits(max_rounds=10, tool_timeout=2.0, result_chars=1000))
    assert child.calls == [("echo", {"text": "again"})]  # the repeat is not run
    assert result.stop_reason == "answered" and result.answer == "the echo said again"
    assert result.rounds == 3 and "tools" not in script.bodies[2]
    assert 'echo {"text": "again"}:\necho:{"text": "again"}' in script.bodies[2]["messages"][1]["content"]


async def test_a_call_made_before_ends_the_calls_even_after_others(llm: LLMClient) -> None:
    child = echo_child()
    a, b = answer(calls=[("echo", {"text": "a"})]), answer(calls=[("echo", {"text": "b"})])
    script = Script(a, b, a, answer("summary"))
    result = await run(llm, script, [child], LoopLimits(max_rounds=10, tool_timeout=2.0, result_chars=1000))
    assert child.calls == [("echo", {"text": "a"}), ("echo", {"text": "b"})]
    assert result.stop_reason == "answered" and result.answer == "summary" and "tools" not in script.bodies[3]


async def test_only_the_new_calls_of_a_reply_run(llm: LLMClient) -> None:
    child = echo_child()
    script = Script(
        answer(calls=[("echo", {"text": "a"})]),
        answer(calls=[("echo", {"text": "a"}), ("add", {"a": 1})]),
        answer("ok"),
    )
    await run(llm, script, [child])
    assert child.calls == [("echo", {"text": "a"}), ("add", {"a": 1})]
    kept = script.bodies[2]["messages"][-2]["tool_calls"]
    assert [c["function"]["name"] for c in kept] == ["add"]


async def test_the_same_text_call_written_many_times_runs_once(llm: LLMClient) -> None:
    child = echo_child()
    line = '{"name": "echo", "arguments": {"text": "x"}}'
    script = Script(answer("\n".join([line] * 6)), answer("done"))
    result = await run(llm, script, [child])
    assert child.calls == [("echo", {"text": "x"})] and result.answer == "done"
    assert script.bodies[1]["messages"][1]["content"].count('echo {"text": "x"}:') == 1


async def test_a_tool_call_instead_of_the_final_answer_returns_the_results(llm: LLMClient) -> None:
    child = echo_child()
    same = answer(calls=[("echo", {"text": "again"})])
    script = Script(same, same, answer('```json\n{"name": "echo", "arguments": {"text": "again"}}\n```'))
    result = await run(llm, script, [child])
    assert result.stop_reason == "no_answer"
    assert result.answer.startswith("The model gave no answer")
    assert 'echo {"text": "again"}:\necho:{"text": "again"}' in result.answer


async def test_sampling_parameters_go_with_every_request(llm: LLMClient) -> None:
    same = answer(calls=[("echo", {"text": "again"})])
    script = Script(same, same, answer("ok"))
    await run(llm, script, [echo_child()], sampling={"max_tokens": 64, "temperature": 0.0})
    assert [(b.get("max_tokens"), b.get("temperature")) for b in script.bodies] == [(64, 0.0)] * 3
    script = Script(answer("ok"))
    await run(llm, script, [echo_child()])
    assert "max_tokens" not in script.bodies[0]


async def test_the_prompt_prefix_stays_byte_identical_from_round_to_round(llm: LLMClient) -> None:
    """Servers reuse their prompt cache only for an unchanged prefix: system prompt, tool list, history."""
    script = Script(
        answer(calls=[("echo", {"text": "1"})]),
        answer(calls=[("add", {"a": 1, "b": 2})]),
        answer(calls=[("echo", {"text": "3"})]),
        answer("done"),
    )
    await run(llm, script, [echo_child()])
    encoded = [json.dumps(b["messages"]) for b in script.bodies]
    for earlier, later in zip(script.bodies, script.bodies[1:], strict=False):
        assert json.dumps(later["tools"]) == json.dumps(earlier["tools"])
        sent = earlier["messages"]
        assert json.dumps(later["messages"][: len(sent)]) == json.dumps(sent)
    assert len(set(encoded)) == 4


async def test_long_tool_output_is_cut_with_a_marker(llm: LLMClient) -> None:
    child = StubChild("s", [tool("big")], lambda n, a: "x" * 2_000_000)
    script = Script(answer(calls=[("big", {})]), answer("ok"))
    await run(llm, script, [child], LoopLimits(max_rounds=3, tool_timeout=2.0, result_chars=20_000))
    sent = script.bodies[1]["messages"][-1]["content"]
    assert len(sent) < 20_100
    assert sent.endswith("[... 1,980,000 of 2,000,000 characters cut ...]")


def test_truncate_leaves_short_text_alone() -> None:
    assert truncate("abc", 3) == "abc"


async def test_reasoning_is_kept_apart_from_the_answer(llm: LLMClient) -> None:
    script = Script(answer("<think>let me see</think>The answer is 4.", reasoning_content=None))
    result = await run(llm, script, [echo_child()])
    assert result.answer == "The answer is 4." and result.reasoning == "let me see"
    script = Script(answer("The answer is 4.", reasoning_content="2+2"))
    result = await run(llm, script, [echo_child()])
    assert result.answer == "The answer is 4." and result.reasoning == "2+2"


async def test_arguments_wrapped_in_the_schema_shape_are_unwrapped(llm: LLMClient) -> None:
    schema = {"type": "object", "properties": {"metal": {"type": "string"}, "measure": {"type": "string"}}}
    child = StubChild("prices", [tool("price", schema)], lambda n, a: json.dumps(a, sort_keys=True))
    wrapped = {"properties": {"metal": "Gold", "measure": "ounce"}, "required": ["metal"], "type": "object"}
    half = {"metal": "Gold", "properties": {"metal": "Gold", "measure": "gram"}}
    script = Script(answer(calls=[("price", wrapped)]), answer(calls=[("price", half)]), answer("ok"))
    await run(llm, script, [child])
    assert child.calls == [("price", {"metal": "Gold", "measure": m}) for m in ("ounce", "gram")]


async def test_arguments_the_tool_has_no_parameter_for_are_dropped(llm: LLMClient) -> None:
    """A small model invents parameters; kept, they mislead its answer (a made-up "time" next to the real one)."""
    schema = {"type": "object", "properties": {"timezone": {"type": "string"}}}
    child = StubChild("time", [tool("get_current_time", schema)], lambda n, a: json.dumps(a))
    made_up = {"timezone": "Asia/Tokyo", "time": "14:30"}
    script = Script(
        answer(calls=[("get_current_time", made_up)]), answer(calls=[("get_current_time", made_up)]), answer("ok")
    )
    await run(llm, script, [child])
    assert child.calls == [("get_current_time", {"timezone": "Asia/Tokyo"})]
    kept = script.bodies[1]["messages"][-2]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(kept) == {"timezone": "Asia/Tokyo"}
    assert 'get_current_time {"timezone": "Asia/Tokyo"}:' in script.bodies[2]["messages"][1]["content"]
    open_schema = {**schema, "additionalProperties": True}
    child = StubChild("time", [tool("get_current_time", open_schema)], lambda n, a: json.dumps(a))
    await run(llm, Script(answer(calls=[("get_current_time", made_up)]), answer("ok")), [child])
    assert child.calls == [("get_current_time", made_up)]


async def test_a_tool_that_takes_nothing_is_called_with_nothing(llm: LLMClient) -> None:
    """The 0.5B called memory's ``read_graph`` with its own schema as the arguments; kept, they stood in the
    answer step next to the graph. A schema that declares no properties at all says nothing of what it takes."""
    junk = {"type": "object", "properties": {"type": "string"}, "required": ["type"]}
    for schema, sent in (({"type": "object", "properties": {}}, {}), ({"type": "object"}, junk)):
        child = StubChild("memory", [tool("read_graph", schema)], lambda n, a: '{"entities": []}')
        script = Script(answer(calls=[("read_graph", junk)]), answer("ok"))
        await run(llm, script, [child])
        assert child.calls == [("read_graph", sent)]
        kept = script.bodies[1]["messages"][-2]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(kept) == sent


GIT_LOG_SCHEMA = {
    "type": "object",
    "properties": {
        "repo_path": {"type": "string"},
        "start_timestamp": {
            "anyOf": [{"type": "string"}, {"type": "null"}],
            "default": None,
            "description": "Start timestamp for filtering commits. Accepts: ISO 8601 format (e.g., '2024-01-15T14:30:25'), "
            "relative dates (e.g., '2 weeks ago', 'yesterday')",
        },
    },
    "required": ["repo_path"],
}


@pytest.mark.parametrize(
    ("task", "sent"),
    [
        pytest.param("Show the log of /r.", {"repo_path": "/r"}, id="example-not-in-the-task-dropped"),
        pytest.param(
            "Show the log of /r since yesterday.",
            {"repo_path": "/r", "start_timestamp": "yesterday"},
            id="example-the-task-names-kept",
        ),
    ],
)
async def test_an_optional_value_copied_from_its_description_is_dropped(
    llm: LLMClient, task: str, sent: dict[str, str]
) -> None:
    """The 0.5B calls git_log with start_timestamp '2024-01-15T14:30:25', the description's example: the log
    comes back empty and it invents a commit."""
    child = StubChild("git", [tool("git_log", GIT_LOG_SCHEMA)], lambda n, a: json.dumps(a))
    copied = {"repo_path": "/r", "start_timestamp": "2024-01-15T14:30:25"}
    asked = {"repo_path": "/r", "start_timestamp": "yesterday"}
    script = Script(answer(calls=[("git_log", copied if "yesterday" not in task else asked)]), answer("ok"))
    await run(llm, script, [child], task=task)
    assert child.calls == [("git_log", sent)]
    kept = script.bodies[1]["messages"][-2]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(kept) == sent


async def test_a_required_value_that_matches_an_example_is_kept(llm: LLMClient) -> None:
    schema = {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "IANA name (e.g., 'Europe/London')."}},
        "required": ["timezone"],
    }
    child = StubChild("time", [tool("get_current_time", schema)], lambda n, a: json.dumps(a))
    script = Script(answer(calls=[("get_current_time", {"timezone": "Europe/London"})]), answer("ok"))
    await run(llm, script, [child], task="What time is it in London?")
    assert child.calls == [("get_current_time", {"timezone": "Europe/London"})]


async def test_a_parameter_named_properties_is_left_alone(llm: LLMClient) -> None:
    schema = {"type": "object", "properties": {"properties": {"type": "object"}}}
    child = StubChild("db", [tool("set", schema)], lambda n, a: "ok")
    script = Script(answer(calls=[("set", {"properties": {"a": 1}})]), answer("ok"))
    await run(llm, script, [child])
    assert child.calls == [("set", {"properties": {"a": 1}})]


async def test_empty_content_falls_back_to_reasoning(llm: LLMClient) -> None:
    script = Script(answer("", reasoning_content="The answer is 4."))
    result = await run(llm, script, [echo_child()])
    assert result.answer == "The answer is 4."


async def test_progress_lines(llm: LLMClient) -> None:
    lines: list[str] = []

    async def progress(line: str) -> None:
        lines.append(line)

    script = Script(answer(calls=[("echo", {})]), answer("done"))
    await run(llm, script, [echo_child()], progress=progress)
    assert lines == [
        "round 1/5 · waiting for test-model",
        "round 1/5 · echo.echo",
        "round 2/5 · waiting for test-model",
    ]


async def test_progress_lines_while_the_model_writes_and_before_its_first_token() -> None:
    lines: list[str] = []

    async def say(line: str) -> None:
        lines.append(line)

    report = _writing("round 1/25", say)
    for progress in (Progress(0, 0.0, waited=10.4), Progress(1, 0.0), Progress(312, 11.1)):
        await report(progress)
    assert lines == [
        "round 1/25 · waiting for the first token, 10 s",
        "round 1/25 · writing",
        "round 1/25 · writing, 312 tokens, 28 tok/s",
    ]


async def test_the_answer_step_lists_failed_calls_after_the_results(llm: LLMClient) -> None:
    child = StubChild(
        "s",
        [tool("good"), tool("bad")],
        lambda n, a: (
            "42"
            if n == "good"
            else CallToolResult(content=[TextContent(type="text", text="no such thing\nmore detail")], is_error=True)
        ),
    )
    script = Script(
        answer(calls=[("bad", {})]), answer(calls=[("good", {})]), answer(calls=[("good", {})]), answer("It is 42.")
    )
    result = await run(llm, script, [child])
    assert result.answer == "It is 42." and result.stop_reason == "answered"
    digest = script.bodies[-1]["messages"][1]["content"]
    assert "good {}:\n42\n\nCalls that failed:\n- bad {}: Error: no such thing\n\nAnswer the task now" in digest


async def test_an_answer_cut_at_the_budget_says_so() -> None:
    from lmstudio_bridge.render import render_task
    from lmstudio_bridge.results import Generation, TokenUsage

    result = TaskResult(
        answer="A long answer", model="m", mcps=["s"], rounds=1, stop_reason="answered", tool_calls=[],
        usage=TokenUsage(), elapsed_seconds=1.0, generation=Generation(answer_cut="budget"),
    )  # fmt: skip
    assert "LMSTUDIO_BRIDGE_REPLY_TOKENS" in render_task(result)
    assert render_task(result.model_copy(update={"generation": Generation()})) == "A long answer"


# --- Read-only tasks ------------------------------------------------------------------------------


def git_child() -> StubChild:
    reads = ToolAnnotations(read_only_hint=True)
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=True)
    tools = [
        Tool(name="git_log", input_schema={"type": "object", "properties": {}}, annotations=reads),
        Tool(name="git_commit", input_schema={"type": "object", "properties": {}}, annotations=writes),
        Tool(name="git_add", input_schema={"type": "object", "properties": {}}),  # says nothing: not read-only
    ]
    return StubChild("git", tools, lambda n, a: "commit abc: frobnicate the widgets")


async def test_the_answer_step_says_how_many_records_a_result_lists(llm: LLMClient) -> None:
    """Shown a log of 4 commits, the 1.5B answered "5 commits"; told it holds 4 records, it answered 4."""
    log = "".join(f"Commit: c{i}\nAuthor: A{i}\nMessage: m{i}\n\n" for i in range(4))
    child = StubChild("git", [tool("git_log")], lambda n, a: log)
    script = Script(text_call("git_log", {"repo_path": "/r"}), answer("4 commits."))
    await run(llm, script, [child], task="How many commits does /r have?")
    shown = script.bodies[1]["messages"][1]["content"]
    assert f'git_log {{"repo_path": "/r"}}:\n{log}\n(4 records)\n\n' in shown


async def test_the_answer_step_counts_the_files_a_listing_names_by_kind(llm: LLMClient) -> None:
    """Shown a folder's listing of three CSV files and two others ending in "Total: 5 files", the 0.5B answered
    that it holds 5 CSV files; with the kinds counted beside the call, it answered 3 in 4 of 6 replies."""
    listing = "[FILE] feb.csv  17 B\n[FILE] jan.csv  17 B\n[FILE] mar.csv  17 B\n[FILE] a.md  2 B\nTotal: 4 files"
    child = StubChild("fs", [tool("list_directory")], lambda n, a: listing)
    script = Script(text_call("list_directory", {"path": "/d"}), answer("3."))
    await run(llm, script, [child], task="How many CSV files are in /d?")
    shown = script.bodies[1]["messages"][1]["content"]
    assert f'list_directory {{"path": "/d"}} (3 .csv files, 1 .md file):\n{listing}\n\n' in shown


async def test_the_answer_step_says_a_call_returned_nothing(llm: LLMClient) -> None:
    """After a search for Alan Turing returned ``{"entities": [], "relations": []}`` next to the whole graph, the
    0.5B answered "Alan Turing is in the knowledge graph"; told the search returned nothing, it said he is not."""
    found = {"read_graph": '{"entities": [{"name": "Marie Curie"}], "relations": []}', "search_nodes": '{"entities": [], "relations": []}'}  # fmt: skip
    child = StubChild("memory", [tool("read_graph"), tool("search_nodes")], lambda n, a: found[n])
    script = Script(text_call("read_graph", {}), text_call("search_nodes", {"query": "Alan Turing"}), answer("No."))
    await run(llm, script, [child], task="Is Alan Turing in the knowledge graph?")
    shown = script.bodies[-1]["messages"][1]["content"]
    assert (
        f'read_graph {{}}:\n{found["read_graph"]}\n\nsearch_nodes {{"query": "Alan Turing"}}: returned nothing.'
        in shown
    )


@pytest.mark.parametrize(
    "reply",
    [
        answer(calls=[("git_commit", {"message": "x"})]),
        answer('{"name": "git_commit", "arguments": {"message": "x"}}'),
        answer('<tool_call>{"name": "git.git_commit", "arguments": {}}</tool_call>'),
        answer(calls=[("git__git_add", {})]),
    ],
)
async def test_a_read_only_task_never_reaches_a_write_tool(llm: LLMClient, reply: dict) -> None:
    child = git_child()
    script = Script(reply, answer(calls=[("git_log", {})]), answer("The last commit says: frobnicate the widgets"))
    with respx.mock:
        respx.post(f"{BASE}/v1/chat/completions").mock(side_effect=script)
        result = await run_agent(
            llm=llm, toolbox=Toolbox([child], read_only=True), task="last commit?", servers=["git"], limits=LIMITS
        )
    assert [name for name, _ in child.calls] == ["git_log"]
    assert [t["function"]["name"] for t in script.bodies[0]["tools"]] == ["git_log"]
    # The refusal is what the model reads next: as the call's result, or, for a call written as text, in
    # the answer step, which lists the failed call.
    refused = script.bodies[1]["messages"][-1]["content"]
    assert "Error: " in refused and "read-only" in refused and "Available tools: git_log" in refused
    assert result.read_only and result.tools_offered == ["git.git_log"]
    assert result.tool_calls[0].ok is False


async def test_without_read_only_every_tool_is_offered(llm: LLMClient) -> None:
    script = Script(answer("ok"))
    with respx.mock:
        respx.post(f"{BASE}/v1/chat/completions").mock(side_effect=script)
        result = await run_agent(llm=llm, toolbox=Toolbox([git_child()]), task="t", servers=["git"], limits=LIMITS)
    assert result.tools_offered == ["git.git_log", "git.git_commit", "git.git_add"] and not result.read_only


@pytest.mark.parametrize("raw", ["", "[1]", "null", "{broken"])
async def test_the_history_keeps_only_json_objects_as_arguments(llm: LLMClient, raw: str) -> None:
    """llama.cpp answers HTTP 500 to a history whose call arguments are not a JSON object, even empty ones."""
    script = Script(answer(calls=[("echo", raw)]), answer("ok"))
    await run(llm, script, [echo_child()])
    assert script.bodies[1]["messages"][-2]["tool_calls"][0]["function"]["arguments"] == "{}"


async def test_made_up_calls_do_not_go_on_for_ever(llm: LLMClient) -> None:
    """Seen with the 0.5B: after "there is no tool named 'copy_file'", it called a tool named after that
    error, then after the next error, and so on until the round limit."""
    first = answer('{"name": "copy_file", "arguments": {"path": "a"}}')
    echoed = answer(
        '{"name": "Error: there is no tool named copy_file. Did you mean echo?", "arguments": {"path": "a"}}'
    )
    script = Script(first, echoed, answer("I could not copy it."))
    result = await run(llm, script, [echo_child()], LoopLimits(max_rounds=25, tool_timeout=2.0, result_chars=1000))
    assert len(script.bodies) == 3 and "tools" not in script.bodies[-1]
    assert [c.name for c in result.tool_calls] == ["copy_file"]
    assert result.answer == "I could not copy it."


async def test_a_tool_error_written_back_is_not_the_answer(llm: LLMClient) -> None:
    """The 1.5B replied to "there is no tool named 'copy_file'" with that error, word for word."""
    made_up = answer('{"name": "copy_file", "arguments": {"path": "a"}}')
    echoed = answer("Error: there is no tool named 'copy_file'. Available tools: echo, add")
    script = Script(made_up, echoed, answer("There is no copy tool; the file was not copied."))
    result = await run(llm, script, [echo_child()])
    assert result.answer == "There is no copy tool; the file was not copied." and "tools" not in script.bodies[2]


async def test_a_tool_made_up_twice_leaves_the_model_one_step_to_call_a_real_one(llm: LLMClient) -> None:
    """The 0.5B called copy_file twice; shown the tools there are, it asked to read the file to copy."""
    child = echo_child()
    made_up = answer('{"name": "copy_file", "arguments": {"path": "a"}}')
    script = Script(made_up, made_up, answer('{"name": "echo", "arguments": {"text": "a"}}'), answer("It says a."))
    result = await run(llm, script, [child])
    assert child.calls == [("echo", {"text": "a"})] and result.answer == "It says a."
    assert [c.name for c in result.tool_calls] == ["copy_file", "echo.echo"]
    assert script.bodies[2]["messages"][1]["content"].endswith(f"{CALL_OR_ANSWER} Otherwise: {ANSWER_OR_CALL}")


HOW_TO_COPY = (
    "To make a copy of a, you can use the `copy_file` tool with the following arguments:\n\n"
    '```json\n{"name": "copy_file", "arguments": {"source": "a", "destination": "b"}}\n```'
)
"""The 1.5B's answer after "there is no tool named 'copy_file'" (copied from a live run, paths shortened)."""


async def test_an_answer_telling_how_to_call_a_tool_that_does_not_exist_is_not_the_answer(llm: LLMClient) -> None:
    made_up = answer(calls=[("copy_file", {"source": "a", "destination": "b"})])
    search = answer('{"name": "echo", "arguments": {"text": "a"}}')
    honest = "There is no copy_file tool, so a was not copied."
    script = Script(made_up, search, answer(HOW_TO_COPY), answer(honest))
    result = await run(llm, script, [echo_child()])
    last = script.bodies[-1]
    assert len(script.bodies) == 4 and "tools" not in last
    assert last["messages"][1]["content"].endswith(f"There is no tool named copy_file. {ANSWER_NOW}")
    assert result.answer == honest and [c.name for c in result.tool_calls] == ["copy_file", "echo.echo"]


async def test_a_call_of_a_tool_that_does_not_exist_in_prose_is_a_failed_call(llm: LLMClient) -> None:
    script = Script(answer(HOW_TO_COPY), answer("There is no copy tool; a was not copied."))
    result = await run(llm, script, [echo_child()])
    told = script.bodies[1]["messages"][-1]
    assert told["role"] == "tool" and told["content"].startswith("Error: there is no tool named 'copy_file'.")
    assert [c.name for c in result.tool_calls] == ["copy_file"] and result.answer.startswith("There is no copy")


def copy_child(*, read_only: bool = False) -> StubChild:
    """The filesystem server's kinds of tools: one that reads, one that writes (idempotent), one that creates
    (destroys nothing) and one that moves (takes the original away)."""
    path = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    changes = {
        "write_file": ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True),
        "create_directory": ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True),
        "move_file": ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False),
    }
    tools = [Tool(name="read_file", input_schema=path, annotations=ToolAnnotations(read_only_hint=True))]
    if not read_only:
        tools += [Tool(name=n, input_schema={"type": "object"}, annotations=a) for n, a in changes.items()]
    return StubChild("filesystem", tools, lambda n, a: "Hello from the widget factory!" if n == "read_file" else "ok")


async def test_a_part_of_what_was_read_written_back_after_the_change_was_made_elsewhere_is_not_run(
    llm: LLMClient,
) -> None:
    """After saving the person of contact.txt in the knowledge graph, the 1.5B wrote the name alone to
    contact.txt, cutting the file."""
    files = files_child("Name: Linus Pauling\nJob: chemist\n")
    memory = StubChild(
        "memory",
        [Tool(name="create_entities", input_schema=MEMORY_SCHEMA, annotations=ToolAnnotations(read_only_hint=False))],
        lambda n, a: "created",
    )
    contact, person = {"path": "/w/contact.txt"}, {"name": "Linus Pauling", "entityType": "person", "observations": []}
    script = Script(
        text_call("read_text_file", contact),
        text_call("create_entities", {"entities": [person]}),
        text_call("write_file", {**contact, "content": "Linus Pauling"}),
        answer("Saved Linus Pauling in the knowledge graph."),
    )
    task = "Read /w/contact.txt and save the person it describes in the knowledge graph."
    result = await run(llm, script, [files, memory], task=task)
    assert files.calls == [("read_text_file", contact)] and memory.calls == [
        ("create_entities", {"entities": [person]})
    ]
    assert [(r.name, r.error) for r in result.tool_calls][2] == (
        "filesystem.write_file",
        "not run: the content to write is only part of what read_text_file returned above; written back where it "
        "was read, it would cut that text, and the task's change was already made on memory.",
    )


async def test_a_part_of_what_was_read_written_back_is_run_when_that_is_the_change(llm: LLMClient) -> None:
    """Asked to remove the second line of notes.txt, the model writes the first line back: that part of the file,
    written back where it was read, is the change the task asks for."""
    files = files_child("Buy oat milk.\nCall the plumber.\n")
    notes = {"path": "/w/notes.txt"}
    script = Script(
        text_call("read_text_file", notes),
        text_call("write_file", {**notes, "content": "Buy oat milk.\n"}),
        answer("Removed the second line of /w/notes.txt."),
    )
    result = await run(llm, script, [files], task="Remove the second line of /w/notes.txt.")
    assert files.calls == [("read_text_file", notes), ("write_file", {**notes, "content": "Buy oat milk.\n"})]
    assert all(r.ok for r in result.tool_calls)


NOTES_PATH = {"path": "/w/notes.txt"}


async def remove_line(llm: LLMClient, *replies: dict) -> tuple[StubChild, Script, TaskResult]:
    """The task "Remove the second line of /w/notes.txt." with these replies, then an answer, on ``files_child``
    holding two lines and the filesystem server's ``edit_file``, which edits in place."""
    edit_schema = {"type": "object", "properties": {"path": {"type": "string"}, "edits": {"type": "array"}}}
    edits = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
    files = files_child("Buy oat milk.\nCall the plumber.\n")
    files.tools.append(Tool(name="edit_file", input_schema=edit_schema, annotations=edits))
    script = Script(*replies, answer("Removed the second line of /w/notes.txt."))
    return files, script, await run(llm, script, [files], task="Remove the second line of /w/notes.txt.")


async def test_an_edit_of_a_file_no_call_has_read_is_not_run_and_the_read_is_asked_for(llm: LLMClient) -> None:
    """Asked to remove the second line of notes.txt, the 1.5B called edit_file with ``oldText: "\\n"`` without
    reading the file, and joined its two lines."""
    joined = {**NOTES_PATH, "edits": [{"oldText": "\n", "newText": ""}]}
    removed = {**NOTES_PATH, "edits": [{"oldText": "Call the plumber.\n", "newText": ""}]}
    replies = text_call("edit_file", joined), text_call("read_text_file", NOTES_PATH), text_call("edit_file", removed)
    files, script, result = await remove_line(llm, *replies)
    assert files.calls == [("read_text_file", NOTES_PATH), ("edit_file", removed)]
    assert (result.tool_calls[0].name, result.tool_calls[0].error) == (
        "filesystem.edit_file",
        "not run: it changes /w/notes.txt, which no call has read, and its edits[0].oldText is in neither the task "
        "nor any tool result. Call the tool that reads /w/notes.txt first, then make the change with what it returns.",
    )
    assert script.bodies[1]["messages"][1]["content"].endswith(
        "Reply with only the call that gives the values to write, as JSON: one of read_text_file."
    )


async def test_an_edit_whose_text_is_only_white_space_is_not_run_even_after_the_read(llm: LLMClient) -> None:
    """The 1.5B read notes.txt, then, asked to mend an edit_file call, replaced ``"\\n"`` with nothing: the first
    line break, wherever it is, which joined the file's two lines."""
    blank = {**NOTES_PATH, "edits": [{"oldText": "Buy oat milk.", "newText": ""}, {"oldText": " \n", "newText": ""}]}
    removed = {**NOTES_PATH, "edits": [{"oldText": "Call the plumber.\n", "newText": "\n"}]}  # a blank line left: runs
    replies = text_call("read_text_file", NOTES_PATH), text_call("edit_file", blank), text_call("edit_file", removed)
    files, _, result = await remove_line(llm, *replies)
    assert files.calls == [("read_text_file", NOTES_PATH), ("edit_file", removed)]
    assert result.tool_calls[1].error == (
        "not run: its edits[1].oldText is only white space, which matches the first line break or blank in the file, "
        "wherever it is. Give the whole text to change as the file holds it."
    )


async def test_a_write_of_the_model_s_own_text_to_the_file_the_task_names_is_no_edit_and_runs(llm: LLMClient) -> None:
    """``write_file`` declares it may destroy but is idempotent: a whole text written, not an edit of one unread."""
    whole = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)
    files = StubChild(
        "filesystem", [Tool(name="write_file", input_schema={"type": "object"}, annotations=whole)], lambda n, a: "ok"
    )
    poem = {"path": "/w/poem.txt", "content": "Waves fold, gulls circle"}
    script = Script(text_call("write_file", poem), answer("Wrote the poem to /w/poem.txt."))
    await run(llm, script, [files], task="Write a short poem about the sea to /w/poem.txt")
    assert files.calls == [("write_file", poem)]


COPY_TASK = "Make a copy of /w/greeting.txt named greeting-copy.txt in the same folder."
COPY = {"source": "/w/greeting.txt", "destination": "/w/greeting-copy.txt"}
READ_GREETING = {"path": "/w/greeting.txt"}
WRITE_COPY = {"path": "/w/greeting-copy.txt", "content": "Hello from the widget factory!"}
CHANGE_INSTEAD = (
    "There is no tool named copy_file. If the task needs a change, reply with only the call that makes it, "
    "as JSON: one of write_file, create_directory."
)


@pytest.mark.parametrize("again", ["made-up call", "repeated read"])
async def test_a_made_up_change_asked_for_again_is_answered_with_the_tools_that_make_changes(
    llm: LLMClient, again: str
) -> None:
    """With the file read after a made-up copy_file, the 1.5B called copy_file again and the 0.5B read the
    file again; both then said the copy could not be made. Given the tools that change something and lose
    nothing more if called again (not move_file), both wrote the copy in replays."""
    child = copy_child()
    repeated = text_call("copy_file", COPY) if again == "made-up call" else text_call("read_file", READ_GREETING)
    script = Script(
        text_call("copy_file", COPY),
        text_call("read_file", READ_GREETING),
        repeated,
        text_call("write_file", WRITE_COPY),
        answer("Copied /w/greeting.txt to /w/greeting-copy.txt."),
    )
    result = await run(llm, script, [child], task=COPY_TASK)
    assert child.calls == [("read_file", READ_GREETING), ("write_file", WRITE_COPY)]
    assert script.bodies[3]["messages"][1]["content"].endswith(CHANGE_INSTEAD) and "tools" not in script.bodies[3]
    assert result.answer == "Copied /w/greeting.txt to /w/greeting-copy.txt."


async def test_calls_that_reached_no_tool_are_left_out_of_the_answer_step_once_a_call_worked(llm: LLMClient) -> None:
    """After a made-up copy_file and a write of its own text, held back, then the read of greeting.txt, the 1.5B
    shown both wrote the held write again or called copy_file (3 of 5 replies); without them, it wrote the copy
    (5 of 6). A server's own refusal is a fact about the task, and stays."""
    child = copy_child()
    child.handler = lambda n, a: (
        CallToolResult(content=[TextContent(type="text", text="ENOENT: no such file")], is_error=True)
        if a == {"path": "/w/greeting"}
        else "Hello from the widget factory!"
    )
    script = Script(
        text_call("copy_file", COPY),
        text_call("write_file", {"path": "/w/greeting-copy.txt", "content": "This is a copy of greeting.txt"}),
        text_call("read_file", {"path": "/w/greeting"}),
        text_call("read_file", READ_GREETING),
        text_call("write_file", WRITE_COPY),
        answer("Copied /w/greeting.txt to /w/greeting-copy.txt."),
    )
    result = await run(llm, script, [child], replace(LIMITS, max_rounds=8), task=COPY_TASK)
    assert child.calls[-1] == ("write_file", WRITE_COPY) and result.answer.startswith("Copied")
    steps = [body["messages"][1]["content"] for body in script.bodies if "tools" not in body]
    before, after = steps[-3], steps[-2]  # the answer steps after the failed read and after the read
    assert "- copy_file" in before and "This is a copy" in before and "ENOENT" in before
    assert "copy_file" not in after and "This is a copy" not in after
    assert '- read_file {"path": "/w/greeting"}: Error: ENOENT' in after


@pytest.mark.parametrize("case", ["asked once", "no tool made up", "read-only", "a change was made"])
async def test_the_tools_that_make_changes_are_named_once_after_a_made_up_call_while_none_was_made(
    llm: LLMClient, case: str
) -> None:
    child = copy_child(read_only=case == "read-only")
    replies = [text_call("copy_file", COPY), text_call("read_file", READ_GREETING), text_call("copy_file", COPY)]
    if case == "asked once":
        replies += [text_call("copy_file", COPY)]
    elif case == "no tool made up":
        replies = [text_call("read_file", READ_GREETING), text_call("read_file", READ_GREETING)]
    elif case == "a change was made":
        replies[2:2] = [text_call("write_file", WRITE_COPY)]
    script = Script(*replies, answer("The copy could not be made."))
    result = await run(llm, script, [child], task=COPY_TASK)
    closings = [body["messages"][-1]["content"] for body in script.bodies if "tools" not in body]
    assert sum(c.endswith(CHANGE_INSTEAD) for c in closings) == (case == "asked once")
    # A read written again in a task that asks for a change: the tools that change, of the server used.
    assert closings[-1].endswith(
        "If the task needs a change, reply with only the call that makes it, as JSON: one of write_file, "
        "create_directory, move_file."
        if case == "no tool made up"
        else ANSWER_NOW
    )
    assert result.answer == "The copy could not be made."
    assert (("write_file", WRITE_COPY) in child.calls) == (case == "a change was made")


async def test_a_read_written_again_in_a_task_that_asks_for_a_change_is_answered_with_the_tools_that_change(
    llm: LLMClient,
) -> None:
    """Asked to remove the second line of a file, the 0.5B read it, then read it again each time it was asked for
    the answer, and answered that the line was removed. Named, those that share words with the task come first;
    not words of its paths (the folder is a project, and create_directory is about no line)."""
    read = {"path": "/w/project/notes.txt"}
    edit = {"path": "/w/project/notes.txt", "edits": [{"oldText": "Call the plumber.", "newText": ""}]}
    described = {"edit_file": "Make line-based edits to a text file", "create_directory": "Create a project folder"}
    kinds = {"create_directory": True, "write_file": True, "edit_file": False}
    child = StubChild(
        "filesystem",
        [Tool(name="read_file", input_schema={"type": "object"}, annotations=ToolAnnotations(read_only_hint=True))]
        + [
            Tool(
                name=n,
                description=described.get(n),
                input_schema={"type": "object"},
                annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=idempotent),
            )
            for n, idempotent in kinds.items()
        ],
        lambda n, a: "Buy oat milk.\nCall the plumber." if n == "read_file" else "ok",
    )
    script = Script(
        text_call("read_file", read), text_call("read_file", read), text_call("edit_file", edit), answer("Removed.")
    )
    await run(llm, script, [child], task="Remove the second line of /w/project/notes.txt.")
    assert script.bodies[2]["messages"][-1]["content"].endswith(
        "If the task needs a change, reply with only the call that makes it, as JSON: one of edit_file, "
        "create_directory, write_file."
    )
    assert child.calls == [("read_file", read), ("edit_file", edit)]


async def test_with_nothing_read_the_tools_that_make_changes_are_named_and_a_copy_of_nothing_is_not_run(
    llm: LLMClient,
) -> None:
    """With nothing read, the 1.5B called its made-up copy_file twice and answered that there is no such tool;
    given write_file, it wrote a sentence of its own, naming the original, to the copy."""
    child = copy_child()
    own = {"path": "/w/greeting-copy.txt", "content": "This is a copy of greeting.txt"}
    script = Script(
        text_call("copy_file", COPY),
        text_call("copy_file", COPY),
        text_call("copy_file", COPY),
        text_call("write_file", own),
        text_call("read_file", READ_GREETING),
        text_call("write_file", WRITE_COPY),
        answer("Copied /w/greeting.txt to /w/greeting-copy.txt."),
    )
    result = await run(llm, script, [child], replace(LIMITS, max_rounds=10), task=COPY_TASK)
    assert script.bodies[3]["messages"][1]["content"].endswith(CHANGE_INSTEAD)
    assert child.calls == [("read_file", READ_GREETING), ("write_file", WRITE_COPY)]
    assert result.answer == "Copied /w/greeting.txt to /w/greeting-copy.txt."


READ_SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "head": {"type": "number"}, "tail": {"type": "number"}},
    "required": ["path"],
}


def read_text_file(read_only: bool) -> Tool:
    return Tool(name="read_text_file", input_schema=READ_SCHEMA, annotations=ToolAnnotations(read_only_hint=read_only))


def refuse_head_and_tail(name: str, arguments: dict[str, Any]) -> CallToolResult | str:
    if "head" in arguments and "tail" in arguments:
        text = "Error: Cannot specify both head and tail parameters simultaneously"
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    return "Buy oat milk. Call the plumber."


@pytest.mark.parametrize(
    ("task", "retried"),
    [
        pytest.param("What's in /n.txt?", {"path": "/n.txt"}, id="neither-asked-for"),
        pytest.param("Show the first 5 lines of /n.txt.", {"path": "/n.txt", "head": 5}, id="head-asked-for"),
    ],
)
async def test_a_failed_read_only_call_runs_again_without_the_optional_values_the_task_never_gave(
    llm: LLMClient, task: str, retried: dict[str, Any]
) -> None:
    """The 0.5B reads files with both head and tail, which the filesystem server refuses."""
    child = StubChild("filesystem", [read_text_file(read_only=True)], refuse_head_and_tail)
    guessed = {"path": "/n.txt", "head": 5, "tail": 10}
    script = Script(answer(calls=[("read_text_file", guessed)]), answer("Buy oat milk. Call the plumber."))
    result = await run(llm, script, [child], task=task)
    assert child.calls == [("read_text_file", guessed), ("read_text_file", retried)]
    assert [r.ok for r in result.tool_calls] == [True]
    kept, sent = script.bodies[1]["messages"][-2:]
    assert json.loads(kept["tool_calls"][0]["function"]["arguments"]) == retried
    assert sent["content"] == "Buy oat milk. Call the plumber."


async def test_a_failed_call_of_a_tool_that_may_change_something_is_not_run_again(llm: LLMClient) -> None:
    child = StubChild("filesystem", [read_text_file(read_only=False)], refuse_head_and_tail)
    guessed = {"path": "/n.txt", "head": 5, "tail": 10}
    script = Script(answer(calls=[("read_text_file", guessed)]), answer("It failed."))
    result = await run(llm, script, [child], task="What's in /n.txt?")
    assert child.calls == [("read_text_file", guessed)]
    assert [r.ok for r in result.tool_calls] == [False]


TIME_TOOLS = [
    Tool(
        name="get_current_time",
        input_schema={"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
        annotations=ToolAnnotations(read_only_hint=True),
    ),
    Tool(
        name="convert_time",
        input_schema={
            "type": "object",
            "properties": {n: {"type": "string"} for n in ("source_timezone", "time", "target_timezone")},
            "required": ["source_timezone", "time", "target_timezone"],
        },
        annotations=ToolAnnotations(read_only_hint=True),
    ),
]


def text_call(name: str, arguments: dict[str, Any]) -> dict:
    return answer(json.dumps({"name": name, "arguments": arguments}))


async def test_a_read_only_call_without_its_required_arguments_at_the_answer_step_is_not_run(llm: LLMClient) -> None:
    """The 0.5B answers "What time is it in Tokyo?" with get_current_time, then, asked for the answer,
    names convert_time with none of its arguments: run, it fails and costs two more requests."""
    child = StubChild("time", TIME_TOOLS, lambda n, a: '{"timezone": "Asia/Tokyo", "datetime": "2026-11-30T19:02"}')
    script = Script(
        text_call("get_current_time", {"timezone": "Asia/Tokyo"}),
        text_call("convert_time", {"datetime": "2026-11-30T19:02", "timezone": "Asia/Tokyo"}),
        answer("It is 19:02 in Tokyo."),
    )
    result = await run(llm, script, [child], task="What time is it in Tokyo?")
    assert child.calls == [("get_current_time", {"timezone": "Asia/Tokyo"})]
    assert (result.answer, result.rounds) == ("It is 19:02 in Tokyo.", 3)
    assert "tools" not in script.bodies[2]  # the last request asks for the answer only


async def test_a_whole_call_for_another_item_at_the_answer_step_is_run(llm: LLMClient) -> None:
    child = StubChild("time", TIME_TOOLS, lambda n, a: json.dumps(a))
    script = Script(
        text_call("get_current_time", {"timezone": "Asia/Tokyo"}),
        text_call("get_current_time", {"timezone": "Europe/London"}),
        answer("Tokyo and London."),
    )
    result = await run(llm, script, [child], task="What time is it in Tokyo and London?")
    assert [a for _, a in child.calls] == [{"timezone": "Asia/Tokyo"}, {"timezone": "Europe/London"}]
    assert result.answer == "Tokyo and London."


async def test_a_call_that_left_out_a_required_argument_hears_the_tools_arguments(llm: LLMClient) -> None:
    """The 1.5B saves a person as create_entities(name=..., job=...); told only "expected array, received
    undefined at entities", it described the error as its answer."""
    schema = {
        "type": "object",
        "properties": {"entities": {"type": "array", "items": {"type": "object"}}},
        "required": ["entities"],
    }

    def create(name: str, arguments: dict[str, Any]) -> CallToolResult | str:
        if "entities" not in arguments:
            text = "MCP error -32602: expected array, received undefined at entities"
            return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        return "created"

    child = StubChild("memory", [tool("create_entities", schema)], create)
    script = Script(
        answer(calls=[("create_entities", {"name": "Linus Pauling", "job": "chemist"})]),
        answer("I cannot."),  # asked to mend the call (see the next test), the model does not write it
        answer(calls=[("create_entities", {"entities": [{"name": "Linus Pauling"}]})]),
        answer("Saved."),
    )
    result = await run(llm, script, [child])
    assert "tools" not in script.bodies[1]
    told = script.bodies[2]["messages"][-1]["content"]
    assert told.startswith("Error: MCP error -32602")
    assert told.endswith(
        'create_entities takes these arguments (JSON Schema): {"type":"object","properties":'
        '{"entities":{"type":"array","items":{"type":"object"}}},"required":["entities"]}'
    )
    assert [r.ok for r in result.tool_calls] == [False, True]
    assert script.bodies[3]["messages"][-1]["content"] == "created"  # a call that worked gets its result alone


MEMORY_SCHEMA = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "entityType": {"type": "string"},
                    "observations": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name", "entityType", "observations"],
            },
        }
    },
    "required": ["entities"],
}


async def test_a_call_whose_arguments_do_not_fit_is_mended_before_it_runs(llm: LLMClient) -> None:
    """Seen with both small models after reading a contact: ``create_entities`` with the contact's fields
    as its arguments. Asked in a request of its own, with what is wrong and the shape the tool takes,
    they write it correctly; the server never sees the call that did not fit."""
    child = StubChild("memory", [tool("create_entities", MEMORY_SCHEMA)], lambda n, a: "created")
    good = {"entities": [{"name": "Linus Pauling", "entityType": "person", "observations": ["chemist"]}]}
    script = Script(
        answer('{"name": "create_entities", "arguments": {"name": "Linus Pauling", "job": "chemist"}}'),
        answer('{"name": "create_entities", "arguments": {"entities": [{"name": "Linus Pauling"}]}}'),
        answer(json.dumps({"name": "create_entities", "arguments": good})),
        answer("Saved Linus Pauling."),
    )
    result = await run(llm, script, [child], task="save Linus Pauling, a chemist")
    assert child.calls == [("create_entities", good)]
    first, second = script.bodies[1], script.bodies[2]
    assert "tools" not in first and first["messages"][0]["content"].startswith("You correct one tool call")
    asked = first["messages"][1]["content"]
    assert asked.startswith("Task: save Linus Pauling, a chemist")
    # Its fields put in the tool's list, the contact's job among the observations: entityType is what is missing.
    assert '{"entities": [{"name": "Linus Pauling", "observations": ["job: chemist"]}]}' in asked
    assert "- entities[0]: 'entityType' is a required property" in asked
    assert (
        'create_entities takes: {"entities": [{"name": string, "entityType": string, "observations": [string]}]}'
        in asked
    )
    # The second request says what is still wrong with the first mended call, at its depth.
    assert "- entities[0]: 'entityType' is a required property" in second["messages"][1]["content"]
    kept = script.bodies[3]["messages"] if len(script.bodies) > 3 else []
    assert result.answer == "Saved Linus Pauling." and [r.ok for r in result.tool_calls] == [True]
    assert all("job" not in json.dumps(m.get("tool_calls", "")) for m in kept)  # history: the call as it ran


async def test_mending_a_call_does_not_add_optional_arguments_from_nowhere(llm: LLMClient) -> None:
    """Seen with the 0.5B: git_log written without ``repo_path``; asked to mend it, it also added a day in 2023 to
    search, and the log came back empty."""
    schema = {
        "type": "object",
        "properties": {"repo_path": {"type": "string"}, "max_count": {"type": "integer"}, "since": {"type": "string"}},
        "required": ["repo_path"],
    }
    child = StubChild("git", [tool("git_log", schema)], lambda n, a: "Author: Grace Hopper")
    mended = {"repo_path": "/r", "max_count": 3, "since": "2023-04-01T00:00:00Z"}
    script = Script(
        answer('{"name": "git_log", "arguments": {"folder": "/r"}}'),
        answer(json.dumps({"name": "git_log", "arguments": mended})),
        answer("Grace Hopper."),
    )
    await run(llm, script, [child], task="Who made the 3 latest commits in /r?")
    assert child.calls == [("git_log", {"repo_path": "/r", "max_count": 3})]


async def test_a_call_that_fits_is_sent_as_written(llm: LLMClient) -> None:
    child = StubChild("memory", [tool("create_entities", MEMORY_SCHEMA)], lambda n, a: "created")
    good = {"entities": [{"name": "Ada", "entityType": "person", "observations": []}]}
    script = Script(answer(calls=[("create_entities", good)]), answer("Saved."))
    await run(llm, script, [child])
    assert child.calls == [("create_entities", good)] and len(script.bodies) == 2


async def test_a_call_mended_into_one_already_made_is_not_run_again(llm: LLMClient) -> None:
    """Seen with the 0.5B: at each answer step it wrote search_files without its pattern, each time mended into
    the call it had already made, which ran again until the round limit."""
    schema = {"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]}
    child = StubChild("fs", [tool("search_files", schema)], lambda n, a: "a.csv b.csv")
    bad = '{"name": "search_files", "arguments": {"path": "data"}}'
    good = '{"name": "search_files", "arguments": {"pattern": "*.csv"}}'
    limits = LoopLimits(max_rounds=25, tool_timeout=2.0, result_chars=1000)
    script = Script(answer(bad), answer(good), answer(bad), answer("Two: a.csv and b.csv."))
    result = await run(llm, script, [child], limits)
    assert child.calls == [("search_files", {"pattern": "*.csv"})]
    # 1 the call, 2 mending it, 3 the answer step, where it writes the same bad call again: a repeat, neither
    # mended nor run again; 4 the answer step that may not call.
    assert len(script.bodies) == 4 and result.answer == "Two: a.csv and b.csv."
    assert "reply with only that call" not in script.bodies[3]["messages"][1]["content"]

    # Another bad call, mended into the call already made, is not run again either.
    child.calls.clear()
    other = '{"name": "search_files", "arguments": {"path": "elsewhere"}}'
    script = Script(answer(good), answer(other), answer(good), answer("Two: a.csv and b.csv."))
    result = await run(llm, script, [child], limits)
    assert child.calls == [("search_files", {"pattern": "*.csv"})]
    assert len(script.bodies) == 4 and result.answer == "Two: a.csv and b.csv."
    assert script.bodies[2]["messages"][0]["content"].startswith("You correct one tool call")


async def test_a_mended_call_that_is_not_json_is_not_taken(llm: LLMClient) -> None:
    schema = {"type": "object", "properties": {"pattern": {"type": "string"}}, "required": ["pattern"]}
    child = StubChild("fs", [tool("search_files", schema)], lambda n, a: "found")
    script = Script(
        answer('{"name": "search_files", "arguments": {"path": "data"}}'),
        answer('{"name": "search_files", "arguments": {"pattern": "*.c'),  # cut off: not taken, not run
        answer("found"),
    )
    await run(llm, script, [child])
    # The call ran as the model wrote it (without the "path" the tool does not take), after one request to mend it.
    assert child.calls == [("search_files", {})]
    assert [("tools" in body) for body in script.bodies] == [True, False, False]


# --- Values from nowhere, results left out ------------------------------------------------------


def files_child(text: str = "Hello from the greeting file") -> StubChild:
    path = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    content = {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}
    tools = [
        Tool(name="read_text_file", input_schema=path, annotations=ToolAnnotations(read_only_hint=True)),
        Tool(name="write_file", input_schema=content, annotations=ToolAnnotations(read_only_hint=False)),
    ]
    return StubChild("filesystem", tools, lambda n, a: text if n == "read_text_file" else "Successfully wrote")


STAMP_TASK = "Write the current UTC time to /w/stamp.txt."
MADE_UP_STAMP = {"path": "/w/stamp.txt", "content": "2023-04-10T12:34:56Z"}
STAMP = {"path": "/w/stamp.txt", "content": "2026-11-30T17:20:42+00:00"}
"""The write of the time ``clock_child`` gives."""


async def test_a_write_of_numbers_from_nowhere_is_not_run(llm: LLMClient) -> None:
    """The 1.5B wrote a made-up time to the file before asking for the time."""
    files, clock = files_child(), clock_child()
    script = Script(
        answer(calls=[("write_file", MADE_UP_STAMP)]),
        answer(calls=[("get_current_time", {"timezone": "UTC"})]),
        answer(calls=[("write_file", STAMP)]),
        answer("Wrote 2026-11-30T17:20:42+00:00 to /w/stamp.txt."),
    )
    result = await run(llm, script, [files, clock], task=STAMP_TASK)
    assert files.calls == [("write_file", STAMP)]
    held = script.bodies[1]["messages"][-1]
    assert held == {
        "role": "tool",
        "tool_call_id": "id0",
        "content": "Error: not run: the content to write holds 2023, 04, 10, 12, 34, which are in neither the "
        "task nor any tool result. Call the tool that gives them first (the time, a file, a record), then "
        "write what it returns.",
    }
    assert [(r.name, r.ok) for r in result.tool_calls] == [
        ("filesystem.write_file", False),
        ("time.get_current_time", True),
        ("filesystem.write_file", True),
    ]


async def test_a_write_of_template_slots_is_not_run_and_an_answer_of_them_is_asked_again(llm: LLMClient) -> None:
    """Asked who made the latest commit and to save them, the 0.5B saved "made by [Your Name] on [Date]" before
    reading the log, and answered "The latest commit was made by [Your Name].". Every call here has the id
    ``id0``, as from a server that numbers them from 0 every round: the held write's id is not the read's."""
    from lmstudio_bridge.render import render_task

    create = Tool(name="create_entities", input_schema=MEMORY_SCHEMA, annotations=ToolAnnotations(read_only_hint=False))
    memory = StubChild("memory", [create], lambda n, a: "created")
    git = StubChild("git", [tool("git_log", GIT_LOG_SCHEMA)], lambda n, a: "Author: Grace Hopper")
    slots = {"entities": [{"name": "[Your Name]", "entityType": "person", "observations": ["on [Date]"]}]}
    grace = {"entities": [{"name": "Grace Hopper", "entityType": "person", "observations": []}]}
    script = Script(
        answer(calls=[("create_entities", slots)]),
        answer(calls=[("git_log", {"repo_path": "/r"})]),
        answer(calls=[("create_entities", grace)]),
        answer("Added Grace Hopper."),
    )
    task = "Find out who made the latest commit in /r and add them to the knowledge graph as a person."
    await run(llm, script, [memory, git], task=task)
    assert memory.calls == [("create_entities", grace)]
    assert script.bodies[1]["messages"][-1]["content"] == (
        "Error: not run: the entities[0].name to write holds [Your Name], which is in neither the task nor any "
        "tool result. Call the tool that gives it first (the time, a file, a record), then write what it returns."
    )

    slot, again = "The latest commit was made by [Your Name].", "The latest commit was made by [Author]."
    script = Script(text_call("git_log", {"repo_path": "/r"}), answer(slot), answer(again))
    result = await run(llm, script, [git], task="Who made the latest commit in /r?")
    assert "It gives [Your Name], which no result above holds." in script.bodies[2]["messages"][1]["content"]
    assert result.answer == slot and result.unfounded_names == ["[Your Name]"]
    assert "[Check the answer: it names [Your Name], which neither" in render_task(result)


async def test_a_name_only_a_call_that_was_not_run_holds_is_named_to_the_caller(llm: LLMClient) -> None:
    """The 0.5B saved "John Doe" as the latest commit's author without reading the log; not run, it answered that
    John Doe made the latest commit."""
    create = Tool(name="create_entities", input_schema=MEMORY_SCHEMA, annotations=ToolAnnotations(read_only_hint=False))
    memory = StubChild("memory", [create], lambda n, a: "created")
    john = {"entities": [{"name": "John Doe", "entityType": "person", "observations": ["made the latest commit"]}]}
    script = Script(answer(calls=[("create_entities", john)]), answer("The latest commit was made by John Doe."))
    task = "Find out who made the latest commit in /r and add them to the knowledge graph as a person."
    result = await run(llm, script, [memory], task=task)
    assert memory.calls == [] and result.unfounded_names == ["John Doe"]


async def test_a_write_of_numbers_from_nowhere_made_again_ends_in_the_answer(llm: LLMClient) -> None:
    files = files_child()
    script = Script(
        text_call("write_file", MADE_UP_STAMP),
        text_call("write_file", MADE_UP_STAMP),  # the answer step: the same call again
        answer("The time is 2023-04-10T12:34:56Z."),  # the error quotes these numbers: still from nowhere
        answer("The time could not be written."),
    )
    result = await run(llm, script, [files, clock_child()], task=STAMP_TASK)
    assert files.calls == [] and result.answer == "The time could not be written."
    assert "reply with only that call" not in script.bodies[2]["messages"][1]["content"]
    asked_again = script.bodies[3]["messages"][1]["content"]
    assert "It gives 2023, 04, 10, 12, 34, which no result above holds." in asked_again


async def test_an_answer_given_while_a_write_held_back_was_never_made_is_asked_for_as_that_write(
    llm: LLMClient,
) -> None:
    """Told to get the time first, the 1.5B got it, then answered with the time instead of writing it."""
    files, clock = files_child(), clock_child()
    script = Script(
        text_call("write_file", MADE_UP_STAMP),
        text_call("get_current_time", {"timezone": "UTC"}),  # asked for the call that gives the values
        answer("2026-11-30T17:20:42+00:00"),  # the answer step that may call: the time, not the write
        text_call("write_file", STAMP),  # asked for the write held back
        answer("Wrote the time to /w/stamp.txt."),
    )
    result = await run(llm, script, [files, clock], task=STAMP_TASK)
    assert files.calls == [("write_file", STAMP)] and result.answer == "Wrote the time to /w/stamp.txt."
    asked = script.bodies[3]["messages"][1]["content"]
    assert asked.endswith(
        "The write_file call the task needs has not been made. Reply with only that call, as JSON, with the values "
        "from the results."
    )
    assert "2023-04-10" in script.bodies[1]["messages"][1]["content"]  # shown until a call worked ...
    assert "2023-04-10" not in script.bodies[2]["messages"][1]["content"] and "2023-04-10" not in asked  # not since
    assert len(script.bodies) == 5


async def test_a_write_that_returned_nothing_is_not_the_write_held_back(llm: LLMClient) -> None:
    """Asked to add that Marie Curie was born in Warsaw, the 0.5B added a made-up date (held back), read the graph,
    created the entities it had read (memory returns [] for those it has), and answered without the observation."""
    changes = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
    memory = StubChild(
        "memory",
        [
            Tool(name="add_observations", input_schema={"type": "object"}, annotations=changes),
            Tool(name="create_entities", input_schema={"type": "object"}, annotations=changes),
            Tool(name="read_graph", input_schema={"type": "object"}, annotations=ToolAnnotations(read_only_hint=True)),
        ],
        lambda n, a: {"read_graph": '{"entities": [{"name": "Marie Curie"}]}', "create_entities": "[]"}.get(n, "ok"),
    )
    born = {"observations": [{"entityName": "Marie Curie", "contents": ["born in Warsaw"]}]}
    script = Script(
        text_call("add_observations", {"observations": [{"entityName": "Marie Curie", "contents": ["1867-11-07"]}]}),
        text_call("read_graph", {}),
        text_call("create_entities", {"entities": [{"name": "Marie Curie"}]}),
        answer("Marie Curie was born in Warsaw."),
        text_call("add_observations", born),  # asked for the write held back
        answer("Added that Marie Curie was born in Warsaw."),
    )
    task = "Add to the knowledge graph that Marie Curie was born in Warsaw."
    result = await run(llm, script, [memory], replace(LIMITS, max_rounds=10), task)
    assert memory.calls[-1] == ("add_observations", born)
    assert script.bodies[4]["messages"][1]["content"].endswith(
        "The add_observations call the task needs has not been made. Reply with only that call, as JSON, with the "
        "values from the results."
    )
    assert result.answer == "Added that Marie Curie was born in Warsaw."


async def test_a_write_held_back_is_asked_for_once_and_only_after_a_call_worked(llm: LLMClient) -> None:
    files, clock = files_child(), clock_child()
    # Nothing worked since the write was held back: no values to write it with; the answer stands.
    script = Script(text_call("write_file", MADE_UP_STAMP), answer("I cannot tell the time."))
    assert (await run(llm, script, [files, clock], task=STAMP_TASK)).answer == "I cannot tell the time."
    assert len(script.bodies) == 2
    # Asked once for it, the model answers again: that answer stands.
    script = Script(
        text_call("write_file", MADE_UP_STAMP),
        text_call("get_current_time", {"timezone": "UTC"}),
        answer("2026-11-30T17:20:42+00:00"),
        answer("The time is 2026-11-30T17:20:42+00:00."),
    )
    result = await run(llm, script, [files, clock], task=STAMP_TASK)
    assert result.answer == "The time is 2026-11-30T17:20:42+00:00." and len(script.bodies) == 4
    assert files.calls == []


def contact_children() -> tuple[StubChild, StubChild]:
    path = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    reads = ToolAnnotations(read_only_hint=True)
    adds = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
    removes = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)
    read = Tool(name="read_text_file", input_schema=path, annotations=reads)
    files = StubChild("filesystem", [read], lambda n, a: "Name: Linus Pauling\nJob: chemist")
    create = Tool(name="create_entities", input_schema={"type": "object"}, annotations=adds)
    delete = Tool(name="delete_entities", input_schema={"type": "object"}, annotations=removes)
    return files, StubChild("memory", [create, delete], lambda n, a: "[]")


CONTACT_TASK = "Read /w/contact.txt and save the person it describes in the knowledge graph."
READ_CONTACT = {"path": "/w/contact.txt"}
WOULD_CREATE = "You would then need to call the `create_entities` tool to create an entity for Linus Pauling."
PAULING = {"entities": [{"name": "Linus Pauling", "entityType": "person", "observations": ["chemist"]}]}


async def test_an_answer_that_names_a_change_it_did_not_make_is_asked_for_that_call(llm: LLMClient) -> None:
    """With the contact read, the 1.5B answered that create_entities would be needed instead of calling it."""
    files, memory = contact_children()
    script = Script(
        text_call("read_text_file", READ_CONTACT),
        answer(WOULD_CREATE),
        text_call("create_entities", PAULING),
        answer("Saved Linus Pauling."),
    )
    result = await run(llm, script, [files, memory], task=CONTACT_TASK)
    assert memory.calls == [("create_entities", PAULING)] and result.answer == "Saved Linus Pauling."
    assert script.bodies[2]["messages"][1]["content"].endswith(
        "The create_entities call was not made. If the task needs it, reply with only that call, as JSON, with the "
        "values from the results."
    )


@pytest.mark.parametrize("case", ["asked once", "may destroy", "a change was made"])
async def test_a_change_the_answer_names_is_asked_for_once_while_none_was_made_and_only_if_it_destroys_nothing(
    llm: LLMClient, case: str
) -> None:
    files, memory = contact_children()
    if case == "asked once":
        script = Script(text_call("read_text_file", READ_CONTACT), answer(WOULD_CREATE), answer(WOULD_CREATE))
        expected = 3
    elif case == "may destroy":
        said = "Call delete_entities to remove him."
        script = Script(text_call("read_text_file", READ_CONTACT), answer(said), answer(said))
        expected = 3  # delete_entities is not asked for; the change the task asks for is, below
    else:
        done = "Saved him with create_entities; create_entities can add his city too."
        script = Script(text_call("read_text_file", READ_CONTACT), text_call("create_entities", PAULING), answer(done))
        expected = 3
    result = await run(llm, script, [files, memory], task=CONTACT_TASK)
    assert len(script.bodies) == expected and result.stop_reason == "answered"
    assert [name for name, _ in memory.calls] == (["create_entities"] if case == "a change was made" else [])
    if case == "may destroy":  # delete_entities declares itself idempotent, and is not named beside a tool that adds
        assert script.bodies[2]["messages"][1]["content"].endswith(LEFT_TO_DO)


async def test_a_change_the_task_asks_for_that_no_call_made_is_asked_for_with_the_tools_of_a_server_not_used(
    llm: LLMClient,
) -> None:
    """Asked to write the current UTC time to a file, the 0.5B got the time, then answered with it. The tools
    named lose nothing when called again (``write_file`` is idempotent, ``move_file`` is not named). A question
    asks for no change."""

    def files() -> StubChild:
        child = files_child()
        rewrites = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True)
        moves = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
        child.tools[1] = Tool(name="write_file", input_schema=child.tools[1].input_schema, annotations=rewrites)
        child.tools.append(Tool(name="move_file", input_schema={"type": "object"}, annotations=moves))
        return child

    said = "The current UTC time is 2026-11-30T17:20:42+00:00."
    script = Script(
        text_call("get_current_time", {"timezone": "UTC"}), answer(said), text_call("write_file", STAMP), answer(said)
    )
    writing = files()
    await run(llm, script, [writing, clock_child()], task=STAMP_TASK)
    assert writing.calls == [("write_file", STAMP)]
    assert script.bodies[2]["messages"][1]["content"].endswith(
        "No call above has made a change. If the task asks for one, reply with only the call that makes it, as "
        f"JSON: one of write_file. Otherwise: {ANSWER_OR_CALL}"
    )

    script = Script(text_call("get_current_time", {"timezone": "UTC"}), answer(said))
    await run(llm, script, [files(), clock_child()], task="What time should I write in the log, in UTC?")
    assert len(script.bodies) == 2


ADD_INSTEAD = "If the task needs a change, reply with only the call that makes it, as JSON: one of create_entities."
LEFT_TO_DO = (
    "No call above has made a change. If the task asks for one, reply with only the call that makes it, as JSON: "
    f"one of create_entities. Otherwise: {ANSWER_OR_CALL}"
)


@pytest.mark.parametrize(
    ("second", "closing"),
    [
        pytest.param(text_call("read_text_file", READ_CONTACT), ADD_INSTEAD, id="the-read-again"),
        pytest.param(answer("You would then need to add him to the knowledge graph."), LEFT_TO_DO, id="left-to-do"),
    ],
)
async def test_with_one_server_used_the_tools_that_add_on_the_other_are_named_once(
    llm: LLMClient, second: dict, closing: str
) -> None:
    """With the contact read, asked for the answer or the call still needed, the 0.5B read it again and the 1.5B
    answered that the person would then need to be added; given create_entities, each called it. The tools that
    delete or are idempotent are not named."""
    files, memory = contact_children()
    marks = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)
    memory.tools.append(Tool(name="mark_entity", input_schema={"type": "object"}, annotations=marks))
    script = Script(
        text_call("read_text_file", READ_CONTACT), second, text_call("create_entities", PAULING), answer("Saved.")
    )
    result = await run(llm, script, [files, memory], task=CONTACT_TASK)
    assert script.bodies[2]["messages"][1]["content"].endswith(closing) and "tools" not in script.bodies[2]
    assert memory.calls == [("create_entities", PAULING)] and result.answer == "Saved."


async def test_a_change_the_task_asks_for_is_not_asked_for_again_once_the_tools_that_make_it_were_named(
    llm: LLMClient,
) -> None:
    """Asked for the call that saves the person after reading the contact twice, a model that answers instead
    is not asked a third time: the 0.5B wrote the same cut-off call again."""
    files, memory = contact_children()
    script = Script(
        text_call("read_text_file", READ_CONTACT), text_call("read_text_file", READ_CONTACT), answer("A chemist.")
    )
    result = await run(llm, script, [files, memory], task=CONTACT_TASK)
    assert script.bodies[2]["messages"][1]["content"].endswith(ADD_INSTEAD)
    assert (len(script.bodies), result.answer, memory.calls) == (3, "A chemist.", [])


@pytest.mark.parametrize("case", ["none worked", "both used", "asked once"])
async def test_the_tools_that_add_are_not_named_while_no_other_server_was_used_nor_twice(
    llm: LLMClient, case: str
) -> None:
    files, memory = contact_children()
    if case == "none worked":
        files.handler = lambda n, a: CallToolResult(content=[TextContent(type="text", text="ENOENT")], is_error=True)
    said = "You would then need to add him to the knowledge graph."
    replies = [text_call("read_text_file", READ_CONTACT), answer(said)]
    if case == "both used":
        reads = ToolAnnotations(read_only_hint=True)
        memory.tools.append(Tool(name="read_graph", input_schema={"type": "object"}, annotations=reads))
        replies = [text_call("read_text_file", READ_CONTACT), text_call("read_graph", {}), answer(said)]
    elif case == "asked once":
        replies = [*replies, answer(said)]
    script = Script(*replies)
    result = await run(llm, script, [files, memory], task=CONTACT_TASK)
    closings = [body["messages"][-1]["content"] for body in script.bodies if "tools" not in body]
    assert sum(c.endswith(LEFT_TO_DO) for c in closings) == (case == "asked once")
    assert result.answer == said and memory.calls == ([("read_graph", {})] if case == "both used" else [])


def search_child(found: str = "/w/services/conf/settings.ini") -> StubChild:
    """A filesystem with a read and a glob search that, as the published server's, matches from the top of the
    folder searched: ``settings.ini`` finds nothing, ``**/settings.ini`` finds ``found``."""
    path = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    pattern = {"type": "object", "properties": {"path": {"type": "string"}, "pattern": {"type": "string"}}}
    reads = ToolAnnotations(read_only_hint=True)
    glob = "Recursively search for files. Use '*.ext' for the folder itself, '**/*.ext' for all subfolders."
    tools = [
        Tool(name="read_text_file", input_schema=path, annotations=reads),
        Tool(name="search_files", description=glob, input_schema=pattern, annotations=reads),
    ]

    def handle(name: str, arguments: dict[str, Any]) -> Any:
        if name == "search_files":
            return found if found and arguments["pattern"] == "**/settings.ini" else "No matches found"
        if arguments["path"] == found:
            return "[database]\nhost = db-billing.internal"
        return CallToolResult(content=[TextContent(type="text", text="ENOENT: no such file")], is_error=True)

    return StubChild("filesystem", tools, handle)


FIND_TASK = "There is a settings.ini somewhere under /w. Which database host does it set?"
GUESSED = {"path": "/w/settings.ini"}
SEARCH_INSTEAD = (
    "The read_text_file call failed. Reply with only the search_files call that finds settings.ini, as JSON: "
    '{"name": "search_files", "arguments": {...}}.'
)
FOUND_SINCE = (
    "The read_text_file call failed, and search_files has found /w/services/conf/settings.ini since. If the task "
    "needs what it holds, reply with only the call that reads it, as JSON. Otherwise: answer the task now, with the "
    "values from the results that answer it."
)


@pytest.mark.parametrize("search", [{"path": "/w", "pattern": "settings.ini"}, {"path": "/w/settings.ini"}])
async def test_after_a_read_fails_the_search_is_asked_for_and_then_the_read_of_what_it_found(
    llm: LLMClient, search: dict[str, str]
) -> None:
    """The 1.5B read a guessed path, got ENOENT, and answered that the file does not exist; asked for the search of
    ``settings.ini``, it searched for it, which the server matches at the top only; the 0.5B gave the path it had
    read as the folder to search. Told the path found, the 0.5B read it instead of its guess."""
    files = search_child()
    script = Script(
        text_call("read_text_file", GUESSED),
        text_call("search_files", search),
        text_call("read_text_file", {"path": "/w/services/conf/settings.ini"}),
        answer("It sets db-billing.internal."),
    )
    result = await run(llm, script, [files], task=FIND_TASK)
    assert [body["messages"][-1]["content"].endswith(SEARCH_INSTEAD) for body in script.bodies] == [0, 1, 0, 0]
    assert [body["messages"][-1]["content"].endswith(FOUND_SINCE) for body in script.bodies] == [0, 0, 1, 0]
    assert files.calls[1] == ("search_files", {"path": "/w", "pattern": "**/settings.ini"})
    assert result.answer == "It sets db-billing.internal." and [r.ok for r in result.tool_calls] == [0, 1, 1]


@pytest.mark.parametrize("case", ["searched first", "asked once", "no search tool", "found nothing"])
async def test_a_search_is_asked_for_once_and_the_read_only_for_a_search_that_found_a_path(
    llm: LLMClient, case: str
) -> None:
    files = search_child(found="" if case == "found nothing" else "/w/services/conf/settings.ini")
    said = "There is no settings.ini under /w."
    replies = [text_call("read_text_file", GUESSED), text_call("search_files", {"path": "/w", "pattern": "x"})]
    if case == "searched first":
        replies = replies[::-1]
    elif case == "asked once":
        replies = [*replies[:1], text_call("read_text_file", {"path": "/w/conf/settings.ini"})]
    elif case == "no search tool":
        files.tools.pop()
        replies = replies[:1]
    elif case == "found nothing":
        replies[1] = text_call("search_files", {"path": "/w", "pattern": "settings.ini"})
    script = Script(*replies, answer(said))
    result = await run(llm, script, [files], task=FIND_TASK)
    closings = [body["messages"][-1]["content"] for body in script.bodies]
    assert sum(c.endswith(SEARCH_INSTEAD) for c in closings) == (case in ("asked once", "found nothing"))
    assert not any(c.endswith(FOUND_SINCE) for c in closings) and result.answer == said


def git_reads() -> StubChild:
    reads = ToolAnnotations(read_only_hint=True)
    repo = {"type": "object", "properties": {"repo_path": {"type": "string"}}, "required": ["repo_path"]}
    names = ["git_status", "git_diff_staged", "git_diff", "git_log", "git_show", "git_commit", "git_search"]
    described = {
        "git_status": "Shows the working tree status",
        "git_log": "Shows the commit logs",
        "git_show": "Shows the contents of a commit",
    }
    schemas = {
        "git_diff": {**repo, "properties": {**repo["properties"], "target": {"type": "string"}}},
        "git_show": {
            **repo,
            "properties": {**repo["properties"], "revision": {"type": "string"}},
            "required": ["repo_path", "revision"],
        },
    }
    tools = [
        Tool(
            name=n,
            description=described.get(n),
            input_schema=schemas.get(n, repo),
            annotations=None if n == "git_commit" else reads,
        )
        for n in names
    ]
    said = {"git_diff": "Diff with HEAD:\n\n", "git_log": "Commit: c1\nMessage: Make widgets\n"}
    return StubChild("git", tools, lambda n, a: said.get(n, ""))


READ_INSTEAD = (
    "The git_diff call above returned nothing. Reply with only the call that gives what the task asks about, as "
    "JSON: git_log."
)


@pytest.mark.parametrize("case", ["repeated", "repeated twice", "named twice", "answered", "search", "found"])
async def test_a_read_that_returned_nothing_written_again_is_answered_with_another_read_of_its_server(
    llm: LLMClient, case: str
) -> None:
    """Asked whether any commit message mentions a database, the 0.5B called git_diff against HEAD, got its heading
    alone, and wrote that call again every time it was asked for the answer; with git_log named, it called
    git_log: the read whose description shares most words with the task. Not one named after git_diff, nor one
    that changes; not after a search (what it did not find is an answer); not for a call that gave something.
    Twice at most, the second time after another call was made: asked what changed in the latest commit, it
    called git_log, then git_diff again; with git_show named, it called git_show with git_diff's arguments,
    which stays a call of git_show."""
    git = git_reads()
    first = "git_search" if case == "search" else "git_log" if case == "found" else "git_diff"
    diff = text_call(first, {"repo_path": "/r", "target": "HEAD"})
    log = text_call("git_log", {"repo_path": "/r"})
    show = text_call("git_show", {"repo_path": "/r", "target": "HEAD"})
    replies = {
        "repeated": [diff, diff, log, answer("No.")],
        "repeated twice": [diff, diff, diff, answer("No.")],
        "named twice": [diff, diff, log, diff, show, text_call("git_show", {"repo_path": "/r", "revision": "HEAD"})],
        "answered": [diff, answer("No.")],
        "search": [diff, diff, answer("No.")],
        "found": [diff, diff, answer("No.")],
    }[case]
    if case == "named twice":
        replies += [diff, answer("No.")]
    script = Script(*replies)
    limits = replace(LIMITS, max_rounds=10)
    result = await run(llm, script, [git], limits, task="Does any commit message in /r mention a database?")
    closings = [body["messages"][-1]["content"] for body in script.bodies]
    named = [
        next((t for t in ("git_log", "git_show") if c.endswith(READ_INSTEAD.replace("git_log.", f"{t}."))), None)
        for c in closings
    ]
    assert (
        named
        == {
            "repeated": [None, None, "git_log", None],
            "repeated twice": [None, None, "git_log", None],
            "named twice": [None, None, "git_log", None, "git_show", None, None, None],
            "answered": [None, None],
            "search": [None, None, None],
            "found": [None, None, None],
        }[case]
    )
    assert result.answer == "No."
    assert [c[0] for c in git.calls] == {
        "repeated": [first, "git_log"],
        "named twice": [first, "git_log", "git_show"],
    }.get(case, [first])


@pytest.mark.parametrize("first", ["nothing", "time in Tokyo"])
async def test_a_read_that_failed_written_again_is_answered_with_another_read_of_its_server(
    llm: LLMClient, first: str
) -> None:
    """Asked to write the current UTC time to a file, the 0.5B called convert_time with a time of its own, which
    failed, and wrote that call again each time it was asked for the answer. Not once a call has found something:
    after a search found the YAML files, the 0.5B read the folder, which failed, and wrote that read again; named
    another read, it went on listing and answered wrong."""

    def clock(name: str, arguments: dict[str, Any]) -> Any:
        if name == "convert_time":
            return CallToolResult(content=[TextContent(type="text", text="Invalid time format")], isError=True)
        return '{"timezone": "UTC", "datetime": "2026-12-04T13:40:00+00:00"}'

    # A third read, not called in either case: after Tokyo's time, only the narrowing keeps it from being named.
    zones = Tool(
        name="list_timezones", input_schema={"type": "object"}, annotations=ToolAnnotations(read_only_hint=True)
    )
    time = StubChild("time", [*TIME_TOOLS, zones], clock)
    convert = text_call("convert_time", {"source_timezone": "UTC", "time": "now", "target_timezone": "UTC"})
    now = text_call("get_current_time", {"timezone": "UTC"})
    replies = [convert, convert] if first == "nothing" else [now, convert, convert]
    script = Script(*replies, now, answer("It is 13:40 UTC."))
    result = await run(llm, script, [time], replace(LIMITS, max_rounds=10), task="What is the current UTC time?")
    named = ["call above failed" in b["messages"][-1]["content"] for b in script.bodies]
    if first == "nothing":
        assert script.bodies[2]["messages"][-1]["content"].endswith(
            "The convert_time call above failed. Reply with only the call that gives what the task asks about, as "
            "JSON: get_current_time."
        )
        assert [c[0] for c in time.calls] == ["convert_time", "get_current_time"] and named.count(True) == 1
        assert result.answer == "It is 13:40 UTC."
    else:
        assert [c[0] for c in time.calls] == ["get_current_time", "convert_time"] and not any(named)


def test_the_search_asked_for_names_the_file_a_failed_call_looked_for_when_it_was_given_one() -> None:
    def looked_for(arguments: str) -> str:
        return _looked_for(Made("read", arguments, "Error: not found", ok=False))

    assert looked_for('{"path": "/w/conf/settings.ini", "head": 5}') == "settings.ini"
    for other in ('{"path": "/w/conf"}', '{"names": ["Alan Turing"]}', '["/w/a.ini"]', "{"):
        assert looked_for(other) == "what it looked for"


async def test_after_a_write_written_as_text_is_not_run_the_call_that_gives_its_values_is_asked_for(
    llm: LLMClient,
) -> None:
    """Asked for the answer after its made-up time was not written, the 1.5B wrote the same time again."""
    files, clock = files_child(), clock_child()
    script = Script(
        text_call("write_file", MADE_UP_STAMP),
        text_call("get_current_time", {}),  # asked for the call: without the timezone it requires
        text_call("get_current_time", {"timezone": "UTC"}),  # the request that mends it
        text_call("write_file", STAMP),
        answer("Wrote 2026-11-30T17:20:42+00:00 to /w/stamp.txt."),
    )
    result = await run(llm, script, [files, clock], task=STAMP_TASK)
    assert files.calls == [("write_file", STAMP)]
    assert script.bodies[1]["messages"][1]["content"].endswith(
        "The write above was not run. Reply with only the call that gives the values to write, as JSON: one of "
        "read_text_file, get_current_time, convert_time."
    )
    assert [(r.name, r.ok) for r in result.tool_calls] == [
        ("filesystem.write_file", False),
        ("time.get_current_time", True),
        ("filesystem.write_file", True),
    ]


async def test_a_write_back_of_what_was_read_unchanged_is_not_run(llm: LLMClient) -> None:
    """After saving the person of contact.txt, the 1.5B wrote the file's text back to contact.txt."""
    files = files_child("Name: Linus Pauling\nJob: chemist\n")
    contact = {"path": "/w/contact.txt"}
    script = Script(
        text_call("read_text_file", contact),
        text_call("write_file", {**contact, "content": "Name: Linus Pauling\nJob: chemist"}),
        answer("Linus Pauling is a chemist."),
    )
    result = await run(llm, script, [files], task="Read /w/contact.txt and tell me who it describes.")
    assert files.calls == [("read_text_file", contact)] and result.answer == "Linus Pauling is a chemist."
    assert [(r.name, r.error) for r in result.tool_calls][1] == (
        "filesystem.write_file",
        "not run: the content to write is what read_text_file returned above, unchanged; written back where it "
        "was read, it changes nothing the task asks for.",
    )


async def test_a_copy_written_before_the_original_was_read_is_not_run_and_the_read_is_asked_for(
    llm: LLMClient,
) -> None:
    """Asked for a copy of greeting.txt, the 1.5B wrote a sentence of its own to the copy without reading it."""
    files = files_child("Hello from the greeting file")
    copy = {"path": "/w/greeting-copy.txt"}
    script = Script(
        text_call("write_file", {**copy, "content": "This is a copy of the original greeting file."}),
        text_call("read_text_file", {"path": "/w/greeting.txt"}),
        text_call("write_file", {**copy, "content": "Hello from the greeting file"}),
        answer("Copied /w/greeting.txt to /w/greeting-copy.txt."),
    )
    result = await run(llm, script, [files], task=COPY_TASK)
    assert files.calls == [
        ("read_text_file", {"path": "/w/greeting.txt"}),
        ("write_file", {**copy, "content": "Hello from the greeting file"}),
    ]
    first = result.tool_calls[0]
    assert (first.name, first.error) == (
        "filesystem.write_file",
        "not run: the content to write is in neither the task nor any tool result, and no call has read "
        "/w/greeting.txt, which the task names. Call the tool that reads it first, then write what it returns.",
    )
    assert script.bodies[1]["messages"][1]["content"].endswith(
        "Reply with only the call that gives the values to write, as JSON: one of read_text_file."
    )


async def test_a_save_whose_own_text_names_the_unread_place_is_not_run(llm: LLMClient) -> None:
    """Asked to save the latest commit's author, the 1.5B saved a sentence naming the repository unread."""
    _, memory = contact_children()
    task = "Find out who made the latest commit in /w/repo and add them to the knowledge graph as a person."
    own = "The latest commit in /w/repo was made by the author of this commit."
    entity = {"entities": [{"name": "latest_commit_author", "entityType": "person", "observations": [own]}]}
    script = Script(text_call("create_entities", entity), answer("I could not read the log."))
    result = await run(llm, script, [memory], task=task)
    assert memory.calls == [] and result.tool_calls[0].error == (
        "not run: the entities[0].observations[0] to write is in neither the task nor any tool result, and no "
        "call has read /w/repo, which the task names. Call the tool that reads it first, then write what it returns."
    )


async def test_a_call_of_a_tool_that_does_not_exist_read_nothing_for_a_write(llm: LLMClient) -> None:
    """The 1.5B called a made-up copy_file with greeting.txt as its source before writing its own text."""
    files = files_child()
    made_up = {"source": "/w/greeting.txt", "destination": "/w/greeting-copy.txt"}
    own = {"path": "/w/greeting-copy.txt", "content": "This is a copy of the original greeting file."}
    script = Script(answer(json.dumps({"name": "copy_file", "arguments": made_up})), text_call("write_file", own))
    result = await run(llm, script, [files], task=COPY_TASK)
    assert files.calls == [] and result.tool_calls[1].error.startswith("not run: the content to write is in neither")


@pytest.mark.parametrize(
    ("task", "arguments"),
    [
        (COPY_TASK, {"path": "/w/greeting-copy.txt", "content": "Hello from the greeting file, 2026"}),  # a result
        ("Save a note that the meeting moved to 14:30 at /w/note.txt", {"path": "/w/note.txt", "content": "14:30"}),
        (
            "Write a short poem about the sea to /w/poem.txt",
            {"path": "/w/poem.txt", "content": "Waves fold, gulls circle"},
        ),
        ("Write that Ada Lovelace is 1 person", {"path": "/w/ada.txt", "content": "7 persons"}),  # one digit: a count
    ],
)
async def test_a_write_of_numbers_from_the_task_or_a_result_or_of_none_runs(
    llm: LLMClient, task: str, arguments: dict[str, str]
) -> None:
    child = files_child("Hello from the greeting file, 2026")
    script = Script(
        answer(calls=[("read_text_file", {"path": "/w/greeting.txt"})]),
        answer(calls=[("write_file", arguments)]),
        answer("Done."),
    )
    result = await run(llm, script, [child], task=task)
    assert child.calls[-1] == ("write_file", arguments) and all(r.ok for r in result.tool_calls)


async def test_a_tool_that_does_not_say_it_writes_is_not_held_back(llm: LLMClient) -> None:
    child = StubChild("notes", [tool("save")], lambda n, a: "saved")
    await run(llm, Script(answer(calls=[("save", MADE_UP_STAMP)]), answer("ok")), [child], task=STAMP_TASK)
    assert child.calls == [("save", MADE_UP_STAMP)]


CITIES = {
    "Asia/Tokyo": "2026-12-01T02:20:42+09:00",
    "Europe/London": "2026-11-30T17:20:42+00:00",
    "UTC": "2026-11-30T17:20:42+00:00",
}


def clock_child() -> StubChild:
    def now(name: str, arguments: dict[str, Any]) -> str:
        zone = arguments["timezone"]
        return json.dumps({"timezone": zone, "datetime": CITIES[zone], "is_dst": False}, indent=2)

    return StubChild("time", TIME_TOOLS, now)


async def test_an_answer_that_leaves_out_items_is_asked_for_again(llm: LLMClient) -> None:
    """The 1.5B fetched the time in three cities and answered with Tokyo's alone."""
    script = Script(
        text_call("get_current_time", {"timezone": "Asia/Tokyo"}),
        text_call("get_current_time", {"timezone": "Europe/London"}),
        answer("2026-12-01T02:20:42+09:00"),
        answer("In Tokyo it is 02:20:42, in London 17:20:42."),
    )
    result = await run(llm, script, [clock_child()], task="What time is it in Tokyo and London?")
    assert result.answer == "In Tokyo it is 02:20:42, in London 17:20:42."
    again = script.bodies[3]["messages"]
    assert "tools" not in script.bodies[3] and again[0]["content"] == ANSWER_PROMPT
    assert again[1]["content"].endswith(
        "An answer written before: 2026-12-01T02:20:42+09:00\n\nThat answer leaves out the results of "
        'get_current_time {"timezone": "Europe/London"}. Answer the task again in sentences that give the '
        "values from the results, as the results write them, for every item it asks about."
    )


@pytest.mark.parametrize(
    "first",
    [
        "In Tokyo it is 02:20, in London 17:20.",  # covers both: not asked again
        "2026-12-01T02:20:42+09:00",  # asked again, and the second answer is no better: the first stays
    ],
)
async def test_the_first_answer_stays_unless_the_one_asked_again_covers_more(llm: LLMClient, first: str) -> None:
    script = Script(
        text_call("get_current_time", {"timezone": "Asia/Tokyo"}),
        text_call("get_current_time", {"timezone": "Europe/London"}),
        answer(first),
        answer("Tokyo is ahead."),
    )
    result = await run(llm, script, [clock_child()], task="What time is it in Tokyo and London?")
    assert result.answer == first
    assert len(script.bodies) == (3 if "London" in first else 4)


def weather_child() -> StubChild:
    read_only = ToolAnnotations(read_only_hint=True)
    weather = Tool(name="get-weather", input_schema={"type": "object"}, annotations=read_only)
    return StubChild("everything", [weather], lambda n, a: '{"temperature":36,"conditions":"Light rain","humidity":82}')


def answer_asked_again(script: Script) -> str:
    """The request that asks for the answer again, after the first answer: without tools, with the answer
    step's system prompt. Its user message."""
    asked = script.bodies[2]["messages"]
    assert "tools" not in script.bodies[2] and asked[0]["content"] == ANSWER_PROMPT
    return str(asked[1]["content"])


@pytest.mark.parametrize(
    ("again", "kept"),
    [
        ("It is 36 °F in Chicago, with light rain and a humidity of 82 %.", "again"),
        ("Chicago has light rain.", "first"),  # gives no more of the numbers: the first answer stays
    ],
)
async def test_an_answer_that_leaves_out_some_of_a_records_numbers_is_asked_for_again(
    llm: LLMClient, again: str, kept: str
) -> None:
    """The 0.5B answered "What weather does get-structured-content report for Chicago?" with the conditions and
    the humidity, not the temperature."""
    first = "Chicago's weather is light rain with a humidity of 82%."
    script = Script(text_call("get-weather", {"location": "Chicago"}), answer(first), answer(again))
    result = await run(llm, script, [weather_child()], task="What weather does get-weather report for Chicago?")
    assert result.answer == (again if kept == "again" else first)
    assert answer_asked_again(script).endswith(
        "Answer the task now in sentences that give the values from the results for every item it asks about, "
        "temperature 36 included."
    )


async def test_an_answer_that_gives_every_number_of_a_record_is_not_asked_again(llm: LLMClient) -> None:
    script = Script(
        text_call("get-weather", {"location": "Chicago"}), answer("36 °F, light rain, humidity 82 %."), answer("x")
    )
    result = await run(llm, script, [weather_child()], task="What weather does get-weather report for Chicago?")
    assert result.answer == "36 °F, light rain, humidity 82 %." and len(script.bodies) == 2


@pytest.mark.parametrize(
    ("again", "kept"),
    [
        ("The names of the YAML files found in /w/project are:\n- deploy.yaml", "again"),
        ("The search_files call searched /w/project.", "first"),  # gives no more of the result: the first stays
    ],
)
async def test_an_answer_that_describes_the_calls_is_asked_for_their_results(
    llm: LLMClient, again: str, kept: str
) -> None:
    """The 0.5B described the search instead of naming the file it found."""
    reads = ToolAnnotations(read_only_hint=True)
    search = Tool(name="search_files", input_schema={"type": "object"}, annotations=reads)
    child = StubChild("filesystem", [search], lambda n, a: "/w/project/deploy.yaml")
    first = "The tool calls `search_files` with the specified path and pattern. The result is a list of the YAML files."
    script = Script(text_call("search_files", {"path": "/w/project"}), answer(first), answer(again))
    result = await run(llm, script, [child], task="Search /w/project for YAML files and give me their names.")
    assert result.answer == (again if kept == "again" else first)
    assert answer_asked_again(script).endswith(
        "Answer the task now in sentences that give the values from the results for every item it asks about: "
        "the values themselves, not a description of the calls."
    )


def env_files() -> StubChild:
    files = {"/w/api.env": "PORT=8081\nNAME=api", "/w/web.env": "PORT=3005\nNAME=web"}
    path = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    reads = ToolAnnotations(read_only_hint=True)
    return StubChild(
        "filesystem", [Tool(name="read_text_file", input_schema=path, annotations=reads)], lambda n, a: files[a["path"]]
    )


PORTS = "Which ports do /w/api.env and /w/web.env set?"
WEB_PORT = "Which port does the web service in /w use?"


async def test_items_are_asked_for_again_only_while_fewer_are_left(llm: LLMClient) -> None:
    """Asked for the call for London and New York, the model fetches London's time: New York is asked for
    alone. Asked for it, the model answers: that answer stands."""
    child = clock_child()
    script = Script(
        text_call("get_current_time", {"timezone": "Asia/Tokyo"}),
        answer("Tokyo 02:20."),
        text_call("get_current_time", {"timezone": "Europe/London"}),
        answer("Tokyo 02:20, London 17:20."),
        answer("Tokyo 02:20, London 17:20; New York was not asked."),
    )
    result = await run(llm, script, [child], task="What time is it in Tokyo, London and New York?")
    asked = [body["messages"][1]["content"].rsplit("\n\n", 1)[1] for body in script.bodies[2::2]]
    assert asked == [
        "The task also names London and New York, and no call above is for them. Reply with only the call for them, as JSON.",
        "The task also names New York, and no call above is for it. Reply with only the call for it, as JSON.",
    ]
    assert result.answer == "Tokyo 02:20, London 17:20; New York was not asked." and len(script.bodies) == 5
    assert result.unfounded_items == ["New York"]


async def test_items_the_task_lists_that_no_call_gave_a_result_for_are_told_to_the_caller(llm: LLMClient) -> None:
    """Asked for the call for London and New York, the 0.5B converted Tokyo's time to Tokyo's zone, which
    failed, and answered with Tokyo's time for all three cities."""
    from lmstudio_bridge.render import render_task

    tokyo = {"timezone": "Asia/Tokyo"}
    script = Script(
        text_call("get_current_time", tokyo),
        answer("Tokyo is 02:20."),
        text_call("convert_time", {"source_timezone": "Asia/Tokyo", "time": "02:20", "target_timezone": "Asia/Tokyo"}),
        answer("Tokyo is 02:20, London 02:20, New York 02:20."),
    )
    failing = CallToolResult(content=[TextContent(type="text", text="Invalid time format")], is_error=True)
    now = clock_child().handler
    child = StubChild("time", TIME_TOOLS, lambda n, a: failing if n == "convert_time" else now(n, a))
    result = await run(llm, script, [child], task="What time is it in Tokyo, London and New York?")
    assert result.unfounded_items == ["London", "New York"]
    assert render_task(result).endswith(
        "\n\n[Check the answer: no tool call gave a result for London and New York, which the task asks about.]"
    )
    script = Script(text_call("get_current_time", tokyo), answer("Tokyo is 02:20."))
    assert (await run(llm, script, [clock_child()], task="What time is it in Tokyo?")).unfounded_items == []


@pytest.mark.parametrize(
    ("task", "first", "closing", "last"),
    [
        # The 0.5B read one of two files and gave a port for both: the file left is asked for.
        (
            PORTS,
            "api.env sets 8081 and web.env sets 8080.",
            "The task also names /w/web.env, and no call above is for it. Reply with only the call for it, as JSON.",
            "api.env sets 8081 and web.env sets 3005.",
        ),
        # The model read the wrong file of two and gave a port from nowhere: the port is asked about.
        (
            WEB_PORT,
            "The web service uses port 8080.",
            "An answer written before: The web service uses port 8080.\n\nIt gives 8080, which no result above "
            "holds. If the task needs a call that gives it, reply with only that call, as JSON. Otherwise: answer "
            "the task again with only values from the results.",
            "The web service uses port 3005.",
        ),
    ],
)
async def test_an_answer_asked_again_may_still_make_the_call_the_task_needs(
    llm: LLMClient, task: str, first: str, closing: str, last: str
) -> None:
    child = env_files()
    script = Script(
        text_call("read_text_file", {"path": "/w/api.env"}),
        answer(first),
        text_call("read_text_file", {"path": "/w/web.env"}),
        answer(last),
    )
    result = await run(llm, script, [child], task=task)
    assert [a["path"] for _, a in child.calls] == ["/w/api.env", "/w/web.env"]
    assert result.answer == last
    assert script.bodies[2]["messages"][1]["content"].endswith(closing)
    assert "read_text_file" in script.bodies[2]["messages"][0]["content"]  # the tools it may still call


async def test_names_from_nowhere_in_the_answer_are_named_to_the_caller_without_asking_again(llm: LLMClient) -> None:
    """Told that its diff against HEAD was empty, the 1.5B said the latest commit "changed the file `README.md`";
    asked again, it said the same. A file the model called a tool for, by a name it chose, is founded."""
    from lmstudio_bridge.render import render_task

    diff = StubChild("git", [tool("git_diff")], lambda n, a: "Diff with HEAD:\n")
    made_up = "The latest commit changed the file `README.md` on docs.example.com."
    script = Script(answer(calls=[("git_diff", {"target": "HEAD"})]), answer(made_up))
    result = await run(llm, script, [diff], task="What changed in the latest commit of /r?")
    assert result.answer == made_up and len(script.bodies) == 2
    assert result.unfounded_names == ["README.md", "docs.example.com"] and result.unfounded_numbers == []
    note = "[Check the answer: it names README.md, docs.example.com, which neither the task nor any tool result holds.]"
    assert render_task(result) == f"{made_up}\n\n{note}"

    script = Script(text_call("read_text_file", {"path": "/w/api.env"}), answer("api.env sets 8081."))
    assert (await run(llm, script, [env_files()], task=WEB_PORT)).unfounded_names == []
    missing = CallToolResult(content=[TextContent(type="text", text="ENOENT: no such file")], is_error=True)
    files = StubChild("filesystem", [tool("read_text_file")], lambda n, a: missing)
    script = Script(text_call("read_text_file", {"path": "/w/web.ini"}), answer("There is no web.ini in /w."))
    result = await run(llm, script, [files], task=WEB_PORT)
    assert [r.ok for r in result.tool_calls] == [False] and result.unfounded_names == []


async def test_a_count_given_when_every_call_failed_is_told_to_the_caller(llm: LLMClient) -> None:
    """Every read of a folder failed (EISDIR), and the 0.5B answered "There are 1 CSV files": a count no result
    gave. A count read off a result is not judged, nor one in an answer that says nothing was found."""
    from lmstudio_bridge.render import render_task

    eisdir = CallToolResult(content=[TextContent(type="text", text="EISDIR: illegal operation")], is_error=True)
    folder = StubChild("filesystem", [tool("read_text_file")], lambda n, a: eisdir)
    task = "How many CSV files are in /w/data?"
    counted = "There are 1 CSV files in /w/data."
    script = Script(text_call("read_text_file", {"path": "/w/data"}), answer(counted))
    result = await run(llm, script, [folder], task=task)
    assert result.unfounded_numbers == ["1"] and len(script.bodies) == 2
    note = "[Check the answer: it gives 1, which neither the task nor any tool result holds.]"
    assert render_task(result) == f"{counted}\n\n{note}"

    denied = "The 2 reads of /w/data failed."
    script = Script(text_call("read_text_file", {"path": "/w/data"}), answer(denied))
    assert (await run(llm, script, [folder], task=task)).unfounded_numbers == []
    script = Script(text_call("read_text_file", {"path": "/w/api.env"}), answer("It sets 2 values."))
    result = await run(llm, script, [env_files()], task="How many values does /w/api.env set?")
    assert result.unfounded_numbers == [] and len(script.bodies) == 2


async def test_an_answer_from_calls_that_found_nothing_is_told_when_it_says_more(llm: LLMClient) -> None:
    """Told that git's diff against HEAD was empty ("Diff with HEAD:" over nothing), the 0.5B listed what the latest
    commit changed. An answer that says nothing was found, or one after a call that found something, is not told."""
    from lmstudio_bridge.render import render_task

    diff = StubChild("git", [tool("git_diff")], lambda n, a: "Diff with HEAD:\n\n")
    listed = "The latest commit changed the following:\n\n1. The commit message was updated.\n2. The author too."
    script = Script(text_call("git_diff", {"target": "HEAD"}), answer(listed))
    result = await run(llm, script, [diff], task="What changed in the latest commit of /r?")
    assert (result.unfounded_answer, result.unfounded_numbers, len(script.bodies)) == (["git.git_diff"], [], 2)
    note = (
        "[Check the answer: every tool call failed or returned nothing (git.git_diff), so no tool result supports it.]"
    )
    assert render_task(result) == f"{listed}\n\n{note}"
    # Shown as the server wrote it: told the diff returned nothing, the 1.5B said the commit changed nothing.
    assert 'git_diff {"target": "HEAD"}:\nDiff with HEAD:' in script.bodies[1]["messages"][1]["content"]

    for said in ("No commit mentions a database.", "The diff is empty, so I can't tell.", "It doesn't say."):
        script = Script(answer(calls=[("git_diff", {"target": "HEAD"})]), answer(said))
        assert (await run(llm, script, [diff], task="Does any commit mention a database?")).unfounded_answer == []
    script = Script(text_call("read_text_file", {"path": "/w/api.env"}), answer("It names the api service."))
    assert (await run(llm, script, [env_files()], task="What does /w/api.env name?")).unfounded_answer == []


def converting_clock() -> StubChild:
    def time(name: str, arguments: dict[str, Any]) -> str:
        if name == "get_current_time":
            return json.dumps({"timezone": arguments["timezone"], "datetime": CITIES[arguments["timezone"]]})
        hour, minute = arguments["time"].split(":")
        return json.dumps({"target": {"datetime": f"2026-12-01T{int(hour) - 9:02d}:{minute}:00+00:00"}})

    return StubChild("time", TIME_TOOLS, time)


async def test_a_result_of_a_call_given_made_up_numbers_is_no_ground_for_the_answer(llm: LLMClient) -> None:
    """Asked for the time now in Tokyo and London, the 0.5B converted a made-up "14:30" from Tokyo's zone and
    answered with the result as London's time now. A call given the task's own numbers is ground."""
    from lmstudio_bridge.render import render_task

    tokyo = ("get_current_time", {"timezone": "Asia/Tokyo"})
    made_up = ("convert_time", {"source_timezone": "Asia/Tokyo", "time": "14:30", "target_timezone": "Europe/London"})
    answered = "In Tokyo it is 02:20:42, and in London it is 05:30."
    # Held back once (``_guessed``), the call made again runs.
    script = Script(answer(calls=[tokyo, made_up]), answer(calls=[made_up]), answer(answered), answer(answered))
    child = converting_clock()
    result = await run(llm, script, [child], task="What time is it right now in Tokyo and London?")
    assert [name for name, _ in child.calls] == ["get_current_time", "convert_time"]
    assert "It gives 05, 30, which no result above holds." in script.bodies[3]["messages"][1]["content"]
    assert (result.unfounded_numbers, result.unfounded_calls) == (["05", "30"], ["time.convert_time"])
    note = (
        "[Check the answer: it gives 05, 30, which neither the task nor any tool result holds, but for calls given "
        "made-up values (time.convert_time).]"
    )
    assert render_task(result) == f"{answered}\n\n{note}"

    script = Script(answer(calls=[made_up]), answer("14:30 in Tokyo is 05:30 in London."))
    result = await run(llm, script, [converting_clock()], task="What is 14:30 in Tokyo in London time?")
    assert (result.unfounded_numbers, result.unfounded_calls, len(script.bodies)) == ([], [], 2)

    # Nor is it ground for a write: what it returned is held back as any made-up value is.
    files, clock = files_child(), converting_clock()
    stamp = {"path": "/w/stamp.txt", "content": "2026-12-01T05:30:00+00:00"}
    script = Script(answer(calls=[made_up]), answer(calls=[("write_file", stamp)]), answer("Not written."))
    await run(llm, script, [files, clock], task="Write the time in London to /w/stamp.txt.")
    assert files.calls == [] and script.bodies[2]["messages"][-1]["content"].startswith(
        "Error: not run: the content to write holds 2026, 12, 01, 05, 30, which are in neither"
    )


async def test_a_read_given_numbers_from_nowhere_is_held_back_once_and_its_values_asked_for(llm: LLMClient) -> None:
    """Asked to write the current UTC time to a file, the 0.5B converted a time of its own ("10:00:00") from UTC
    to New York, and answered with it. Held back, the call that gives the time is asked for; made again as it
    is, the call runs: the model may have worked the value out (15:00 for 3 pm)."""
    guess = {"source_timezone": "UTC", "time": "10:00", "target_timezone": "America/New_York"}
    script = Script(
        text_call("convert_time", guess),
        text_call("get_current_time", {"timezone": "UTC"}),
        answer("It is 17:20 UTC."),
    )
    child = clock_child()
    result = await run(llm, script, [child], task="What is the time now in UTC?")
    assert child.calls == [("get_current_time", {"timezone": "UTC"})]
    assert result.answer == "It is 17:20 UTC."
    asked = script.bodies[1]["messages"][-1]["content"]
    assert "Error: not run: its time holds 10, 00, which are in neither the task nor any tool result." in asked
    assert asked.endswith(
        "The convert_time call above was not run. Reply with only the call that gives its time, as JSON: "
        "get_current_time."
    )

    three_pm = {**guess, "time": "15:00"}
    script = Script(text_call("convert_time", three_pm), text_call("convert_time", three_pm), answer("10:00."))
    child = StubChild("time", TIME_TOOLS, lambda n, a: '{"target": {"datetime": "2026-12-01T10:00:00-05:00"}}')
    await run(llm, script, [child], task="What is 3 pm UTC in New York?")
    assert child.calls == [("convert_time", three_pm)]
    assert script.bodies[1]["messages"][-1]["content"].endswith("as JSON: get_current_time.")

    # A server with no other tool that only reads: nothing could give the values, the call runs. So does that of
    # a tool that does not say it only reads.
    converted = '{"target": {"datetime": "2026-12-01T05:00:00-05:00"}}'
    alone = StubChild("time", TIME_TOOLS[1:], lambda n, a: converted)
    await run(llm, Script(text_call("convert_time", guess), answer("05:00.")), [alone], task="Convert a time.")
    assert alone.calls == [("convert_time", guess)]
    unsaid = StubChild(
        "time", [TIME_TOOLS[0], TIME_TOOLS[1].model_copy(update={"annotations": None})], lambda n, a: converted
    )
    await run(llm, Script(text_call("convert_time", guess), answer("05:00.")), [unsaid], task="Convert a time.")
    assert unsaid.calls == [("convert_time", guess)]


NOTES = "Buy oat milk.\nCall the plumber about the kitchen sink on Thursday.\n"
REMOVE_LINE = "Remove the second line of /w/notes.txt."


async def test_an_answer_that_says_a_change_was_made_when_no_call_changed_anything_is_named_to_the_caller(
    llm: LLMClient,
) -> None:
    """Having only read notes.txt, twice, the 0.5B answered "The plumber removed the second line of notes.txt.";
    a host reading that would take the line as removed."""
    from lmstudio_bridge.render import render_task

    claim = "The plumber removed the second line of /w/notes.txt."
    script = Script(text_call("read_text_file", {"path": "/w/notes.txt"}), answer(claim))
    result = await run(llm, script, [files_child(NOTES)], task=REMOVE_LINE)
    assert result.answer == claim and result.unfounded_change == "removed"
    note = (
        "[Not done: the answer says something was removed, but no tool call in this task changed anything. "
        "Run the task again, or with a larger model.]"
    )
    assert render_task(result) == f"{claim}\n\n{note}"

    # Said after a change that worked, in this task or in the one it continues, it is not judged.
    conversation: list[dict[str, Any]] = []
    write = {"path": "/w/notes.txt", "content": "Buy oat milk.\n"}
    script = Script(
        answer(calls=[("read_text_file", {"path": "/w/notes.txt"})]),
        answer(calls=[("write_file", write)]),
        answer("I removed the second line."),
    )
    result = await run(llm, script, [files_child(NOTES)], task=REMOVE_LINE, conversation=conversation)
    assert result.unfounded_change is None and render_task(result) == "I removed the second line."
    script = Script(answer("I removed it: notes.txt holds its first line only."))
    again = "Remove the second line of /w/notes.txt, if it is still there."
    assert (
        await run(llm, script, [files_child(NOTES)], task=again, conversation=conversation)
    ).unfounded_change is None
    # Nor is it in answer to a task that asks for no change: it tells what someone did.
    script = Script(answer(calls=[("read_text_file", {"path": "/w/notes.txt"})]), answer("Someone removed a line."))
    result = await run(llm, script, [files_child(NOTES)], task="What is in /w/notes.txt?")
    assert result.unfounded_change is None


def test_the_caller_is_told_of_numbers_and_names_from_nowhere_in_one_note() -> None:
    from lmstudio_bridge.render import render_task
    from lmstudio_bridge.results import TaskResult, TokenUsage

    many = [f"f{i}.txt" for i in range(7)]
    result = TaskResult(
        answer="x",
        model="m",
        mcps=[],
        rounds=2,
        stop_reason="answered",
        tool_calls=[],
        usage=TokenUsage(),
        elapsed_seconds=1.0,
        unfounded_numbers=["10", "15"],
        unfounded_names=many,
    )
    assert render_task(result) == (
        "x\n\n[Check the answer: it gives 10, 15 and names f0.txt, f1.txt, f2.txt, f3.txt, f4.txt and 2 more, "
        "which neither the task nor any tool result holds.]"
    )


@pytest.mark.parametrize(
    ("again", "kept"),
    [
        (
            "api.env sets 8081; the web service's file was not read.",
            "api.env sets 8081; the web service's file was not read.",
        ),
        ("The web service uses port 9999 or 7777.", "The web service uses port 8080."),  # worse
    ],
)
async def test_the_answer_asked_again_is_kept_unless_it_makes_up_more(llm: LLMClient, again: str, kept: str) -> None:
    script = Script(
        text_call("read_text_file", {"path": "/w/api.env"}),
        answer("The web service uses port 8080."),
        answer(again),
    )
    result = await run(llm, script, [env_files()], task=WEB_PORT)
    assert result.answer == kept and len(script.bodies) == 3  # asked again once, not again after that
    # A number from nowhere kept in the answer is named to the caller.
    from lmstudio_bridge.render import render_task

    unfounded = ["8080"] if "8080" in kept else []
    assert result.unfounded_numbers == unfounded
    note = "[Check the answer: it gives 8080, which neither the task nor any tool result holds.]"
    assert render_task(result) == (f"{kept}\n\n{note}" if unfounded else kept)


@pytest.mark.parametrize(
    ("again", "kept"),
    [
        ("The tool created an entity in the knowledge graph with the name Marie Curie.", "again"),
        ("You would need to call create_entities again.", "first"),  # still tells the user to call it
    ],
)
async def test_an_answer_that_tells_the_user_to_make_calls_that_were_made_is_asked_for_what_they_did(
    llm: LLMClient, again: str, kept: str
) -> None:
    """Having saved Marie Curie, the 1.5B answered as if the user had yet to: "you would need to call the
    "create_entities" tool with the following arguments"."""
    entities = {"entities": [{"name": "Marie Curie", "entityType": "person", "observations": ["born in Warsaw"]}]}
    child = StubChild("memory", [tool("create_entities", MEMORY_SCHEMA)], lambda n, a: "[]")
    first = 'To add this, you would need to call the "create_entities" tool with the following arguments: {...}'
    script = Script(text_call("create_entities", entities), answer(first), answer(again))
    result = await run(llm, script, [child], task="Add to the knowledge graph that Marie Curie was born in Warsaw.")
    assert result.answer == (again if kept == "again" else first)
    assert answer_asked_again(script).endswith(
        "Answer the task now in sentences that say what the calls above did and what they returned."
    )


@pytest.mark.parametrize(
    ("cut", "destroys"), [("repetition", None), ("budget", False), ("budget", None), (None, False)]
)
def test_a_call_in_a_reply_the_bridge_stopped_keeps_the_fields_written_whole(cut: str | None, destroys: Any) -> None:
    """After the commit's log, the 0.5B wrote create_entities with entity_name "Grace Hopper" and more, then the same
    fields again until it was stopped: not JSON, the call failed and the entity was never saved. Stopped at its
    budget, only for a tool that declares it destroys nothing: what was lost may be anything."""
    from lmstudio_bridge.lmstudio import ChatResult, GenerationStats

    schema = {"type": "object", "properties": {"name": {"type": "string"}, "kind": {"type": "string"}}}
    hints = ToolAnnotations(destructive_hint=destroys) if destroys is not None else None
    create = Tool(name="create", input_schema=schema, annotations=hints)
    box = Toolbox([StubChild("memory", [create], lambda n, a: "")])
    written = '{"name": "create", "arguments": {"name": "Grace Hopper", "kind": "person", "name": "Grace Hop'
    result = ChatResult({"role": "assistant", "content": written}, written, (), "cut", stats=GenerationStats(cut=cut))
    (call,) = read_reply(result, box).calls
    if cut == "repetition" or (cut == "budget" and destroys is False):
        assert json.loads(call.arguments) == {"name": "Grace Hopper", "kind": "person"}
    else:  # the model is told its arguments are broken
        with pytest.raises(json.JSONDecodeError):
            json.loads(call.arguments)
