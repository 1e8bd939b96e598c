"""Where a model's words come from: values written from nowhere, results an answer leaves out."""

from __future__ import annotations

import json

import pytest

from lmstudio_bridge.grounding import (
    Made,
    blind,
    claimed_change,
    described,
    empty,
    file_kinds,
    instructs,
    invented,
    left_out,
    not_called_for,
    placeholders,
    proper_names,
    records,
    says_nothing,
    unfounded_names,
    unfounded_numbers,
    unread,
    values_left_out,
    words,
    written_back,
)

TASK = "Write the current UTC time to /w/project/stamp.txt."
REMOVE = "Remove the second line of /w/notes.txt."
AUTHOR = "Find out who made the latest commit in /r and add them to the knowledge graph as a person."


def test_words_are_letter_runs_and_digit_runs_without_the_commonest() -> None:
    assert words("The time is 2026-11-30T17:20:42+00:00 in London, at 5 pm.") == {
        "time", "2026", "11", "30", "17", "20", "42", "00", "london"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "known", "found"),
    [
        ({"path": "/w/project/stamp.txt", "content": "2023-04-01T12:34:56Z"}, TASK, ("content", ["2023", "04", "01", "12", "34", "56"])),
        ({"path": "/w/project/stamp.txt", "content": "2026-11-30T17:20:42Z"}, TASK + ' "2026-11-30T17:20:42"', None),
        ({"content": "This is a copy of the original greeting file."}, "Copy greeting.txt", None),  # no numbers
        ({"entities": [{"name": "Marie Curie", "observations": ["born in 1867", "two prizes"]}]}, "Marie Curie",
         ("entities[0].observations[0]", ["1867"])),
        ({"content": "3 files"}, "anything", None),  # a count
        # The 0.5B saved who made the latest commit before reading the log.
        ({"observations": [{"contents": ["made by [Your Name] on [Date]."]}]}, "task",
         ("observations[0].contents[0]", ["[Your Name]", "[Date]"])),
    ],
)  # fmt: skip
def test_a_value_is_invented_when_it_holds_numbers_from_nowhere(
    arguments: dict, known: str, found: tuple[str, list[str]] | None
) -> None:
    assert invented(arguments, known) == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("The latest commit was made by [Your Name] on [Date].", ["[Your Name]", "[Date]"]),
        ("Best regards,\n[your name]\n[Your Name]", ["[your name]", "[Your Name]"]),
        ("Set the key to <your-api-key> in <code>.env</code>.", ["<your-api-key>"]),
        ("[Author's Name] made it.", ["[Author's Name]"]),
        # Not slots: a link's text, an index, a checkbox, a number, an INI section, a slot in a code block.
        ("See [the docs](https://x.org), items[0], [x] done, [1], [ ] open.", []),
        ("[server]\nport = 8080", []),
        ("```\nname = [Your Name]\n```", []),
        # Slots the task or a result holds are theirs: a log line's level.
        ("It logged [WARNING] twice.", []),
    ],
)
def test_template_slots_from_nowhere_are_placeholders(text: str, found: list[str]) -> None:
    assert placeholders(text, "Task: check the log\n\n[WARNING] disk almost full") == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("The latest commit was made by John Doe and Jane Smith.", ["John Doe", "Jane Smith"]),
        ("Yes, Grace Hopper made it. In Tokyo it is 02:20, and The Widget Factory makes widgets.", []),
        # Tool names and keys written apart, labels, headings and code are not judged.
        ("It made the Read Graph call; its Entity Type is person.", []),
        ("**Commit Message:** Start the widget factory\n## Latest Commit Details", []),
        ("```\nauthor = John Doe\n```", []),
        # A name the results abbreviate: "is_dst": false, said as "it is not Daylight Saving Time".
        ("It is not Daylight Saving Time, says Grace Hopper.", []),
        ("It was Jane Doe Smith.", ["Jane Doe Smith"]),
    ],
)
def test_names_from_nowhere_are_people_places_or_things_no_result_names(text: str, found: list[str]) -> None:
    known = "Task: who made it, and the time in Tokyo?\n\nAuthor: Grace Hopper\n# Widget factory\nread_graph entityType"
    known += '\n{"is_dst": false}'
    assert proper_names(text, known) == found


def clock(zone: str, at: str, name: str = "get_current_time") -> Made:
    return Made(name, f'{{"timezone": "{zone}"}}', f'{{"timezone": "{zone}", "datetime": "{at}"}}', ok=True)


