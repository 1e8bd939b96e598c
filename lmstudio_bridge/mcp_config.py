"""MCP config files: where they are, what they say, as typed server specs.

Sources, highest priority first; the first file to name a server wins:

1. the files listed in ``LMSTUDIO_BRIDGE_MCP_CONFIG``, then in ``MCP_JSON_PATH``
   (``os.pathsep``-separated lists);
2. the ``--mcp-config`` files;
3. ``.mcp.json`` in the working directory and in each parent, nearest first
   (Claude Code's project file);
4. ``~/.lmstudio/mcp.json`` (LM Studio's);
5. Claude Desktop's ``claude_desktop_config.json`` at its per-OS location.

Every lookup stats the candidate files and parses again only those whose
(mtime, size, inode) changed, so an edit takes effect without a restart.
A broken file is skipped and reported in ``McpCatalog.problems``; it never
makes a lookup fail.

``${VAR}`` and ``${VAR:-default}`` expand in ``command``, ``args``, ``env``
values, ``cwd``, ``url`` and ``headers`` values. As in Claude Code, a variable
that is set (even to an empty string) gives its value, the default applies only
when it is unset, a bare ``$VAR`` is left alone, and the result is not expanded
again. Unlike Claude Code (which keeps the ``${VAR}`` text), an unset variable
without a default becomes an empty string, and a problem naming it is recorded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from .config import MCP_CONFIG_ENV
from .errors import McpDisabled, McpError, McpNotFound, McpSelfReference

logger = logging.getLogger(__name__)

CONFIG_ENV_VARS = MCP_CONFIG_ENV
FLAG_KIND = "--mcp-config"
PROJECT_KIND = "project .mcp.json"
LMSTUDIO_KIND = "LM Studio"
CLAUDE_DESKTOP_KIND = "Claude Desktop"
EXPLICIT_KINDS = frozenset({*CONFIG_ENV_VARS, FLAG_KIND})
"""Files the user named: these must exist. Other candidates are skipped when missing."""

MASK = "***"
BRIDGE_NAME = "lmstudio-bridge"

Transport = Literal["stdio", "http", "unsupported"]
StatKey = tuple[int, int, int]


class McpServerSpec(BaseModel, frozen=True, extra="forbid"):
    """One server entry of an MCP config file, variables expanded.

    Frozen and hashable: an edited entry gives a different spec, so a spec (or
    its ``launch_key()``) can key a cache of running children. ``env`` and
    ``headers`` values are masked in ``repr()`` and ``str()``; ``command``,
    ``args`` and ``url`` appear there as written in the file, since a ``${VAR}``
    in them may hold a secret. Show ``shown_command`` and ``shown_url``, never
    the expanded values.
    """

    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    """Sorted (name, value) pairs."""
    cwd: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """Sorted (name, value) pairs."""
    disabled: bool = False
    source: str
    """The file the entry came from."""
    is_bridge: bool = False
    """The entry would start lmstudio-bridge itself."""
    unsupported: str | None = None
    """Why the entry cannot be used (an unsupported type or an invalid entry); None if it can."""
    written_command: str | None = None
    written_args: tuple[str, ...] | None = None
    written_url: str | None = None
    """``command``, ``args`` and ``url`` as written in the file, ``${VAR}`` unexpanded; None in a spec built in code."""

    @property
    def shown_command(self) -> str | None:
        """The command line to show: as written in the file, so no expanded variable (a token) appears."""
        command = self.written_command if self.written_command is not None else self.command
        if command is None:
            return None
        args = self.written_args if self.written_args is not None else self.args
        return " ".join([command, *args])

    @property
    def shown_url(self) -> str | None:
        """The URL to show: as written in the file (``${VAR}`` unexpanded)."""
        return self.written_url if self.written_url is not None else self.url

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def headers_dict(self) -> dict[str, str]:
        return dict(self.headers)

    def launch_key(self) -> tuple[object, ...]:
        """What decides "the same child": everything but name, source and disabled."""
        return (self.transport, self.command, self.args, self.env, self.cwd, self.url, self.headers)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        written = {"command": self.written_command, "args": self.written_args, "url": self.written_url}
        for key, value in super().__repr_args__():
            if key in ("env", "headers"):
                value = tuple((name, MASK) for name, _ in value)
            elif key in written:
                value = value if written[key] is None else written[key]
            elif key is not None and key.startswith("written_"):
                continue
            yield key, value


# --- ${VAR} expansion -------------------------------------------------------

_VAR = re.compile(r"\$\{([^}]+)\}")


def expand_vars(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expands ``${VAR}`` and ``${VAR:-default}`` in one pass.

    Returns the text and the names of unset variables that had no default
    (each became an empty string).
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, sep, default = match.group(1).partition(":-")
        if name in environ:
            return environ[name]
        if sep:
            return default
        if name not in missing:
            missing.append(name)
        return ""

    return _VAR.sub(replace, text), missing


# --- self-detection -----------------------------------------------------------

_DIST_REF = re.compile(r"[\[@=<>!~;\s]")
_PACKAGE_SEP = re.compile(r"[-_.]+")
_EXEC_SUFFIXES = (".exe", ".cmd", ".bat", ".py", ".pyw", ".git")
_SOURCE_OPTIONS = frozenset({"--from", "--with", "--spec"})
_SCRIPT_DIRS = frozenset({"bin", "scripts"})


def _names_bridge(word: str) -> bool:
    """True if ``word`` (a command, package, entry point or its path) names lmstudio-bridge."""
    word = word.split("#", 1)[0].split("?", 1)[0].rstrip("/\\")
    base = re.split(r"[/\\]", word)[-1]
    base = _DIST_REF.split(base, maxsplit=1)[0]
    lowered = base.lower()
    for suffix in _EXEC_SUFFIXES:
        if lowered.endswith(suffix):
            lowered = lowered[: -len(suffix)]
            break
    return _PACKAGE_SEP.sub("-", lowered) == BRIDGE_NAME


def _path_runs_bridge(word: str, previous: str) -> bool:
    """A path-like argument: only an executable, a package source or the package's __main__ counts.

    A bare directory such as a checkout of this project (handed, say, to a
    filesystem server) does not.
    """
    parts = [p for p in re.split(r"[/\\]", word.split("#", 1)[0]) if p]
    if not parts:
        return False
    is_source = previous in _SOURCE_OPTIONS or "://" in word or word.startswith(("git+", "file:"))
    in_script_dir = len(parts) > 1 and parts[-2].lower() in _SCRIPT_DIRS
    if (is_source or in_script_dir) and _names_bridge(word):
        return True
    return len(parts) > 1 and parts[-1] == "__main__.py" and _names_bridge(parts[-2])


def _word_runs_bridge(word: str, previous: str) -> bool:
    if "/" in word or "\\" in word:
        return _path_runs_bridge(word, previous)
    return _names_bridge(word)


def is_bridge_command(command: str | None, args: Sequence[str]) -> bool:
    """True if running ``command args`` would start lmstudio-bridge.

    Recognises ``lmstudio-bridge`` (any path, ``.exe``), ``uvx lmstudio-bridge[@v]``,
    ``uvx --from git+.../lmstudio-bridge ...``, ``python -m lmstudio_bridge``,
    ``uv run --directory /x lmstudio-bridge``, ``.../bin/lmstudio-bridge`` as an
    argument, and the same inside ``sh -c "..."`` strings.
    """
    words = [word.strip("'\"") for arg in args for word in arg.split()]
    if command:
        if _names_bridge(command):
            return True
        if "/" not in command and "\\" not in command:
            words = command.split()[1:] + words
    previous = ""
    for word in words:
        if previous == "-m" or (word.startswith("-m") and len(word) > 2 and not word.startswith("--")):
            module = word if previous == "-m" else word[2:]
            if _names_bridge(module.split(".", 1)[0]):
                return True
        elif word.startswith("-"):
            option, eq, value = word.partition("=")
            if eq and _word_runs_bridge(value, option):
                return True
        elif _word_runs_bridge(word, previous):
            return True
        previous = word
    return False


# --- parsing one file ---------------------------------------------------------


class _InvalidEntry(Exception):
    """An entry that cannot be used; the message says why (it never quotes values)."""


@dataclass
class _EntryContext:
    name: str
    source: Path
    environ: Mapping[str, str]
    home: Path
    missing: list[str] = field(default_factory=list)

    def expand(self, text: str) -> str:
        expanded, missing = expand_vars(text, self.environ)
        self.missing += [var for var in missing if var not in self.missing]
        return expanded


def _scalar(value: object) -> str | None:
    """JSON strings as they are; numbers and booleans as JSON writes them; anything else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _string(raw: Mapping[str, Any], key: str, ctx: _EntryContext) -> str:
    value = raw.get(key)
    if value is None:
        raise _InvalidEntry(f'"{key}" is missing')
    if not isinstance(value, str):
        raise _InvalidEntry(f'"{key}" must be a string')
    expanded = ctx.expand(value).strip()
    if not expanded:
        unset = expand_vars(value, ctx.environ)[1]
        because = f": {', '.join(f'${{{var}}}' for var in unset)} is not set" if unset else ""
        raise _InvalidEntry(f'"{key}" is empty{because}')
    return expanded


