"""The children's tools as the model sees them, and the one way the agent loop runs them.

Names become valid, unique OpenAI function names that map back exactly; schemas
are shown in the form models were trained on; a call comes back as a
``ToolOutcome`` (the text for the model, and whether it worked), never as an
exception.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema
import referencing.exceptions
from mcp.types import CallToolResult, EmbeddedResource, ImageContent, TextContent, Tool

from .errors import ChildGone, ToolCallFailed, ToolTimeout
from .images import ToolImage, images_of
from .policy import Approver, Refusal, ToolPolicy, declares_destructive, declares_read_only
from .results import RefusedCall

logger = logging.getLogger(__name__)

MAX_NAME = 64
MAX_HINT_CHARS = 1500
"""Most characters of a tool's schema shown again after a call that did not fit it."""
_INVALID = re.compile(r"[^a-zA-Z0-9_-]+")
_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_SCHEMA_KEY_ORDER = ("type", "description", "properties", "items", "required", "enum")
"""Keys first, in this order, as in the tool definitions models are trained on. A schema with
``properties`` before ``type`` (as pydantic writes them) makes small models copy its shape into
their arguments."""
_FILE_NAME = re.compile(r"[\w-][\w.-]*\.[A-Za-z0-9]{1,8}")
_GLOB = re.compile(r"[*?\[]")
_WRAPPER_KEYS = frozenset({"properties", "required", "type", "additionalProperties", "title", "$schema"})


class ToolProvider(Protocol):
    """A server whose tools the model may call: a running child, or a test's stand-in."""

    @property
    def name(self) -> str: ...

    @property
    def tools(self) -> Sequence[Tool]: ...

    async def call_tool(self, name: str, arguments: dict[str, Any], *, timeout: float) -> CallToolResult:
        """The tool's result; raises ``ToolCallFailed`` when none comes back."""
        ...