TOKYO = clock("Asia/Tokyo", "2026-12-01T02:20:42+09:00")
LONDON = clock("Europe/London", "2026-11-30T17:20:42+00:00")
CITIES = "What time is it in Tokyo and London?"


def test_the_results_of_one_tool_for_several_items_are_each_judged() -> None:
    assert left_out("2026-12-01T02:20:42+09:00", CITIES, [TOKYO, LONDON]) == [LONDON]
    assert left_out("It is 02:20 in Tokyo and 17:20 in London.", CITIES, [TOKYO, LONDON]) == []
    assert left_out("I do not know.", CITIES, [TOKYO, LONDON]) == [TOKYO, LONDON]


def test_a_value_given_whole_is_said_though_every_part_of_it_is_in_another_result_too() -> None:
    """At 05:01 UTC London's and New York's times hold the same numbers; only the region names are their own
    words, and the 1.5B's answer giving all three times as written was taken to leave two out."""
    times = [
        clock("Asia/Tokyo", "2026-12-02T14:01:42+09:00"),
        clock("Europe/London", "2026-12-02T05:01:42+00:00"),
        clock("America/New_York", "2026-12-02T00:01:42-05:00"),
    ]
    task = "What time is it right now in Tokyo, London and New York?"
    answer = (
        "The current time in Tokyo is 2026-12-02T14:01:42+09:00.\nThe current time in London is "
        "2026-12-02T05:01:42+00:00.\nThe current time in New York is 2026-12-02T00:01:42-05:00."
    )
    assert left_out(answer, task, times) == []
    assert left_out("2026-12-02T14:01:42+09:00", task, times) == times[1:]


def test_a_lone_result_or_results_of_different_tools_or_failed_calls_are_not_judged() -> None:
    """A count or a "no" answers a result without quoting it; a listing before a read is not an item."""
    assert left_out("There are 4 commits.", "How many commits?", [TOKYO]) == []
    assert left_out("Nothing.", CITIES, [TOKYO, clock("Europe/London", "17:20", name="convert_time")]) == []
    failed = Made("get_current_time", "{}", "Error: no timezone", ok=False)
    assert left_out("2026-12-01T02:20:42+09:00", CITIES, [TOKYO, failed]) == []


YAML_TASK = "Search /w/project for YAML files and give me their names."
SEARCH = Made("search_files", '{"path": "/w/project", "pattern": "*.yaml"}', "/w/project/deploy.yaml", ok=True)


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        # the 0.5B's answer
        (
            "The tool calls `search_files` with the specified path and pattern. The result is a list containing the "
            "names of the YAML files found in the directory.",
            [SEARCH],
        ),
        ("search_files found deploy.yaml.", []),  # gives what it returned
        ("There is one YAML file.", []),  # names no call: a count answers a result without quoting it
        ("The search_files_v2 tool found them.", []),  # another name
    ],
)
def test_an_answer_that_names_a_call_and_gives_nothing_it_returned_describes_it(answer: str, found: list[Made]) -> None:
    assert described(answer, YAML_TASK, [SEARCH]) == found


def test_only_calls_that_worked_and_results_with_words_of_their_own_are_judged() -> None:
    failed = Made("search_files", "{}", "Error: ENOENT", ok=False)
    assert described("search_files failed.", YAML_TASK, [failed]) == []
    echo = Made("search_files", "{}", "/w/project", ok=True)  # nothing the task does not hold
    assert described("search_files searched /w/project.", YAML_TASK, [echo]) == []


SAVED = Made("create_entities", '{"entities": []}', "[]", ok=True)
HELD = Made("write_file", "{}", "Error: not run", ok=False)
GRAPH_TOOLS = ["create_entities", "add_observations", "read_text_file", "write_file"]


@pytest.mark.parametrize(
    ("answer", "found"),
    [
        # the 1.5B's answer, after create_entities had saved her
        (
            "To add to the knowledge graph that Marie Curie was born in Warsaw, you would need to call the "
            '"create_entities" tool with the following arguments:',
            ["create_entities"],
        ),
        ("You can now find her with create_entities.", ["create_entities"]),
        ("create_entities saved Marie Curie.", []),  # says what was done
        ("You would need to call add_observations.", []),  # a step no call has made: what is left to do
        ("You would need create_entities, then write_file.", []),  # write_file was held back, not made
        ("You would need to save her.", []),  # names no tool
    ],
)
def test_an_answer_that_tells_its_reader_to_make_calls_that_worked_instructs(answer: str, found: list[str]) -> None:
    assert instructs(answer, [SAVED, HELD], GRAPH_TOOLS) == found


