"""The agent loop: one model, the tools of one or more child MCP servers, one task.

Each round sends the conversation to the model. Tool calls in its answer (as
``tool_calls``, or written as text, which small local models often do) run
concurrently and go back as ``role: tool`` messages. An answer without tool
calls ends the task. Nothing a tool does ends the loop: failures go back to the
model as that tool's result so it can correct itself.

Small models often cannot stop calling: with the tool list attached they ask for
the call they just made again, or wander off to other tools. So an answer step,
one request without tools that hands the model the task and the results of its
calls, follows the round limit, a round that only repeats the one before, and
every successful round of a model that writes its calls as text (the sign of a
model that does not use the tool-calling protocol). A call the model has not made
yet in that reply is run, and the task goes on.

The system prompt, the tool list and every message already sent stay the same
from round to round (the conversation only grows), so the server can reuse its
prompt cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp_types import CallToolResult, EmbeddedResource, ImageContent, TextContent

from .lmstudio import ChatResult, LLMClient, ToolCallRequest
from .reasoning import split_reasoning
from .results import StopReason, TaskResult, TokenUsage, ToolCallRecord
from .text_tool_calls import extract_tool_calls
from .toolbox import OfferedTool, Toolbox

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str], Awaitable[None]]
"""Receives one line per round and per tool call, e.g. ``round 2/25 · time.get_current_time``."""

REPEAT_WARN_AT = 3
"""The third identical call is not run; the model is told to use what it has."""
REPEAT_STOP_AT = 4
"""A fourth identical call ends the loop. (A round that repeats the round before it ends it at once.)"""

SYSTEM_PROMPT = """\
You complete the user's task by calling the tools you are given; they come from these MCP servers: {servers}.
- Call a tool whenever the task needs information or an action. Use the tools' exact names and pass arguments as JSON that matches their parameters.
- Read each tool result, then call the next tool you need, or give your final answer.
- A tool result that starts with "Error:" means the call failed: fix the arguments or try another tool.
- When the task is done, answer in plain text without calling any tool, and include the concrete results the user asked for (values, names, text)."""

ANSWER_PROMPT = """\
You answer the user's task from the results of the tool calls that were made for it, given below. \
No more tools can be called: answer in plain text, with the concrete values the task asks for (numbers, names, text). \
If the results do not settle the task, say what is still missing.

