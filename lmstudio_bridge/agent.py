"""The agent loop: one model, the tools of one or more MCP servers, one task.

Each round sends the conversation to the model. Tool calls in its reply (as
``tool_calls``, or written as text, which small local models often do) run
concurrently and go back as ``role: tool`` messages. A reply without tool calls
ends the task. Nothing a tool does ends the loop: failures go back to the model
as that tool's result so it can correct itself.

Small models often cannot stop calling: with the tool list attached they ask for
a call they already made again. A call already made is never run twice (its
result is in the conversation); a reply that holds only such calls, or the round
limit, leads to an answer step: one request without tools that hands the model
the task and the results of its calls. A call it has not made yet in that reply
is run, and the task goes on, unless it is a read-only tool's call without its
required arguments (the model wandering, not a step the task needs).

A call whose arguments do not fit its tool's schema (a required one left out, a
value of the wrong type) is mended before it runs: the model is asked, in a short
request of its own, to write it again (``_fitted``).

What the model writes is checked against where it should come from (``grounding``):
a call that may change something is not run when it writes numbers that are in
neither the task nor any result (``_made_up``), and the model is asked for the call
that gives them (``after_calls``), then, should it answer without writing, for the write once
more (``_unwritten``); an answer that holds such numbers
is asked for once more, and the model may then make the call that gives them
(``_unfounded``); an answer given before a call was made for every item the task
lists together (two cities, two files) is asked for once more as a call for the
items left (``_not_called``); an answer that says nothing of some of the items a tool was
called for, or gives only some of a small record's numbers, is asked for once more, with what
it left out named (``_covering``). Numbers, and names of files or hosts, from nowhere that the
final answer keeps are named to the caller. What the bridge says to the model is in ``prompts``.

What happens after each reply is decided in one place, ``decide``; the loop only
carries it out.

The system prompt, the tool list and every message already sent stay the same
from round to round (the conversation only grows), so the server can reuse its
prompt cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mcp.types import Tool

from .context_window import ContextWindow
from .grounding import (
    Made,
    asks_change,
    blind,
    claimed_change,
    denies,
    described,
    empty,
    file_kinds,
    from_nowhere,
    gives,
    instructs,
    invented,
    left_out,
    names_tool,
    not_called_for,
    records,
    results_words,
    says_nothing,
    squeezed,
    strings,
    to_the_reader,
    unfounded_names,
    unfounded_numbers,
    unread,
    values_left_out,
    words,
    written_back,
)
from .images import image_message
from .lmstudio import ChatResult, LLMClient, Progress, ToolCallRequest
from .policy import declares_changes, declares_read_only
from .prompts import (
    ANSWER_NOW,
    ANSWER_OR_CALL,
    ANSWER_PROMPT,
    BLANK,
    BLIND,
    CALL_OR_ANSWER,
    CHANGE_INSTEAD,
    CONTINUE_PROMPT,
    DESCRIBED,
    FOUND_SINCE,
    GUESSED,
    HELD_BACK,
    HELD_READ,
    INSTRUCTED,
    LEFT_OUT,
    LEFT_TO_DO,
    MADE_UP,
    NO_SUCH_TOOL,
    NOT_CALLED,
    READ_INSTEAD,
    REPAIR_PROMPT,
    SEARCH_INSTEAD,
    SYSTEM_PROMPT,
    UNFOUNDED,
    UNMADE,
    UNREAD,
    UNWRITTEN,
    VALUES_LEFT_OUT,
    WRITTEN_BACK,
    WRITTEN_PART,
)
from .reasoning import split_reasoning
from .render import listed
from .reply_watch import ReplyWatch
from .results import Generation, StopReason, TaskResult, TokenUsage, ToolCallRecord
from .text_tool_calls import TextToolCall, bare_call, complete_fields, extract_tool_calls, made_up_call
from .toolbox import OfferedTool, Toolbox, ToolOutcome, file_name, name_words, searches

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str], Awaitable[None]]
"""Receives one line per round and per tool call, e.g. ``round 2/25 · time.get_current_time``."""

REPAIR_ATTEMPTS = 2
"""Requests to mend one call; after them the call runs as written and the server's error goes back."""
MEND_TOKENS = 256
"""The reply budget of a request to mend a call, on top of half the call's own length in characters."""
TOOL_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
"""What a tool name looks like; a model that calls its last error message has not named a tool."""
ANSWER_TOKENS = 512
"""The reply budget of an answer step, on top of a third of its request's length in characters (about the tokens
of the task and the results, which an answer restates at most), up to the reply budget. At the 2,048 tokens of
the reply budget, the 0.5B, asked to answer after its calls had failed, wrote steps it would take for 116 s."""
SHOWN_ANSWER = 1500
"""Most characters of an answer shown again when it is asked for once more."""
FOUND_NAMED = 3
"""Most paths a search found that the request for their read names."""

NO_ANSWER = "The model gave no answer: it asked for another tool call instead. The results of its tool calls:"


@dataclass(frozen=True)
class LoopLimits:
    max_rounds: int
    tool_timeout: float
    result_chars: int
    reply_tokens: int = 2048
    """Answer text one reply may hold before the bridge stops it."""
    reasoning_tokens: int = 8192


@dataclass(frozen=True)
class Reply:
    """One model reply, read: the message to keep, its calls, its answer text and its reasoning."""

    message: dict[str, Any]
    calls: list[ToolCallRequest]
    text: str
    reasoning: str
    written_as_text: bool
    """The calls were written in the text, not sent as ``tool_calls``."""
    cut: str | None = None
    """Why the bridge stopped the reply early, if it did."""
    unfit: frozenset[str] = frozenset()
    """Ids of calls of read-only tools that lack required arguments (``Toolbox.incomplete_read``)."""
    made_up: TextToolCall | None = None
    """A call the text makes of a tool that is not offered (``text_tool_calls.made_up_call``)."""


@dataclass(frozen=True)
class Finish:
    answer: str
    stop: StopReason
    cut: str | None = None


@dataclass(frozen=True)
class Call:
    calls: list[ToolCallRequest]


@dataclass(frozen=True)
class AskForAnswer:
    stop: StopReason
    why: str
    """For the progress line."""
    may_call: bool = False
    """The model may reply with one more call the task still needs, instead of the answer."""
    closing: str | None = None
    """What the answer step ends with, when not the usual request for the answer (``_answer_step``)."""
    wants_call: bool = False
    """The step asks for a call: one without its required arguments is mended, not taken for wandering."""
    tool: str | None = None
    """The tool the step asks for by name (``_read_instead``): a call of it stays its call (``read_reply``)."""


Step = Finish | Call | AskForAnswer


