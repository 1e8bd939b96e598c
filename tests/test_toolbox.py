"""Tool names offered to the model: valid for the API, unique across servers, mapped back exactly."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from mcp.types import CallToolResult, Tool, ToolAnnotations

from lmstudio_bridge.toolbox import OfferedTool, Toolbox
from tests.test_agent import MEMORY_SCHEMA

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class StubChild:
    name: str
    tools: list[Tool] = field(default_factory=list)

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> CallToolResult:
        raise AssertionError("not called in these tests")


def found(box: Toolbox, name: str) -> OfferedTool:
    offered = box.lookup(name)
    assert offered is not None, name
    return offered


def tool(name: str, schema: dict | None = None) -> Tool:
    return Tool(name=name, description=f"does {name}", input_schema=schema or {"type": "object"})


def test_unique_names_stay_plain_and_schemas_are_kept() -> None:
    schema = {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC"]}}, "required": ["tz"]}
    box = Toolbox([StubChild("time", [tool("get_current_time", schema)])])
    (offered,) = box.openai_tools
    assert offered["type"] == "function"
    assert offered["function"]["name"] == "get_current_time"
    assert offered["function"]["parameters"] == schema
    assert "time" in offered["function"]["description"]


def test_collisions_get_server_prefixes_and_both_resolve() -> None:
    a, b = StubChild("alpha", [tool("read_file")]), StubChild("beta", [tool("read_file"), tool("echo")])
    box = Toolbox([a, b])
    assert box.names == ["alpha__read_file", "beta__read_file", "echo"]
    assert found(box, "alpha__read_file").provider is a
    assert found(box, "beta__read_file").provider is b
    assert found(box, "beta.read_file").provider is b
    assert box.lookup("read_file") is None  # ambiguous
    assert found(box, "echo").tool.name == "echo"


def test_invalid_and_long_names_are_made_valid_and_distinct() -> None:
    names = ["get/weather.now", "x" * 100, "x" * 100 + "y", "héllo wörld", "get_weather_now"]
    box = Toolbox([StubChild("s", [tool(n) for n in names])])
    assert all(VALID.match(n) for n in box.names)
    assert len(set(box.names)) == len(names)
    for offered in box.tools:
        assert box.lookup(offered.api_name) is offered
    assert found(box, box.names[0]).tool.name == "get/weather.now"


def test_unknown_name_is_none() -> None:
    box = Toolbox([StubChild("s", [tool("a")])])
    assert box.lookup("nope") is None


def test_missing_schema_becomes_an_empty_object() -> None:
    t = Tool.model_construct(name="bare", description=None, input_schema=None)
    box = Toolbox([StubChild("s", [t])])
    assert box.openai_tools[0]["function"]["parameters"] == {"type": "object", "properties": {}}


def test_schemas_are_shown_type_first_as_models_were_trained_on() -> None:
    """pydantic writes ``properties`` before ``type``; small models then copy that shape into their arguments."""
    schema = {
        "properties": {"repo_path": {"title": "Repo Path", "type": "string"}, "n": {"default": 3, "type": "integer"}},
        "required": ["repo_path"],
        "title": "GitLog",
        "type": "object",
    }
    box = Toolbox([StubChild("git", [tool("git_log", schema)])])
    shown = box.openai_tools[0]["function"]["parameters"]
    assert shown == schema
    assert list(shown) == ["type", "properties", "required", "title"]
    assert list(shown["properties"]) == ["repo_path", "n"]
    assert list(shown["properties"]["repo_path"]) == ["type", "title"]
    assert list(shown["properties"]["n"]) == ["type", "default"] and shown["properties"]["n"]["default"] == 3


def test_schemas_keep_their_titles_and_definitions_in_the_conventional_order() -> None:
    """Titles reword each name ("Repo Path"), but with them the 1.5B writes a call per item the task names."""
    schema = {
        "title": "CreateNote",
        "properties": {"title": {"title": "Title", "type": "string"}, "tags": {"items": {"$ref": "#/$defs/Tag"}}},
        "type": "object",
        "$defs": {"Tag": {"properties": {"title": {"type": "string"}}, "title": "Tag", "type": "object"}},
    }
    box = Toolbox([StubChild("notes", [tool("create_note", schema)])])
    shown = box.openai_tools[0]["function"]["parameters"]
    assert shown == schema
    assert list(shown) == ["type", "properties", "title", "$defs"]
    assert list(shown["properties"]["title"]) == ["type", "title"]
    assert list(shown["$defs"]["Tag"]) == ["type", "properties", "title"]


def test_what_a_tool_takes_shows_the_required_arguments_as_a_call_writes_them() -> None:
    """Shown this when asked to mend a call, a small model copies it."""
    schema = {
        "properties": {
            "path": {"type": "string"},
            "mode": {"enum": ["w", "a"]},
            "tags": {"type": ["array", "null"], "items": {"type": "string"}},
            "meta": {"type": "object", "properties": {"author": {"type": "string"}, "n": {"type": "integer"}}},
            "dry_run": {"type": "boolean"},
        },
        "required": ["path", "mode", "tags", "meta"],
        "type": "object",
    }
    offered = found(Toolbox([StubChild("fs", [tool("write_file", schema)])]), "write_file")
    assert offered.takes() == (
        '{"path": string, "mode": "w"|"a", "tags": [string], "meta": {"author": string, "n": integer}}'
        " (optional: dry_run): does write_file"
    )
    assert found(Toolbox([StubChild("t", [tool("now")])]), "now").takes() == "{}: does now"


OBSERVATIONS = {
    "type": "object",
    "properties": {
        "observations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "entityName": {"type": "string"},
                    "contents": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["entityName", "contents"],
            },
        }
    },
    "required": ["observations"],
}
"""``add_observations`` of the published memory server."""


def test_one_item_written_without_its_list_is_put_in_it() -> None:
    """The 0.5B wrote add_observations' item alone; every name of it was dropped as one the tool does not have."""
    box = Toolbox([StubChild("memory", [tool("add_observations", OBSERVATIONS), tool("open_nodes", NAMES)])])
    add = found(box, "add_observations")
    item = {"entityName": "Marie Curie", "contents": ["born in Warsaw"]}
    assert add.prepare_arguments(item) == {"observations": [item]}
    assert add.prepare_arguments({"entityName": "Marie Curie", "contents": "born in Warsaw"}) == {
        "observations": [item]
    }
    assert add.prepare_arguments({"observations": [{**item, "contents": "born in Warsaw"}]}) == {"observations": [item]}
    assert add.prepare_arguments({"observations": [item]}) == {"observations": [item]}
    assert add.prepare_arguments({"city": "Warsaw"}) == {}  # not an item: dropped, as before
    # Texts under other names beside a field it requires: items of its one list of texts, when none is given.
    assert add.prepare_arguments({"entityName": "Marie Curie", "born": "Warsaw"}) == {
        "observations": [{"entityName": "Marie Curie", "contents": ["born: Warsaw"]}]
    }
    assert add.prepare_arguments({"entityName": "Marie Curie", "born": 1867}) == {}  # not a text: not an item
    assert add.prepare_arguments({"entityName": "Marie Curie", "contents": ["x"], "born": "Warsaw"}) == {}  # no room
    assert add.prepare_arguments({}) == {}
    names = found(box, "open_nodes")
    assert names.prepare_arguments({"names": "Marie Curie"}) == {"names": ["Marie Curie"]}
    assert names.prepare_arguments({"names": 3}) == {"names": 3}  # the server says what is wrong
    # The list alone, as the 0.5B wrote create_entities' entities: put under the tool's one parameter.
    assert json.loads(box.prepared("add_observations", json.dumps([item]))) == {"observations": [item]}
    assert box.prepared("open_nodes", '["Marie Curie"]') == '["Marie Curie"]'  # a list of texts: not judged
    two = {**OBSERVATIONS, "properties": {**OBSERVATIONS["properties"], "dry_run": {"type": "boolean"}}}
    assert found(Toolbox([StubChild("m", [tool("add", two)])]), "add").prepare_arguments(item) == {}