@dataclass(frozen=True)
class ToolOutcome:
    """One call as the loop sees it."""

    label: str
    """``server.tool``, or the name as the model wrote it when no such tool exists."""
    text: str
    """What the model gets back; starts with ``Error: `` when the call failed."""
    error: str | None
    """A one-line reason when the call failed."""
    ms: float
    images: tuple[ToolImage, ...] = ()
    """The result's images, for a model that sees them (``text`` has a placeholder for each)."""
    answered: bool = False
    """The tool's server answered: a result, or its own refusal (not a timeout, a dead child or a call that
    never left the bridge)."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class OfferedTool:
    """One tool as the model sees it, and where it really lives."""

    api_name: str
    provider: ToolProvider
    tool: Tool

    @property
    def server(self) -> str:
        return self.provider.name

    @property
    def label(self) -> str:
        """``server.tool``, for progress messages and results."""
        return f"{self.server}.{self.tool.name}"

    @property
    def aliases(self) -> tuple[str, ...]:
        """Other names a model may use for it: ``server.tool``, ``server__tool`` and the bare name."""
        return (self.label, f"{self.server}__{self.tool.name}", self.tool.name)

    def to_openai(self) -> dict[str, Any]:
        schema = conventional_schema(self.tool.input_schema or _EMPTY_SCHEMA)
        description = (self.tool.description or self.tool.title or "").strip()
        return {
            "type": "function",
            "function": {
                "name": self.api_name,
                "description": f"{description} (MCP server '{self.server}')".strip(),
                "parameters": schema,
            },
        }

    def takes(self) -> str:
        """What the tool takes, in one line: the arguments it requires in the shape a call writes them, the
        optional ones by name, and its description's first sentence. For ``create_entities``: ``{"entities":
        [{"name": string, "entityType": string, "observations": [string]}]}: Create multiple new entities...``"""
        schema = self.tool.input_schema or {}
        params = schema.get("properties") or {}
        optional = [name for name in params if name not in (schema.get("required") or ())]
        line = argument_shape(schema)
        if optional:
            line += f" (optional: {', '.join(optional)})"
        description = (self.tool.description or "").strip()
        if description:
            line += f": {_first_sentence(description)}"
        return line

    def prepare_arguments(self, arguments: dict[str, Any], task: str | None = None) -> dict[str, Any]:
        """The arguments to send: unwrapped from the schema's shape, given under the names they plainly mean
        (``_renamed``), one item written alone put in its list (``_listed``), without names the tool does not have,
        and without optional values copied from the parameter's own description.

        A small model invents parameters (``"time": "14:30"`` for a tool that takes only ``timezone``);
        a server may refuse them, and kept in the conversation they mislead the model's answer. A tool
        whose schema allows other names (``additionalProperties``) gets them all. It also fills optional
        parameters with the examples their descriptions give (``git_log`` with ``start_timestamp``
        ``2024-01-15T14:30:25``, which empties the log): given the ``task``, such a value is dropped unless
        the task itself holds it. A tool that declares it takes nothing (``"properties": {}``, as ``read_graph``)
        gets nothing: the 0.5B called it with the schema itself, which then stood next to the graph it returned.
        """
        arguments = self._globbed(self._split(self._listed(self._renamed(self._unwrapped(arguments), task))))
        schema = self.tool.input_schema or {}
        params = schema.get("properties")
        if not isinstance(params, dict):
            return arguments  # no parameters declared at all: the server says what it takes
        kept = {
            k: v
            for k, v in arguments.items()
            if (task is None or not _copied_example(k, v, schema, task))
            and (k in params or schema.get("additionalProperties", False) is not False)
        }
        if len(kept) < len(arguments):
            logger.debug("Dropped arguments of %s: %s", self.label, sorted(set(arguments) - set(kept)))
        return kept

    def _unwrapped(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Arguments a model wrapped in the schema's own shape (``{"properties": {...}, "type": "object"}``),
        unwrapped; anything else as it is."""
        inner = arguments.get("properties")
        params = (self.tool.input_schema or {}).get("properties") or {}
        if (
            not isinstance(inner, dict)
            or not params
            or "properties" in params
            or not set(inner) <= set(params)
            or not set(arguments) <= _WRAPPER_KEYS | set(params)
        ):
            return arguments
        unwrapped = {**{k: v for k, v in arguments.items() if k in params}, **inner}
        logger.debug("Unwrapped schema-shaped arguments for %s: %s", self.label, arguments)
        return unwrapped

    def _renamed(self, arguments: dict[str, Any], task: str | None = None) -> dict[str, Any]:
        """Arguments given under a name the tool does not have, given to the parameter they plainly mean: a text
        to the one required text parameter left out whose name shares a word with its name (``file_path`` as
        ``path``, ``repo`` as ``repo_path``), and a whole number to the tool's one whole-number parameter when the
        call sets none and gives only that number. Asked who made the latest commit, the 1.5B called ``git_log``
        with ``"limit": 1`` (its parameter is ``max_count``): dropped, the log listed four commits, and the
        model went on to save all four authors or none. Each name dropped costs the model a request to mend the
        call when the parameter is required, and the value when it is not.

        Of several texts whose names share a word with the parameter's, the one the ``task`` holds, when only one
        does: asked for the current UTC time, the 0.5B called ``get_current_time`` with ``convert_time``'s
        ``source_timezone`` "UTC" and ``target_timezone`` "America/New_York"; mended, it became New York's time."""
        schema = self.tool.input_schema or {}
        params = schema.get("properties")
        if not isinstance(params, dict) or schema.get("additionalProperties", False) is not False:
            return arguments
        unknown = {k: v for k, v in arguments.items() if k not in params}
        free = [k for k in params if k not in arguments]
        renamed: dict[str, str] = {}
        for name in (k for k in free if k in (schema.get("required") or ()) and _takes(params[k], "string")):
            words = set(name_words(name))
            alike = [k for k, v in unknown.items() if isinstance(v, str) and words & set(name_words(k))]
            if len(alike) > 1 and task is not None:
                alike = [k for k in alike if _mentioned(unknown[k], task)]
            if len(alike) == 1 and alike[0] not in renamed:
                renamed[alike[0]] = name
        numbers = [k for k, v in unknown.items() if type(v) is int]
        counts = [k for k in free if _takes(params[k], "integer")]
        if len(numbers) == 1 and len(counts) == 1:
            renamed[numbers[0]] = counts[0]
        if renamed:
            logger.debug("Renamed arguments of %s: %s", self.label, renamed)
        return {renamed.get(k, k): v for k, v in arguments.items()}

    def _split(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """A search given the path of what it looks for as the folder to search, sent as a search of that path's
        folder for its last part: a file's name (``name.ext``) or a glob (``*.csv``), when no ``pattern`` is given
        or the pattern is that part. After reading a guessed ``project/settings.ini`` failed and asked for
        ``search_files``, the 0.5B called it with ``{"path": ".../project/settings.ini"}`` in 5 of 8 replies, and
        asked to mend a search with a ``directory``, it wrote that path with the pattern ``settings.ini``: the
        search of the path as a folder failed again. Asked how many CSV files a folder holds, it searched with
        the pattern ``/tmp/.../data/*.csv`` and no path, and mended that into the path: a pattern holding a whole
        path (from ``/`` or ``~``) with no path given is split the same way. Only for a search tool
        (``searches``) that takes both, and a last part that is a name or a glob, not a folder's."""
        path, pattern = arguments.get("path"), arguments.get("pattern")
        params = (self.tool.input_schema or {}).get("properties") or {}
        if not {"path", "pattern"} <= set(params) or not searches(self):
            return arguments
        if path is None and isinstance(pattern, str) and pattern.startswith(("/", "~")):
            path, pattern = pattern, None
        if not isinstance(path, str):
            return arguments
        folder, _, name = path.rstrip("/").rpartition("/")
        if not folder or _GLOB.search(folder) or not (_FILE_NAME.fullmatch(name) or _GLOB.search(name)):
            return arguments
        if pattern and (not isinstance(pattern, str) or pattern.rpartition("/")[2] != name):
            return arguments
        logger.debug("Searching %s for %s with %s", folder, name, self.label)
        return {**arguments, "path": folder, "pattern": pattern or name}

    def _globbed(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """A ``pattern`` without a folder part made to match in subfolders too (``**/`` before it), for a tool
        that only reads and whose description gives ``**/`` as the way to do that. The filesystem server's
        ``search_files`` describes itself as recursive, yet its glob ``settings.ini`` matches only at the top of the
        folder searched ("No matches found"); the small models write such patterns, and ``*.ini``, even shown
        the description. ``**/`` also matches at the top, so nothing the pattern matched is lost."""
        pattern = arguments.get("pattern")
        if (
            not isinstance(pattern, str)
            or not pattern.strip()
            or "/" in pattern
            or "**/" not in (self.tool.description or "")
            or not declares_read_only(self.tool)
        ):
            return arguments
        logger.debug("Searching subfolders too with %s: **/%s", self.label, pattern)
        return {**arguments, "pattern": f"**/{pattern}"}

    def _listed(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Arguments that are one item of the tool's list parameter, written without the list, put in it:
        ``add_observations`` takes ``{"observations": [{"entityName": ..., "contents": [...]}]}``, and the 0.5B
        wrote ``{"entityName": "Marie Curie", "contents": [...]}``. Taken as written, every name was dropped as
        one the tool does not have. Only names the item has (``_item_fields``): given ``create_entities`` with a
        contact's ``name``, ``job`` and ``city`` put in the list as they were, the 1.5B, asked to mend it, wrote it
        again as it was; given the call without them (``{}``), it wrote the entity. A text where a list of texts
        goes becomes a list of it."""
        name = self.list_parameter()
        if name is not None and arguments and name not in arguments:
            item = _items(self.tool.input_schema["properties"][name])
            if (fields := _item_fields(arguments, item, name)) is not None:
                logger.debug("Put the arguments of %s in its list %s: %s", self.label, name, fields)
                return {name: [_texts_listed(fields, item)]}
        return _texts_listed(arguments, self.tool.input_schema or {})

    def list_parameter(self) -> str | None:
        """The tool's one parameter, when it is a list of objects (``entities`` of ``create_entities``)."""
        params = (self.tool.input_schema or {}).get("properties") or {}
        if len(params) != 1:
            return None
        name, param = next(iter(params.items()))
        return name if _items(param).get("properties") else None


def _fits(offered: OfferedTool, given: set[str]) -> bool:
    """Whether a tool takes every argument named in ``given`` and requires none left out."""
    schema = offered.tool.input_schema or {}
    params = schema.get("properties") or {}
    return given <= set(params) and set(schema.get("required") or ()) <= given


def _item_fields(arguments: dict[str, Any], item: dict[str, Any], list_name: str) -> dict[str, Any] | None:
    """Arguments written as one item of the list ``list_name``, as that item's fields; None when they are not one.

    A field may be written under its name's words with the item's own name before them (``entity_name`` for
    ``name`` in ``entities``) or joined otherwise (``entity_type`` for ``entityType``). Texts under names the item
    does not have, beside at least one field it requires, become ``name: text`` items of its one list of texts
    when none is given: with the commit's author read, the 0.5B called ``create_entities`` with ``entity_type``
    "person", ``entity_name`` "Grace Hopper", ``entity_date`` and ``entity_message``; every name was dropped, and
    asked to mend the empty call, it made up an entity "Widget1"."""
    props = item.get("properties") or {}
    if set(arguments) <= set(props):
        return arguments
    own = (name_words(list_name) or [""])[-1]
    own = own[:-3] + "y" if own.endswith("ies") else own.removesuffix("s")
    fields: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in arguments.items():
        words = name_words(key)
        unprefixed = words[1:] if words[:1] == [own] else words
        meant = [p for p in props if p not in arguments and name_words(p) in (words, unprefixed)]
        if key in props or (len(meant) == 1 and meant[0] not in fields):
            fields[key if key in props else meant[0]] = value
        else:
            rest[" ".join(unprefixed) or key] = value
    if not set(item.get("required") or ()) & set(fields):
        return None
    texts = [p for p in props if _items(props[p]).get("type") == "string" and p not in fields]
    if rest and (len(texts) != 1 or not all(isinstance(v, str) and v.strip() for v in rest.values())):
        return None
    if rest:
        fields[texts[0]] = [f"{key}: {value.strip()}" for key, value in rest.items()]
    return fields


def _items(param: Any) -> dict[str, Any]:
    """The item schema of an array parameter; empty for any other parameter."""
    if not isinstance(param, dict) or param.get("type") != "array" or not isinstance(param.get("items"), dict):
        return {}
    items: dict[str, Any] = param["items"]
    return items


def _takes(param: Any, kind: str) -> bool:
    """Whether a parameter's schema takes values of one JSON type, ``kind`` (or that or ``null``)."""
    if not isinstance(param, dict):
        return False
    kinds = [param] if "type" in param else param.get("anyOf") or param.get("oneOf") or []
    types: set[Any] = set()
    for each in kinds:
        written = each.get("type") if isinstance(each, dict) else None
        types.update(written if isinstance(written, list) else [written])
    return types - {"null"} == {kind}


def _texts_listed(value: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The object with each text where its schema takes a list of texts made a list of that one text, in it and
    in the objects of its lists."""
    params = schema.get("properties") or {}
    fitted = dict(value)
    for name, given in value.items():
        item = _items(params.get(name))
        if isinstance(given, str) and item.get("type") == "string":
            fitted[name] = [given]
        elif isinstance(given, list) and item.get("properties"):
            fitted[name] = [_texts_listed(one, item) if isinstance(one, dict) else one for one in given]
    return fitted


def _copied_example(name: str, value: Any, schema: dict[str, Any], task: str) -> bool:
    """Whether an optional argument's value is an example quoted in its parameter's description,
    which the task does not mention."""
    param = (schema.get("properties") or {}).get(name)
    if not isinstance(param, dict) or not isinstance(value, str) or name in (schema.get("required") or ()):
        return False
    description = param.get("description")
    if not isinstance(description, str) or not value.strip() or _mentioned(value, task):
        return False
    return any(f"{quote}{value}{quote}" in description for quote in ("'", '"', "`"))


def _mentioned(value: Any, task: str) -> bool:
    """Whether the task holds ``value``: a string as written, anything else as JSON and not inside a word or a
    longer number. The 0.5B's read of ``/tmp/live-ujfyg3o5/project/notes.txt`` with ``head`` and ``tail`` failed, and
    ran again with ``"head": 5``, taken for the task's own by the folder's name; it answered with the head of the
    file, its first line."""
    if isinstance(value, str):
        return bool(value.strip()) and value.lower() in task.lower()
    text = json.dumps(value, ensure_ascii=False).lower()
    return re.search(rf"(?<![\w.]){re.escape(text)}(?!\w|\.\d)", task.lower()) is not None


class Toolbox:
    """Every tool of a task's servers. Built once per task, so the tool list is byte-identical each round.

    The task's ``ToolPolicy`` decides which tools are offered (in a read-only task, only those that
    declare ``readOnlyHint: true``); the others are withheld, and a call of one is refused without
    reaching its server. The ``Approver`` decides, call by call, whether an offered tool that is not
    read-only runs. Every call that did not run is in ``refusals``.
    """

    def __init__(
        self,
        providers: Sequence[ToolProvider],
        *,
        read_only: bool = False,
        policy: ToolPolicy | None = None,
        approver: Approver | None = None,
    ) -> None:
        pairs: list[tuple[ToolProvider, Tool]] = []
        policy = policy or ToolPolicy(read_only=read_only)
        self.read_only = policy.read_only
        self.approver = approver
        self.withheld: dict[str, str] = {}
        """Names of the tools the task does not offer, with their ``server.tool`` labels."""
        self.withheld_why: dict[str, Refusal] = {}
        """Why each withheld tool (by ``server.tool``) is not offered."""
        self.refusals: list[RefusedCall] = []
        for provider, tool in [(p, t) for p in providers for t in p.tools]:
            withheld = policy.withheld(provider.name, tool)
            if withheld is None:
                pairs.append((provider, tool))
                continue
            label = f"{provider.name}.{tool.name}"
            self.withheld_why[label] = Refusal(*withheld)
            for alias in (tool.name, label, f"{provider.name}__{tool.name}", _clean(tool.name)):
                self.withheld.setdefault(alias, label)
        base_counts = Counter(_clean(tool.name) for _, tool in pairs)
        self.tools: list[OfferedTool] = []
        self._by_name: dict[str, OfferedTool] = {}
        for provider, tool in pairs:
            base = _clean(tool.name)
            wanted = base if base_counts[base] == 1 else _clean(f"{provider.name}__{tool.name}")
            name = self._unique(wanted)
            offered = OfferedTool(api_name=name, provider=provider, tool=tool)
            self.tools.append(offered)
            self._by_name[name] = offered
        self.openai_tools = [t.to_openai() for t in self.tools]
        self.known_names = frozenset(self._by_name).union(*(t.aliases for t in self.tools), self.withheld)
        """Every name ``lookup`` accepts (and the withheld ones), to recognise calls a model wrote as text."""

    def _unique(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self._by_name:
            suffix = f"_{n}"
            candidate = name[: MAX_NAME - len(suffix)] + suffix
            n += 1
        return candidate

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def lookup(self, name: str) -> OfferedTool | None:
        """The tool the model meant: its exact name, else ``server.tool``/``server__tool``, else a unique bare name."""
        if found := self._by_name.get(name):
            return found
        matches = [t for t in self.tools if name in t.aliases]
        if len(matches) == 1:
            return matches[0]
        folded = [t for t in self.tools if t.api_name.lower() == name.lower()]
        return folded[0] if len(folded) == 1 else None

    def arguments_hint(self, call_name: str, arguments: dict[str, Any]) -> str | None:
        """For a failed call whose arguments do not fit its tool's schema (``shape_problems``): the arguments
        the tool takes, as its schema says, so the model can write the call again. A small model given only
        the server's "expected array, received undefined at entities" describes the error instead."""
        offered = self.lookup(call_name)
        if offered is None or not self.shape_problems(call_name, json.dumps(arguments)):
            return None
        shape = json.dumps(conventional_schema(offered.tool.input_schema), ensure_ascii=False, separators=(",", ":"))
        if len(shape) > MAX_HINT_CHARS:
            shape = shape[:MAX_HINT_CHARS] + " ..."
        return f"{offered.tool.name} takes these arguments (JSON Schema): {shape}"

    def shape_problems(self, call_name: str, arguments: str) -> list[str]:
        """What is wrong with the shape of a call's arguments (JSON text) by its tool's schema: required
        properties left out and values of the wrong type, at any depth, as ``where: what`` lines (at most
        four). Empty when they fit, when the tool is unknown, or when its schema cannot be used."""
        offered = self.lookup(call_name)
        if offered is None or not offered.tool.input_schema:
            return []
        try:
            value = json.loads(arguments or "{}")
            if not isinstance(value, dict):
                return []  # the call's own error says what is wrong: see ``agent._parse_arguments``
            validator = jsonschema.validators.validator_for(offered.tool.input_schema)(offered.tool.input_schema)
            errors = [e for e in validator.iter_errors(value) if e.validator in ("required", "type")]
        except (json.JSONDecodeError, jsonschema.exceptions.SchemaError, referencing.exceptions.Unresolvable):
            return []
        errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
        return [f"{_json_path(e.absolute_path)}: {e.message}" for e in errors[:4]]

    def incomplete_read(self, call_name: str, arguments: str) -> bool:
        """Whether the call is of a tool that only reads, without every argument its schema requires.

        Asked for the answer, a small model often names such a call instead (``convert_time`` with no
        times after ``get_current_time``): not a step the task needs, and it fails if run.
        """
        offered = self.lookup(call_name)
        if offered is None or not declares_read_only(offered.tool):
            return False
        try:
            value = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return True
        required = (offered.tool.input_schema or {}).get("required") or ()
        return not isinstance(value, dict) or any(name not in value for name in required)

    def prepared(self, call_name: str, arguments: str, task: str | None = None) -> str:
        """A call's arguments (JSON text) as they will be sent, for the conversation; as written when
        they are not a JSON object (or the list of the tool's one list parameter) or the tool is unknown.
        ``task``: see ``OfferedTool.prepare_arguments``."""
        offered = self.lookup(call_name)
        try:
            written = value = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return arguments
        if offered is not None and isinstance(value, list) and (name := offered.list_parameter()) is not None:
            value = {name: value}  # the list alone, as the 0.5B wrote create_entities' entities
        if offered is None or not isinstance(value, dict):
            return arguments
        prepared = offered.prepare_arguments(value, task)
        return arguments if prepared == written else json.dumps(prepared, ensure_ascii=False)

    def meant(self, call_name: str, arguments: str, task: str | None = None) -> str:
        """The tool a read-only call's arguments were written for: the named tool when they give what it requires,
        else the one other read-only tool of its server that takes every argument given, requires none left out,
        and has a parameter given that the named tool does not have. Asked how many CSV files a folder holds,
        the 0.5B called ``read_multiple_files`` (``paths`` required) with ``list_directory_with_sizes``'s
        ``path`` and ``sortBy`` in 3 of 3 runs; mended, the folder was read as a file and failed, and the answer
        was made up."""
        offered = self.lookup(call_name)
        try:
            value = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return call_name
        if offered is None or not isinstance(value, dict) or not declares_read_only(offered.tool):
            return call_name
        given = set(offered._renamed(offered._unwrapped(value), task)) - _WRAPPER_KEYS
        schema = offered.tool.input_schema or {}
        if set(schema.get("required") or ()) <= given:
            return call_name
        own = set(schema.get("properties") or {})
        fitting = [
            t
            for t in self.tools
            if t.server == offered.server
            and t is not offered
            and declares_read_only(t.tool)
            and _fits(t, given)
            and given - own
        ]
        if len(fitting) != 1:
            return call_name
        logger.info(
            "Calling %s: the arguments given to %s are its own (%s)", fitting[0].label, offered.label, sorted(given)
        )
        return fitting[0].api_name

    def closest(self, name: str, n: int = 3) -> list[str]:
        """Offered names that look like ``name`` (for a model that made one up). A tool that declares it may
        remove or overwrite something is among them only for a misspelling of its name: by spelling,
        ``move_file`` is the closest to a made-up ``copy_file``, and the 1.5B, told so, chose it to copy.

        Names that share a word with ``name`` come first: the 1.5B calls the first name it is given, and for
        ``copy_file`` it called ``search_files``, closer by spelling, where ``read_file`` first had it read
        the file to copy."""
        looks = difflib.get_close_matches(name, self.names, n=len(self.names), cutoff=0.4)
        shared = set(name_words(name))
        looks.sort(key=lambda c: not shared.intersection(name_words(c)))  # a name that shares a word first
        return [c for c in looks if not declares_destructive(self._by_name[c].tool) or _misspelt(name, c)][:n]

    def search_tools(self, server: str) -> list[OfferedTool]:
        """The search tools of ``server`` (``searches``)."""
        return [t for t in self.tools if t.server == server and searches(t)]

    def without_guesses(self, name: str, arguments: dict[str, Any], task: str) -> dict[str, Any] | None:
        """The arguments of a failed read-only call without the optional values the task never mentions,
        for one more try; None when there are none or the tool may change something.

        A small model fills optional parameters it was not asked for (``read_text_file`` with both ``head``
        and ``tail``, which the server refuses); a tool that only reads can safely run once more without them.
        """
        offered = self.lookup(name)
        if offered is None or not declares_read_only(offered.tool):
            return None
        required = set((offered.tool.input_schema or {}).get("required") or ())
        kept = {k: v for k, v in arguments.items() if k in required or _mentioned(v, task)}
        return kept if len(kept) < len(arguments) else None

    def without_added(self, name: str, before: str, mended: str, known: str) -> str:
        """A mended call's arguments (JSON text) without the optional ones it did not have before (``before``)
        and whose values ``known`` (the task and the results) does not hold.

        Mending fixes a call's shape; values the model fills in while doing it are guesses. Asked to mend a
        ``git_log`` call that lacked ``repo_path``, the 0.5B also added a day in 2023 to search, and the log
        came back empty.
        """
        offered = self.lookup(name)
        try:
            had, value = json.loads(before or "{}"), json.loads(mended)
        except json.JSONDecodeError:
            return mended
        if offered is None or not isinstance(had, dict) or not isinstance(value, dict):
            return mended
        required = set((offered.tool.input_schema or {}).get("required") or ())
        kept = {k: v for k, v in value.items() if k in required or k in had or _mentioned(v, known)}
        if len(kept) == len(value):
            return mended
        logger.debug(
            "Dropped arguments %s added to %s when it was mended", sorted(set(value) - set(kept)), offered.label
        )
        return json.dumps(kept, ensure_ascii=False)

    def unknown_tool(self, name: str) -> str:
        """What a model is told when it calls a tool that is not offered."""
        closest = [self._by_name[c] for c in self.closest(name)]
        hint = f" Did you mean {' or '.join(_named(t) for t in closest)}?" if closest else ""
        return f"there is no tool named {name[:100]!r}.{hint} Available tools: {', '.join(self.names)}"

    async def run(
        self, name: str, arguments: dict[str, Any], *, timeout: float, max_chars: int | None = None
    ) -> ToolOutcome:
        """Runs one call; every failure is in the outcome, for the model to read, in at most ``max_chars``."""
        started = time.perf_counter()
        offered = self.lookup(name)
        if offered is None and name in self.withheld:
            label = self.withheld[name]
            why = self.withheld_why[label]
            refused = f"{name} is not available: {why.reason}. Available tools: {', '.join(self.names)}"
            self.refusals.append(RefusedCall(name=label, by=why.by, reason=why.reason))
            return ToolOutcome(label, _cut(f"Error: {refused}", max_chars), refused, 0.0)
        if offered is None:
            unknown = self.unknown_tool(name)
            return ToolOutcome(name[:100], _cut(f"Error: {unknown}", max_chars), unknown, 0.0)
        prepared = offered.prepare_arguments(arguments)
        if self.approver is not None and (refusal := await self.approver.check(offered, prepared)) is not None:
            self.refusals.append(RefusedCall(name=offered.label, by=refusal.by, reason=refusal.reason))
            ms = round((time.perf_counter() - started) * 1000, 1)
            return ToolOutcome(offered.label, _cut(f"Error: {refusal.reason}", max_chars), refusal.reason, ms)
        error: str | None = None
        images: tuple[ToolImage, ...] = ()
        try:
            result = await offered.provider.call_tool(offered.tool.name, prepared, timeout=timeout)
        except ToolCallFailed as exc:
            error = str(exc)
            text = _cut(f"Error: {error}", max_chars)
            answered = not isinstance(exc, ToolTimeout | ChildGone)
        else:
            answered = True
            text = render_tool_result(result, max_chars)
            images = images_of(result)
            if result.is_error:
                error = (text.splitlines() or ["(no message)"])[0][:200]
                text = text if text.startswith("Error: ") else f"Error: {text}"
        ms = round((time.perf_counter() - started) * 1000, 1)
        return ToolOutcome(label=offered.label, text=text, error=error, ms=ms, images=images, answered=answered)


def render_tool_result(result: CallToolResult, limit: int | None = None) -> str:
    """A tool result as text for the model; past ``limit`` characters, cut with a marker saying how much.

    Blocks past the limit are only measured, never copied: a result of megabytes costs no second copy.
    """
    parts: list[str] = []
    kept = total = 0
    for block in result.content:
        if isinstance(block, TextContent):
            total += len(block.text) + (1 if total else 0)
            if limit is None or kept <= limit:
                parts.append(block.text[: None if limit is None else limit - kept + 1])
                kept += len(parts[-1]) + 1
            continue
        if isinstance(block, ImageContent):
            piece = f"[image: {block.mime_type}, {len(block.data) * 3 // 4} bytes]"
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            piece = getattr(resource, "text", None) or f"[resource: {resource.uri}]"
        else:
            piece = f"[{getattr(block, 'type', 'content')}]"
        total += len(piece) + (1 if total else 0)
        if limit is None or kept <= limit:
            parts.append(piece)
            kept += len(piece) + 1
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
        total = len(parts[0])
    text = "\n".join(parts) if parts else "(no output)"
    if limit is None or total <= limit:
        return text
    return f"{text[:limit]}\n[... {total - limit:,} of {total:,} characters cut ...]"


def _cut(text: str, budget: int | None) -> str:
    return text if budget is None else truncate(text, budget)


def truncate(text: str, budget: int) -> str:
    """At most ``budget`` characters, with a marker saying how much was cut."""
    if len(text) <= budget:
        return text
    cut = len(text) - budget
    return f"{text[:budget]}\n[... {cut:,} of {len(text):,} characters cut ...]"


def argument_shape(schema: Any, depth: int = 0) -> str:
    """The arguments a JSON Schema requires, written as a call writes them, with type names for values:
    ``{"path": string, "tags": [string]}``. A small model that named the right tool in a plain-text reply
    often gets its arguments wrong (``create_entities`` with ``name`` and ``job``); shown this, it copies it."""
    if not isinstance(schema, dict) or depth > 4:
        return "value"
    if "enum" in schema and isinstance(schema["enum"], list):
        return "|".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"][:6])
    kind = schema.get("type")
    if kind == "array" or "items" in schema:
        return f"[{argument_shape(schema.get('items'), depth + 1)}]"
    params = schema.get("properties")
    if kind == "object" or isinstance(params, dict):
        params = params if isinstance(params, dict) else {}
        required = [name for name in schema.get("required") or () if name in params]
        shown = required if (required or depth == 0) else list(params)
        inner = ", ".join(f"{json.dumps(name)}: {argument_shape(params[name], depth + 1)}" for name in shown)
        return "{" + inner + "}"
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "value")
    return kind if isinstance(kind, str) else "value"


MISSPELT = 0.85
"""How alike (``difflib``'s ratio, separators and case aside) a made-up name must be to an offered one to be
taken as a misspelling of it: ``movefile`` or ``Move-File`` for ``move_file``, not ``copy_file`` (0.62)."""


def name_words(name: str) -> list[str]:
    """A name's words, in lower case: ``search_files``, ``searchFiles`` and ``search-files`` give
    ``search`` and ``files``."""
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)]