LOG = """Commit history:
Commit: ae505af
Author: Grace Hopper
Date: 2026-12-01 17:57:07+00:00
Message: Teach the widget factory to frobnicate

Commit: d3b69ba
Author: Margaret Hamilton
Date: 2026-12-01 17:57:07+00:00
Message: Make widgets in batches
"""


@pytest.mark.parametrize(
    ("result", "count"),
    [
        (LOG, 2),  # the heading has no value: not a field
        (LOG.replace("Make widgets", "Make widgets\nin batches"), 2),  # a line that is no field is part of a record
        (LOG.split("\n\n")[0], 0),  # one record
        (LOG.replace("Author: Margaret Hamilton\n", ""), 0),  # records of different shapes
        ('[{"name": "a"}, {"name": "b"}, {"name": "c"}]', 3),
        ("[1, 2]", 0),  # not records
        ('{"entities": [{"name": "a"}, {"name": "b"}]}', 0),
        ("/w/a.csv\n/w/b.csv", 0),
        ("Name: Linus Pauling\nJob: chemist", 0),
    ],
)
def test_records_of_one_shape_are_counted(result: str, count: int) -> None:
    assert records(result) == count


LISTING = """[FILE] feb.csv                              17 B
[FILE] jan.csv                              17 B
[DIR] archive
[FILE] mar.CSV                              1.5 KB
[FILE] readme.txt                           23 B

Total: 4 files, 1 directories
Combined size: 1.6 KB"""


@pytest.mark.parametrize(
    ("result", "kinds"),
    [
        (LISTING, "3 .csv files, 1 .txt file"),
        ("/w/data/feb.csv\n/w/data/jan.csv\n", "2 .csv files"),  # a search's paths
        ("/w/data/feb.csv", None),  # one file: nothing to count
        ("[DIR] src\n[FILE] setup.py\n[DIR] docs", None),
        ("Buy oat milk.\nCall the plumber about the sink.", None),  # sentences are no names
        ("import os.path\nprint(a.b)\n", None),
        ('["a.csv", "b.csv"]', None),
    ],
)
def test_the_files_a_listing_names_are_counted_by_kind(result: str, kinds: str | None) -> None:
    assert file_kinds(result) == kinds


@pytest.mark.parametrize(
    ("result", "nothing"),
    [
        ('{"entities": [], "relations": []}', True),  # memory's search_nodes, for a name the graph does not have
        ("[]", True),
        ("  \n", True),
        ('{"matches": [""], "next": null}', True),
        ('{"entities": [{"name": "Alan Turing"}], "relations": []}', False),
        ('{"count": 0}', False),  # 0 is a value
        ("No matches found", False),  # says so itself
        ("", True),
    ],
)
def test_a_result_of_nothing_but_empty_lists_returned_nothing(result: str, nothing: bool) -> None:
    assert empty(result) is nothing
    assert says_nothing(result) is nothing


def test_a_heading_over_nothing_says_nothing_but_is_shown_as_written() -> None:
    for heading in ("Diff with HEAD:\n\n", "Staged changes:\n"):  # git's git_diff and git_diff_staged, no changes
        assert says_nothing(heading) and not empty(heading)
    for something in ("Diff with HEAD:\ndiff --git a/app.py b/app.py", "Note: see below", "No matches found"):
        assert not says_nothing(something)


WEATHER = Made("get-structured-content", '{"location": "Chicago"}', '{"temperature":36,"conditions":"Light rain","humidity":82}', ok=True)  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "missing"),
    [
        ("Chicago's weather is light rain with a humidity of 82%.", [("temperature", "36")]),  # the 0.5B's answer
        ("It is 36 °F in Chicago, light rain, humidity 82 %.", []),
        ("Light rain in Chicago.", []),  # none of its numbers: not judged
        ("Humidity 82.5, 360 °F.", []),  # neither 82 nor 36 is given
    ],
)
def test_an_answer_that_gives_some_of_a_records_numbers_leaves_out_the_others(
    answer: str, missing: list[tuple[str, str]]
) -> None:
    assert values_left_out(answer, [WEATHER]) == missing


