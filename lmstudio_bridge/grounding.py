"""Where the words a model writes come from: the task, the tool results, or nowhere.

Small models write values no call gave them (a time they never asked for, the port of a file they never
read, the file a commit changed when its diff was empty) and answer with one result of several. Both show
in the words themselves: a number or a file's name in neither the task nor any result was made up; a result
none of whose own words are in the answer was left out. They also miscount what a result lists: ``records``
counts it for them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

_WORD = re.compile(r"[^\W\d_]{3,}|\d{2,}")
_COMMON = frozenset(
    {"the", "and", "are", "but", "for", "from", "has", "have", "its", "not", "that", "this", "was", "were"}
    | {"will", "with", "you", "your", "all", "any", "can", "into"}
)
"""Words any sentence holds: they tell nothing of where a text comes from."""
LONG_NUMBER = 5
"""Digits from this many on are found in the results as part of a longer run, too."""


def words(text: str) -> set[str]:
    """The text's words: runs of letters (three or more) or of digits (two or more), in lower case, without
    the commonest words."""
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _COMMON}


_COMPOUND = re.compile(r"\w+(?:[-:+./]\w+)+")
"""A value written as parts joined by punctuation: ``2026-12-02T05:01:42+00:00``, ``10.0.0.1``, ``v1.2``."""


def _terms(text: str) -> set[str]:
    """The text's words, and its compound values whole, in lower case. The results of one tool for several
    items can share every part of their values: at 05:01 UTC, London's ``05:01:42+00:00`` and New York's
    ``00:01:42-05:00`` hold the same numbers, yet each time whole is its own."""
    return words(text) | {m.lower() for m in _COMPOUND.findall(text)}


@dataclass(frozen=True)
class Made:
    """One call made for the task, as the answer step shows it, and its result."""

    name: str
    arguments: str
    """As the call was written: JSON text."""
    result: str
    ok: bool
    ran: bool = True
    """False for a call that reached no tool: one the model made up, one the bridge held back, or one with no
    result yet."""

    @property
    def call(self) -> str:
        """``name {arguments}``."""
        return f"{self.name} {self.arguments or '{}'}"


def invented(arguments: dict[str, Any], known: str) -> tuple[str, list[str]] | None:
    """The first value in ``arguments`` that holds values from nowhere (``from_nowhere``), as ``(where, those)``,
    ``where`` being the argument's path (``content``, ``entities[0].observations[1]``)."""
    for where, value in strings(arguments):
        if found := from_nowhere(value, known):
            return where, found
    return None


def from_nowhere(text: str, known: str) -> list[str]:
    """The numbers (``unfounded_numbers``) and the template slots (``placeholders``) of the text that are in
    neither the task nor any result (``known``)."""
    return unfounded_numbers(text, known) + placeholders(text, known)


def unfounded_numbers(answer: str, known: str, counts: bool = False) -> list[str]:
    """The numbers in the answer that are in neither the task nor any result (``known``), in order: a time,
    a port or a year the model made up. Counts are not judged: a single digit, or one number under 100
    alone ("12 commits" is read off a log, not copied from it), unless ``counts``: when no call gave a result,
    there is nothing to count (a numbered list's marks aside). Every call on a folder failed, and the 0.5B
    answered "There are 1 CSV files"."""
    seen = words(known) | set(_DIGITS.findall(known)) if counts else words(known)
    numbers = (
        _DIGITS.findall(_LIST_MARK.sub(" ", answer)) if counts else [w for w in _WORD.findall(answer) if w.isdigit()]
    )
    found = list(dict.fromkeys(w for w in numbers if w not in seen and not _quoted(w, known)))
    return [] if not counts and len(found) == 1 and len(found[0]) < 3 else found


_DIGITS = re.compile(r"\d+")
_LIST_MARK = re.compile(r"^\s*\d+[.)]\s", re.M)
"""A numbered list's mark (``1. ``): no value."""
_DENIAL = re.compile(r"\b(?:no|not|none|nothing|never|cannot|empty|unable|failed|missing|without)\b|n't\b", re.I)


def denies(answer: str) -> bool:
    """Whether the answer says something is not there, not so, or not done ("Alan Turing is not in the knowledge
    graph", "The file does not exist"): what calls that found nothing can tell."""
    return bool(_DENIAL.search(answer))


