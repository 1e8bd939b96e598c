"""What the local model may touch: which tools a task offers, and whether a call of one runs.

Two decisions, made in this order:

1. **Offered or withheld** (``ToolPolicy``), when a task's toolbox is built. A tool is withheld when the
   user's tool rules deny it (per server, in the bridge's own rules file), when the call's
   ``allowed_tools`` leave it out, or when the task is read-only and the tool does not declare
   ``readOnlyHint: true``. A withheld tool is never shown to the model, and a call of it, even one written
   as text, is refused without reaching its server.
2. **Run, ask or refuse** (``Approver``), for each call of an offered tool that does not declare
   ``readOnlyHint: true``. ``ask`` asks the user through the calling client (MCP elicitation); a client
   that cannot be asked gets the fallback setting (``run`` or ``refuse``). A question unanswered within
   the approval timeout counts as declined. A declined call goes back to the model as the tool's result.

Patterns are shell-style (``fnmatch``, case-sensitive): ``git_log``, ``git_*``, or qualified by server
as ``git.git_commit`` / ``git.*``. A bare pattern matches the tool on every server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mcp.types import ElicitRequestFormParams, Tool

from .errors import ConfigError, InvalidRequest
from .results import RefusedBy

if TYPE_CHECKING:
    from .host import Host
    from .toolbox import OfferedTool

logger = logging.getLogger(__name__)

Approval = Literal["run", "ask", "refuse"]
Fallback = Literal["run", "refuse"]

MAX_PATTERNS = 100
MAX_PATTERN_CHARS = 200
MAX_SHOWN_ARGUMENTS = 2000
"""Characters of a call's arguments shown in an approval question."""

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "allow": {
            "type": "string",
            "title": "Allow",
            "oneOf": [
                {"const": "once", "title": "Allow once"},
                {"const": "task", "title": "Allow this tool for the rest of the task"},
            ],
            "default": "once",
        }
    },
    "required": ["allow"],
}
"""The approval question's form: accept with ``once`` or ``task``; the client's decline button declines."""


def declares_read_only(tool: Tool) -> bool:
    """Whether the tool says it changes nothing (``readOnlyHint: true`` in its annotations)."""
    return bool(tool.annotations and tool.annotations.read_only_hint)


def declares_changes(tool: Tool) -> bool:
    """Whether the tool says it may change something (``readOnlyHint: false`` written in its annotations)."""
    return tool.annotations is not None and tool.annotations.read_only_hint is False


def declares_destructive(tool: Tool) -> bool:
    """Whether the tool says it may remove or overwrite something: ``destructiveHint: true``, or ``readOnlyHint:
    false`` with no ``destructiveHint`` (which MCP then takes as true)."""
    hints = tool.annotations
    if hints is None:
        return False
    return hints.destructive_hint is True or (hints.read_only_hint is False and hints.destructive_hint is None)


def matches(patterns: Iterable[str], server: str, tool: str) -> bool:
    """Whether any pattern matches the tool, by its bare name or as ``server.tool``."""
    label = f"{server}.{tool}"
    return any(fnmatchcase(tool, p) or fnmatchcase(label, p) for p in patterns)


@dataclass(frozen=True)
class ServerRules:
    """One server's allow and deny lists, from the bridge's tool rules file. Deny wins."""

    allow: tuple[str, ...] = ()
    """When not empty, only the tools it matches are offered."""
    deny: tuple[str, ...] = ()
    approval: Approval | None = None
    """This server's own approval setting for tools that are not read-only; None: the bridge's setting."""


def load_tool_rules(path: Path | None) -> dict[str, ServerRules]:
    """The rules file's ``servers`` section; empty without a file. Raises ``ConfigError`` saying what is wrong.

    Blocking (reads a file): call it in a thread.
    """
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"the tool rules file {path} does not exist; create it or unset LMSTUDIO_BRIDGE_TOOL_RULES"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the tool rules file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the tool rules file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(
            f'the tool rules file {path} needs a "servers" object: {{"servers": {{"git": {{"deny": [...]}}}}}}'
        )
    rules: dict[str, ServerRules] = {}
    for name, entry in servers.items():
        where = f"{path}: servers.{name}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object with allow, deny and approval")
        unknown = sorted(set(entry) - {"allow", "deny", "approval"})
        if unknown:
            raise ConfigError(f"{where} has unknown keys {', '.join(unknown)}; the keys are allow, deny, approval")
        approval = entry.get("approval")
        if approval is not None and approval not in ("run", "ask", "refuse"):
            raise ConfigError(f"{where}.approval must be run, ask or refuse, not {approval!r}")
        rules[name] = ServerRules(
            allow=_patterns(entry.get("allow", []), f"{where}.allow"),
            deny=_patterns(entry.get("deny", []), f"{where}.deny"),
            approval=approval,
        )
    return rules


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise ConfigError(f"{where} must be a list of tool names or patterns")
    return tuple(p.strip() for p in value)


