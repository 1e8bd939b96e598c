"""Typed settings: defaults, then environment variables, then command-line flags.

Every setting is declared once, as a field of ``Settings`` made by ``setting()``:
its type, default and bounds, the variables and flag it comes from, and its help.
``SETTINGS`` lists them; the environment reader, the argument parser, error
messages and the configuration reference in the docs all come from it.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .errors import ConfigError

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 1234
DEFAULT_MODEL_CACHE_TTL = 60.0
DEFAULT_LIST_TIMEOUT = 5.0
DEFAULT_REQUEST_TIMEOUT = 600.0
DEFAULT_FIRST_TOKEN_TIMEOUT = 300.0
DEFAULT_STREAM_IDLE_TIMEOUT = 60.0
DEFAULT_REPLY_TOKENS = 2048
DEFAULT_REASONING_TOKENS = 8192
DEFAULT_TEMPERATURE = 0.0
"""Sent when the user sets no temperature (and ``sampling`` is ``bridge``): measured best for tool calls
with small models, see docs/performance.md."""
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_ROUNDS = 25
DEFAULT_TOOL_TIMEOUT = 120.0
DEFAULT_TASK_TIMEOUT = 1800.0
DEFAULT_TOOL_RESULT_CHARS = 20_000
DEFAULT_CHILD_START_TIMEOUT = 30.0
DEFAULT_CHILD_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_CONCURRENT_TASKS = 8
DEFAULT_MAX_CHILDREN = 16
DEFAULT_LOAD_CONTEXT_LENGTH = 16384
DEFAULT_LOAD_TIMEOUT = 600.0
DEFAULT_DETACH_AFTER = 50.0
"""Below the shortest cut-off hosts are reported to apply to a tool call (60 s: the MCP Inspector's CLI, and the
low end of Claude Desktop's 1 to 4 minutes), with time for the answer to reach the host."""
DEFAULT_TASK_RETENTION_DAYS = 30.0
DEFAULT_TASK_RETENTION_COUNT = 1000
DEFAULT_HISTORY_TOKENS = 6000
DEFAULT_APPROVAL_TIMEOUT = 120.0
MAX_TASK_CHARS = 100_000
"""A task longer than this is refused: no local context window holds it."""


def setting(env: tuple[str, ...], *, help: str, flag: str | None = None, metavar: str = "N", **field: Any) -> Any:
    """A field of ``Settings`` with where its value may come from and what it means: one declaration
    serves the model, the environment reader, the argument parser and the docs' table."""
    where: dict[str, JsonValue] = {"env": list(env), "flag": flag, "metavar": metavar}
    return Field(description=help, json_schema_extra=where, **field)


class ServerEntry(BaseModel):
    """One model server of a servers file (``LMSTUDIO_BRIDGE_SERVERS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    api_key: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _base_url(value.strip())


def read_servers_file(path: Path) -> list[dict[str, Any]]:
    """The entries of a servers file, checked; raises ``ValueError`` naming what is wrong and where."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ValueError(f"is not JSON ({exc})") from None
    entries = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError('needs {"servers": [{"url": "http://HOST:PORT", "api_key": "..."}, ...]}')
    checked = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ValueError(f'server {number} needs a "url" (text)')
        unknown = set(entry) - {"url", "api_key"}
        if unknown:
            raise ValueError(f"server {number} has keys this file does not use: {', '.join(sorted(unknown))}")
        try:
            _base_url(entry["url"].strip())
        except ValueError as exc:
            raise ValueError(f"server {number}: url {exc}") from None
        if entry.get("api_key") is not None and not isinstance(entry["api_key"], str):
            raise ValueError(f"server {number}: api_key must be text")
        checked.append(entry)
    return checked


class Settings(BaseModel):
    """Everything the bridge can be told. Built by ``load_settings``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = setting(
        ("LMSTUDIO_BASE_URL",),
        flag="--base-url",
        metavar="URL",
        default=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
        help="Full server address; overrides host and port. Any OpenAI-compatible server works. "
        "Several, comma-separated, make one bridge over all of them (see docs/other-servers.md).",
    )
    api_key: SecretStr | None = setting(
        ("LMSTUDIO_API_KEY", "LM_API_TOKEN"),
        metavar="TOKEN",
        default=None,
        help="Sent as `Authorization: Bearer ...` when LM Studio requires authentication. With several servers, "
        "a comma-separated list in the same order (an empty entry: no key), or one key for all.",
    )
    default_model: str | None = setting(
        ("LMSTUDIO_DEFAULT_MODEL",),
        flag="--model",
        metavar="MODEL",
        default=None,
        help="Model used when a call names none (default: the first loaded model that is not an embedding model).",
    )
    model_cache_ttl: float = setting(
        ("LMSTUDIO_BRIDGE_MODEL_CACHE_TTL",),
        metavar="SECONDS",
        default=DEFAULT_MODEL_CACHE_TTL,
        ge=0,
        help=f"Seconds the model list is cached (default {DEFAULT_MODEL_CACHE_TTL:g}).",
    )
    list_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_LIST_TIMEOUT",),
        metavar="SECONDS",
        default=DEFAULT_LIST_TIMEOUT,
        gt=0,
        help=f"Seconds to wait for the model list (default {DEFAULT_LIST_TIMEOUT:g}).",
    )
    request_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_REQUEST_TIMEOUT",),
        flag="--request-timeout",
        metavar="SECONDS",
        default=DEFAULT_REQUEST_TIMEOUT,
        gt=0,
        help=f"Seconds one model reply may take in all; local models can be slow (default {DEFAULT_REQUEST_TIMEOUT:g}).",
    )
    first_token_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_FIRST_TOKEN_TIMEOUT",),
        metavar="SECONDS",
        default=DEFAULT_FIRST_TOKEN_TIMEOUT,
        gt=0,
        help=f"Seconds to wait for the first token of a reply; reading a long prompt (or loading the model) "
        f"happens in this time (default {DEFAULT_FIRST_TOKEN_TIMEOUT:g}).",
    )
    stream_idle_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_STREAM_IDLE_TIMEOUT",),
        metavar="SECONDS",
        default=DEFAULT_STREAM_IDLE_TIMEOUT,
        gt=0,
        help=f"Seconds a reply may go silent once it has started (default {DEFAULT_STREAM_IDLE_TIMEOUT:g}).",
    )
    reply_tokens: int = setting(
        ("LMSTUDIO_BRIDGE_REPLY_TOKENS",),
        metavar="TOKENS",
        default=DEFAULT_REPLY_TOKENS,
        ge=16,
        help=f"Tokens of answer text after which the bridge stops a reply (default {DEFAULT_REPLY_TOKENS}); "
        "replies are also stopped when they start repeating themselves or hold a complete tool call.",
    )
    reasoning_tokens: int = setting(
        ("LMSTUDIO_BRIDGE_REASONING_TOKENS",),
        metavar="TOKENS",
        default=DEFAULT_REASONING_TOKENS,
        ge=16,
        help=f"Tokens of reasoning after which the bridge stops a reply (default {DEFAULT_REASONING_TOKENS}).",
    )
    sampling_source: Literal["bridge", "server"] = setting(
        ("LMSTUDIO_BRIDGE_SAMPLING",),
        metavar="SOURCE",
        default="bridge",
        help=f"`bridge` (default): send temperature {DEFAULT_TEMPERATURE:g} unless LMSTUDIO_BRIDGE_TEMPERATURE says "
        "otherwise; `server`: send only what is set here, and leave the rest to the model's preset in LM Studio.",
    )
    max_retries: int = setting(
        ("LMSTUDIO_BRIDGE_MAX_RETRIES",),
        default=DEFAULT_MAX_RETRIES,
        ge=0,
        le=10,
        help=f"Retries on connection errors, 429 and 5xx (default {DEFAULT_MAX_RETRIES}).",
    )
    max_rounds: int = setting(
        ("LMSTUDIO_BRIDGE_MAX_ROUNDS",),
        flag="--max-rounds",
        default=DEFAULT_MAX_ROUNDS,
        ge=1,
        le=1000,
        help=f"Model turns per task before it must sum up (default {DEFAULT_MAX_ROUNDS}).",
    )
    max_tokens: int | None = setting(
        ("LMSTUDIO_BRIDGE_MAX_TOKENS",),
        flag="--max-tokens",
        metavar="TOKENS",
        default=None,
        ge=1,
        help="Tokens one model answer may take (`max_tokens`); unset leaves it to the server. "
        "Bounds a small model that rambles or repeats itself.",
    )
    temperature: float | None = setting(
        ("LMSTUDIO_BRIDGE_TEMPERATURE",),
        flag="--temperature",
        metavar="T",
        default=None,
        ge=0,
        le=2,
        help=f"Sampling temperature sent with every request (default {DEFAULT_TEMPERATURE:g}, see "
        "LMSTUDIO_BRIDGE_SAMPLING). 0 to 0.3 makes small models steadier at calling tools.",
    )
    tool_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_TOOL_TIMEOUT",),
        metavar="SECONDS",
        default=DEFAULT_TOOL_TIMEOUT,
        gt=0,
        help=f"Seconds one tool call may take (default {DEFAULT_TOOL_TIMEOUT:g}).",
    )
    task_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_TASK_TIMEOUT",),
        flag="--task-timeout",
        metavar="SECONDS",
        default=DEFAULT_TASK_TIMEOUT,
        gt=0,
        help=f"Deadline for a whole task in seconds (default {DEFAULT_TASK_TIMEOUT:g}).",
    )
    tool_result_chars: int = setting(
        ("LMSTUDIO_BRIDGE_TOOL_RESULT_CHARS",),
        default=DEFAULT_TOOL_RESULT_CHARS,
        ge=200,
        help=f"Characters of one tool result sent to the model; the rest is cut (default {DEFAULT_TOOL_RESULT_CHARS}).",
    )
    child_start_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_CHILD_START_TIMEOUT",),
        metavar="SECONDS",
        default=DEFAULT_CHILD_START_TIMEOUT,
        gt=0,
        help=f"Seconds a child MCP server has to start and answer initialize (default {DEFAULT_CHILD_START_TIMEOUT:g}).",
    )
    child_idle_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_CHILD_IDLE_TIMEOUT",),
        metavar="SECONDS",
        default=DEFAULT_CHILD_IDLE_TIMEOUT,
        ge=0,
        help=f"Seconds an unused child MCP server is kept warm; 0 starts one per task "
        f"(default {DEFAULT_CHILD_IDLE_TIMEOUT:g}).",
    )
    max_concurrent_tasks: int = setting(
        ("LMSTUDIO_BRIDGE_MAX_CONCURRENT_TASKS",),
        default=DEFAULT_MAX_CONCURRENT_TASKS,
        ge=1,
        le=256,
        help=f"Tasks run at once; more wait their turn (default {DEFAULT_MAX_CONCURRENT_TASKS}).",
    )
    max_children: int = setting(
        ("LMSTUDIO_BRIDGE_MAX_CHILDREN",),
        default=DEFAULT_MAX_CHILDREN,
        ge=1,
        le=256,
        help=f"Child MCP servers alive at once (default {DEFAULT_MAX_CHILDREN}).",
    )
    mcp_config: tuple[Path, ...] = setting(
        ("LMSTUDIO_BRIDGE_MCP_CONFIG", "MCP_JSON_PATH"),
        flag="--mcp-config",
        metavar="PATH",
        default=(),
        help="MCP config file(s) to read first; the variable takes a path list, the flag may repeat.",
    )
    exclusive_mcps: tuple[str, ...] = setting(
        ("LMSTUDIO_BRIDGE_EXCLUSIVE_MCPS",),
        metavar="NAMES",
        default=(),
        help="Comma-separated MCP names whose child serves one task at a time (concurrent tasks get their own).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        ("LMSTUDIO_BRIDGE_LOG_LEVEL",),
        flag="--log-level",
        metavar="LEVEL",
        default="INFO",
        help="DEBUG, INFO, WARNING or ERROR.",
    )
    load_context_length: int = setting(
        ("LMSTUDIO_BRIDGE_LOAD_CONTEXT_LENGTH",),
        metavar="TOKENS",
        default=DEFAULT_LOAD_CONTEXT_LENGTH,
        ge=512,
        help=f"Context length a model is loaded with when a task needs a model that is not loaded (default "
        f"{DEFAULT_LOAD_CONTEXT_LENGTH}; more when the task needs it, never more than the model's maximum).",
    )
    load_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_LOAD_TIMEOUT",),
        metavar="SECONDS",
        default=DEFAULT_LOAD_TIMEOUT,
        gt=0,
        help=f"Seconds LM Studio may take to load a model (default {DEFAULT_LOAD_TIMEOUT:g}).",
    )
    servers: tuple[ServerEntry, ...] = setting(
        ("LMSTUDIO_BRIDGE_SERVERS",),
        metavar="PATH",
        default=(),
        help='A JSON file listing the model servers, each with its own key: `{"servers": [{"url": "http://HOST:PORT", '
        '"api_key": "..."}]}`; used instead of LMSTUDIO_BASE_URL and LMSTUDIO_API_KEY.',
    )

    @field_validator("servers", mode="before")
    @classmethod
    def _read_servers(cls, value: Any) -> Any:
        return read_servers_file(Path(value).expanduser()) if isinstance(value, str | Path) else value

    state_dir: Path | None = setting(
        ("LMSTUDIO_BRIDGE_STATE_DIR",),
        metavar="PATH",
        default=None,
        help="Directory of the task history (`tasks.sqlite3`); default: `$XDG_STATE_HOME/lmstudio-bridge` "
        "(`~/.local/state/lmstudio-bridge`) on Linux, `~/Library/Application Support/lmstudio-bridge` on macOS, "
        "`%LOCALAPPDATA%\\lmstudio-bridge` on Windows.",
    )
    detach_after: float = setting(
        ("LMSTUDIO_BRIDGE_DETACH_AFTER",),
        metavar="SECONDS",
        default=DEFAULT_DETACH_AFTER,
        ge=0,
        help=f"Seconds after which a task still running is handed to the background and its call returns the task "
        f"id, before the host cuts the call off (default {DEFAULT_DETACH_AFTER:g}); 0 never detaches.",
    )
    task_retention_days: float = setting(
        ("LMSTUDIO_BRIDGE_TASK_RETENTION_DAYS",),
        metavar="DAYS",
        default=DEFAULT_TASK_RETENTION_DAYS,
        gt=0,
        help=f"Days a finished task stays in the history (default {DEFAULT_TASK_RETENTION_DAYS:g}).",
    )
    task_retention_count: int = setting(
        ("LMSTUDIO_BRIDGE_TASK_RETENTION_COUNT",),
        default=DEFAULT_TASK_RETENTION_COUNT,
        ge=1,
        help=f"Most tasks kept in the history; older ones are removed first (default {DEFAULT_TASK_RETENTION_COUNT}).",
    )
    history_tokens: int = setting(
        ("LMSTUDIO_BRIDGE_HISTORY_TOKENS",),
        metavar="TOKENS",
        default=DEFAULT_HISTORY_TOKENS,
        ge=500,
        help=f"Estimated tokens of an earlier conversation that continue_task sends again; older tool results are "
        f"shortened first to fit (default {DEFAULT_HISTORY_TOKENS}).",
    )
    approval: Literal["run", "ask", "refuse"] = setting(
        ("LMSTUDIO_BRIDGE_APPROVAL",),
        flag="--approval",
        metavar="MODE",
        default="ask",
        help="Calls of tools that do not declare readOnlyHint: `ask` (default) asks the user through the calling "
        "client (MCP elicitation) before each runs; `run` runs them; `refuse` refuses them. A client that cannot "
        "be asked gets LMSTUDIO_BRIDGE_APPROVAL_FALLBACK. See docs/safety.md.",
    )
    approval_fallback: Literal["run", "refuse"] = setting(
        ("LMSTUDIO_BRIDGE_APPROVAL_FALLBACK",),
        metavar="MODE",
        default="run",
        help="What `ask` does when the calling client does not support elicitation (Claude Desktop): `run` "
        "(default) or `refuse`.",
    )
    approval_timeout: float = setting(
        ("LMSTUDIO_BRIDGE_APPROVAL_TIMEOUT",),
        metavar="SECONDS",
        default=DEFAULT_APPROVAL_TIMEOUT,
        gt=0,
        help=f"Seconds the user has to answer a question (an approval, or a child server's own); unanswered "
        f"counts as declined (default {DEFAULT_APPROVAL_TIMEOUT:g}).",
    )
    tool_rules: Path | None = setting(
        ("LMSTUDIO_BRIDGE_TOOL_RULES",),
        flag="--tool-rules",
        metavar="PATH",
        default=None,
        help="A JSON file of per-server allow and deny lists (and approval settings) for the local model; "
        "see docs/safety.md.",
    )
    roots: tuple[Path, ...] = setting(
        ("LMSTUDIO_BRIDGE_ROOTS",),
        metavar="PATHS",
        default=(),
        help="Directories (a path list) given to child servers that ask for roots, when the calling client "
        "has none of its own.",
    )
    local_model: str | None = setting(
        ("LMSTUDIO_BRIDGE_LOCAL_MODEL",),
        flag="--local-model",
        metavar="MODEL",
        default=None,
        help="Use the embedded model instead of LM Studio: `0.5b`, `1.5b` or the path of a .gguf file. The bridge "
        "starts llama.cpp (the `local` extra) on the first request to the model and stops it when it exits.",
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        urls = [_base_url(u.strip()) for u in value.split(",") if u.strip()]
        if not urls:
            raise ValueError("must look like http://HOST:PORT")
        return ",".join(dict.fromkeys(urls))

    @field_validator("api_key")
    @classmethod
    def _check_keys(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        servers = len(str(info.data.get("base_url", "")).split(","))
        keys = len(value.get_secret_value().split(",")) if value is not None else 1
        if servers > 1 and keys not in (1, servers):
            raise ValueError(
                f"holds {keys} keys for {servers} servers: give one key for all, or one per server in the order "
                "of LMSTUDIO_BASE_URL (an empty entry for a server without one)"
            )
        return value

    @property
    def base_urls(self) -> list[str]:
        """Every server's address, in the order given (one, unless ``base_url`` or ``servers`` lists several)."""
        return [s.url for s in self.servers] or self.base_url.split(",")

    @field_validator("exclusive_mcps", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(n.strip() for n in value.split(",") if n.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def sampling(self) -> dict[str, Any]:
        """The sampling parameters for every chat request of a task: what the user set, exactly; for what
        they did not set, the bridge's defaults, unless ``sampling_source`` leaves it to the server."""
        temperature = self.temperature
        if temperature is None and self.sampling_source == "bridge":
            temperature = DEFAULT_TEMPERATURE
        params = {"max_tokens": self.max_tokens, "temperature": temperature}
        return {key: value for key, value in params.items() if value is not None}

    @field_validator("sampling_source", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("approval", "approval_fallback", mode="before")
    @classmethod
    def _lower_mode(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("roots", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(p).expanduser() for p in value.split(os.pathsep) if p.strip())
        return value


def _base_url(value: str) -> str:
    """One server's address, checked, without a trailing ``/`` or ``/v1``."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must look like http://HOST:PORT")
    try:
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        raise ValueError("has an invalid port") from None
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: where a value may come from, and what it means."""

    field: str
    env: tuple[str, ...]
    flag: str | None
    help: str
    metavar: str = "N"


_ADDRESS_PARTS = (
    Setting("host", ("LMSTUDIO_HOST",), "--host", f"LM Studio's host (default {DEFAULT_HOST}).", "HOST"),
    Setting("port", ("LMSTUDIO_PORT",), "--port", f"LM Studio's port (default {DEFAULT_PORT}).", "PORT"),
)
"""Host and port: not settings of their own, they make up ``base_url`` when it is not given."""


def _declared(name: str) -> Setting:
    info = Settings.model_fields[name]
    where = info.json_schema_extra
    assert isinstance(where, dict) and info.description is not None, name
    env, flag, metavar = where["env"], where["flag"], where["metavar"]
    assert isinstance(env, list) and isinstance(metavar, str) and (flag is None or isinstance(flag, str))
    return Setting(name, tuple(str(v) for v in env), flag, info.description, metavar)


SETTINGS: tuple[Setting, ...] = (*_ADDRESS_PARTS, *(_declared(name) for name in Settings.model_fields))
ENV_NAMES = {s.field: s.env[0] for s in SETTINGS}
"""The variable that sets each setting, for messages that tell the user what to change."""
MCP_CONFIG_ENV = _declared("mcp_config").env
"""The variables that name MCP config files, in the order they are read."""


def add_setting_flags(parser: argparse.ArgumentParser, fields: Sequence[str] | None = None) -> None:
    """Adds one flag per setting that has one (only those of ``fields`` when given). Unset flags leave no
    attribute behind."""
    for setting in SETTINGS:
        if setting.flag is None or (fields is not None and setting.field not in fields):
            continue
        action = "append" if setting.field == "mcp_config" else "store"
        parser.add_argument(
            setting.flag,
            dest=f"setting_{setting.field}",
            action=action,
            default=argparse.SUPPRESS,
            metavar=setting.metavar,
            help=f"{setting.help} Env: {', '.join(setting.env)}.",
        )


def flag_values(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, by field name."""
    values = {}
    for setting in SETTINGS:
        value = getattr(namespace, f"setting_{setting.field}", None)
        if value is not None:
            values[setting.field] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None, flags: Mapping[str, Any] | None = None) -> Settings:
    """Builds the settings from the environment and flags; raises ``ConfigError`` in one line."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    flags = dict(flags or {})
    for setting in SETTINGS:
        if setting.field == "mcp_config":
            continue
        for var in setting.env:
            value = environ.get(var, "").strip()
            if value:
                raw[setting.field], origin[setting.field] = value, var
                break
    for field, value in flags.items():
        if field != "mcp_config":
            raw[field], origin[field] = value, _flag_name(field)
    # Config files add up: the variables' paths first, then each --mcp-config.
    paths = [*_env_config_paths(environ), *flags.get("mcp_config", [])]
    raw["mcp_config"] = tuple(Path(p).expanduser() for p in paths)
    _fold_host_and_port(raw, origin)
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw, origin)) from None


def _env_config_paths(environ: Mapping[str, str]) -> list[str]:
    paths: list[str] = []
    for var in MCP_CONFIG_ENV:
        paths += [p for p in environ.get(var, "").split(os.pathsep) if p.strip()]
    return paths


def _fold_host_and_port(raw: dict[str, Any], origin: dict[str, str]) -> None:
    host = raw.pop("host", None)
    port = raw.pop("port", None)
    if port is not None:
        try:
            if not 0 < int(port) < 65536:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{origin['port']}={port!r} is not a port number (1-65535)") from None
    if "base_url" in raw:
        return
    if host is not None or port is not None:
        host = host or DEFAULT_HOST
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        raw["base_url"] = f"http://{host}:{port or DEFAULT_PORT}"
        origin["base_url"] = " / ".join(origin[k] for k in ("host", "port") if k in origin)


def _describe(exc: ValidationError, raw: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "?"
    where = origin.get(field, field)
    value = raw.get(field)
    shown = "***" if field == "api_key" else repr(value)
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}={shown}: {message}"


def _flag_name(field: str) -> str:
    for setting in SETTINGS:
        if setting.field == field and setting.flag:
            return setting.flag
    return field


def settings_table(settings: Sequence[Setting] = SETTINGS) -> str:
    """The settings as a Markdown table, for the docs (kept in sync by a test)."""
    rows = ["| Variable | Flag | Meaning |", "| --- | --- | --- |"]
    for s in settings:
        env = ", ".join(f"`{v}`" for v in s.env)
        flag = f"`{s.flag} {s.metavar}`" if s.flag else ""
        rows.append(f"| {env} | {flag} | {s.help} |")
    return "\n".join(rows)