@pytest.mark.parametrize(
    "result",
    [
        '{"temperature": 36, "humidity": 82, "wind": {"speed": 12}}',  # not flat
        '[{"temperature": 36, "humidity": 82}]',  # not one object
        json.dumps({"humidity": 82, **{f"f{i}": 100 + i for i in range(8)}}),  # more fields than a record
        "temperature: 36, humidity: 82",  # not JSON
    ],
)
def test_only_a_flat_record_of_a_few_fields_is_judged(result: str) -> None:
    assert values_left_out("The humidity is 82.", [Made("weather", "{}", result, ok=True)]) == []
    assert values_left_out("The humidity is 82.", [Made("weather", "{}", WEATHER.result, ok=False)]) == []


def test_numbers_from_nowhere_are_those_of_two_digits_or_more_in_no_result() -> None:
    known = "Which ports do api.env and web.env set?\nPORT=8081"
    assert unfounded_numbers("api.env sets 8081, web.env 8080 and 8080 again, in 2 files.", known) == ["8080"]
    assert unfounded_numbers("There are 4 commits.", known) == []
    assert unfounded_numbers("There are 12 commits.", known) == []  # a count
    assert unfounded_numbers("There are 12 commits, 34 of them merges.", known) == ["12", "34"]
    assert unfounded_numbers("It starts 0123456789, then 567.", "0123456789012345") == ["567"]
    # With no result to count from, a count is from nowhere too, unless the task holds it.
    task = "How many CSV files are in /w/data2?"
    assert unfounded_numbers("There are 1 CSV files in /w/data2.", task, counts=True) == ["1"]
    assert unfounded_numbers("There are 12 CSV files, 3 of them empty.", task, counts=True) == ["12", "3"]
    assert unfounded_numbers("/w/data2 does not exist.", task, counts=True) == []
    assert unfounded_numbers("Are there 2 CSV files? There are 2.", "Are there 2 CSV files?", counts=True) == []


def test_names_from_nowhere_are_those_of_files_or_hosts_in_no_result() -> None:
    """Told that a diff against HEAD was empty, the 1.5B said the latest commit "changed the file `README.md`"."""
    known = "What changed in the latest commit of /tmp/x/repo?\nDiff with HEAD:"
    assert unfounded_names("It changed the file `README.md`, and config.json twice: config.json.", known) == [
        "README.md",
        "config.json",
    ]
    assert unfounded_names("See /etc/app/settings.yaml on example.com.", known) == ["settings.yaml", "example.com"]
    assert unfounded_names("The repository /tmp/x/repo has 4 commits.", known) == []
    # What a result or the task holds, in any case, is founded; so is a path the task names.
    assert unfounded_names("It changed Frobnicate.py.", "FROBNICATE.PY | 2 +-") == []
    assert unfounded_names("project/settings.ini sets it.", "Under /w/project/settings.ini") == []


@pytest.mark.parametrize(
    ("task", "answer", "claimed"),
    [
        (REMOVE, "The plumber removed the second line of notes.txt.", "removed"),
        (REMOVE, "The second line of notes.txt has been removed.", "removed"),
        (AUTHOR, "Grace Hopper made the latest commit, and I added them to the knowledge graph.", "added"),
        ("Write the time to stamp.txt.", "I wrote 10:00 to stamp.txt.", "written"),
        (REMOVE, "The line was not removed: the edit failed.", None),
        (REMOVE, "The second line needs to be removed with edit_file.", None),
        (REMOVE, "You could have removed it with edit_file.", None),
        (REMOVE, "Nothing was removed.", None),
        (AUTHOR, "Grace Hopper made it; she was already added to the knowledge graph.", None),
        (REMOVE, "The second line is: Call the plumber.", None),
        (AUTHOR, "Grace Hopper made the latest commit.", None),
        ("What changed in the latest commit?", "It added frobnicate.py and updated config.toml.", None),
        ("What did the latest commit add to /r?", "It added frobnicate.py.", None),
        ("Did anyone remove a line from notes.txt?", "Yes: Grace removed the second line.", None),
        ("Can you add Ada to the knowledge graph?", "I added Ada to the knowledge graph.", "added"),
        ("Is Ada in the graph? If not, add her.", "Ada was added.", "added"),
    ],
)
def test_an_answer_says_a_change_was_made_by_its_verb_when_the_task_asks_for_one(
    task: str, answer: str, claimed: str | None
) -> None:
    assert claimed_change(task, answer) == claimed