def check_allowed_tools(patterns: Sequence[str] | None) -> tuple[str, ...] | None:
    """A call's ``allowed_tools``, checked; None when the call gave none. Raises ``InvalidRequest``."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        patterns = [patterns]
    if len(patterns) > MAX_PATTERNS:
        raise InvalidRequest(f"allowed_tools holds {len(patterns):,} patterns; at most {MAX_PATTERNS} are taken.")
    cleaned = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise InvalidRequest("allowed_tools holds an empty name; give tool names such as git_log or git.*")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise InvalidRequest(f"a pattern in allowed_tools is longer than {MAX_PATTERN_CHARS} characters.")
        cleaned.append(pattern.strip())
    if not cleaned:
        raise InvalidRequest(
            "allowed_tools is empty, so the model could use no tool; leave it out to allow every tool."
        )
    return tuple(cleaned)


@dataclass(frozen=True)
class ToolPolicy:
    """Which tools one task offers."""

    read_only: bool = False
    allowed_tools: tuple[str, ...] | None = None
    """The call's own allow list; None allows every tool the rules allow."""
    rules: Mapping[str, ServerRules] = field(default_factory=dict)

    def withheld(self, server: str, tool: Tool) -> tuple[RefusedBy, str] | None:
        """Why the tool is not offered (who withholds it, and a reason for the model), or None to offer it."""
        label = f"{server}.{tool.name}"
        rules = self.rules.get(server)
        if rules is not None and matches(rules.deny, server, tool.name):
            return "rules", f"the user's tool rules deny {label}"
        if rules is not None and rules.allow and not matches(rules.allow, server, tool.name):
            return "rules", f"the user's tool rules for '{server}' do not allow {label}"
        if self.allowed_tools is not None and not matches(self.allowed_tools, server, tool.name):
            return "allowed_tools", f"this task's allowed_tools do not include {label}"
        if self.read_only and not declares_read_only(tool):
            return "read_only", f"this task is read-only, and {label} does not declare that it changes nothing"
        return None

    def effective_tools(self, server: str, tools: Sequence[Tool]) -> list[str]:
        """The names of the tools a task would be offered (without a call's own allow list)."""
        rules_only = ToolPolicy(rules=self.rules)
        return [t.name for t in tools if rules_only.withheld(server, t) is None]


@dataclass(frozen=True)
class Refusal:
    """A call that did not run: who stopped it and why (the text the model gets, without ``Error: ``)."""

    by: RefusedBy
    reason: str


ProgressFn = Callable[[str], Awaitable[None]]


async def _no_progress(_: str) -> None:
    """Reports nowhere."""


class Approver:
    """Decides, call by call, whether a tool that is not read-only runs: run, ask the user, or refuse.

    Questions are asked one at a time (concurrent calls wait their turn), so an answer of "allow this
    tool for the rest of the task" spares the calls waiting behind it their own question.
    """

    def __init__(
        self,
        approval: Approval,
        *,
        host: Host | None = None,
        fallback: Fallback = "run",
        timeout: float = 120.0,
        per_server: Mapping[str, Approval] | None = None,
        model: str = "",
        progress: ProgressFn | None = None,
    ) -> None:
        self.approval = approval
        self.host = host
        self.fallback = fallback
        self.timeout = timeout
        self.per_server = dict(per_server or {})
        self.model = model
        self.say = progress or _no_progress
        self.allowed_for_task: set[str] = set()
        self._asking = asyncio.Lock()

    def mode_for(self, server: str) -> Approval:
        return self.per_server.get(server, self.approval)

    async def check(self, offered: OfferedTool, arguments: Mapping[str, Any]) -> Refusal | None:
        """None when the call may run; otherwise why it may not."""
        if declares_read_only(offered.tool):
            return None
        mode = self.mode_for(offered.server)
        if mode == "run" or offered.label in self.allowed_for_task:
            return None
        if mode == "refuse":
            return Refusal(
                "approval", f"{offered.label} does not declare that it only reads, and the bridge refuses such tools"
            )
        host = self.host
        if host is None or not host.can_elicit:
            if self.fallback == "run":
                return None
            return Refusal(
                "approval",
                f"{offered.label} does not declare that it only reads, so it needs the user's approval, but the "
                "calling client cannot ask the user (it does not support elicitation)",
            )
        async with self._asking:
            if offered.label in self.allowed_for_task:
                return None
            return await self._ask(host, offered, arguments)

    async def _ask(self, host: Host, offered: OfferedTool, arguments: Mapping[str, Any]) -> Refusal | None:
        shown = json.dumps(dict(arguments), ensure_ascii=False, indent=2)
        if len(shown) > MAX_SHOWN_ARGUMENTS:
            shown = f"{shown[:MAX_SHOWN_ARGUMENTS]}\n[... {len(shown) - MAX_SHOWN_ARGUMENTS:,} more characters]"
        who = f"The local model {self.model}" if self.model else "The local model"
        message = (
            f"{who} wants to call the tool {offered.tool.name} of the MCP server '{offered.server}' "
            f"with these arguments:\n{shown}\nAllow it?"
        )
        params = ElicitRequestFormParams(message=message, requested_schema=APPROVAL_SCHEMA)
        await self.say(f"asking the user to approve {offered.label}")
        try:
            answer = await host.elicit(params, timeout=self.timeout)
        except TimeoutError:
            logger.info("No answer to the approval of %s within %g s", offered.label, self.timeout)
            return Refusal(
                "timeout", f"the user did not approve {offered.label} within {self.timeout:g} s; it did not run"
            )
        except Exception as exc:  # noqa: BLE001 - any failure to ask is a call not approved
            logger.warning("Asking the user to approve %s failed: %s", offered.label, exc)
            return Refusal("approval", f"asking the user to approve {offered.label} failed, so it did not run")
        if answer.action != "accept":
            return Refusal("user", f"the user declined {offered.label}; it did not run. Do not call it again")
        if (answer.content or {}).get("allow") == "task":
            self.allowed_for_task.add(offered.label)
        return None
