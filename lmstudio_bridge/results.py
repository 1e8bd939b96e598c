"""Typed results of the bridge's tools: the structured content an MCP client receives."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelEntry(BaseModel):
    id: str
    type: str = Field(description="llm, vlm, or unknown when the server does not say")
    loaded: bool | None = Field(description="None when the server does not say")
    is_default: bool
    context_length: int | None = Field(default=None, description="tokens of context the model is loaded with")
    max_context_length: int | None = Field(default=None, description="the most context the model can be loaded with")
    capabilities: list[str] = Field(
        default_factory=list, description="what the server says the model can do: tool_use, vision, reasoning"
    )
    server: str | None = Field(default=None, description="the server that has it, when the bridge has several")


class ModelsResult(BaseModel):
    models: list[ModelEntry]
    default_model: str | None
    base_url: str = Field(description="the (first) server's address; the embedded model's own once it runs")
    server_name: str = Field(
        default="", description="the server in words: LM Studio at URL, or the embedded model (its key or file)"
    )
    servers: list[str] = Field(default_factory=list, description="every server the bridge runs tasks on")
    notes: list[str] = Field(default_factory=list, description="servers left out because they did not answer")


class ServerHealth(BaseModel):
    base_url: str
    reachable: bool
    api: str | None = Field(default=None, description="the model list it answers: v1, v0 (LM Studio) or openai")
    model_count: int | None = None
    round_trip_ms: float | None = None
    error: str | None = None


class HealthResult(BaseModel):
    reachable: bool
    base_url: str = Field(description="the (first) server's address; the embedded model's own once it runs")
    server_name: str = Field(
        default="", description="the server in words: LM Studio at URL, or the embedded model (its key or file)"
    )
    model_count: int | None = None
    default_model: str | None = None
    round_trip_ms: float | None = None
    error: str | None = None
    servers: list[ServerHealth] = Field(default_factory=list, description="each server, when the bridge has several")


class McpEntry(BaseModel):
    name: str
    transport: Literal["stdio", "http", "unsupported"]
    command: str | None = Field(description="command and arguments, for stdio servers")
    url: str | None = None
    source: str = Field(description="the config file the entry came from")
    disabled: bool
    usable: bool = Field(description="false for disabled entries and for entries that would start the bridge itself")
    note: str | None = None
    allow: list[str] = Field(default_factory=list, description="the tool rules' allow list for this server")
    deny: list[str] = Field(default_factory=list, description="the tool rules' deny list for this server")
    tools: list[str] | None = Field(
        default=None, description="the tools a task is offered (after the tool rules), when the server is running"
    )


class McpListResult(BaseModel):
    mcps: list[McpEntry]
    config_files: list[str] = Field(description="every file looked at, in priority order, that exists")
    problems: list[str]


class ToolCallRecord(BaseModel):
    name: str = Field(description="server.tool")
    ok: bool
    ms: float
    error: str | None = None


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


StopReason = Literal["answered", "round_limit", "no_answer"]


class Generation(BaseModel):
    """How the model's replies were generated, over the whole task."""

    first_token_seconds: float | None = Field(default=None, description="time to the first token of the first reply")
    tokens: int = Field(default=0, description="tokens the model generated")
    tokens_per_second: float | None = Field(default=None, description="generation speed, first token to last")
    replies_cut: int = Field(
        default=0, description="replies the bridge stopped early: a complete tool call, a loop, or past the budget"
    )
    answer_cut: str | None = Field(
        default=None, description="why the reply holding the answer was stopped early: repetition or budget"
    )


RefusedBy = Literal["rules", "allowed_tools", "read_only", "approval", "user", "timeout"]


class RefusedCall(BaseModel):
    """A call of the model that did not run."""

    name: str = Field(description="server.tool, or the name as the model wrote it")
    by: RefusedBy = Field(
        description="rules, allowed_tools or read_only: the tool was not offered; approval: the approval setting "
        "refused it; user: the user declined it; timeout: the user did not answer in time"
    )
    reason: str


class ChildRequestRecord(BaseModel):
    """A child server's own request to the bridge during the task, and what became of it."""

    server: str
    method: str = Field(description="sampling/createMessage, elicitation/create or roots/list")
    outcome: str = Field(description="answered, refused, accept, decline or cancel")
    detail: str | None = None
    tokens: int | None = Field(default=None, description="tokens the local model wrote for a sampling request")


class TaskResult(BaseModel):
    answer: str
    model: str
    mcps: list[str]
    rounds: int = Field(description="requests sent to the model")
    stop_reason: StopReason | None = Field(description="why the task ended; null while it runs")
    tool_calls: list[ToolCallRecord]
    usage: TokenUsage
    elapsed_seconds: float
    reasoning: str | None = Field(default=None, description="the model's reasoning, when it gave any")
    generation: Generation = Field(default_factory=Generation)
    read_only: bool = Field(default=False, description="only tools that declare readOnlyHint were offered")
    tools_offered: list[str] = Field(default_factory=list, description="server.tool of every tool offered to the model")
    task_id: str | None = Field(default=None, description="the task's id, for task_status, task_result, continue_task")
    state: Literal["running", "completed"] = Field(
        default="completed", description="running: the task goes on in the background; next_call fetches its answer"
    )
    next_call: str | None = Field(default=None, description="the exact call that fetches the answer, while it runs")

    unfounded_numbers: list[str] = Field(
        default_factory=list,
        description="numbers the answer gives that neither the task nor any tool result holds: check them",
    )
    unfounded_names: list[str] = Field(
        default_factory=list,
        description="names of files, hosts, people or places, and template slots such as [Your Name], that the "
        "answer gives and neither the task, any tool result, nor the arguments of any call that ran hold: check them",
    )
    unfounded_calls: list[str] = Field(
        default_factory=list,
        description="when unfounded_numbers is not empty, the tools that were called with numbers the model made "
        "up: their results, worked out from those, do not count as ground for the answer",
    )
    unfounded_items: list[str] = Field(
        default_factory=list,
        description="items the task lists together (cities, files) that no tool call gave a result for, when one "
        "did for another of them: what the answer says of these comes from no result",
    )
    unfounded_answer: list[str] = Field(
        default_factory=list,
        description="the tools called, when every call failed, did not run or returned nothing, and the answer "
        "says more than that something is not there, not so or not done: no tool result supports it",
    )
    unfounded_change: str | None = Field(
        default=None,
        description="the word by which the answer says a change the task asks for was made (removed, added, "
        "written, ...), when no call that changes anything worked: the change was not made",
    )
    tools_withheld: list[str] = Field(
        default_factory=list, description="server.tool of every tool the policy kept from the model"
    )
    refused_calls: list[RefusedCall] = Field(
        default_factory=list, description="every call that did not run: withheld, refused or declined"
    )
    child_requests: list[ChildRequestRecord] = Field(
        default_factory=list, description="the servers' own requests (sampling, elicitation, roots) and their outcomes"
    )


class ModelLoadResult(BaseModel):
    model: str
    server: str
    loaded_now: bool = Field(description="false when the model was loaded already")
    instance_id: str | None = None
    context_length: int | None = None
    load_time_seconds: float | None = None


class ModelUnloadResult(BaseModel):
    model: str
    unloaded: list[str] = Field(description="the instances unloaded")
    servers: list[str]