_PLACEHOLDER = re.compile(
    r"(?<![\w\]!])\[[^\W\d_][\w'’-]*(?: [^\W\d_][\w'’-]*){0,4}\](?![(\[:])"
    r"|<(?:your|insert|enter)[ _-][^<>\n]{1,40}>",
    re.IGNORECASE,
)
"""What may be a template's slot (``placeholders`` judges the case): ``[Your Name]``, ``[Date]``,
``<your-api-key>``; not a link's text (``[docs](url)``), an index (``items[0]``), a checkbox (``[x]``) or a number
(``[1]``)."""
_SLOT_WORDS = frozenset({"your", "insert", "enter"})


def placeholders(text: str, known: str) -> list[str]:
    """The template slots in the text that are in neither the task nor any result (``known``), in order: asked
    who made the latest commit, the 0.5B saved "This commit was made by [Your Name] on [Date]." before reading
    the log. A slot in square brackets starts with a capital or names the reader ("[your name]"): a lower-case
    word alone, such as an INI file's ``[server]``, is not one."""
    seen = known.lower()
    found = []
    for slot in _PLACEHOLDER.findall(_FENCED.sub(" ", text)):
        inner = slot[1:-1]
        if (slot.startswith("[") and len(inner) < 2) or slot.lower() in seen:
            continue
        if slot.startswith("<") or inner[0].isupper() or _SLOT_WORDS & set(inner.lower().split()):
            found.append(slot)
    return list(dict.fromkeys(found))


_NAME = re.compile(r"(?<![\w.-])[\w-]{2,}(?:\.[\w-]+)*\.[a-z][A-Za-z0-9]{0,5}(?![\w(-])")
"""A file's or a host's name, or a path's last part: ``README.md``, ``config.json.bak``, ``docs.example.com``; not
``e.g``, a version, two sentences with no space between (``Done.It``), or a call such as ``file.read()``."""
_FENCED = re.compile(r"```.*?(?:```|$)", re.DOTALL)


def unfounded_names(answer: str, known: str) -> list[str]:
    """The names of files or hosts in the answer that are in neither the task nor any result (``known``), in
    order: the file a model says a commit changed when the diff it got was empty; then its proper names
    (``proper_names``) and template slots (``placeholders``) from nowhere. Code blocks are not judged: a script
    the model writes names files of its own."""
    seen = known.lower()
    found = [m for m in _NAME.findall(_FENCED.sub(" ", answer)) if m.lower() not in seen]
    return list(dict.fromkeys(found + proper_names(answer, known) + placeholders(answer, known)))


_PERSON = re.compile(r"(?<![\w'’-])[A-Z][a-z]+(?: [A-Z][a-z]+)+(?![\w'’-])(?!\**`?\**:)")
"""Words that each start with a capital, two or more, not a label (``Commit Message:``)."""
_OPENING = frozenset(
    {"the", "a", "an", "in", "on", "at", "it", "its", "this", "that", "there", "here", "yes", "no", "and", "or"}
    | {"but", "for", "to", "of", "by", "with", "from", "as", "is", "was", "so", "then", "also", "both", "all"}
)
"""Words that open a sentence: "In Tokyo" holds one name."""


def proper_names(text: str, known: str) -> list[str]:
    """The names of people, places or things (two or more words that each start with a capital) in the text that
    are in neither the task nor any result (``known``), in order: asked who made the latest commit, the 0.5B
    answered "John Doe" without reading the log. A name written apart (``Read Graph`` for ``read_graph``) or
    joined (``Entity Type`` for ``entityType``) is the same name, and so is one of three words or more whose
    initials are a word of the results (``Daylight Saving Time`` for ``is_dst``); headings, code blocks and
    template slots (``placeholders``) are not judged here."""
    plain = _plain(known)
    joined = plain.replace(" ", "")
    lines = _PLACEHOLDER.sub(" ", _FENCED.sub(" ", text)).splitlines()
    body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    found = []
    for match in _PERSON.findall(body):
        name = match.split()
        while name and name[0].lower() in _OPENING:
            name = name[1:]
        initials = "".join(word[0] for word in name).lower()
        if len(name) > 2 and f" {initials} " in plain:
            continue
        if len(name) > 1 and _plain(" ".join(name)) not in plain and "".join(name).lower() not in joined:
            found.append(" ".join(name))
    return list(dict.fromkeys(found))


def _quoted(number: str, known: str) -> bool:
    """A long number cut out of a longer run in the results (an answer quotes the start of an ID)."""
    return len(number) >= LONG_NUMBER and number in known


def strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every text in a value, at any depth, with its path (``content``, ``edits[0].oldText``)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, f"{where}[{index}]")


def left_out(answer: str, task: str, made: Sequence[Made]) -> list[Made]:
    """The results of one tool called for several items (three cities, two files) that the answer says
    nothing of: none of a result's own terms (those in neither the task nor another result) is in it.

    Other results are not judged: a count or a "no" answers a result without quoting it, and a call that
    led nowhere (a listing before the read) is not an item."""
    results = [m for m in made if m.ok]
    names = [m.name for m in results]
    results = [m for m in results if names.count(m.name) > 1]
    said = _terms(answer)
    asked = _terms(task)
    missing = []
    for index, one in enumerate(results):
        others = set().union(*(_terms(m.result) for i, m in enumerate(results) if i != index))
        own = _terms(one.result) - asked - others
        if own and not own & said:
            missing.append(one)
    return missing


def described(answer: str, task: str, made: Sequence[Made]) -> list[Made]:
    """The calls an answer names by their tool's name while it gives nothing any call returned (none of the
    results' own words, those not in the task): it describes the calls instead of answering with their
    results. The 0.5B, asked for the names of the YAML files a search found, answered "The tool calls
    `search_files` with the specified path and pattern. The result is a list containing the names of the YAML
    files found in the directory."

    An answer that gives any result's word is not judged, nor one that names no call: a count or a "no"
    answers a result without quoting it."""
    own = results_words(task, made)
    if not own or own & words(answer):
        return []
    return [m for m in made if m.ok and names_tool(answer, m.name)]


_TO_THE_READER = re.compile(r"\b(?:you|we)(?:'d|'ll| would| will| can| could| should| must| need| have to)\b", re.I)
"""What an answer says its reader would, could or needs to do."""


def to_the_reader(answer: str) -> bool:
    """Whether the answer says what "you" or "we" would, could or need to do."""
    return _TO_THE_READER.search(answer) is not None


def instructs(answer: str, made: Sequence[Made], tools: Sequence[str]) -> list[str]:
    """The tools an answer tells its reader to call when every call of theirs it names has already worked: it
    names them and says what "you" or "we" would, could or need to do. Having saved Marie Curie with
    ``create_entities``, the 1.5B answered "To add to the knowledge graph that Marie Curie was born in Warsaw,
    you would need to call the "create_entities" tool with the following arguments"; read as it is written,
    the change is still to be made.

    An answer that also names a tool none of whose calls worked is not judged: it tells what is left to do."""
    if not to_the_reader(answer):
        return []
    named = [name for name in tools if names_tool(answer, name)]
    worked = {m.name for m in made if m.ok}
    return named if named and worked.issuperset(named) else []


_CHANGE_ASKED = re.compile(
    r"\b(?:write|add|remove|delete|create|copy|move|rename|save|store|record|update|edit|append|insert|replace)\b",
    re.I,
)
"""The verbs of a task that asks for a change ("Remove the second line", "... and add them to the graph")."""
_CHANGE_DONE = re.compile(
    r"\b(?:wrote|written|added|removed|deleted|created|copied|moved|renamed|saved|stored|recorded|updated|edited"
    r"|appended|inserted|replaced)\b",
    re.I,
)
"""The same verbs as an answer writes a change that was made ("has been removed", "added them")."""
_UNSURE = re.compile(
    r"\b(?:not|never|no|nothing|already|cannot|unable|failed|would|will|can|could|should|must|need|needs|to|if)\b|n't\b",
    re.I,
)
"""Words that, just before such a verb, make it no claim of this task's change: "was not added", "needs to be
removed", "was already added"."""
_CLAUSE = re.compile(r"[.;:!?\n]|,\s*(?:but|and)\b")
_QUESTION = re.compile(
    r"\s*(?:what|which|who|whom|whose|when|where|why|how|did|does|do|is|are|was|were|has|have|had)\b(?:[^.!]|\.(?!\s))*\?\s*",
    re.I,
)
"""A task that is one question about what is or was ("What did the latest commit add?"): it asks for no change."""


def asks_change(task: str) -> bool:
    """Whether the task asks for a change ("Write the time to stamp.txt"): a verb of change, and not one question
    about what is or was."""
    return _CHANGE_ASKED.search(task) is not None and not _QUESTION.fullmatch(task)