Example. Task: How warm is it in Oslo, and is it raining?
Tool calls and their results:
get_weather {"city": "Oslo"}:
{"city": "Oslo", "temperature_c": 4, "rain": true, "station": "OSL-7731"}
Answer: It is 4 °C in Oslo, and it is raining."""
"""The answer step's system prompt. The example, unrelated to any real tool, shows small models
to pick the values asked for out of a result instead of repeating a line of it."""

NO_ANSWER = "The model gave no answer: it asked for another tool call instead. The results of its tool calls:"


@dataclass(frozen=True)
class LoopLimits:
    max_rounds: int
    tool_timeout: float
    result_chars: int


@dataclass
class _Run:
    """What one task accumulates while it runs."""

    task: str
    messages: list[dict[str, Any]]
    records: list[ToolCallRecord] = field(default_factory=list)
    usage: Counter[str] = field(default_factory=Counter)
    reasoning: list[str] = field(default_factory=list)
    seen_calls: Counter[str] = field(default_factory=Counter)
    last_round: frozenset[str] = frozenset()
    rounds: int = 0

    def add_usage(self, result: ChatResult) -> None:
        self.usage.update(
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            total_tokens=result.usage.total_tokens,
        )


async def run_agent(
    *,
    llm: LLMClient,
    toolbox: Toolbox,
    task: str,
    servers: list[str],
    limits: LoopLimits,
    sampling: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    include_reasoning: bool = False,
) -> TaskResult:
    """Runs the task to its answer. ``sampling`` (e.g. ``max_tokens``, ``temperature``) goes with every request."""
    started = time.perf_counter()
    run = _Run(
        task=task,
        messages=[
            {"role": "system", "content": SYSTEM_PROMPT.format(servers=", ".join(servers))},
            {"role": "user", "content": task},
        ],
    )
    say = progress or _silent
    sampling = dict(sampling or {})
    stop: StopReason = "answered"
    answer = ""
    pending: ChatResult | None = None  # an answer-step reply that asked for more calls
    while True:
        if pending is not None:
            result, pending = pending, None
        elif run.rounds >= limits.max_rounds:
            await say(f"round limit {limits.max_rounds} reached · asking for the answer")
            stop, answer = _final_answer(await _answer_step(llm, run, sampling), run, toolbox, "round_limit")
            break
        else:
            run.rounds += 1
            await say(f"round {run.rounds}/{limits.max_rounds} · waiting for {llm.model}")
            result = await llm.complete(run.messages, tools=toolbox.openai_tools, **sampling)
            run.add_usage(result)
        message, calls, text = _normalise(result, toolbox)
        reasoning, text = split_reasoning({**message, "content": text})
        if reasoning:
            run.reasoning.append(reasoning)
        if not calls:
            answer = text or reasoning
            break
        signatures = frozenset(_signature(c) for c in calls)
        if signatures <= run.last_round:
            await say("the model repeated its last tool call · asking for the answer")
            stop, answer = _final_answer(await _answer_step(llm, run, sampling), run, toolbox, "repeated_call")
            break
        run.last_round = signatures
        run.messages.append(message)
        outcomes = await asyncio.gather(
            *(_execute(call, toolbox, run, limits, say, f"round {run.rounds}/{limits.max_rounds}") for call in calls)
        )
        run.messages.extend({"role": "tool", "tool_call_id": c.id, "content": out} for c, out in zip(calls, outcomes))
        if any(run.seen_calls[_signature(c)] >= REPEAT_STOP_AT for c in calls):
            await say("the same tool call keeps repeating · asking for the answer")
            stop, answer = _final_answer(await _answer_step(llm, run, sampling), run, toolbox, "repeated_call")
            break
        if not result.tool_calls and all(record.ok for record in run.records[-len(calls) :]):
            # Calls written as text: such a model calls again whenever the tool list is attached.
            # Ask for the answer without it; a call it has not made yet in the reply continues the task.
            await say("results in · asking for the answer")
            reply = await _answer_step(llm, run, sampling)
            wants_more = any(_signature(c) not in run.seen_calls for c in _normalise(reply, toolbox)[1])
            if wants_more and run.rounds < limits.max_rounds:
                pending = reply
                continue
            stop, answer = _final_answer(reply, run, toolbox, "round_limit" if wants_more else "answered")
            break
    usage = TokenUsage(**{k: run.usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")})
    return TaskResult(
        answer=answer.strip(),
        model=llm.model,
        mcps=servers,
        rounds=run.rounds,
        stop_reason=stop,
        tool_calls=run.records,
        usage=usage,
        elapsed_seconds=round(time.perf_counter() - started, 3),
        reasoning="\n\n".join(run.reasoning) if include_reasoning and run.reasoning else None,
    )


def _normalise(result: ChatResult, toolbox: Toolbox) -> tuple[dict[str, Any], list[ToolCallRequest], str]:
    """The assistant message to keep, its tool calls, and its text, with calls written as text recovered."""
    message = {"role": "assistant", "content": result.content or None}
    if result.tool_calls:
        message["tool_calls"] = [_history_call(c) for c in result.tool_calls]
        return message, list(result.tool_calls), result.content
    for key in ("reasoning_content", "reasoning"):
        if result.message.get(key):
            message[key] = result.message[key]
    found, rest = extract_tool_calls(result.content, toolbox.known_names)
    if not found:
        return message, [], result.content
    # A small model may write the same call over and over until it runs out of tokens: run it once.
    unique = list(dict.fromkeys((c.name, c.raw_arguments) for c in found))
    calls = [
        ToolCallRequest(id=f"call_text_{index}_{abs(hash(result.content)) % 10**8}", name=name, arguments=arguments)
        for index, (name, arguments) in enumerate(unique)
    ]
    logger.debug("Recovered %d tool call(s) written as text", len(calls))
    message["content"] = rest or None
    message["tool_calls"] = [_history_call(c) for c in calls]
    return message, calls, rest


def _history_call(call: ToolCallRequest) -> dict[str, Any]:
    """A call as the conversation keeps it. Arguments that are not JSON are kept as ``{}``: servers
    such as llama.cpp refuse a history holding them (HTTP 500); the tool's error shows them to the model."""
    try:
        json.loads(call.arguments or "{}")
        arguments = call.arguments
    except json.JSONDecodeError:
        arguments = "{}"
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


async def _execute(
    call: ToolCallRequest, toolbox: Toolbox, run: _Run, limits: LoopLimits, say: ProgressFn, where: str
) -> str:
    """Runs one tool call; every failure becomes the text the model gets back."""
    offered = toolbox.lookup(call.name)
    label = offered.label if offered else call.name
    await say(f"{where} · {label}")
    started = time.perf_counter()
    signature = _signature(call)
    run.seen_calls[signature] += 1
    error: str | None = None
    if offered is None:
        error = f"there is no tool named {call.name!r}. Available tools: {', '.join(toolbox.names)}"
        text = f"Error: {error}"
    elif run.seen_calls[signature] >= REPEAT_WARN_AT:
        error = "repeated call"
        text = (
            f"Error: you already called {call.name} with these arguments {run.seen_calls[signature] - 1} times "
            "and got the result above. Do not call it again: use that result, or answer now."
        )
    else:
        arguments, error = _parse_arguments(call.arguments)
        if error is None:
            text, error = await _call(offered, arguments, limits)
        else:
            text = f"Error: {error}"
    run.records.append(
        ToolCallRecord(name=label, ok=error is None, ms=round((time.perf_counter() - started) * 1000, 1), error=error)
    )
    return truncate(text, limits.result_chars)