@dataclass(frozen=True)
class _Model:
    """The task's model and how each request to it goes: the context window, the loop's limits, the
    sampling parameters and where progress lines go."""

    llm: LLMClient
    window: ContextWindow
    limits: LoopLimits
    params: dict[str, Any]
    say: ProgressFn

    async def complete(
        self,
        messages: list[dict[str, Any]],
        where: str,
        names: Collection[str] = (),
        budget: int | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> ChatResult:
        """One reply, stopped once it holds a whole call of one of ``names`` or runs past ``budget`` tokens
        (the reply budget when not given); ``where`` opens its progress lines."""
        limits = self.limits
        watch = ReplyWatch(names, budget or limits.reply_tokens, limits.reasoning_tokens)
        progress = _writing(where, self.say)
        return await self.llm.complete(
            messages, tools=tools, window=self.window, watch=watch, progress=progress, **self.params
        )


@dataclass
class _Run:
    """What one task accumulates while it runs."""

    task: str
    messages: list[dict[str, Any]]
    records: list[ToolCallRecord] = field(default_factory=list)
    usage: Counter[str] = field(default_factory=Counter)
    reasoning: list[str] = field(default_factory=list)
    seen_calls: set[str] = field(default_factory=set)
    answered: Finish | None = None
    """The answer the model gave before it was asked again (``_unfounded``)."""
    not_called: frozenset[str] | None = None
    """The items the model was last asked to call for (``_not_called``)."""
    held_back: str | None = None
    """The closing that asks for the values of a call not run in the last round because they are from nowhere
    (``_made_up``, ``_guessed``)."""
    guessed: set[str] = field(default_factory=set)
    """Reads held back once for values from nowhere (``_guessed``): made again, they run."""
    unwritten: tuple[str, int] | None = None
    """A write held back (``_made_up``, ``_unread``) and not made since by any write: its tool's name, and how
    many calls had worked when it was held back."""
    asked_unwritten: bool = False
    """The write held back was asked for again (``_unwritten``): once per task."""
    asked_unmade: bool = False
    """A change the answer names was asked for (``_unmade``): once per task."""
    asked_change: bool = False
    """The tools that make a change were named after a made-up call (``_change_instead``): once per task."""
    asked_search: bool = False
    """A search was asked for after a read failed (``_search_instead``): once per task."""
    asked_read: list[frozenset[str]] = field(default_factory=list)
    """The tools called each time another read was named after a read that returned nothing was written again
    (``_read_instead``): at most twice per task, the second time only once another tool has been called since."""
    not_run: set[tuple[int, str]] = field(default_factory=set)
    """The calls that reached no tool (of a tool that does not exist, held back, or unreadable), as the index of
    the message that holds them and their id: some servers number call ids from 0 every round."""
    strays: int = 0
    """Replies that were only a call of a tool that does not exist."""
    rounds: int = 0
    first_token_seconds: float | None = None
    generation_seconds: float = 0.0
    generated_tokens: int = 0
    replies_cut: int = 0

    def add(self, result: ChatResult) -> None:
        self.usage.update(
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            total_tokens=result.usage.total_tokens,
        )
        stats = result.stats
        if self.first_token_seconds is None:
            self.first_token_seconds = stats.first_token_seconds
        self.generation_seconds += stats.generation_seconds
        self.generated_tokens += stats.tokens
        self.replies_cut += stats.cut is not None
        if stats.cut:
            logger.info("Stopped the model's reply after %d tokens (%s)", stats.tokens, stats.cut)

    def generation(self, answer_cut: str | None) -> Generation:
        seconds = self.generation_seconds
        return Generation(
            answer_cut=answer_cut,
            first_token_seconds=self.first_token_seconds,
            tokens=self.generated_tokens,
            tokens_per_second=round(self.generated_tokens / seconds, 1) if seconds > 0 else None,
            replies_cut=self.replies_cut,
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
    conversation: list[dict[str, Any]] | None = None,
) -> TaskResult:
    """Runs the task to its answer. ``sampling`` (e.g. ``max_tokens``, ``temperature``) goes with every request.

    ``conversation``, when given, is the list the run keeps its messages in (the caller sees it grow): empty
    for a new task, or an earlier task's conversation, which the task then continues.
    """
    started = time.perf_counter()
    messages = conversation if conversation is not None else []
    if not messages:
        messages.append({"role": "system", "content": SYSTEM_PROMPT.format(servers=", ".join(servers))})
    messages.append({"role": "user", "content": task})
    run = _Run(task=task, messages=messages)
    say = progress or no_progress
    params = dict(sampling or {})
    window = llm.window(reply_tokens=limits.reply_tokens, max_tokens=params.get("max_tokens"))  # this task's own
    model = _Model(llm, window, limits, params, say)
    asked: AskForAnswer | None = None
    while True:
        if asked is None and run.rounds >= limits.max_rounds:
            asked = AskForAnswer("round_limit", f"round limit {limits.max_rounds} reached")
        if asked is not None:
            await say(f"{asked.why} · asking for the answer")
            tools = toolbox if asked.may_call else None
            result = await _answer_step(model, run, tools, asked.closing)
        else:
            run.rounds += 1
            await say(f"round {run.rounds}/{limits.max_rounds} · waiting for {llm.model}")
            where = f"round {run.rounds}/{limits.max_rounds}"
            result = await model.complete(run.messages, where, toolbox.known_names, tools=toolbox.openai_tools)
        run.add(result)
        reply = read_reply(result, toolbox, task, asked.tool if asked else None)
        if reply.reasoning:
            run.reasoning.append(reply.reasoning)
        step = decide(reply, run, limits, asked)
        if isinstance(step, Finish):
            if again := (
                _not_called(step, run, model)
                or _unfounded(step, run, model)
                or _unwritten(step, run, model)
                or _unmade(step, run, model, toolbox)
            ):
                asked = again
                continue
            finish = _better(run.answered, step, run, model) if run.answered is not None else step
            break
        if isinstance(step, AskForAnswer):
            asked = (
                _change_instead(step, run, model, toolbox, asked)
                or _read_instead(step, reply, run, model, toolbox, asked)
                or step
            )
            continue
        calls = [await _fitted(call, model, toolbox, run) for call in step.calls]
        if not (calls := _new_calls(calls, run.seen_calls)):  # mended into a call already made
            asked = AskForAnswer(asked.stop if asked else "answered", "the model repeated a call it already made")
            continue
        run.messages.append({**reply.message, "tool_calls": [_history_call(c) for c in calls]})
        outcomes = await asyncio.gather(*(_execute(c, toolbox, run, limits, say) for c in calls))
        run.messages.extend(
            {"role": "tool", "tool_call_id": c.id, "content": o.text} for c, o in zip(calls, outcomes, strict=True)
        )
        if llm.sees_images and (images := image_message([(o.label, o.images) for o in outcomes])) is not None:
            run.messages.append(images)
        asked = after_calls(reply, run, len(calls), toolbox)
    finish = await _covering(finish, model, toolbox, run)
    # Told once already (``_unfounded``), a small model may keep them: the caller is told instead. Names from
    # nowhere are only told: asked again, the 1.5B named the same file. A name may come from a call the model
    # made, one that failed too ("notes.md does not exist"), but not from one that reached no tool: the 0.5B
    # saved "John Doe" unread, which was not run, and answered that John Doe made the latest commit.
    # Items asked for again (``_not_called``) that still have no result are told too.
    unfounded: list[str] = []
    names: list[str] = []
    given: list[str] = []
    items: list[str] = []
    nothing: list[str] = []
    denied = denies(finish.answer)
    if run.records and finish.stop != "no_answer":
        known = _known(run, model)
        nothing = _nothing_found(run)
        # Counts too, when no call found anything and the answer does not say so: only told, not asked again.
        unfounded = unfounded_numbers(finish.answer, known, counts=bool(nothing) and not denied)
        made = _calls_made(run.messages, run.not_run)
        names = unfounded_names(finish.answer, "\n".join([known, *(m.call for m in made if m.ran)]))
        items = not_called_for(task, [m for m in made if m.ok])
        if unfounded:
            given = _labels(_grounds(run)[1], toolbox)
    # Only told: the caller, who may act on the answer, must not take a change as made when none was.
    change = None
    if finish.stop != "no_answer" and not _changed_anything(run, toolbox):
        change = claimed_change(task, finish.answer)
    # An answer from calls that found nothing that says more than that, and no note above says so already.
    bare = [] if unfounded or names or change or denied else _labels(nothing, toolbox)
    usage = TokenUsage(**{k: run.usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")})
    return TaskResult(
        answer=finish.answer.strip(),
        model=llm.model,
        mcps=servers,
        rounds=run.rounds,
        stop_reason=finish.stop,
        tool_calls=run.records,
        usage=usage,
        elapsed_seconds=round(time.perf_counter() - started, 3),
        reasoning="\n\n".join(run.reasoning) or None,
        read_only=toolbox.read_only,
        tools_offered=[t.label for t in toolbox.tools],
        generation=run.generation(answer_cut=finish.cut),
        unfounded_numbers=unfounded,
        unfounded_names=names,
        unfounded_calls=given,
        unfounded_items=items,
        unfounded_answer=bare,
        unfounded_change=change,
    )


def _labels(names: list[str], toolbox: Toolbox) -> list[str]:
    """Tools as the caller knows them (``server.tool``), by the names the model called them."""
    return [t.label if (t := toolbox.lookup(name)) else name for name in names]


def decide(reply: Reply, run: _Run, limits: LoopLimits, asked: AskForAnswer | None) -> Step:
    """What follows a reply: the answer, calls to run, or an answer step."""
    rounds_left = run.rounds < limits.max_rounds
    new_calls = _new_calls(reply.calls, run.seen_calls)
    if asked is not None:
        # The reply to an answer step: a call not made yet goes on with the task, anything else ends it.
        # A read-only call without its required arguments is the model wandering, not a step the task needs.
        needed = [c for c in new_calls if asked.wants_call or c.id not in reply.unfit]
        if needed and rounds_left:
            return Call(needed)
        if asked.may_call and (made_up := reply.made_up) is not None and TOOL_NAME.fullmatch(made_up.name):
            # Told only to answer, the 1.5B described the copy as if made; told the tool does not exist, it said so.
            closing = f"{NO_SUCH_TOOL.format(name=made_up.name)} {ANSWER_NOW}"
            return AskForAnswer(asked.stop, "the model called a tool that does not exist", closing=closing)
        if asked.may_call and (reply.calls or reply.made_up is not None):
            return AskForAnswer(asked.stop, "the model asked for a call instead of answering")
        return _final(reply, run, asked.stop)
    if reply.calls and not new_calls:
        return AskForAnswer("answered", "the model repeated a call it already made")
    if new_calls:
        return Call(new_calls)
    stray = reply.made_up
    if stray is not None and rounds_left and TOOL_NAME.fullmatch(stray.name) and not run.strays:
        # A call of a tool that is not offered: a failed call the model hears about, not an answer.
        # Once per task: a small model may go on calling names it makes up (or its last error) for ever.
        run.strays += 1
        return Call([ToolCallRequest(id=f"call_stray_{run.rounds}", name=stray.name, arguments=stray.raw_arguments)])
    if _echoed_error(reply.text, run.messages):
        return AskForAnswer("answered", "the model wrote back a tool's error", may_call=rounds_left)
    if stray is not None:
        # Made up again: the answer step, which may still ask for a real call. After "there is no tool named
        # 'copy_file'" and copy_file again, the 0.5B, shown the tools there are, asked to read the file.
        return AskForAnswer("answered", "the model called a tool that does not exist", may_call=rounds_left)
    return _final(reply, run, "answered")


def _unwritten(finish: Finish, run: _Run, model: _Model) -> AskForAnswer | None:
    """Once per task, when the model answers while a write the bridge held back was not made since by any
    write, and a call has worked since it was held back: the answer step again, asking for that write with
    the values from the results. Told to get the time first, the 1.5B got it, then answered with the time
    instead of writing it to the file."""
    if run.unwritten is None or run.asked_unwritten or finish.stop != "answered":
        return None
    name, worked = run.unwritten
    if _worked(run) == worked or run.rounds >= model.limits.max_rounds:
        return None
    run.asked_unwritten = True
    closing = UNWRITTEN.format(name=name)
    return AskForAnswer("answered", f"{name} was not run", may_call=True, closing=closing, wants_call=True)


def _unmade(finish: Finish, run: _Run, model: _Model, toolbox: Toolbox) -> AskForAnswer | None:
    """Once per task, when the answer names a tool that may change something but declares it destroys nothing,
    and no call that changes something has worked: the answer step again, asking for that call. With the contact
    read, the 1.5B answered "You would then need to call the `create_entities` tool to create an entity for
    Linus Pauling" instead of calling it.

    Also when the answer names no tool but tells its reader what they would or need to do, while a server not
    used yet has tools that add (``_unused_adding``): the step then names those, and the model may still answer.
    With the commit's author read, the 1.5B answered "You would then need to add this information to the
    knowledge graph as a person".

    And when the task asks for a change (``grounding.asks_change``) and a server not used yet has tools that
    change something (``_unused_changing``), unless a change was asked for already (``_change_instead``,
    ``_unwritten``): asked to write the current UTC time to a file, the 0.5B got the time and answered with it.
    Asked a third time for the knowledge graph's entry, it wrote the same call that ran on until it was cut."""
    if run.asked_unmade or finish.stop != "answered" or run.rounds >= model.limits.max_rounds:
        return None
    if _changed_on(run, toolbox):
        return None
    changing = (t for t in toolbox.tools if _changes_nothing_lost(t.tool))
    if named := next((t for t in changing if names_tool(finish.answer, t.api_name)), None):
        closing = UNMADE.format(name=named.api_name)
        why = f"the answer names {named.label}, which was not called"
    elif to_the_reader(finish.answer) and (adding := _unused_adding(run, toolbox)):
        closing = LEFT_TO_DO.format(tools=", ".join(adding))
        why = "the answer leaves a change to its reader"
    elif (
        asks_change(run.task)
        and not (run.asked_change or run.asked_unwritten)
        and (makers := _unused_changing(run, toolbox))
    ):
        closing = LEFT_TO_DO.format(tools=", ".join(makers))
        why = "no call has made the change the task asks for"
    else:
        return None
    run.asked_unmade = True
    return AskForAnswer("answered", why, may_call=True, closing=closing, wants_call=True)


def _change_instead(
    step: AskForAnswer, run: _Run, model: _Model, toolbox: Toolbox, asked: AskForAnswer | None
) -> AskForAnswer | None:
    """Once per task, when the model, asked for the answer or a call the task still needs, calls again a tool
    that does not exist or repeats a call, while no change has worked: the answer step again, naming tools that
    make a change. After a call of a tool that does not exist failed, those that lose nothing more when called
    again: with the file read after a made-up ``copy_file``, the 1.5B called ``copy_file`` again and the 0.5B read
    the file again; each, told the tool does not exist and given ``write_file``, wrote the copy. With nothing
    read, the 1.5B answered "There is no tool named 'copy_file'."; given ``write_file`` then, it wrote "This is a
    copy of greeting.txt" to the copy, which is not run (``_unread``), and the read is asked for. Otherwise those
    that add, of the servers not used yet (``_unused_adding``): with the contact read, the 0.5B read it again.
    Otherwise, for a task that asks for a change (``grounding.asks_change``), those that may change something of
    the servers used, those that share most words with the task first (``_closest``): asked to remove the second
    line of a file, the 0.5B read it, then read it again each time it was asked for the answer, and answered that
    the line was removed; given ``edit_file, write_file, create_directory, move_file``, it called ``edit_file``
    in 6 of 6 replies."""
    # Asked with ``may_call``, ``decide`` asks again only for a reply that calls: a made-up tool or a call made.
    if asked is None or not asked.may_call or run.asked_change or run.rounds >= model.limits.max_rounds:
        return None
    if _changed_on(run, toolbox):
        return None
    made_up = next((record.name for record in run.records if toolbox.lookup(record.name) is None), None)
    if made_up is not None and (changing := [t.api_name for t in toolbox.tools if _changes_repeatably(t.tool)]):
        closing = f"{NO_SUCH_TOOL.format(name=made_up)} {CHANGE_INSTEAD.format(tools=', '.join(changing))}"
    elif made_up is None and (adding := _unused_adding(run, toolbox)):
        closing = CHANGE_INSTEAD.format(tools=", ".join(adding))
    elif made_up is None and asks_change(run.task) and (used := _used_changing(run, toolbox)):
        # Ranked, not one named alone: given edit_file alone, the 0.5B wrote its name and nothing else in 2 of 6
        # replies; given the four in order, the call in 6 of 6.
        closing = CHANGE_INSTEAD.format(tools=", ".join(t.api_name for t in _closest(used, run.task)))
    else:
        return None
    run.asked_change = True
    return replace(step, may_call=True, closing=closing, wants_call=True)


def _read_instead(
    step: AskForAnswer, reply: Reply, run: _Run, model: _Model, toolbox: Toolbox, asked: AskForAnswer | None
) -> AskForAnswer | None:
    """When the model, asked for the answer or a call the task still needs, writes again a call of a tool that only
    reads and is no search, whose result said nothing (``grounding.says_nothing``), or that failed while no call has
    found anything (``_found``): the answer step again, naming another read of its server, not called yet and not
    one whose name goes on from its name (``git_diff_staged`` after ``git_diff``), the one whose name and
    description share most words with the task. Asked whether any commit message mentions a database, the 0.5B
    called ``git_diff`` against HEAD, got its heading alone, wrote the call again every time it was asked for the
    answer, and answered from nothing. Twice at most, the second
    time after another tool was called: asked what changed in the latest commit, it called ``git_log`` when it was
    named, then ``git_diff`` again, where the files changed are in ``git_show``'s result. Asked to write the current
    UTC time to a file, it called ``convert_time`` with a time of its own, which failed, and wrote that call again
    each time it was asked for the answer. A search that found nothing has answered: it is not asked about."""
    if asked is None or not asked.may_call or len(run.asked_read) >= 2 or run.rounds >= model.limits.max_rounds:
        return None
    made = _calls_made(run.messages, run.not_run)
    # A failed read only while no call has found anything: after a search found the YAML files, the 0.5B read the
    # folder, which failed, and wrote that read again; named another read, it went on listing and answered wrong.
    found = _found(made)
    gave_nothing = {
        _signature(ToolCallRequest("", m.name, m.arguments)): "returned nothing" if m.ok else "failed"
        for m in made
        if m.ran and (says_nothing(m.result) if m.ok else not found)
    }
    repeated = [c for c in reply.calls if _signature(c) in gave_nothing]
    offered = toolbox.lookup(repeated[0].name) if len(repeated) == len(reply.calls) and repeated else None
    if offered is None or not declares_read_only(offered.tool) or searches(offered):
        return None
    called = frozenset(m.name for m in made)
    if run.asked_read and called <= run.asked_read[-1]:
        return None
    others = [
        t
        for t in toolbox.tools
        if t.server == offered.server
        and declares_read_only(t.tool)
        and t.api_name not in called
        and not t.tool.name.startswith(offered.tool.name)
    ]
    if not others:
        return None
    # One, named alone: after git_log, given git_show, git_status and git_branch, the 0.5B wrote git_diff again
    # in 7 of 7 replies; given git_show alone, git_show in 6 of 6 (once without arguments).
    named = _closest(others, run.task)[0]
    run.asked_read.append(called)
    closing = READ_INSTEAD.format(
        name=offered.api_name, what=gave_nothing[_signature(repeated[0])], tool=named.api_name
    )
    return replace(step, may_call=True, closing=closing, wants_call=True, tool=named.api_name)


def _closest(tools: list[OfferedTool], task: str) -> list[OfferedTool]:
    """The tools, those whose names and descriptions share most words with the task's (its paths left out:
    ``create_directory`` is not about a line of ``/w/project/notes.txt``) first, in their order otherwise."""
    asked_about = _stems(_PATH.sub(" ", task))
    return sorted(tools, key=lambda t: -len(asked_about & _stems(f"{t.tool.name} {t.tool.description or ''}")))


_PATH = re.compile(r"\S*/\S*")
"""A path or address: a run of characters without spaces that holds a slash."""


def _stems(text: str) -> set[str]:
    """The text's words (``grounding.words``), plurals made singular: ``commits`` as ``commit``."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words(text)}


def _unused_adding(run: _Run, toolbox: Toolbox) -> list[str]:
    """The tools that add and destroy nothing (``destructiveHint`` and ``idempotentHint`` false, as
    ``create_entities``) of the task's servers on which no call has worked, once a call has worked on another:
    a task given two servers that has used one, as one that reads a contact to save it in the knowledge graph.
    Not ``write_file`` or ``delete_entities`` (they may destroy), nor ``create_directory`` (idempotent)."""
    return _unused(run, toolbox, _adds)


def _used_changing(run: _Run, toolbox: Toolbox) -> list[OfferedTool]:
    """The tools that may change something (``policy.declares_changes``) of the servers a call has worked on."""
    used = {t.server for record in run.records if record.ok and (t := toolbox.lookup(record.name))}
    return [t for t in toolbox.tools if t.server in used and declares_changes(t.tool)]


def _unused_changing(run: _Run, toolbox: Toolbox) -> list[str]:
    """The tools of each server no call has worked on (``_unused``) that add (``_adds``), or, on a server with
    none, that lose nothing more when called again (``_changes_repeatably``, as ``write_file``): the memory
    server's ``delete_entities`` declares itself idempotent, and a task that asks to add is not asked to call it."""
    adding = _unused(run, toolbox, _adds)
    servers = {t.server for name in adding if (t := toolbox.lookup(name))}
    rest = [
        n for n in _unused(run, toolbox, _changes_repeatably) if (t := toolbox.lookup(n)) and t.server not in servers
    ]
    return adding + rest


def _adds(tool: Tool) -> bool:
    return _changes_nothing_lost(tool) and tool.annotations is not None and tool.annotations.idempotent_hint is False


def _unused(run: _Run, toolbox: Toolbox, kind: Callable[[Tool], bool]) -> list[str]:
    """The tools of a ``kind`` of the task's servers on which no call has worked, once a call has worked on
    another."""
    used = {t.server for record in run.records if record.ok and (t := toolbox.lookup(record.name))}
    if not used:
        return []
    return [t.api_name for t in toolbox.tools if t.server not in used and kind(t.tool)]


def _changed_on(run: _Run, toolbox: Toolbox) -> set[str]:
    """The servers on which a call of a tool that may change something has worked."""
    return {
        t.server
        for record in run.records
        if record.ok and (t := toolbox.lookup(record.name)) and not declares_read_only(t.tool)
    }


def _changed_anything(run: _Run, toolbox: Toolbox) -> bool:
    """Whether a call of a tool that may change something has worked in the conversation: this task's calls,
    and those of the task it continues, where "I added them" may tell of a change made then."""
    return any(
        m.ok and m.ran and (t := toolbox.lookup(m.name)) is not None and not declares_read_only(t.tool)
        for m in _calls_made(run.messages, run.not_run)
    )


def _changes_repeatably(tool: Tool) -> bool:
    """Whether the tool may change something and declares that calling it again loses nothing more: it destroys
    nothing, or it is idempotent (``write_file``). Not ``move_file``: it takes the original away."""
    hints = tool.annotations
    return (
        not declares_read_only(tool)
        and hints is not None
        and (hints.destructive_hint is False or hints.idempotent_hint is True)
    )


def _changes_nothing_lost(tool: Tool) -> bool:
    """Whether the tool may change something and declares it destroys nothing (``destructiveHint: false``)."""
    return not declares_read_only(tool) and tool.annotations is not None and tool.annotations.destructive_hint is False


def _worked(run: _Run) -> int:
    """How many of the task's calls have worked."""
    return sum(record.ok for record in run.records)


def _not_called(finish: Finish, run: _Run, model: _Model) -> AskForAnswer | None:
    """When the model answers before a call was made for every item the task lists together
    (``grounding.not_called_for``): the answer step again, asking for the call for the items left. Again
    only while that leaves fewer items than the last time. The 1.5B fetched New York's weather and answered
    "33" to a question about New York and Los Angeles; the 0.5B read one of two files and made up the other's port."""
    if finish.stop != "answered" or not run.records or run.rounds >= model.limits.max_rounds:
        return None
    missing = frozenset(not_called_for(run.task, _calls_made(run.messages)))
    if not missing or (run.not_called is not None and not missing < run.not_called):
        return None
    run.not_called = missing
    named = sorted(missing, key=run.task.find)
    items = listed(named)
    # "the call", not the tool's: asked for "the get-structured-content call" for Los Angeles, the 1.5B wrote
    # its arguments alone, {"location": "Los Angeles"}, as the answer.
    closing = NOT_CALLED.format(items=items, them="it" if len(missing) == 1 else "them")
    return AskForAnswer("answered", f"no call was made for {items}", may_call=True, closing=closing, wants_call=True)


def _unfounded(finish: Finish, run: _Run, model: _Model) -> AskForAnswer | None:
    """Once per task that called tools, when the answer holds numbers no result gave
    (``grounding.unfounded_numbers``) or template slots (``grounding.placeholders``): the answer step again,
    which shows the answer, names them, and may ask for the call that gives them. The 0.5B read one of two files
    and gave a port for both."""
    if finish.stop != "answered" or run.answered is not None or not run.records:
        return None  # an answer without any call is the model's own (a sum, a fact), not read off results
    values = from_nowhere(finish.answer, _known(run, model))
    if not values:
        return None
    run.answered = finish
    shown = _shown(finish.answer)
    them = "it" if len(values) == 1 else "them"
    closing = UNFOUNDED.format(answer=shown, values=", ".join(values[:5]), them=them)
    may_call = run.rounds < model.limits.max_rounds
    return AskForAnswer("answered", "the answer gives values no result holds", may_call=may_call, closing=closing)


def _shown(answer: str) -> str:
    """An answer as a request shows it again: its first 1,500 characters."""
    return answer if len(answer) <= SHOWN_ANSWER else answer[:SHOWN_ANSWER] + " ..."


def _better(first: Finish, again: Finish, run: _Run, model: _Model) -> Finish:
    """The answer given when asked again, if it holds fewer numbers and slots from nowhere than the first."""
    known = _known(run, model)
    if len(from_nowhere(again.answer, known)) < len(from_nowhere(first.answer, known)):
        return again
    return first


def _nothing_found(run: _Run) -> list[str]:
    """The calls made for the task (``name``, each once) when every one failed, was not run or returned nothing
    (``grounding.says_nothing``); none when one gave a result. Then no count in the answer was read off a result
    either (``grounding.unfounded_numbers``), and an answer that says more than that nothing was found rests
    on nothing: told that git's diff against HEAD was empty, the 0.5B listed what the latest commit changed."""
    made = _calls_made(run.messages, run.not_run)
    return [] if _found(made) else list(dict.fromkeys(m.name for m in made))


def _found(made: list[Made]) -> bool:
    """Whether a call that ran gave a result that says something (``grounding.says_nothing``)."""
    return any(m.ok and m.ran and not says_nothing(m.result) for m in made)


def _known(run: _Run, model: _Model | None = None) -> str:
    """The task and the results of the calls that worked and were given no numbers from nowhere (``_grounds``):
    where the values a model writes should come from (an error may quote the model's own made-up values back to
    it). An answer may also name the model."""
    return "\n".join([run.task, *_grounds(run)[0], model.llm.model if model else ""])


def _grounds(run: _Run) -> tuple[list[str], list[str]]:
    """The results of the calls that worked, in order, and the tools of those among them that were given numbers
    in neither the task nor an earlier result: a result returns them back, worked on, and is no ground for what
    the model writes. Given a made-up "14:30", ``convert_time`` gave London's time for it, and the 0.5B answered
    with that as the time in London now."""
    known = [run.task]
    given: list[str] = []
    for made in _calls_made(run.messages):
        if not made.ok:
            continue
        if invented(_arguments(made), "\n".join(known)) is None:
            known.append(made.result)
        else:
            given.append(made.name)
    return known[1:], list(dict.fromkeys(given))


def after_calls(reply: Reply, run: _Run, count: int, toolbox: Toolbox) -> AskForAnswer | None:
    """After the calls of a model that writes them as text: the answer step, which may still ask for a
    call the task needs, a failed one written again too. Such a model, given the tool list again, calls
    whatever it sees (the 0.5B, after "no such file", called ten tools in one reply), or answers with the
    error. A model that uses ``tool_calls`` goes on with the tools.

    After a call not run for values from nowhere (a write, ``_made_up``; a read, ``_guessed``), the step asks for
    the call that gives them, of the tools that only read: asked for the answer, the 1.5B wrote the same made-up
    time again."""
    held, run.held_back = run.held_back, None
    if not reply.written_as_text:
        return None
    if held:
        return AskForAnswer("answered", "a call was not run", may_call=True, closing=held, wants_call=True)
    failed = not all(record.ok for record in run.records[-count:])
    made = _calls_made(run.messages, run.not_run)
    if failed and (search := _search_instead(made[-count:], made, run, toolbox)):
        return AskForAnswer("answered", "a read failed", may_call=True, closing=search, wants_call=True)
    if not failed and (read := _found_since(made[-count:], made[:-count], toolbox)):
        return AskForAnswer("answered", "a search found a path", may_call=True, closing=read, wants_call=True)
    return AskForAnswer("answered", "a call failed" if failed else "results in", may_call=True)


def _search_instead(latest: list[Made], made: list[Made], run: _Run, toolbox: Toolbox) -> str | None:
    """Once per task, when a call that only reads has failed and its server has a search tool no call has used:
    the closing that names it. After reading a guessed path (``project/settings.ini``, where the file was
    under ``services/billing/conf``) and "ENOENT", the 1.5B answered that the file does not exist; asked
    whether ``search_files`` can find it, it called it in 4 of 4 replies."""
    if run.asked_search:
        return None
    used = {t.api_name for m in made if (t := toolbox.lookup(m.name))}
    for m in latest:
        offered = toolbox.lookup(m.name)
        if m.ok or not m.ran or offered is None or not declares_read_only(offered.tool):
            continue
        if named := [t.api_name for t in toolbox.search_tools(offered.server) if t.api_name not in used]:
            run.asked_search = True
            return SEARCH_INSTEAD.format(call=offered.api_name, search=named[0], what=_looked_for(m))
    return None


def _looked_for(made: Made) -> str:
    """What a call looked for, as a search names it: the file's name at the end of a path it was given."""
    for value in _arguments(made).values():
        if isinstance(value, str) and (name := file_name(value)):
            return name
    return "what it looked for"


def _found_since(latest: list[Made], before: list[Made], toolbox: Toolbox) -> str | None:
    """When a call that only reads failed earlier and a search just found paths under the folder it searched:
    the closing that names them and asks for the read of what it found. Given the search's result with the usual
    closing, the 1.5B read the file it found in 2 of 4 replies (and in one answered that it does not exist); told
    only that the search "has found a path since", in 3 of 4, and the 0.5B read its guessed path again in 4 of 4;
    told the path, the 0.5B read it in 4 of 4."""
    failed = [o for m in before if not m.ok and m.ran and (o := toolbox.lookup(m.name)) and declares_read_only(o.tool)]
    if not failed:
        return None
    for m in latest:
        offered = toolbox.lookup(m.name)
        if m.ok and offered is not None and searches(offered) and (paths := _found_paths(m)):
            found = ", ".join(paths[:FOUND_NAMED]) + (" and more" if len(paths) > FOUND_NAMED else "")
            return FOUND_SINCE.format(call=failed[-1].api_name, search=offered.api_name, found=found)
    return None


def _found_paths(made: Made) -> list[str]:
    """The paths a call's result names under a folder its arguments name, in order, each once."""
    folders = [v.rstrip("/") + "/" for v in _arguments(made).values() if isinstance(v, str) and v.strip("/")]
    found = [token for token in made.result.split() if any(token.startswith(folder) for folder in folders)]
    return list(dict.fromkeys(found))


def _arguments(made: Made) -> dict[str, Any]:
    """A call's arguments as it was written; none when they are not a JSON object."""
    try:
        arguments = json.loads(made.arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return arguments if isinstance(arguments, dict) else {}


def _new_calls(calls: list[ToolCallRequest], seen: set[str]) -> list[ToolCallRequest]:
    """The calls not made before, each once, in order."""
    fresh: dict[str, ToolCallRequest] = {}
    for call in calls:
        signature = _signature(call)
        if signature not in seen:
            fresh.setdefault(signature, call)
    return list(fresh.values())


def read_reply(result: ChatResult, toolbox: Toolbox, task: str | None = None, asked_for: str | None = None) -> Reply:
    """The assistant message to keep, its tool calls, and its text, with calls written as text recovered.
    Arguments are prepared as they will be sent (``Toolbox.prepared``), against the ``task``'s text; a call of
    the tool ``asked_for`` stays that tool's call (see ``_prepared``)."""
    message: dict[str, Any] = {"role": "assistant", "content": result.content or None}
    reasoning, text = split_reasoning(result.message)
    cut = result.stats.cut
    if result.tool_calls:
        calls = [_prepared(c.name, c.arguments, c.id, toolbox, task, asked_for) for c in result.tool_calls]
        return Reply(message, calls, text, reasoning, written_as_text=False, cut=cut, unfit=_unfit(calls, toolbox))
    for key in ("reasoning_content", "reasoning"):
        if result.message.get(key):
            message[key] = result.message[key]
    found, rest = extract_tool_calls(result.content, toolbox.known_names)
    if not found:
        # A call in the prose counts too: told there is no copy_file tool, the 1.5B answered with how to copy the
        # file "using the `copy_file` tool with the following arguments", and the call.
        made_up = made_up_call(text, toolbox.known_names, TOOL_NAME)
        return Reply(message, [], text, reasoning, written_as_text=False, cut=cut, made_up=made_up)
    tag = abs(hash(result.content)) % 10**8
    calls = [
        _prepared(c.name, _whole_fields(c, cut, toolbox), f"call_text_{index}_{tag}", toolbox, task, asked_for)
        for index, c in enumerate(found)
    ]
    logger.debug("Recovered %d tool call(s) written as text: %r", len(calls), result.content[:500])
    message["content"] = rest or None
    answer = split_reasoning({**message, "content": rest})[1]
    return Reply(message, calls, answer, reasoning, written_as_text=True, cut=cut, unfit=_unfit(calls, toolbox))


def _whole_fields(call: TextToolCall, cut: str | None, toolbox: Toolbox) -> str:
    """A call's arguments; in a reply the bridge stopped, when they are not JSON, the fields written whole before
    the cut (``text_tool_calls.complete_fields``). After the commit's log, the 0.5B wrote ``create_entities`` with
    ``entity_name`` "Grace Hopper", ``entity_type``, ``entity_date`` and ``entity_message``, then the same fields
    again, or fields named ``entity_author_author_date`` and on, until it was stopped, in 2 of 3 runs: not JSON,
    the call failed and the entity was never saved. What a repeating reply loses is more of what it repeats; a
    reply stopped at its budget may have lost anything, so that is only for a tool that declares it destroys
    nothing (an optional ``dryRun`` left out must not make an edit real)."""
    if call.arguments is not None or cut not in ("repetition", "budget"):
        return call.raw_arguments
    offered = toolbox.lookup(call.name)
    if cut == "budget" and not (offered and (declares_read_only(offered.tool) or _changes_nothing_lost(offered.tool))):
        return call.raw_arguments
    fields = complete_fields(call.raw_arguments)
    if fields is None:
        return call.raw_arguments
    logger.info("Kept the arguments of %s written whole before the reply was stopped: %s", call.name, sorted(fields))
    return json.dumps(fields, ensure_ascii=False)


def _prepared(
    name: str, arguments: str, call_id: str, toolbox: Toolbox, task: str | None, asked_for: str | None
) -> ToolCallRequest:
    """A call as it will be made: of the tool its arguments were written for (``Toolbox.meant``), unless it is
    the tool the bridge asked for by name, with them prepared as they will be sent (``Toolbox.prepared``). Asked
    for ``git_show`` after ``git_diff`` against HEAD returned nothing, the 0.5B wrote it with ``git_diff``'s
    arguments; taken for ``git_diff``, it was the call already made."""
    meant = name if name == asked_for else toolbox.meant(name, arguments, task)
    return ToolCallRequest(id=call_id, name=meant, arguments=toolbox.prepared(meant, arguments, task))


def _unfit(calls: list[ToolCallRequest], toolbox: Toolbox) -> frozenset[str]:
    return frozenset(c.id for c in calls if toolbox.incomplete_read(c.name, c.arguments))


def _echoed_error(text: str, messages: list[dict[str, Any]]) -> bool:
    """Whether a reply is only a tool's error, word for word: after "there is no tool named 'copy_file'", the
    1.5B replied with that error, which would have been the task's answer."""
    said = squeezed(text)
    return said.startswith("Error: ") and any(
        m.get("role") == "tool" and squeezed(str(m.get("content"))) == said for m in messages
    )


def _final(reply: Reply, run: _Run, stop: StopReason) -> Finish:
    """The reply's text as the answer; the tool results themselves when it holds only calls."""
    text = "" if bare_call(reply.text) is not None else reply.text
    answer = text.strip() or reply.reasoning
    if answer:
        return Finish(answer, stop, reply.cut)
    logger.info("The model answered the final request with a tool call; returning the tool results instead")
    return Finish(f"{NO_ANSWER}\n\n{_results_digest(run.messages)}", "no_answer")


def _history_call(call: ToolCallRequest) -> dict[str, Any]:
    """A call as the conversation keeps it. Arguments that are not a JSON object (empty ones too) are kept
    as ``{}``: servers such as llama.cpp refuse a history holding them (HTTP 500); the tool's error shows
    them to the model."""
    try:
        arguments = call.arguments if isinstance(json.loads(call.arguments), dict) else "{}"
    except json.JSONDecodeError:
        arguments = "{}"
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


async def _execute(
    call: ToolCallRequest, toolbox: Toolbox, run: _Run, limits: LoopLimits, say: ProgressFn
) -> ToolOutcome:
    """Runs one tool call; every failure becomes the text the model gets back."""
    offered = toolbox.lookup(call.name)
    await say(f"round {run.rounds}/{limits.max_rounds} · {offered.label if offered else call.name[:100]}")
    run.seen_calls.add(_signature(call))
    arguments, error = _parse_arguments(call.arguments)
    held = None
    if error is None and offered is not None and declares_changes(offered.tool):
        if (
            held := _made_up(arguments, offered.tool, run)
            or _unread(arguments, offered.tool, run)
            or _blind(arguments, offered.tool, run)
        ):
            reading = [t.api_name for t in toolbox.tools if declares_read_only(t.tool)]
            run.held_back = HELD_BACK.format(tools=", ".join(reading)) if reading else None
            run.unwritten = (offered.api_name, _worked(run))
        else:
            held = _written_back(arguments, offered, run, toolbox) or _blank(arguments, offered.tool)
    elif error is None and offered is not None and declares_read_only(offered.tool):
        held = _guessed(call, arguments, offered, run, toolbox)
    if held and offered is not None:
        run.not_run.add((len(run.messages) - 1, call.id))
        run.records.append(ToolCallRecord(name=offered.label, ok=False, ms=0.0, error=held))
        return ToolOutcome(label=offered.label, text=f"Error: {held}", error=held, ms=0.0)
    if error is not None or offered is None:
        run.not_run.add((len(run.messages) - 1, call.id))
    if error is not None:
        label = offered.label if offered else call.name[:100]
        outcome = ToolOutcome(label=label, text=f"Error: {error}", error=error, ms=0.0)
    else:
        outcome = await toolbox.run(call.name, arguments, timeout=limits.tool_timeout, max_chars=limits.result_chars)
        retry = toolbox.without_guesses(call.name, arguments, run.task) if outcome.answered and not outcome.ok else None
        if retry is not None:
            logger.info(
                "%s failed with %s; running it again without them", outcome.label, sorted(set(arguments) - set(retry))
            )
            outcome = await toolbox.run(call.name, retry, timeout=limits.tool_timeout, max_chars=limits.result_chars)
            _rewrite_history_call(run.messages, call.id, retry)
            run.seen_calls.add(_signature(replace(call, arguments=json.dumps(retry))))
        if outcome.answered and not outcome.ok and (shape := toolbox.arguments_hint(call.name, arguments)):
            outcome = replace(outcome, text=f"{outcome.text}\n{shape}")
    run.records.append(ToolCallRecord(name=outcome.label, ok=outcome.ok, ms=outcome.ms, error=outcome.error))
    if outcome.ok and offered is not None and declares_changes(offered.tool) and not empty(outcome.text):
        # A write that returned nothing made no change to speak of: memory's create_entities of entities the graph
        # holds already returns []. After add_observations was held back and read_graph, the 0.5B created the
        # three entities it had read, and answered without the observation the task asks for.
        run.unwritten = None
    return outcome


def _made_up(arguments: dict[str, Any], tool: Tool, run: _Run) -> str | None:
    """Why a call of a tool that may change something is not run: a value it writes holds numbers or template
    slots that are in neither the task nor any result. The 1.5B wrote "2023-04-10T12:34:56Z" to a file before
    asking for the time; the 0.5B saved "made by [Your Name] on [Date]" before reading the log. Made again as it
    is, the call is a repeat: the task goes to its answer."""
    if (found := invented(arguments, _known(run))) is None:
        return None
    where, values = found
    logger.info("Did not run a call of %s: its %s holds values from nowhere: %s", tool.name, where, values)
    shown = ", ".join(values[:5])
    many = len(values) > 1
    return MADE_UP.format(where=where, values=shown, are="are" if many else "is", them="them" if many else "it")


def _guessed(
    call: ToolCallRequest, arguments: dict[str, Any], offered: OfferedTool, run: _Run, toolbox: Toolbox
) -> str | None:
    """Why a call of a tool that declares it only reads is not run, the first time it is made: a required text
    it is given holds numbers that are in neither the task nor any result, and its server has another tool that
    only reads, which may give them. Asked for the current UTC time, the 0.5B converted a time of its own ("10:00:00",
    "1630480000") from UTC to New York, and asked for the time in three cities, "14:30" from Tokyo. Made again
    as it is, the call runs: a value the model worked out (15:00 for 3 pm) costs one round."""
    signature = _signature(call)
    if signature in run.guessed:
        return None
    required = set((offered.tool.input_schema or {}).get("required") or ())
    given = {k: v for k, v in arguments.items() if k in required}
    if (found := invented(given, _known(run))) is None:
        return None
    others = [
        t.api_name
        for t in toolbox.tools
        if t.server == offered.server and t.api_name != offered.api_name and declares_read_only(t.tool)
    ]
    if not others:
        return None
    where, values = found
    logger.info("Did not run %s once: its %s holds values from nowhere: %s", offered.label, where, values)
    run.guessed.add(signature)
    run.seen_calls.discard(signature)
    tools = others[0] if len(others) == 1 else "one of " + ", ".join(others)
    run.held_back = HELD_READ.format(call=offered.api_name, where=where, tools=tools)
    many = len(values) > 1
    return GUESSED.format(where=where, values=", ".join(values[:5]), are="are" if many else "is")


def _unread(arguments: dict[str, Any], tool: Tool, run: _Run) -> str | None:
    """Why a call of a tool that may change something is not run: it writes a text from nowhere while the task
    names a file no call has read (``grounding.unread``). Asked for a copy of greeting.txt, the 1.5B wrote
    a sentence of its own to the copy. The call itself reads nothing: asked to save the latest commit's author,
    the 1.5B saved "The latest commit in /tmp/.../repo was made by the author of this commit." unread."""
    if (found := unread(run.task, arguments, _calls_made(run.messages, run.not_run))) is None:
        return None
    where, places = found
    logger.info("Did not run a call of %s: its %s is from nowhere, and no call has read %s", tool.name, where, places)
    return UNREAD.format(where=where, places=" or ".join(places), them="them" if len(places) > 1 else "it")


def _blind(arguments: dict[str, Any], tool: Tool, run: _Run) -> str | None:
    """Why a call of a tool that edits in place (``_edits_in_place``) is not run: it changes a place the task
    names that no call has read, with a text from nowhere (``grounding.blind``). Asked to remove a line of
    notes.txt, the 1.5B edited the file unread."""
    if not _edits_in_place(tool):
        return None
    if (found := blind(run.task, arguments, _calls_made(run.messages, run.not_run))) is None:
        return None
    where, place = found
    logger.info("Did not run a call of %s: it changes %s unread, and its %s is from nowhere", tool.name, place, where)
    return BLIND.format(where=where, place=place)


_LOOKED_FOR = frozenset({"old", "search", "find"})
"""Words in the name of an edit's text to look for (``oldText``, ``search``, ``find_text``)."""


def _blank(arguments: dict[str, Any], tool: Tool) -> str | None:
    """Why a call of a tool that edits in place (``_edits_in_place``) is not run: a text it looks for (under a name
    with ``old``, ``search`` or ``find`` in it, as ``oldText``) is only white space, which matches the first line
    break or blank in the file, wherever it is. Asked to remove the second line of notes.txt, the 1.5B read the
    file, then replaced ``"\\n"`` with nothing, which joined the two lines into one."""
    if not _edits_in_place(tool):
        return None
    where = next((w for w, v in strings(arguments) if v and not v.strip() and _LOOKED_FOR & set(name_words(w))), None)
    if where is None:
        return None
    logger.info("Did not run a call of %s: its %s is only white space", tool.name, where)
    return BLANK.format(where=where)


def _edits_in_place(tool: Tool) -> bool:
    """Whether a tool declares it may destroy something and is not idempotent, as ``edit_file``."""
    hints = tool.annotations
    return hints is not None and hints.destructive_hint is not False and hints.idempotent_hint is False


def _written_back(arguments: dict[str, Any], offered: OfferedTool, run: _Run, toolbox: Toolbox) -> str | None:
    """Why a call of a tool that may change something is not run: it writes back, unchanged, what a call read
    from the same place, or, once a change has worked on another server, only a part of it
    (``grounding.written_back``). After saving a contact in the knowledge graph, the 1.5B wrote the text it
    had read from contact.txt back to contact.txt, and once the contact's name alone, cutting the file."""
    made, elsewhere = _calls_made(run.messages), sorted(_changed_on(run, toolbox) - {offered.server})
    if found := written_back(arguments, made):
        where, read = found
        held = WRITTEN_BACK.format(where=where, call=read.name)
    elif elsewhere and (found := written_back(arguments, made, parts=True)):
        where, read = found
        held = WRITTEN_PART.format(where=where, call=read.name, servers=" and ".join(elsewhere))
    else:
        return None
    logger.info("%s %s (%s)", offered.label, held, read.call[:200])
    return held


def _rewrite_history_call(messages: list[dict[str, Any]], call_id: str, arguments: dict[str, Any]) -> None:
    """The call as it finally ran, in the reply the conversation keeps (not sent yet, so the prompt cache
    is unaffected): the model reads the arguments that worked next to their result."""
    for entry in messages[-1].get("tool_calls") or ():
        if entry["id"] == call_id:
            entry["function"]["arguments"] = json.dumps(arguments, ensure_ascii=False)


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


def _writing(where: str, say: ProgressFn) -> Callable[[Progress], Awaitable[None]]:
    """Progress lines while the model writes, e.g. ``round 2/25 · writing, 312 tokens, 28 tok/s``, and before its
    first token, ``round 1/25 · waiting for the first token, 10 s``."""

    async def report(progress: Progress) -> None:
        if progress.waited > 0:
            await say(f"{where} · waiting for the first token, {progress.waited:.0f} s")
        elif progress.seconds <= 0:
            await say(f"{where} · writing")
        else:
            await say(f"{where} · writing, {progress.tokens} tokens, {progress.tokens_per_second:.0f} tok/s")

    return report


async def _answer_step(
    model: _Model,
    run: _Run,
    callable_tools: Toolbox | None = None,
    closing: str | None = None,
) -> ChatResult:
    """One request without tools: the task and the results so far, and a request for the answer (``closing``,
    when given); with ``callable_tools``, the model may instead name one more call the task needs.

    Sent as a fresh two-message conversation rather than the whole history: small models
    given their own history tend to write the last call again instead of answering.
    """
    run.rounds += 1
    system = ANSWER_PROMPT
    if callable_tools is not None:
        system += " " + CONTINUE_PROMPT.format(tools=", ".join(callable_tools.names))
    if closing is None:
        closing = ANSWER_NOW if callable_tools is None else f"{CALL_OR_ANSWER} Otherwise: {ANSWER_OR_CALL}"
    messages = [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": f"{_task_and_results(run)}\n\n{closing}",
        },
    ]
    logger.debug("Answer step: %s", messages[1]["content"])
    # A call the model may still ask for settles the reply: the 1.5B wrote its call, then explained it and wrote
    # it again, to the whole reply budget (2,048 tokens, 190 s), where the call alone takes seconds.
    offered = callable_tools.known_names if callable_tools is not None else ()
    budget = min(model.limits.reply_tokens, ANSWER_TOKENS + len(messages[1]["content"]) // 3)
    result = await model.complete(messages, "answer", offered, budget)
    logger.debug("Answer step reply: %r", result.content[:500])
    return result


async def _fitted(call: ToolCallRequest, model: _Model, toolbox: Toolbox, run: _Run) -> ToolCallRequest:
    """The call, with arguments that fit its tool's schema when they did not and the model mends them.

    A small model that names the right tool often gets its arguments' shape wrong (``create_entities``
    with the contact's ``name`` and ``job``), and given the server's refusal it answers with the error.
    Shown the call, what is wrong with it and the shape the tool takes, in a short request of its own,
    it writes the call again correctly.
    """
    problems = toolbox.shape_problems(call.name, call.arguments)
    offered = toolbox.lookup(call.name)
    attempt = 0
    limits = model.limits
    while problems and offered is not None and attempt < REPAIR_ATTEMPTS and run.rounds < limits.max_rounds:
        attempt += 1
        run.rounds += 1
        await model.say(f"round {run.rounds}/{limits.max_rounds} · mending the arguments of {offered.label}")
        messages = [
            {"role": "system", "content": REPAIR_PROMPT},
            {
                "role": "user",
                "content": f"{_task_and_results(run)}\n\n"
                f'The next call:\n{{"name": "{offered.api_name}", "arguments": {call.arguments}}}\n\n'
                "What is wrong with its arguments:\n"
                + "\n".join(f"- {p}" for p in problems)
                + f"\n\n{offered.api_name} takes: {offered.takes()}\n\n"
                "Write this call again with the arguments it takes, filled in from the task and the results above.",
            },
        ]
        # A call written again is about as long as the call itself: a reply much longer is a runaway (the 0.5B
        # filled an observation list with made-up dates until the whole reply budget).
        budget = min(limits.reply_tokens, MEND_TOKENS + len(call.arguments) // 2)
        result = await model.complete(messages, "mending", toolbox.known_names, budget)
        run.add(result)
        found, _ = extract_tool_calls(result.content, toolbox.known_names)
        again = next((c for c in found if toolbox.lookup(c.name) is offered), None)
        if again is None:
            break
        arguments = toolbox.prepared(call.name, again.raw_arguments, run.task)
        if _parse_arguments(arguments)[1] is not None:
            break
        problems = toolbox.shape_problems(call.name, arguments)
        if not problems:
            arguments = toolbox.without_added(call.name, call.arguments, arguments, _known(run))
            logger.info("Mended the arguments of %s: %s", offered.label, arguments[:300])
            run.seen_calls.add(_signature(call))  # written the same way again, it is a repeat, not mended again
            return replace(call, arguments=arguments)
    return call


async def _covering(finish: Finish, model: _Model, toolbox: Toolbox, run: _Run) -> Finish:
    """The answer, or the answer to one more request when it leaves out part of the results, if that one
    gives more of them:

    - the results of one tool called for several items that it says nothing of (``grounding.left_out``): the
      request shows the answer and names them. The 1.5B fetched the time in three cities and answered with
      Tokyo's alone;
    - numbers of a record it gives only some of (``grounding.values_left_out``): the request names them;
    - all of them, when it describes the calls instead (``grounding.described``);
    - what the calls did, when it tells the user to make calls that were made (``grounding.instructs``).

    The first three judge only what read-only tools return: a write's result is a receipt, which "Done."
    answers."""
    if finish.stop == "no_answer":
        return finish
    # Named as the tools are offered: a model may call ``memory.create_entities`` and name ``create_entities``.
    every = [replace(m, name=t.api_name) if (t := toolbox.lookup(m.name)) else m for m in _calls_made(run.messages)]
    made = [m for m in every if (t := toolbox.lookup(m.name)) and declares_read_only(t.tool)]
    if told := instructs(finish.answer, every, toolbox.names):
        await model.say(f"the answer tells the user to call {', '.join(told)}, called already · asking again")
        closing = INSTRUCTED

        def better(again: str) -> bool:
            return not instructs(again, every, toolbox.names)

    elif missing := left_out(finish.answer, run.task, made):
        await model.say(f"the answer leaves out {len(missing)} of the results · asking again")
        closing = LEFT_OUT.format(answer=_shown(finish.answer), calls=" and ".join(m.call for m in missing))

        def better(again: str) -> bool:
            return len(left_out(again, run.task, made)) < len(missing)

    elif values := values_left_out(finish.answer, made):
        await model.say(f"the answer leaves out {len(values)} of a result's numbers · asking again")
        closing = VALUES_LEFT_OUT.format(values=" and ".join(f"{field} {number}" for field, number in values))

        def better(again: str) -> bool:
            return all(gives(again, number) for _, number in values)

    elif described(finish.answer, run.task, made):
        await model.say("the answer describes the calls instead of their results · asking again")
        closing = DESCRIBED

        def better(again: str) -> bool:
            return bool(results_words(run.task, made) & words(again))

    else:
        return finish
    result = await _answer_step(model, run, closing=closing)
    run.add(result)
    again = split_reasoning(result.message)[1].strip()
    if again and bare_call(again) is None and better(again):
        return Finish(again, finish.stop, result.stats.cut)
    logger.info("Kept the first answer: the one asked again leaves out as much")
    return finish


def _task_and_results(run: _Run) -> str:
    """The opening of a request made outside the conversation (the answer step, mending a call): the task,
    then the calls made for it with their results (``_results_digest``)."""
    return f"Task: {run.task}\n\nTool calls and their results:\n\n{_results_digest(run.messages, run.not_run)}"


def _results_digest(messages: list[dict[str, Any]], not_run: Collection[tuple[int, str]] = ()) -> str:
    """Every tool call made so far as ``name arguments:`` and its result, with how many records it lists
    (``grounding.records``), or that it returned nothing (``grounding.empty``), in order; failed calls last,
    in one line each.

    Calls in ``not_run`` (of a tool that does not exist, held back, not JSON) are left out once a later call
    has worked: what they were told is done with, and their arguments, made up, are copied again. Shown the
    ``create_entities`` call it had written before reading the log, and why it was not run, the 1.5B wrote that
    call again, described the task, or called ``git_log`` or ``read_graph``, in 13 of 13 replies; without it, it
    called ``create_entities`` for the log's author in 3 of 5. After a made-up ``copy_file`` and a held write of
    "This is a copy of greeting.txt", then the read of greeting.txt, it wrote the copy in 2 of 5 replies (the held
    write again in 2); without them, in 5 of 6 (3 as the call alone)."""
    made = _calls_made(messages, not_run)
    worked = max((i for i, m in enumerate(made) if m.ran and m.ok), default=-1)
    done: list[str] = []
    failed: list[str] = []
    for index, call in enumerate(made):
        if not call.ran and index < worked:
            continue
        if call.ok and empty(call.result):
            done.append(f"{call.call}: returned nothing.")
        elif call.ok:
            count, kinds = records(call.result), file_kinds(call.result)
            heading = f"{call.call} ({kinds}):" if kinds else f"{call.call}:"
            done.append(f"{heading}\n{call.result}" + (f"\n({count} records)" if count else ""))
        else:
            failed.append(f"- {call.call}: {call.result.splitlines()[0][:300]}")
    if failed:
        done.append("Calls that failed:\n" + "\n".join(failed))
    return "\n\n".join(done) or "(no tool was called)"


def _calls_made(messages: list[dict[str, Any]], not_run: Collection[tuple[int, str]] = ()) -> list[Made]:
    """Every tool call in the conversation with its result, in order. Those in ``not_run`` reached no tool;
    those with no result yet (this round's, while they are judged) have not run: a call names a place by its own
    arguments, and reads nothing.

    Results are matched within their round: some servers number call ids from 0 every round.
    """
    made: list[Made] = []
    for index, message in enumerate(messages):
        calls = message.get("tool_calls") or ()
        following = messages[index + 1 : index + 1 + len(calls)]
        results = {m.get("tool_call_id"): m["content"] for m in following if m.get("role") == "tool"}
        for call in calls:
            function = call["function"]
            result = results.get(call["id"])
            ran = result is not None and (index, call["id"]) not in not_run
            ok = result is not None and not result.startswith("Error: ")
            made.append(Made(function["name"], function["arguments"], result or "(no result)", ok, ran=ran))
    return made


def _signature(call: ToolCallRequest) -> str:
    try:
        arguments = json.dumps(json.loads(call.arguments or "{}"), sort_keys=True)
    except json.JSONDecodeError:
        arguments = call.arguments
    return f"{call.name}\x00{arguments}"


async def no_progress(_: str) -> None:
    """A ``ProgressFn`` that reports nowhere."""