ENTITIES = MEMORY_SCHEMA
"""``create_entities`` of the published memory server."""


def test_an_items_fields_written_under_the_items_own_name_are_its_fields() -> None:
    """With the commit's author read, the 0.5B called create_entities with ``entity_type``, ``entity_name``,
    ``entity_date`` and ``entity_message``; every name was dropped, and asked to mend the empty call, it made up an
    entity "Widget1", which was saved."""
    create = found(Toolbox([StubChild("memory", [tool("create_entities", ENTITIES)])]), "create_entities")
    written = {"entity_type": "person", "entity_name": "Grace Hopper", "entity_message": "Teach the widget factory"}
    assert create.prepare_arguments(written) == {
        "entities": [
            {"entityType": "person", "name": "Grace Hopper", "observations": ["message: Teach the widget factory"]}
        ]
    }
    assert create.prepare_arguments({"name": "Linus Pauling", "job": "chemist", "city": " Pasadena"}) == {
        "entities": [{"name": "Linus Pauling", "observations": ["job: chemist", "city: Pasadena"]}]
    }
    # No field the item requires, or a value that is no text: not an item, every name dropped as before.
    assert create.prepare_arguments({"job": "chemist"}) == {}
    assert create.prepare_arguments({"name": "Linus Pauling", "age": 93}) == {}