async def _call(offered: OfferedTool, arguments: dict[str, Any], limits: LoopLimits) -> tuple[str, str | None]:
    """The tool's output for the model, and a short error when the call failed."""
    try:
        async with asyncio.timeout(limits.tool_timeout + 2):
            result = await offered.child.call_tool(offered.tool.name, arguments, timeout=limits.tool_timeout)
    except Exception as exc:  # noqa: BLE001 - the model gets the failure as the tool's result
        if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
            error = f"{offered.label} did not finish within {limits.tool_timeout:g} s"
        elif offered.child.broken:
            error = f"MCP '{offered.child.name}' stopped while running {offered.tool.name}: {offered.child.broken}"
        else:
            error = f"{offered.label} failed: {exc}"
        return f"Error: {error}", error
    text = render_tool_result(result)
    if not result.is_error:
        return text, None
    first_line = (text.splitlines() or ["(no message)"])[0][:200]
    return (text if text.startswith("Error: ") else f"Error: {text}"), first_line


def _parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return {}, f"the arguments are not valid JSON ({exc.msg} at position {exc.pos}): {raw[:200]}"
    if value is None:
        return {}, None
    if not isinstance(value, dict):
        return {}, f"the arguments must be a JSON object, not {type(value).__name__}"
    return value, None


def render_tool_result(result: CallToolResult) -> str:
    """A tool result as text for the model."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent):
            parts.append(f"[image: {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource: {resource.uri}]")
        else:
            parts.append(f"[{getattr(block, 'type', 'content')}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts) if parts else "(no output)"


def truncate(text: str, budget: int) -> str:
    """At most ``budget`` characters, with a marker saying how much was cut."""
    if len(text) <= budget:
        return text
    cut = len(text) - budget
    return f"{text[:budget]}\n[... {cut:,} of {len(text):,} characters cut ...]"


async def _answer_step(llm: LLMClient, run: _Run, sampling: dict[str, Any]) -> ChatResult:
    """One request without tools: the task and the results so far, and a request for the answer.

    Sent as a fresh two-message conversation rather than the whole history: small models
    given their own history tend to write the last call again instead of answering.
    """
    run.rounds += 1
    messages = [
        {"role": "system", "content": ANSWER_PROMPT},
        {
            "role": "user",
            "content": f"Task: {run.task}\n\nTool calls and their results:\n\n{_results_digest(run.messages)}\n\nAnswer the task now.",
        },
    ]
    logger.debug("Answer step: %s", messages[1]["content"])
    result = await llm.complete(messages, **sampling)
    run.add_usage(result)
    logger.debug("Answer step reply: %r", result.content[:500])
    return result


def _final_answer(result: ChatResult, run: _Run, toolbox: Toolbox, stop: StopReason) -> tuple[StopReason, str]:
    """The answer in an answer-step reply; the tool results themselves when the reply is only a call."""
    reasoning, text = split_reasoning(result.message)
    if reasoning:
        run.reasoning.append(reasoning)
    found, rest = extract_tool_calls(text, toolbox.known_names)
    answer = (rest if found else text).strip() or reasoning
    if answer:
        return stop, answer
    logger.info("The model answered the final request with a tool call; returning the tool results instead")
    return "no_answer", f"{NO_ANSWER}\n\n{_results_digest(run.messages)}"


def _results_digest(messages: list[dict[str, Any]]) -> str:
    """Every tool call made so far as ``name arguments:`` and its result, in order; failed calls last, in one line each.

    Results are matched within their round: some servers number call ids from 0 every round.
    """
    done: list[str] = []
    failed: list[str] = []
    for index, message in enumerate(messages):
        calls = message.get("tool_calls") or ()
        following = messages[index + 1 : index + 1 + len(calls)]
        results = {m.get("tool_call_id"): m["content"] for m in following if m.get("role") == "tool"}
        for call in calls:
            function = call["function"]
            made = f"{function['name']} {function['arguments'] or '{}'}"
            result = results.get(call["id"], "(no result)")
            if result.startswith("Error: "):
                failed.append(f"- {made}: {result.splitlines()[0][:300]}")
            else:
                done.append(f"{made}:\n{result}")
    if failed:
        done.append("Calls that failed:\n" + "\n".join(failed))
    return "\n\n".join(done) or "(no tool was called)"


def _signature(call: ToolCallRequest) -> str:
    try:
        arguments = json.dumps(json.loads(call.arguments or "{}"), sort_keys=True)
    except json.JSONDecodeError:
        arguments = call.arguments
    return f"{call.name}\x00{arguments}"


async def _silent(_: str) -> None:
    return None
