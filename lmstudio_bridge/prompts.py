"""What the bridge says to the model: the system prompts, and the closings of the requests it makes outside the
conversation (the answer step, mending a call) and of the results of calls it does not run.

Where replays on the small models chose a wording, its docstring gives them. A change here changes what models
do: measure it with ``bench.live_tasks`` on both small models before keeping it.
"""

SYSTEM_PROMPT = """\
You complete the user's task by calling the tools you are given; they come from these MCP servers: {servers}.
- Call a tool whenever the task needs information or an action. Use the tools' exact names and pass arguments as JSON that matches their parameters.
- Pass only the arguments the task gives you a value for, and the required ones; leave every other optional parameter out.
- When the task needs a tool for several items, or several calls that do not depend on each other's results, make all of those calls in one reply.
- Read each tool result, then call the next tool you need, or give your final answer.
- A tool result that starts with "Error:" means the call failed: fix the arguments or try another tool.
- When the task is done, answer in plain text without calling any tool, and include the concrete results the user asked for (values, names, text)."""
ANSWER_PROMPT = """\
You write the final answer to the user's task. The tool calls made for it, and their results, are in the user's message. \
No more tools can be called. Answer in plain text, using only facts from those results: \
give the concrete values the task asks for (numbers, names, dates, text). \
If the results do not settle the task, say what is missing."""
"""The answer step's system prompt. It holds no example: small models repeat an example's
facts as if they were the answer."""
CONTINUE_PROMPT = """Only if the task needs another tool call that was not made yet (the same tool for another item the task names, or a change the task asks for), reply with nothing but that call, as JSON: {{"name": "TOOL", "arguments": {{...}}}}, where TOOL is one of: {tools}."""
"""Added to the answer step after calls written as text: a task may need several, one per reply."""
ANSWER_NOW = "Answer the task now in sentences that give the values from the results for every item it asks about."
"""Closes the last answer step, which may not call. Told only to answer "with the values that answer it", the
0.5B gave one value of several (Chicago's humidity, not its temperature; the first line of a note), or a
count it made up; asked for sentences about every item, it names them. Replayed on the 0.5B's last answer
steps of a full run: 17 of 28 right, against 12."""
ANSWER_OR_CALL = "answer the task now, with the values from the results that answer it."
"""The answer half of the answer step that may still call. Asked there for a full sentence, the 1.5B named the
commit's author in one instead of writing the call that saves them."""
CALL_OR_ANSWER = (
    "If the task asks for something no call above has done yet (another item it names, or a change such as "
    "writing, saving or adding), reply with only that call, as JSON."
)
"""Closes the answer step that may still ask for a call: a model told only to answer names the values it
read (the person to save, the time to write) and stops short of the change the task asks for."""
REPAIR_PROMPT = 'You correct one tool call so that its arguments match what the tool takes. Reply with only the corrected call, as JSON: {"name": "TOOL", "arguments": {...}}.'
"""The system prompt of a request that mends a call whose arguments do not fit its tool's schema."""
LEFT_OUT = (
    "An answer written before: {answer}\n\nThat answer leaves out the results of {calls}. "
    "Answer the task again in sentences that give the values from the results, as the results write them, "
    "for every item it asks about."
)
"""Closes the answer step asked again when the answer says nothing of a result it should cover
(``grounding.left_out``). Shown its own answer, the 1.5B gave all three cities' times where it had given
Tokyo's alone, in the form the results write them; told only which results were left out, it turned
them into 12-hour times, wrongly, and so did it shown its answer when Tokyo's hour was 10 or 11. Replayed on
those three answer steps, asked for the values "as the results write them", it gave all three as written."""
VALUES_LEFT_OUT = ANSWER_NOW.removesuffix(".") + ", {values} included."
"""Closes the answer step asked again when the answer gives some of a record's numbers, not all
(``grounding.values_left_out``). Replayed on the 0.5B's last answer step in ``weather_chicago``, which had
answered "light rain / drizzle with an humidity of 82%": closings naming what was left out gave the temperature
in 3 of 5 forms, this one among them; showing the answer and what it left out, as ``LEFT_OUT`` does, gave the
same answer again (3 of 3)."""
DESCRIBED = ANSWER_NOW.removesuffix(".") + ": the values themselves, not a description of the calls."
"""Closes the answer step asked again when the answer describes the calls instead of giving what they returned
(``grounding.described``). Replayed on the 0.5B's last answer steps in three runs of ``fs_yaml_search``, which had
described the search: this closing gave the file's name in 3 of 3; the usual closing described the search
again, and ``LEFT_OUT`` (the answer shown, and the call named) gave the same answer again in 3 of 3."""
INSTRUCTED = "Answer the task now in sentences that say what the calls above did and what they returned."
"""Closes the answer step asked again when the answer tells the user to make calls that were made
(``grounding.instructs``). Replayed on six such answers of the 1.5B, three in ``memory_add_fact`` and three in
``contact_to_memory`` ("you would need to call the `create_entities` tool with the following arguments"),
this closing gave what was done in 6 of 6 ("The tool then created an entity in the knowledge graph with the
name "Linus Pauling""). On the first of them, shown its answer and told the calls were made, it gave the same
answer again; told that the calls were made and no one needs to make them again, it listed them with their
arguments; asked to say what was done, in the past tense, it said so too (tried once)."""
NO_SUCH_TOOL = "There is no tool named {name}."
"""Opens the last answer step after the model made up a call in the answer step (``agent.decide``)."""
CHANGE_INSTEAD = "If the task needs a change, reply with only the call that makes it, as JSON: one of {tools}."
"""Follows ``NO_SUCH_TOOL`` in the answer step asked again after a made-up call (``agent._change_instead``).
Replayed on the answer steps that followed the read of the file to copy, where the 1.5B had called ``copy_file``
again (2 runs) and the 0.5B had read the file again (1 run): each wrote the copy with ``write_file``, the 1.5B
with or without ``edit_file`` and ``move_file`` in the list. With the same words and no tools named, the 1.5B
read the file again; with the usual closing, it said the task cannot be done."""
SEARCH_INSTEAD = (
    "The {call} call failed. Reply with only the {search} call that finds {what}, as JSON: "
    '{{"name": "{search}", "arguments": {{...}}}}.'
)
"""Closes the answer step after a call that only reads failed, on a server with a search tool not used yet
(``agent._search_instead``); ``what`` is the file's name the call was given, when it was given one. Replayed on
the answer steps after a read of a guessed ``project/settings.ini`` failed:

- "If search_files can find what it looked for, reply with only that call": the 1.5B called it in 4 of 4, three
  for ``settings.ini``, one for the file's content (``host=.*``); the 0.5B read the same path again.
- "Reply with only the search_files call that finds what it looked for", with the call's shape: the 0.5B called
  it in 4 of 4 (and live, 3 of 3), the 1.5B searched for the content in 2 of 3 live runs.
- This closing, naming ``settings.ini``: the 1.5B searched for it in 8 of 8 replies, the 0.5B called the search
  in 8 of 8, and gave its path (``_split`` then searches its folder) in 5.
- "If search_files can find settings.ini, reply with only that call": the 1.5B 8 of 8, the 0.5B 3 of 8."""
FOUND_SINCE = (
    "The {call} call failed, and {search} has found {found} since. If the task needs what it holds, reply with "
    "only the call that reads it, as JSON. Otherwise: " + ANSWER_OR_CALL
)
"""Closes the answer step after a search found paths, when a read had failed before it (``agent._found_since``);
``found`` names them. Replayed on the 1.5B's answer step with the found settings.ini: saying only that the search
"has found a path since", the read of it in 3 of 4 replies, against 2 of 4 with the usual closing and 1 of 4
saying the search "was called after it". The 0.5B, told only "a path", read its guessed path again in 4 of 4;
told the path, it read that in 4 of 4."""
NOT_CALLED = (
    "The task also names {items}, and no call above is for {them}. Reply with only the call for {them}, as JSON."
)
"""Closes the answer step asked again when the task lists items together and a call was made for some
of them only (``agent._not_called``). Replayed on the answer steps where the 1.5B had fetched New York's weather
alone and answered "33", and where the 0.5B had read api.env alone: 8 of 8 replies were the call for
the item named. Naming the tool instead ("the get_current_time call") does not help: asked for it for London
and New York after Tokyo's time, the 0.5B fetched Tokyo's time again in 6 of 6 replays, and the 1.5B, asked for
"the get-structured-content call" for Los Angeles, wrote its arguments alone as the answer."""
HELD_BACK = (
    "The write above was not run. Reply with only the call that gives the values to write, as JSON: one of {tools}."
)
"""Closes the answer step after a write ``agent._made_up`` did not run. Replayed on the 1.5B's answer step after
its write of a made-up time: 4 of 5 replies called ``get_current_time``, where the usual closing had it
write the same time again."""
GUESSED = "not run: its {where} holds {values}, which {are} in neither the task nor any tool result."
"""The result of a read ``agent._guessed`` does not run."""
HELD_READ = "The {call} call above was not run. Reply with only the call that gives its {where}, as JSON: {tools}."
"""Closes the answer step after a read ``agent._guessed`` did not run."""
WRITTEN_BACK = (
    "not run: the {where} to write is what {call} returned above, unchanged; written back where it was read, "
    "it changes nothing the task asks for."
)
"""The result of a call ``agent._written_back`` does not run."""
WRITTEN_PART = (
    "not run: the {where} to write is only part of what {call} returned above; written back where it was read, "
    "it would cut that text, and the task's change was already made on {servers}."
)
"""The result of a write ``agent._written_back`` does not run because it would cut a file read in the task
after the change was made on another server."""
UNFOUNDED = (
    "An answer written before: {answer}\n\nIt gives {values}, which no result above holds. If the task needs "
    "a call that gives {them}, reply with only that call, as JSON. Otherwise: answer the task again with only "
    "values from the results."
)
"""Closes the answer step asked again when the answer holds numbers or template slots from nowhere
(``agent._unfounded``)."""
MADE_UP = (
    "not run: the {where} to write holds {values}, which {are} in neither the task nor any tool result. "
    "Call the tool that gives {them} first (the time, a file, a record), then write what it returns."
)
"""The result of a call ``agent._made_up`` does not run."""
UNWRITTEN = (
    "The {name} call the task needs has not been made. Reply with only that call, as JSON, with the values from "
    "the results."
)
"""Closes the answer step asked again when the model answers while a write held back was never made
(``agent._unwritten``); the held call is no longer shown by then (``agent._results_digest``). Replayed on the
1.5B's answer step that gave the time it had fetched instead of writing it to stamp.txt: the closing "The
write_file call above was not run. Reply with only that call again" and two longer ones each gave the write of
that time; the usual closing gave the time again. On the 1.5B's answer step after the log of the latest commit,
with the held ``create_entities`` call left out, this closing gave ``create_entities`` for Grace Hopper in 5 of 5
replies, and so did "The create_entities call was not run. Reply with only that call again"."""
UNMADE = "The {name} call was not made. If the task needs it, reply with only that call, as JSON, with the values from the results."
"""Closes the answer step asked again when the answer names a change it did not make (``agent._unmade``). Replayed
on the 1.5B's answer step that had said "You would then need to call the `create_entities` tool", this closing
gave the call; showing the answer and asking for the call again gave the same answer."""
LEFT_TO_DO = (
    "No call above has made a change. If the task asks for one, reply with only the call that makes it, as JSON: "
    "one of {tools}. Otherwise: " + ANSWER_OR_CALL
)
"""Closes the answer step asked again when the answer tells its reader what is left to do and a server not used
yet has tools that add (``agent._unmade``). Replayed on the 1.5B's answer step that had said "You would then need
to add this information to the knowledge graph as a person": ``create_entities`` in 3 of 6, with memory's three
tools that add named; naming none, 3 of 6 and once ``git_commit``."""
UNREAD = (
    "not run: the {where} to write is in neither the task nor any tool result, and no call has read {places}, "
    "which the task names. Call the tool that reads {them} first, then write what it returns."
)
"""The result of a call ``agent._unread`` does not run."""
BLIND = (
    "not run: it changes {place}, which no call has read, and its {where} is in neither the task nor any tool "
    "result. Call the tool that reads {place} first, then make the change with what it returns."
)
"""The result of an edit ``agent._blind`` does not run."""
BLANK = (
    "not run: its {where} is only white space, which matches the first line break or blank in the file, wherever "
    "it is. Give the whole text to change as the file holds it."
)
"""The result of an edit ``agent._blank`` does not run."""
READ_INSTEAD = (
    "The {name} call above {what}. Reply with only the call that gives what the task asks about, as JSON: {tool}."
)
"""Closes the answer step when the model, asked for the answer, writes again a read that returned nothing, or that
failed while nothing was found (``agent._read_instead``). Replayed on the 0.5B's answer steps after ``git_diff``
against HEAD returned only its heading, asked whether any commit message mentions a database: with git's other
reads named (not the ``git_diff_*`` ones) and git's read-only tools offered, ``git_diff`` again in 5 of 6 replies;
with ``git_log`` named first, ``git_log`` in 7 of 8 (once ``git_show``); with ``git_log`` named alone, in 5 of 6
(once its name alone), and in 6 of 6 asked what changed in the latest commit. With "If none of them does: answer the
task now." added to the list, ``git_log`` in 1 of 6."""