def file_name(path: str) -> str | None:
    """The last part of a path when it is a file's name with an extension (``settings.ini``): no glob, no folder."""
    name = path.rstrip("/").rpartition("/")[2]
    return name if _FILE_NAME.fullmatch(name) else None


def searches(offered: OfferedTool) -> bool:
    """Whether a tool only reads and its name says it searches or finds (``search_files``, ``search_nodes``)."""
    return declares_read_only(offered.tool) and bool({"search", "find"} & set(name_words(offered.tool.name)))


def _misspelt(written: str, name: str) -> bool:
    def plain(text: str) -> str:
        return re.sub(r"[\W_]+", "", text).lower()

    return difflib.SequenceMatcher(None, plain(written), plain(name)).ratio() >= MISSPELT


def _named(offered: OfferedTool) -> str:
    """``move_file (Move or rename files and directories.)``: a tool's name with its description's first sentence."""
    description = (offered.tool.description or "").strip()
    return f"{offered.api_name} ({_first_sentence(description, 70)})" if description else offered.api_name


def _json_path(path: Sequence[Any]) -> str:
    """``entities[0].name`` for the path ``["entities", 0, "name"]``; ``arguments`` for the top level."""
    written = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    return written or "arguments"


def _first_sentence(text: str, limit: int = 100) -> str:
    sentence = re.split(r"(?<=[.!?])\s|\n", text, maxsplit=1)[0].strip()
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def conventional_schema(schema: Any) -> Any:
    """``schema`` with ``type``, ``description``, ``properties``, ... first at every level; same content.

    pydantic's ``title``s stay, though they only reword each name ("Repo Path" for ``repo_path``): without
    them the 1.5B asked for the time in three cities wrote one call where it had written all three (0 of 8
    runs passed, against 8 of 8 with them)."""
    if isinstance(schema, list):
        return [conventional_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ordered = {key: schema[key] for key in _SCHEMA_KEY_ORDER if key in schema}
    ordered.update(schema)
    out: dict[str, Any] = {}
    for key, value in ordered.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: conventional_schema(sub) for name, sub in value.items()}
        elif key in ("enum", "required", "const", "default", "examples"):
            out[key] = value
        else:
            out[key] = conventional_schema(value)
    return out


def _clean(name: str) -> str:
    cleaned = _INVALID.sub("_", name).strip("_") or "tool"
    if len(cleaned) <= MAX_NAME:
        return cleaned
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{cleaned[: MAX_NAME - 9]}_{digest}"