@pytest.mark.parametrize(
    "answer",
    [
        "Use e.g. version 1.2 or 3.14 of qwen2.5-coder at 1.5B.",  # abbreviations, versions, numbers
        "Call file.read() and then re.search(pattern, text).",  # calls in code
        "Run this:\n```python\nwith open('data.csv') as f:\n    print(f.read())\n```",  # a script's own names
        "Done.It was quick.",  # two sentences with no space between
    ],
)
def test_what_is_not_a_name_is_not_judged(answer: str) -> None:
    assert unfounded_names(answer, "task") == []


def read(path: str, result: str = "PORT=8081") -> Made:
    return Made("read_text_file", f'{{"path": "{path}"}}', result, ok=True)


@pytest.mark.parametrize(
    ("task", "made", "missing"),
    [
        ("What time is it in Tokyo, London and New York?", [clock("Asia/Tokyo", "02:20")], ["London", "New York"]),
        (
            "What time is it in Tokyo, London and New York?",
            [clock("Asia/Tokyo", "02:20"), clock("America/New_York", "12:20")],
            ["London"],
        ),
        ("Which ports do /w/api.env and /w/web.env set?", [read("/w/api.env")], ["/w/web.env"]),
        ("What weather is there for New York and for Los Angeles?", [clock("New York", "1")], ["Los Angeles"]),
        ('Look up "alpha", "beta" or "gamma".', [clock("beta", "1")], ["alpha", "gamma"]),
    ],
)
def test_items_listed_together_with_no_call_for_them_are_named(task: str, made: list[Made], missing: list[str]) -> None:
    assert not_called_for(task, made) == missing


@pytest.mark.parametrize(
    ("task", "made"),
    [
        # a call for every item: an argument names it as the tool spells it
        ("Which ports do /w/api.env and /w/web.env set?", [read("/w/api.env"), read("web.env")]),
        # no call for any item: the model answers from elsewhere, or the task is about something else
        ("What time is it in Tokyo and London?", [read("/w/notes.txt")]),
        # an item a result shows is found there: a listing
        ("Are a.txt and b.txt in /w?", [read("/w/a.txt", "a.txt b.txt")]),
        # no list: items that other words stand between
        ("If it's 9:30 am in New York, what time is it in London?", [clock("America/New_York", "09:30")]),
        ("Read /w/contact.txt and save the person it describes.", [read("/w/contact.txt")]),
        ("Make a copy of /w/greeting.txt named greeting-copy.txt.", [read("/w/greeting.txt")]),
    ],
)
def test_nothing_is_missing_unless_a_listed_item_has_no_call_while_another_has(task: str, made: list[Made]) -> None:
    assert not_called_for(task, made) == []


CONTACT = read("/w/contact.txt", "Name: Linus Pauling\nJob: chemist\n")


@pytest.mark.parametrize(
    ("arguments", "made", "found"),
    [
        ({"path": "/w/contact.txt", "content": "Name: Linus Pauling\nJob: chemist"}, [CONTACT], ("content", CONTACT)),
        ({"path": "/w/contact-copy.txt", "content": "Name: Linus Pauling\nJob: chemist"}, [CONTACT], None),  # a copy
        ({"path": "/w/contact.txt", "content": "Name: Linus Pauling\nJob: physicist"}, [CONTACT], None),  # an edit
        (
            {"path": "/w/contact.txt", "content": "Error: no such file"},
            [Made("read_text_file", '{"path": "/w/contact.txt"}', "Error: no such file", ok=False)],
            None,
        ),
    ],
)
def test_a_write_of_what_a_call_read_back_to_where_it_read_it_is_found(
    arguments: dict, made: list[Made], found: tuple[str, Made] | None
) -> None:
    assert written_back(arguments, made) == found


NAME_ONLY = {"path": "/w/contact.txt", "content": "Linus Pauling"}


@pytest.mark.parametrize(
    ("arguments", "parts", "found"),
    [
        (NAME_ONLY, True, ("content", CONTACT)),
        (NAME_ONLY, False, None),  # without a change made elsewhere, a part written back is an edit
        ({"path": "/w/contact-copy.txt", "content": "Linus Pauling"}, True, None),  # another place
        ({"path": "/w/contact.txt", "content": "Linus Pauling, chemist"}, True, None),  # new text
        # edit_file removing a line: its empty newText is no part of what was read
        ({"path": "/w/contact.txt", "edits": [{"oldText": "Job: chemist", "newText": ""}]}, True, None),
        ({"path": "/w/contact.txt", "edits": [{"oldText": "Job: chemist", "newText": "Job"}]}, True,
         ("edits[0].oldText", CONTACT)),
    ],
)  # fmt: skip
def test_a_part_of_what_a_call_read_written_back_is_found_only_when_asked_for(
    arguments: dict, parts: bool, found: tuple[str, Made] | None
) -> None:
    assert written_back(arguments, [CONTACT], parts=parts) == found


