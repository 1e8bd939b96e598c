"""Every error the bridge raises on purpose.

    BridgeError                      anything the user can act on; str() is the message
    ├── ConfigError                  a bad setting or flag (exit code 2 at start-up)
    ├── LMStudioError                talking to LM Studio failed
    │   ├── LMStudioUnreachable      nothing answers at the base URL
    │   │   └── ServerDidNotStart    the embedded model's server did not start
    │   ├── LMStudioTimeout          it answered too slowly
    │   ├── LMStudioAuthError        401/403: the API token is missing or wrong
    │   ├── LMStudioHTTPError        any other error status
    │   ├── BadResponse              it answered, but not in the OpenAI shape
    │   ├── NoModelsLoaded           the model list is empty
    │   ├── ContextExceeded          the conversation does not fit the model's loaded context
    │   └── ModelLoadFailed          LM Studio could not load (or unload) a model
    ├── ModelNotFound                the requested model is not in LM Studio's list
    ├── McpError                     a child MCP server problem
    │   ├── McpNotFound              no configured server has that name
    │   ├── McpDisabled              the entry is marked "disabled"
    │   ├── McpSelfReference         the entry would start lmstudio-bridge itself
    │   ├── McpStartError            the child did not start or did not answer initialize
    │   └── ToolCallFailed           a tool call brought no result (the child answered with an error)
    │       ├── ToolTimeout          no result within the tool timeout
    │       └── ChildGone            the child's session ended: it exited, or its pipe broke
    ├── InvalidRequest               a tool argument is unusable (empty task, too long, ...)
    └── TaskTimeout                  a task ran past its deadline

The MCP tool layer turns any of these into an error result whose text is
``Error: <message>``; messages therefore never start with "Error:" themselves.
"""

from __future__ import annotations

from collections.abc import Sequence


class BridgeError(Exception):
    """Base class: a failure with a message fit to show the user as it is."""


class ConfigError(BridgeError):
    """A setting (environment variable, flag or config file) has a value we cannot use."""


class LMStudioError(BridgeError):
    """Talking to LM Studio failed. ``base_url`` says where we tried."""

    def __init__(self, message: str, *, base_url: str = "") -> None:
        super().__init__(message)
        self.base_url = base_url


LMSTUDIO_START_HINT = (
    "Start the local server in LM Studio's Developer tab (or run `lms server start`), "
    "or point LMSTUDIO_BASE_URL at the right address."
)


class LMStudioUnreachable(LMStudioError):
    """No connection could be made to the model server: LM Studio's, unless ``server`` names another
    (``the embedded model 0.5b at URL``), with ``hint`` saying what to do about that one."""

    def __init__(self, base_url: str, detail: str = "", *, server: str = "", hint: str = "") -> None:
        text = f"Cannot reach {server or f'LM Studio at {base_url}'}"
        if detail:
            text += f" ({detail})"
        super().__init__(f"{text}. {hint or LMSTUDIO_START_HINT}", base_url=base_url)


class ServerDidNotStart(LMStudioUnreachable):
    """The model server the bridge starts itself (the embedded model) did not start; ``reason`` says why
    and ``hint`` what to do. Not worth an immediate retry: the next request tries to start it again."""

    def __init__(self, server: str, reason: str, hint: str, *, base_url: str = "") -> None:
        LMStudioError.__init__(self, f"{capitalized(server)} did not start: {reason}. {hint}", base_url=base_url)
        self.server = server
        self.reason = reason
        self.hint = hint


class LMStudioTimeout(LMStudioError):
    """LM Studio accepted the request but did not answer in time."""


class LMStudioAuthError(LMStudioError):
    """LM Studio refused the request for lack of a valid API token."""


class LMStudioHTTPError(LMStudioError):
    """LM Studio answered with an error status that has no more specific class."""

    def __init__(self, message: str, *, base_url: str = "", status_code: int = 0) -> None:
        super().__init__(message, base_url=base_url)
        self.status_code = status_code