def _strings(raw: Mapping[str, Any], key: str, ctx: _EntryContext) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The list ``key`` expanded, and as written."""
    value = raw.get(key)
    if value is None:
        return (), ()
    items = [_scalar(item) for item in value] if isinstance(value, list) else [None]
    if any(item is None for item in items):
        raise _InvalidEntry(f'"{key}" must be a list of strings')
    written = tuple(item for item in items if item is not None)
    return tuple(ctx.expand(item) for item in written), written


def _pairs(raw: Mapping[str, Any], key: str, ctx: _EntryContext) -> tuple[tuple[str, str], ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _InvalidEntry(f'"{key}" must be an object of strings')
    pairs = []
    for name, item in value.items():
        text = _scalar(item)
        if text is None:
            raise _InvalidEntry(f'"{key}.{name}" must be a string')
        pairs.append((name, ctx.expand(text)))
    return tuple(sorted(pairs))


def _cwd(raw: Mapping[str, Any], ctx: _EntryContext) -> str | None:
    """The entry's working directory; a relative one is taken from the config file's folder."""
    value = raw.get("cwd")
    if value is None:
        return None
    if not isinstance(value, str):
        raise _InvalidEntry('"cwd" must be a string')
    text = ctx.expand(value).strip()
    if not text:
        return None
    path = _expand_user(text, ctx.home)
    if not path.is_absolute():
        path = ctx.source.parent / path
    return os.path.normpath(path)


def _transport(raw: Mapping[str, Any]) -> tuple[Transport, str | None]:
    kind = raw.get("type")
    if kind is None:
        return ("http", None) if "url" in raw and "command" not in raw else ("stdio", None)
    if not isinstance(kind, str):
        raise _InvalidEntry('"type" must be a string')
    folded = re.sub(r"[-_\s]", "", kind).lower()
    if folded == "stdio":
        return "stdio", None
    if folded in ("http", "streamablehttp"):
        return "http", None
    reason = f'type "{kind}" is not supported; the bridge runs "stdio" and "http" (streamable HTTP) servers'
    if folded == "sse":
        reason += ' (if the server also offers streamable HTTP, use that URL with "type": "http")'
    return "unsupported", reason


def _entry(raw: object, ctx: _EntryContext) -> McpServerSpec:
    if not isinstance(raw, dict):
        raise _InvalidEntry("the entry is not a JSON object")
    disabled = raw.get("disabled", False)
    if not isinstance(disabled, bool):
        raise _InvalidEntry('"disabled" must be true or false')
    common: dict[str, Any] = {"name": ctx.name, "source": str(ctx.source), "disabled": disabled}
    transport, reason = _transport(raw)
    if reason is not None:
        url = raw.get("url")
        return McpServerSpec(
            **common, transport="unsupported", url=url if isinstance(url, str) else None, unsupported=reason
        )
    if transport == "http":
        url = _string(raw, "url", ctx)
        if not url.lower().startswith(("http://", "https://")):
            raise _InvalidEntry('"url" must start with http:// or https://')
        return McpServerSpec(
            **common, transport="http", url=url, headers=_pairs(raw, "headers", ctx), written_url=raw["url"].strip()
        )
    command = _string(raw, "command", ctx)
    args, written_args = _strings(raw, "args", ctx)
    return McpServerSpec(
        **common,
        transport="stdio",
        command=command,
        args=args,
        written_command=raw["command"].strip(),
        written_args=written_args,
        env=_pairs(raw, "env", ctx),
        cwd=_cwd(raw, ctx),
        is_bridge=is_bridge_command(command, args),
    )


def _checked_entry(raw: object, ctx: _EntryContext) -> tuple[McpServerSpec, list[str]]:
    """One entry as a spec (an unusable one if invalid) and its problems.

    Unset variables are not reported for a disabled entry: it is not going to run.
    """
    prefix = f"{ctx.source}: server '{ctx.name}'"
    try:
        spec = _entry(raw, ctx)
    except _InvalidEntry as exc:
        reason = f"invalid entry: {exc}"
        spec = McpServerSpec(name=ctx.name, source=str(ctx.source), transport="unsupported", unsupported=reason)
        return spec, [f"{prefix}: {exc}"]
    if spec.disabled:
        return spec, []
    return spec, [
        f"{prefix}: ${{{var}}} is not set and has no default; it expands to an empty string" for var in ctx.missing
    ]


def _document(
    data: object, source: Path, environ: Mapping[str, str], home: Path, *, explicit: bool
) -> tuple[list[McpServerSpec], list[str]]:
    """The entries of one parsed file, and its problems as one-line texts."""
    if not isinstance(data, dict):
        return [], [f'{source}: expected a JSON object with "mcpServers" at the top level']
    servers = data.get("mcpServers")
    if servers is None:
        return [], [f'{source}: has no "mcpServers" object'] if explicit else []
    if not isinstance(servers, dict):
        return [], [f'{source}: "mcpServers" must be a JSON object of name -> server']
    specs: list[McpServerSpec] = []
    problems: list[str] = []
    for name, raw in servers.items():
        if not name.strip():
            problems.append(f"{source}: a server has an empty name; skipped")
            continue
        spec, entry_problems = _checked_entry(raw, _EntryContext(name, source, environ, home))
        specs.append(spec)
        problems += entry_problems
    return specs, problems


def _read_text(path: Path) -> str:
    """Reads a config file (the one place that does, so tests can count reads)."""
    return path.read_text(encoding="utf-8-sig")


@dataclass(frozen=True)
class _ParsedFile:
    key: StatKey
    servers: tuple[McpServerSpec, ...]
    problems: tuple[str, ...]


def _parse_file(path: Path, key: StatKey, environ: Mapping[str, str], home: Path, *, explicit: bool) -> _ParsedFile:
    """Reads and parses one file; an ``OSError`` from reading propagates (the caller retries later)."""
    try:
        text = _read_text(path)
    except UnicodeDecodeError as exc:
        return _ParsedFile(key, (), (f"{path}: not UTF-8 text (byte {exc.start})",))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return _ParsedFile(key, (), (f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",))
    servers, problems = _document(data, path, environ, home, explicit=explicit)
    return _ParsedFile(key, tuple(servers), tuple(problems))


# --- where the files are ------------------------------------------------------


def _expand_user(text: str, home: Path) -> Path:
    if text == "~" or text.startswith(("~/", "~\\")):
        return home / text[2:]
    return Path(text)


def claude_desktop_config_path(platform: str, home: Path, environ: Mapping[str, str]) -> Path:
    """Where Claude Desktop keeps its config on ``platform`` (a ``sys.platform`` value)."""
    if platform == "darwin":
        base = home / "Library" / "Application Support"
    elif platform.startswith(("win32", "cygwin")):
        appdata = environ.get("APPDATA", "")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
    else:
        xdg = environ.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return base / "Claude" / "claude_desktop_config.json"


def _stat_key(st: os.stat_result) -> StatKey:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class McpCatalog:
    """The merged view of every MCP config file, re-checked on each call.

    Each public call stats the candidate files (nothing more when none changed)
    and parses again only the ones that did.
    """

    def __init__(
        self,
        *,
        explicit_paths: Sequence[Path | str] = (),
        cwd: Path | None = None,
        home: Path | None = None,
        environ: Mapping[str, str] | None = None,
        platform: str | None = None,
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._cwd = Path(os.path.abspath(cwd if cwd is not None else os.getcwd()))
        self._home = Path(home) if home is not None else Path.home()
        self._platform = platform or sys.platform
        self._explicit = tuple(str(p) for p in explicit_paths)
        self._cache: dict[Path, _ParsedFile] = {}
        self._logged_transient: set[str] = set()
        self._lock = threading.Lock()

    # The public surface -------------------------------------------------------

    def candidate_paths(self) -> list[tuple[Path, str]]:
        """Every file that may hold servers, as (path, kind), highest priority first, each once."""
        found: list[tuple[Path, str]] = []
        for var in CONFIG_ENV_VARS:
            found += [(self._absolute(p), var) for p in self._environ.get(var, "").split(os.pathsep) if p.strip()]
        found += [(self._absolute(p), FLAG_KIND) for p in self._explicit]
        found += [(folder / ".mcp.json", PROJECT_KIND) for folder in (self._cwd, *self._cwd.parents)]
        found.append((self._home / ".lmstudio" / "mcp.json", LMSTUDIO_KIND))
        found.append((claude_desktop_config_path(self._platform, self._home, self._environ), CLAUDE_DESKTOP_KIND))
        seen: set[Path] = set()
        unique = []
        for path, kind in found:
            if path not in seen:
                seen.add(path)
                unique.append((path, kind))
        return unique

    def servers(self) -> dict[str, McpServerSpec]:
        """Every entry by name, the first file to name it winning; includes disabled, self and unsupported ones."""
        return self._refresh()[0]

    def get(self, name: str) -> McpServerSpec:
        """The usable spec named ``name`` (exactly, else the one equal ignoring case).

        Raises ``McpNotFound``, ``McpSelfReference``, ``McpDisabled``, or
        ``McpError`` for an unsupported or invalid entry.
        """
        servers, problems = self._refresh()
        spec = servers.get(name) or _match_ignoring_case(servers, name)
        if spec is None:
            # A broken file (or an entry by this name) may be why: say so. Other entries' problems are no cause.
            causes = [p for p in problems if ": server '" not in p or f": server '{name}'" in p]
            raise McpNotFound(name, _available(servers), causes)
        if spec.is_bridge:
            raise McpSelfReference(spec.name, spec.source)
        if spec.disabled:
            raise McpDisabled(spec.name, spec.source)
        if spec.unsupported is not None:
            raise McpError(f"MCP '{spec.name}' (in {spec.source}) cannot be used: {spec.unsupported}", name=spec.name)
        return spec

    def available(self) -> list[str]:
        """Names that ``get`` accepts: enabled, supported, not the bridge itself; sorted."""
        return _available(self.servers())

    @property
    def problems(self) -> list[str]:
        """One line per problem found in the current files (path first)."""
        return self._refresh()[1]

    # Internals ----------------------------------------------------------------

    def _absolute(self, text: str) -> Path:
        path = _expand_user(text.strip(), self._home)
        if not path.is_absolute():
            path = self._cwd / path
        return Path(os.path.normpath(path))

    def _refresh(self) -> tuple[dict[str, McpServerSpec], list[str]]:
        with self._lock:
            servers: dict[str, McpServerSpec] = {}
            problems: list[str] = []
            transient: list[str] = []
            candidates = self.candidate_paths()
            for path, kind in candidates:
                parsed = self._load(path, kind, transient)
                if parsed is not None:
                    problems += parsed.problems
                    for spec in parsed.servers:
                        servers.setdefault(spec.name, spec)
            self._forget_except({path for path, _ in candidates})
            self._log_transient(transient)
            return servers, transient + problems

    def _load(self, path: Path, kind: str, transient: list[str]) -> _ParsedFile | None:
        """The file's parsed content, from the cache when its stat is unchanged; None if absent."""
        explicit = kind in EXPLICIT_KINDS
        try:
            st = os.stat(path)
        except OSError as exc:
            self._cache.pop(path, None)
            if explicit:
                missing = isinstance(exc, FileNotFoundError | NotADirectoryError)
                detail = "file not found" if missing else f"cannot read it ({exc.strerror or exc})"
                transient.append(f"{path}: {detail} (named by {kind})")
            return None
        if not stat.S_ISREG(st.st_mode):
            self._cache.pop(path, None)
            if explicit or not stat.S_ISDIR(st.st_mode):
                transient.append(f"{path}: not a regular file (named by {kind})")
            return None
        key = _stat_key(st)
        cached = self._cache.get(path)
        if cached is not None and cached.key == key:
            return cached
        try:
            parsed = _parse_file(path, key, self._environ, self._home, explicit=explicit)
        except OSError as exc:
            self._cache.pop(path, None)
            transient.append(f"{path}: cannot read it ({exc.strerror or exc})")
            return None
        self._cache[path] = parsed
        for line in parsed.problems:
            logger.warning("MCP config: %s", line)
        return parsed

    def _forget_except(self, keep: set[Path]) -> None:
        for path in [p for p in self._cache if p not in keep]:
            del self._cache[path]

    def _log_transient(self, lines: list[str]) -> None:
        """Logs a missing or unreadable named file once while it stays that way."""
        current = set(lines)
        for line in lines:
            if line not in self._logged_transient:
                logger.warning("MCP config: %s", line)
        self._logged_transient = current


def _available(servers: Mapping[str, McpServerSpec]) -> list[str]:
    return sorted(
        name for name, spec in servers.items() if not spec.disabled and not spec.is_bridge and spec.unsupported is None
    )


def _match_ignoring_case(servers: Mapping[str, McpServerSpec], name: str) -> McpServerSpec | None:
    wanted = name.strip().casefold()
    matches = [spec for key, spec in servers.items() if key.casefold() == wanted]
    return matches[0] if len(matches) == 1 else None