def claimed_change(task: str, answer: str) -> str | None:
    """The word by which the answer says a change the task asks for was made ("removed", "added"), if it says
    so; the caller knows whether any call made one. Without any call that changes something, the 0.5B answered
    "The plumber removed the second line of notes.txt." and "Grace Hopper made the latest commit ... and added
    them to the knowledge graph as a person.", and the 1.5B "The second line of notes.txt has been removed."
    A task that asks for no change is not judged: to "What did the latest commit add?", "It added frobnicate.py"
    tells what a commit did."""
    if not asks_change(task):
        return None
    for done in _CHANGE_DONE.finditer(answer):
        clause = _CLAUSE.split(answer[: done.start()])[-1]
        if not _UNSURE.search(" ".join(clause.split()[-4:])):
            word = done.group(0).lower()
            return "written" if word == "wrote" else word
    return None


def names_tool(text: str, name: str) -> bool:
    """Whether the text names the tool: its name as a word of its own (not ``search_files_v2``)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def results_words(task: str, made: Sequence[Made]) -> set[str]:
    """The words of the results of the calls that worked that the task does not hold."""
    return set().union(*(words(m.result) for m in made if m.ok)) - words(task)


def values_left_out(answer: str, made: Sequence[Made]) -> list[tuple[str, str]]:
    """The numbers of a record the answer gives only in part, as ``(field, number)``: a result that is one flat
    JSON object of a few fields (``{"temperature": 36, "conditions": "Light rain", "humidity": 82}``) whose
    numbers the answer gives some of, not all. The 0.5B answered "light rain with a humidity of 82%".

    An answer that gives none of a record's numbers is not judged here: it may answer with its text alone
    (conditions, a name) or not be about that record at all."""
    missing: list[tuple[str, str]] = []
    for one in made:
        numbers = _record_numbers(one.result) if one.ok else {}
        given = {key: value for key, value in numbers.items() if gives(answer, value)}
        if given and len(given) < len(numbers):
            missing += [(key, value) for key, value in numbers.items() if key not in given]
    return missing


RECORD_FIELDS = 8
"""The most fields a record may have for each of its numbers to count as part of the answer."""


_FIELD = re.compile(r"^(\w[\w -]{0,40}): *\S", re.M)
"""A line ``Key: value`` of a record written as text."""


def records(result: str) -> int:
    """How many records of one shape the result lists, when it lists two or more: a JSON array of objects, or
    text of ``Key: value`` lines where each record's lines have the same keys (a commit log). 0 otherwise.

    Shown a log of 4 commits, the 1.5B answered "5 commits" every time, numbered 1 to 4 too; told it holds 4
    records, it answered 4."""
    try:
        value = json.loads(result)
    except ValueError:
        value = None
    if isinstance(value, list):
        return len(value) if len(value) > 1 and all(isinstance(item, dict) for item in value) else 0
    keys = _FIELD.findall(result)
    if not keys:
        return 0
    count = keys.count(keys[0])
    shape, rest = divmod(len(keys), count)
    if count < 2 or rest or keys != keys[:shape] * count:
        return 0
    return count


_ENTRY = re.compile(
    r"^\s*(?:\[\w+\]\s+)?(?:\S*/)?[\w-][\w.-]*\.([A-Za-z][A-Za-z0-9]{0,7})(?:\s+\d+(?:\.\d+)?\s*[KMGT]?i?B)?\s*$", re.M
)


def file_kinds(result: str) -> str | None:
    """How many files of each kind a listing or a search result names, by extension, when it names two or more
    (one a line, as a path or name, after a tag such as ``[FILE]``, before a size): ``3 .csv files, 1 .md file``.
    Asked how many CSV files a folder holds, the 0.5B, shown its listing of three CSV files and two others
    ending in "Total: 5 files", answered 5 in 6 of 6 replies; with the kinds counted beside the call, 3 in 4 of 6."""
    kinds: dict[str, int] = {}
    for extension in _ENTRY.findall(result):
        kinds[extension.lower()] = kinds.get(extension.lower(), 0) + 1
    if sum(kinds.values()) < 2:
        return None
    ordered = sorted(kinds.items(), key=lambda kind: (-kind[1], kind[0]))
    return ", ".join(f"{n} .{ext} file{'s' if n > 1 else ''}" for ext, n in ordered)


def empty(result: str) -> bool:
    """Whether the result holds no value at all: blank, or JSON of nothing but empty lists, objects and strings
    (``{"entities": [], "relations": []}``, what memory's ``search_nodes`` finds for a name it does not have).

    Shown that JSON after a search for Alan Turing, the 0.5B answered "Alan Turing is in the knowledge graph";
    told the call returned nothing, it answered that he is not."""
    try:
        value = json.loads(result)
    except ValueError:
        return not result.strip()
    return _hollow(value)


def says_nothing(result: str) -> bool:
    """Whether the result gives nothing: ``empty``, or a heading over nothing, as git's ``git_diff`` of a tree with
    no changes (``Diff with HEAD:`` and a blank line). Asked what the latest commit changed, both small models
    then named a file and lines it changed. Such a result is shown to the model as the server wrote it: told it
    returned nothing, the 1.5B answered that the latest commit changed nothing, in 2 of 2 live runs."""
    text = result.strip()
    return empty(result) or ("\n" not in text and text.endswith(":"))


def _hollow(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_hollow(item) for item in value.values())
    if isinstance(value, list):
        return all(_hollow(item) for item in value)
    return value is None or value == ""


def _record_numbers(result: str) -> dict[str, str]:
    """The numeric fields of a flat JSON object of at most ``RECORD_FIELDS`` fields, as written in it."""
    try:
        value = json.loads(result)
    except ValueError:
        return {}
    if not isinstance(value, dict) or len(value) > RECORD_FIELDS:
        return {}
    if any(isinstance(item, dict | list) for item in value.values()):
        return {}
    return {
        str(key): json.dumps(item)
        for key, item in value.items()
        if isinstance(item, int | float) and not isinstance(item, bool)
    }


def gives(answer: str, number: str) -> bool:
    """Whether the answer gives the number as it is written: ``36`` is in "36 °F", not in "360" or "36.5"."""
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d]|\.\d)", answer) is not None


_ITEM = re.compile(
    r"""
      "[^"\n]+" | `[^`\n]+`                     # quoted
    | [\w.~-]*/[\w./~-]*\w                      # a path
    | \b[\w-]+\.[A-Za-z][A-Za-z0-9]{0,9}\b      # a file name
    | \b[A-Z][\w-]*(?:[ ][A-Z][\w-]*)*          # a name: words with capitals
    """,
    re.VERBOSE,
)
"""What a task names as one item of a list: a name, a file, a path, a quoted value."""
_BETWEEN = re.compile(r"(?:\s*,\s*(?:(?:and|or)\s+)?|\s+(?:and|or|&)\s+)(?:(?:for|in|of|at|from|on|the)\s+)?", re.I)
"""What stands between the items of a list: ``, `` / `` and `` / ``, and for `` ..."""
_PLACE = re.compile(r"(?<![\w.~/-])(?:~|\.{1,2})?/[\w./~-]*\w|\b[\w-]+\.[A-Za-z][A-Za-z0-9]{0,9}\b")
"""A path (``/srv/app``, ``~/notes``, ``./src``) or a file name, as a task names the places it is about."""


def not_called_for(task: str, made: Sequence[Made]) -> list[str]:
    """Items the task lists together (``Tokyo, London and New York``, ``api.env and web.env``) that no call
    is for, when a call was made for another of them: the model fetched one city's weather of two.

    A call is for an item when its arguments name it (``Asia/Tokyo`` names Tokyo); an item a result names is
    taken as found there (a listing that shows a file)."""
    arguments = " ".join(_plain(m.arguments) for m in made)
    seen = " ".join([arguments, *(_plain(m.result) for m in made)])
    missing: list[str] = []
    for group in _lists(task):
        if any(_names(arguments, item) for item in group):
            missing += [item for item in group if not _names(seen, item)]
    return list(dict.fromkeys(missing))


def _lists(text: str) -> list[list[str]]:
    """The lists of items the text holds: items that only ``_BETWEEN`` separates, two or more."""
    lists: list[list[str]] = []
    current: list[str] = []
    end = -1
    for match in _ITEM.finditer(text):
        if current and not _BETWEEN.fullmatch(text[end : match.start()]):
            if len(current) > 1:
                lists.append(current)
            current = []
        current.append(match.group().strip('"`'))
        end = match.end()
    if len(current) > 1:
        lists.append(current)
    return lists


def _plain(text: str) -> str:
    """Lower case, every run of other characters than letters and digits one space, a space at each end:
    ``America/New_York`` is `` america new york ``."""
    return " " + " ".join(re.findall(r"[^\W_]+", text.lower())) + " "


def _names(plain_text: str, item: str) -> bool:
    """Whether the (``_plain``) text names the item, or, for a path, its last part (``web.env``)."""
    return _plain(item) in plain_text or _plain(item.rstrip("/").rsplit("/", 1)[-1]) in plain_text


def written_back(arguments: dict[str, Any], made: Sequence[Made], parts: bool = False) -> tuple[str, Made] | None:
    """A value to write that is, unchanged, what an earlier call returned, going back where that call read it
    (another value of the write is one of that call's arguments): ``(where, that call)``. The 1.5B saved the
    person of contact.txt in the knowledge graph, then wrote contact.txt's text back to contact.txt.

    With ``parts``, also a write whose every value but the place is a part of what the call returned: the
    1.5B once wrote the contact's name alone back to contact.txt, cutting the file. The caller asks for parts
    only when the task's change was made elsewhere, since a part written back is also how a real edit
    ("remove the second line") looks. An empty value is not a part: ``edit_file``'s ``newText: ""`` removes."""
    values = list(strings(arguments))
    for one in made:
        if not one.ok or not (read := squeezed(one.result)):
            continue
        try:
            places = {value for _, value in strings(json.loads(one.arguments or "{}"))}
        except json.JSONDecodeError:
            continue
        for where, value in values:
            if squeezed(value) == read and any(v in places for w, v in values if w != where):
                return where, one
        written = [(where, squeezed(value)) for where, value in values if value not in places]
        if parts and written and len(written) < len(values) and all(v and v in read for _, v in written):
            return written[0][0], one
    return None


def unread(task: str, arguments: dict[str, Any], made: Sequence[Made]) -> tuple[str, list[str]] | None:
    """A text to write that is in neither the task nor any result, while the task names a file or path that
    no call in ``made`` that ran names, nor this write's values other than that text, and no result shows:
    ``(where, those places)``. This write, in ``made`` or not, has not run. Asked to copy
    greeting.txt, the 1.5B wrote "This is a copy of the original greeting file." to the copy without
    reading the original. A text the model composes for a place the task names alone is its own to write.
    The invented text does not name a place for itself: the 1.5B wrote "This is a copy of greeting.txt" to the
    copy with nothing read."""
    made = [m for m in made if m.ran]
    known = squeezed(" ".join([task, *(m.result for m in made if m.ok)])).lower()
    written = [(where, v) for where, v in strings(arguments) if len(v.split()) > 1]
    invented = {where: v for where, v in written if squeezed(v).lower() not in known}
    if not invented:
        return None
    own = [v for where, v in strings(arguments) if where not in invented]
    calls = " ".join([*(_plain(v) for v in own), *(_plain(m.arguments) for m in made)])
    seen = " ".join([calls, *(_plain(m.result) for m in made if m.ok)])
    places = [p for p in dict.fromkeys(_PLACE.findall(task)) if not _names(seen, p)]
    return (next(iter(invented)), places) if places else None


def blind(task: str, arguments: dict[str, Any], made: Sequence[Made]) -> tuple[str, str] | None:
    """A change to a place the task names that no call that worked has named, carrying a text that is in
    neither the task nor any result: ``(where, that place)``. Asked to remove the second line of notes.txt, the
    1.5B called ``edit_file`` with ``oldText: "\\n"`` without reading the file, and joined its two lines. A
    text the task gives is the user's own: "replace oat milk with soy milk in notes.txt" needs no read."""
    values = list(strings(arguments))
    places = [p for p in dict.fromkeys(_PLACE.findall(task)) if any(_names(_plain(v), p) for _, v in values)]
    worked = [m for m in made if m.ran and m.ok]
    named = " ".join(_plain(m.arguments) for m in worked)
    unread = [p for p in places if not _names(named, p)]
    if not unread:
        return None
    known = squeezed(" ".join([task, *(m.result for m in worked)])).lower()
    for where, value in values:
        if not value or value in task or any(_names(_plain(value), p) for p in places):
            continue
        if not value.strip() or squeezed(value).lower() not in known:
            return where, unread[0]
    return None


def squeezed(text: str) -> str:
    """The text with every run of whitespace one space, and none at the ends."""
    return " ".join(text.split())