COPY = "Make a copy of /w/greeting.txt named greeting-copy.txt in the same folder."
OWN_TEXT = {"path": "/w/greeting-copy.txt", "content": "This is a copy of the original greeting file."}


@pytest.mark.parametrize(
    ("task", "arguments", "made", "found"),
    [
        (COPY, OWN_TEXT, [], ("content", ["/w/greeting.txt"])),
        # the invented text names the place, and is still not a read of it
        (COPY, {**OWN_TEXT, "content": "This is a copy of greeting.txt"}, [], ("content", ["/w/greeting.txt"])),
        (COPY, OWN_TEXT, [read("/w/other.txt", "Hi")], ("content", ["/w/greeting.txt"])),
        # a call of a tool that does not exist, or one held back, read nothing
        (
            COPY,
            OWN_TEXT,
            [Made("copy_file", '{"from": "/w/greeting.txt"}', "Error", False, False)],
            ("content", ["/w/greeting.txt"]),
        ),
        (
            "Save what ~/notes/a.md says to b.md",
            {"path": "b.md", "content": "my own words"},
            [],
            ("content", ["~/notes/a.md"]),
        ),
        # the place read: what is written is the model's to judge
        (COPY, OWN_TEXT, [read("/w/greeting.txt", "Hello")], None),
        # the text is the result's, the task's, or not text at all
        (COPY, {**OWN_TEXT, "content": "Hello  there"}, [read("/w/x", "hello there")], None),
        (COPY, {**OWN_TEXT, "content": "Hello"}, [], None),
        (
            "Write 'see you at noon' to /w/a.txt and /w/b.txt",
            {"path": "/w/a.txt", "content": "see you at noon"},
            [],
            None,
        ),
        # the only place the task names is the one written: the text is the model's own
        ("Write a short poem about the sea to /w/poem.txt", {"path": "/w/poem.txt", "content": "Waves fold"}, [], None),
        ("Write a note about cats and/or dogs to /w/n.txt", {"path": "/w/n.txt", "content": "Cats purr"}, [], None),
    ],
)
def test_a_text_from_nowhere_written_before_the_file_the_task_names_was_read_is_found(
    task: str, arguments: dict, made: list[Made], found: tuple[str, list[str]] | None
) -> None:
    assert unread(task, arguments, made) == found


REMOVE = "Remove the second line of /w/notes.txt."
JOIN = {"path": "/w/notes.txt", "edits": [{"oldText": "\n", "newText": ""}]}


@pytest.mark.parametrize(
    ("task", "arguments", "made", "found"),
    [
        (REMOVE, JOIN, [], ("edits[0].oldText", "/w/notes.txt")),  # the 1.5B's edit, with nothing read
        (REMOVE, JOIN, [read("/w/other.txt", "Hi")], ("edits[0].oldText", "/w/notes.txt")),
        (REMOVE, JOIN, [read("/w/notes.txt", "Buy oat milk.\nCall the plumber.\n")], None),
        (REMOVE, JOIN, [Made("read_text_file", '{"path": "/w/notes.txt"}', "Error: denied", ok=False)],
         ("edits[0].oldText", "/w/notes.txt")),
        # the task gives the text: the user's own, no read needed
        ("Replace oat milk with soy milk in /w/notes.txt.",
         {"path": "/w/notes.txt", "edits": [{"oldText": "oat milk", "newText": "soy milk"}]}, [], None),
        # places only, as a move
        ("Move /w/notes.txt to /w/old/notes.txt.", {"source": "/w/notes.txt", "destination": "/w/old/notes.txt"},
         [], None),
        # a place the task does not name is not this check's
        (REMOVE, {"path": "/w/other.txt", "edits": [{"oldText": "\n", "newText": ""}]}, [], None),
    ],
)  # fmt: skip
def test_a_change_to_a_place_the_task_names_unread_with_text_from_nowhere_is_blind(
    task: str, arguments: dict, made: list[Made], found: tuple[str, str] | None
) -> None:
    assert blind(task, arguments, made) == found