WRITE = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
    "required": ["path", "content"],
}
GIT_LOG = {
    "type": "object",
    "properties": {
        "repo_path": {"title": "Repo Path", "type": "string"},
        "max_count": {"default": 10, "title": "Max Count", "type": "integer"},
        "start_timestamp": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
    },
    "required": ["repo_path"],
}
"""``git_log`` of the published git server."""


def test_arguments_under_other_names_go_to_the_parameters_they_plainly_mean() -> None:
    """The 1.5B called git_log with ``"limit": 1``; dropped, the log listed four commits instead of the latest.
    It wrote ``repo`` for ``repo_path`` and ``file_path`` for ``path``: dropped, each cost a request to mend."""
    box = Toolbox([StubChild("git", [tool("git_log", GIT_LOG)]), StubChild("fs", [tool("write_file", WRITE)])])
    log = found(box, "git_log")
    assert log.prepare_arguments({"repo_path": "/r", "limit": 1}) == {"repo_path": "/r", "max_count": 1}
    assert log.prepare_arguments({"repo": "/r", "limit": 1}) == {"repo_path": "/r", "max_count": 1}
    assert log.prepare_arguments({"path": "/r"}) == {"repo_path": "/r"}
    assert log.prepare_arguments({"repo_path": "/r", "n": 3, "repo": "/s"}) == {"repo_path": "/r", "max_count": 3}
    write = found(box, "write_file")
    assert write.prepare_arguments({"file_path": "/a", "content": "x"}) == {"path": "/a", "content": "x"}
    # A text only to a required text parameter left out, from the one name that shares a word with it.
    assert write.prepare_arguments({"file_path": "/a", "dir_path": "/b", "content": "x"}) == {"content": "x"}
    assert write.prepare_arguments({"file": "/a", "content": "x"}) == {"content": "x"}
    # Of several, the one the task holds: the 0.5B gave get_current_time convert_time's two zones.
    two_paths = {"file_path": "/a", "dir_path": "/b", "content": "x"}
    assert write.prepare_arguments(two_paths, "Write x to /a.") == {"path": "/a", "content": "x"}
    assert write.prepare_arguments(two_paths, "Write x to /a or /b.") == {"content": "x"}
    assert write.prepare_arguments({"path": "/a", "content_text": "x"}) == {"path": "/a", "content": "x"}
    assert write.prepare_arguments({"path": "/a", "content_text": 3}) == {"path": "/a"}
    # Kept as the model wrote it, or dropped as before: the parameter is set already, the number is not whole,
    # or two numbers could be it.
    given = {"repo_path": "/r", "max_count": 2, "limit": 1}
    assert log.prepare_arguments(given) == {"repo_path": "/r", "max_count": 2}
    assert log.prepare_arguments({"repo_path": "/r", "limit": "1"}) == {"repo_path": "/r"}
    assert log.prepare_arguments({"repo_path": "/r", "limit": True}) == {"repo_path": "/r"}
    assert log.prepare_arguments({"repo_path": "/r", "limit": 1.5}) == {"repo_path": "/r"}
    assert log.prepare_arguments({"repo_path": "/r", "limit": 1, "skip": 2}) == {"repo_path": "/r"}
    nullable = {**GIT_LOG, "properties": {"repo_path": {"type": "string"}, "max_count": {"type": ["integer", "null"]}}}
    two = {
        **GIT_LOG,
        "properties": {**GIT_LOG["properties"], "skip": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
    }
    box = Toolbox([StubChild("git", [tool("nullable", nullable), tool("two", two)])])
    assert found(box, "nullable").prepare_arguments({"limit": 1}) == {"max_count": 1}
    assert found(box, "two").prepare_arguments({"limit": 1}) == {}


NAMES = {
    "type": "object",
    "properties": {"names": {"type": "array", "items": {"type": "string"}}},
    "required": ["names"],
}


def test_the_closest_names_are_suggested_for_a_tool_that_does_not_exist() -> None:
    box = Toolbox([StubChild("fs", [tool("list_directory"), tool("read_file"), tool("write_file")])])
    assert box.closest("read_directory")[0] == "list_directory"
    assert "Did you mean list_directory (does list_directory) or read_file (does read_file)" in box.unknown_tool(
        "read_directory"
    )


def test_the_closest_tools_are_named_with_what_they_do() -> None:
    """Seen with the 1.5B: told only "Did you mean move_file" for its made-up copy_file, it answered that
    move_file is the tool for copying."""
    move = tool("move_file").model_copy(
        update={"description": "Move or rename files and directories. Fails if the target exists."}
    )
    box = Toolbox([StubChild("fs", [move, tool("read_file"), tool("write_file")])])
    assert "Did you mean move_file (Move or rename files and directories.) or" in box.unknown_tool("copy_file")


def test_a_tool_that_may_destroy_is_suggested_only_for_a_misspelling_of_its_name() -> None:
    """By spelling, move_file is the closest to a made-up copy_file; told so, the 1.5B chose it to make a copy,
    which would have removed the original."""
    destroys = ToolAnnotations(read_only_hint=False, destructive_hint=True)
    move = tool("move_file").model_copy(update={"annotations": destroys})
    overwrite = tool("write_file").model_copy(update={"annotations": ToolAnnotations(read_only_hint=False)})
    adds = tool("create_file").model_copy(update={"annotations": ToolAnnotations(destructive_hint=False)})
    box = Toolbox([StubChild("fs", [move, overwrite, adds, tool("read_file"), tool("search_files")])])
    assert sorted(box.closest("copy_file")) == ["create_file", "read_file", "search_files"]
    assert "move_file" not in box.unknown_tool("copy_file").split("Available tools:")[0]
    assert "move_file" in box.unknown_tool("copy_file").split("Available tools:")[1]
    assert box.closest("Move-File")[0] == "move_file"
    assert box.closest("movefile")[0] == "move_file"
    assert box.closest("write_files")[0] == "write_file"


def test_a_name_that_shares_a_word_with_the_made_up_one_is_suggested_first() -> None:
    """By spelling, search_files is closer to a made-up copy_file than read_file is; told search_files first, the
    1.5B searched the folder and never made the copy. Told read_file first, it read the file to copy."""
    box = Toolbox([StubChild("fs", [tool("search_files"), tool("read_file"), tool("list_directory")])])
    assert box.closest("copy_file") == ["read_file", "search_files"]
    assert "Did you mean read_file (does read_file) or search_files" in box.unknown_tool("copy_file")
    assert box.closest("searchFiles")[0] == "search_files"
    assert box.closest("read_directory") == ["list_directory", "read_file"]


def test_a_long_result_is_cut_without_copying_what_is_cut() -> None:
    from mcp.types import TextContent

    from lmstudio_bridge.toolbox import render_tool_result

    blocks = [TextContent(type="text", text=c * 1000) for c in "abc"]
    result = CallToolResult(content=blocks)
    whole = render_tool_result(result)
    assert len(whole) == 3002
    cut = render_tool_result(result, 1500)
    assert cut == whole[:1500] + "\n[... 1,502 of 3,002 characters cut ...]"
    assert render_tool_result(result, 5000) == whole


def test_a_pattern_without_a_folder_searches_subfolders_where_the_tool_says_how() -> None:
    """The filesystem server's search_files matches ``settings.ini`` at the top of the folder only, and says to
    write ``**/`` for subfolders; the small models write such patterns even shown that."""
    schema = {"type": "object", "properties": {"path": {"type": "string"}, "pattern": {"type": "string"}}}
    reads = ToolAnnotations(read_only_hint=True)
    glob = "Search for files. Use '*.ext' for the folder itself and '**/*.ext' for all subfolders."
    search = Tool(name="search_files", description=glob, input_schema=schema, annotations=reads)
    plain = Tool(name="grep", description="Searches file contents for a regex.", input_schema=schema, annotations=reads)
    changes = Tool(name="remove_matching", description=glob, input_schema=schema)
    box = Toolbox([StubChild("fs", [search, plain, changes])])
    assert found(box, "search_files").prepare_arguments({"path": "/w", "pattern": "*.ini"}) == {
        "path": "/w",
        "pattern": "**/*.ini",
    }
    for kept in ("conf/*.ini", "**/*.ini", ""):
        assert found(box, "search_files").prepare_arguments({"pattern": kept}) == {"pattern": kept}
    assert found(box, "grep").prepare_arguments({"pattern": "host"}) == {"pattern": "host"}
    assert found(box, "remove_matching").prepare_arguments({"pattern": "*.ini"}) == {"pattern": "*.ini"}


def test_a_search_given_the_path_of_the_file_it_looks_for_searches_its_folder_for_its_name() -> None:
    """After a read of a guessed path failed, the 0.5B gave that path to search_files as the folder to search, with
    no pattern or with the file's name as the pattern; the search of a file as a folder failed again."""
    schema = {"type": "object", "properties": {"path": {"type": "string"}, "pattern": {"type": "string"}}}
    reads = ToolAnnotations(read_only_hint=True)
    search = Tool(name="search_files", description="Find files by name.", input_schema=schema, annotations=reads)
    lister = Tool(name="list_matching", description="Lists files.", input_schema=schema, annotations=reads)
    changes = Tool(name="find_and_delete", description="Deletes files found.", input_schema=schema)
    box = Toolbox([StubChild("fs", [search, lister, changes])])
    split = {"path": "/w/conf", "pattern": "settings.ini"}
    for given in ({"path": "/w/conf/settings.ini"}, {"path": "/w/conf/settings.ini", "pattern": "settings.ini"}):
        assert found(box, "search_files").prepare_arguments(given) == split
    # Asked how many CSV files a folder holds, the 0.5B gave the folder and the glob as one pattern, or one path.
    globbed = {"path": "/w/data", "pattern": "*.csv"}
    for given in (
        {"pattern": "/w/data/*.csv"},
        {"path": "/w/data/*.csv"},
        {"path": "/w/data/*.csv", "pattern": "*.csv"},
    ):
        assert found(box, "search_files").prepare_arguments(given) == globbed
    for kept in (
        {"path": "/w/conf", "pattern": "*.ini"},
        {"path": "/w/conf"},
        {"path": "/w/**/*.ini"},
        {"pattern": "conf/*.ini"},
        {"path": "/w", "pattern": "/w/conf/*.ini"},
        {"path": "settings.ini"},
        {"path": "/w/conf/settings.ini", "pattern": "host"},
    ):
        assert found(box, "search_files").prepare_arguments(kept) == kept
    for other in ("list_matching", "find_and_delete"):
        assert found(box, other).prepare_arguments({"path": "/w/settings.ini"}) == {"path": "/w/settings.ini"}


def test_a_read_given_another_reads_arguments_calls_the_tool_they_were_written_for() -> None:
    """Asked how many CSV files a folder holds, the 0.5B called read_multiple_files (which requires ``paths``)
    with list_directory_with_sizes' ``path`` and ``sortBy``, and a schema word; mended, the folder was read as a
    file."""
    reads = ToolAnnotations(read_only_hint=True)

    def read(name: str, properties: dict[str, Any], required: list[str], annotations: Any = reads) -> Tool:
        schema = {"type": "object", "properties": properties, "required": required}
        return Tool(name=name, description=f"does {name}", input_schema=schema, annotations=annotations)

    text, texts = {"type": "string"}, {"type": "array", "items": {"type": "string"}}
    many = read("read_multiple_files", {"paths": texts}, ["paths"])
    sized = read("list_directory_with_sizes", {"path": text, "sortBy": text}, ["path"])
    listing = read("list_directory", {"path": text}, ["path"])
    one = read("read_file", {"path": text, "tail": {"type": "integer"}}, ["path"])
    box = Toolbox([StubChild("fs", [many, sized, listing, one])])
    given = json.dumps({"path": "/w/data", "sortBy": "name", "required": ["path"]})
    assert box.meant("read_multiple_files", given) == "list_directory_with_sizes"
    assert box.meant("read_multiple_files", json.dumps({"paths": ["/w/a"], "sortBy": "name"})) == "read_multiple_files"
    # Arguments three tools take (``path``) say nothing of which was meant; given what it requires, the tool named
    # is called (``tail`` is dropped).
    assert box.meant("read_multiple_files", json.dumps({"path": "/w/data"})) == "read_multiple_files"
    assert box.meant("list_directory", json.dumps({"path": "/w/a", "tail": 2})) == "list_directory"
    assert box.meant("read_multiple_files", "not json") == "read_multiple_files"
    # Never to or from a tool that may change something, nor to another server's.
    write = read("write_file", {"path": text, "content": text}, ["path", "content"], None)
    other = Toolbox([StubChild("fs", [many, write]), StubChild("other", [sized])])
    assert other.meant("read_multiple_files", given) == "read_multiple_files"
    mover = read("move_file", {"source": text}, ["source"], None)
    box = Toolbox([StubChild("fs", [mover, sized])])
    assert box.meant("move_file", given) == "move_file"


def test_a_failed_read_runs_again_without_numbers_the_task_holds_only_inside_a_name() -> None:
    """The read of ``.../live-ujfyg3o5/...`` with ``head`` and ``tail`` failed; run again, it kept ``"head": 5`` for
    the 5 in the folder's name."""
    properties = {"path": {"type": "string"}, "head": {"type": "integer"}, "tail": {"type": "integer"}}
    schema = {"type": "object", "properties": properties, "required": ["path"]}
    read = Tool(name="read_file", input_schema=schema, annotations=ToolAnnotations(read_only_hint=True))
    box = Toolbox([StubChild("fs", [read])])
    path = "/tmp/live-ujfyg3o5/notes.txt"
    given = {"path": path, "head": 5, "tail": 10}
    assert box.without_guesses("read_file", given, f"What's in {path}?") == {"path": path}
    for task in (f"Show the first 5 lines of {path}.", f"Show {path}, head 5.", f"Lines (5) of {path}"):
        assert box.without_guesses("read_file", given, task) == {"path": path, "head": 5}
    assert box.without_guesses("read_file", given, f"Show 5.5 lines of {path}") == {"path": path}