class BadResponse(LMStudioError):
    """LM Studio answered, but the body is not what the OpenAI API promises."""


class NoModelsLoaded(LMStudioError):
    """LM Studio (or the server ``server`` names, with its own ``hint``) is up but lists no model."""

    def __init__(self, base_url: str, *, server: str = "", hint: str = "") -> None:
        super().__init__(
            f"{capitalized(server or f'LM Studio at {base_url}')} has no model loaded. "
            + (hint or "Load one in LM Studio (My Models -> Load) or run `lms load <model>`, then retry."),
            base_url=base_url,
        )


class ContextExceeded(LMStudioError):
    """The request does not fit the context the model is loaded with. ``context_length`` when known."""

    def __init__(self, message: str, *, base_url: str = "", context_length: int | None = None) -> None:
        super().__init__(message, base_url=base_url)
        self.context_length = context_length


class ModelLoadFailed(LMStudioError):
    """LM Studio refused to load or unload a model; the message carries LM Studio's own words."""


class ModelNotFound(BridgeError):
    """The requested model is not among the models LM Studio lists."""

    def __init__(self, model: str, available: Sequence[str]) -> None:
        listed = ", ".join(available) if available else "(none)"
        super().__init__(f"Model {quoted(model)} not found. Available models: {listed}")
        self.model = model
        self.available = list(available)


class McpError(BridgeError):
    """A problem with a child MCP server; ``name`` is its key in the config."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class McpNotFound(McpError):
    def __init__(self, name: str, available: Sequence[str], problems: Sequence[str] = ()) -> None:
        listed = ", ".join(available) if available else "(none configured)"
        found = f". Problems in the MCP config files: {'; '.join(problems)}" if problems else ""
        super().__init__(f"MCP {quoted(name)} not found. Available MCPs: {listed}{found}", name=name)
        self.available = list(available)


class McpDisabled(McpError):
    def __init__(self, name: str, source: str) -> None:
        super().__init__(
            f"MCP '{name}' is disabled in {source}. Remove \"disabled\": true from its entry to use it.",
            name=name,
        )


class McpSelfReference(McpError):
    def __init__(self, name: str, source: str) -> None:
        super().__init__(
            f"MCP '{name}' (in {source}) starts lmstudio-bridge itself; the bridge does not run "
            "itself as a tool server. Name the servers it should use instead.",
            name=name,
        )


class McpStartError(McpError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"MCP '{name}' failed to start: {reason}", name=name)
        self.reason = reason


class ToolCallFailed(McpError):
    """A call of one of a child's tools brought no result; ``tool`` is the tool's name on its server.

    A tool that ran and reported its own failure is not this: that is a result with ``is_error``.
    """

    def __init__(self, message: str, *, name: str, tool: str) -> None:
        super().__init__(message, name=name)
        self.tool = tool


class ToolTimeout(ToolCallFailed):
    """The child did not answer the call in time; the child itself may be fine."""


class ChildGone(ToolCallFailed):
    """The child's session ended under the call: the next task needs a new child."""

    def __init__(self, *, name: str, tool: str, reason: str) -> None:
        super().__init__(f"MCP '{name}' stopped while running {tool}: {reason}", name=name, tool=tool)
        self.reason = reason


class InvalidRequest(BridgeError):
    """A tool argument cannot be used as given."""


class TaskTimeout(BridgeError):
    """A task ran past its deadline."""


ECHO_CHARS = 100
"""The most characters of a caller's value an error message (or log line) repeats."""


def quoted(value: str, limit: int = ECHO_CHARS) -> str:
    """``'value'`` for a message; a longer value is cut to ``limit`` characters and its length said."""
    if len(value) <= limit:
        return f"'{value}'"
    return f"'{value[:limit]}…' ({len(value):,} characters)"


def capitalized(text: str) -> str:
    """``text`` with its first letter upper case, to begin a sentence with a server's name."""
    return text[:1].upper() + text[1:]
