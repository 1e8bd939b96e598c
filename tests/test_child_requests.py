"""The child servers' own requests: sampling answered by the task's model, elicitation forwarded, roots.

The child is ``asking_server.py``, a real process that makes each request from inside a tool call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp.client.session import ClientRequestContext
from mcp.types import CreateMessageRequestParams, ErrorData, ListRootsResult, Root, SamplingMessage, TextContent

from lmstudio_bridge.child_requests import ChildRequests, TaskLink
from tests.support.bridge import bridge_client, stdio_bridge_client, text_of
from tests.support.common import asking_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio
from tests.support.host import Asker


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "mcp.json", {"asking": asking_entry()})


async def test_a_childs_sampling_request_is_answered_by_the_local_model_over_stdio(
    fake: FakeLMStudio, config: Path
) -> None:
    lines: list[str] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        lines.append(message or "")

    task = '@call summarize {"text": "the widgets"}\n@answer {last}'
    async with stdio_bridge_client(fake.base_url, config) as client:
        result = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "asking", "task": task}, progress_callback=progress
        )
    assert not result.is_error, text_of(result)
    assert text_of(result) == "SUMMARY model=qwen/qwen3-coder-30b tools=0 last="
    sampled = next(b for b in fake.chat_bodies() if b["messages"][0]["content"] == "You summarize.")
    assert sampled["messages"][1] == {"role": "user", "content": "Summarize: the widgets"}
    assert sampled["max_tokens"] == 64 and sampled["model"] == "qwen/qwen3-coder-30b" and "tools" not in sampled
    (record,) = result.structured_content["child_requests"]
    assert record["server"] == "asking" and record["method"] == "sampling/createMessage"
    assert record["outcome"] == "answered"
    assert any(line.startswith("asking asks the model (1/25)") for line in lines), lines


async def test_sampling_stays_within_the_tasks_budget(fake: FakeLMStudio, config: Path) -> None:
    task = '@call summarize {"text": "a"}; summarize {"text": "b"}; summarize {"text": "c"}'
    async with bridge_client(fake.base_url, config) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": task, "max_rounds": 2})
    records = result.structured_content["child_requests"]
    assert sorted(r["outcome"] for r in records) == ["answered", "answered", "refused"]
    refused = next(r for r in records if r["outcome"] == "refused")
    assert "budget of 2 model requests" in refused["detail"]
    assert sorted(c["ok"] for c in result.structured_content["tool_calls"]) == [False, True, True]


async def test_a_childs_question_goes_to_a_client_that_supports_elicitation(fake: FakeLMStudio, config: Path) -> None:
    asker = Asker("accept", {"answer": "yes"})
    task = '@call confirm {"question": "Proceed?"}\n@answer {last}'
    async with bridge_client(
        fake.base_url, config, callbacks=asker.callbacks, LMSTUDIO_BRIDGE_APPROVAL="run"
    ) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": task})
    assert text_of(result) == 'action=accept content={"answer": "yes"}'
    (question,) = asker.questions
    assert question.message == "The MCP server 'asking' asks: Proceed?"
    assert result.structured_content["child_requests"][0]["outcome"] == "accept"


@pytest.mark.parametrize(
    ("asker", "expected"), [(None, "action=decline content=null"), (Asker(hang=True), "action=cancel content=null")]
)
async def test_a_childs_question_is_declined_without_elicitation_and_cancelled_when_unanswered(
    fake: FakeLMStudio, config: Path, asker: Asker | None, expected: str
) -> None:
    task = '@call confirm {"question": "Proceed?"}\n@answer {last}'
    env = {"LMSTUDIO_BRIDGE_APPROVAL": "run", "LMSTUDIO_BRIDGE_APPROVAL_TIMEOUT": "0.5"}
    callbacks = asker.callbacks if asker else None
    async with bridge_client(fake.base_url, config, callbacks=callbacks, **env) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": task})
    assert text_of(result) == expected


async def list_roots(context: ClientRequestContext) -> ListRootsResult:
    return ListRootsResult(roots=[Root(uri="file:///home/me/project", name="project")])  # type: ignore[arg-type]


@pytest.mark.parametrize("source", ["client", "configured", "none"])
async def test_roots_are_the_clients_else_the_configured_ones(
    fake: FakeLMStudio, config: Path, tmp_path: Path, source: str
) -> None:
    callbacks: dict[str, Any] | None = {"list_roots_callback": list_roots} if source == "client" else None
    env = {"LMSTUDIO_BRIDGE_ROOTS": str(tmp_path)} if source != "none" else {}
    task = "@call list_roots\n@answer {last}"
    async with bridge_client(fake.base_url, config, callbacks=callbacks, **env) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": task})
    expected = {"client": "file:///home/me/project", "configured": tmp_path.as_uri(), "none": "(no roots)"}
    assert text_of(result) == expected[source]
    assert result.structured_content["child_requests"][0]["method"] == "roots/list"


# --- Routing: pooled children answer for the task they serve ---------------------------------------


def sampling_params() -> CreateMessageRequestParams:
    message = SamplingMessage(role="user", content=TextContent(type="text", text="hi"))
    return CreateMessageRequestParams(messages=[message], max_tokens=8)


async def test_a_request_goes_to_the_task_with_a_call_in_flight_else_the_latest_lease() -> None:
    router = ChildRequests("s")
    first, second = TaskLink(roots=(Path("/first"),)), TaskLink(roots=(Path("/second"),))
    assert router.current() is None
    router.attach(first)
    router.attach(second)
    assert router.current() is second
    with router.calling(first):
        assert router.current() is first
        with router.calling(second):
            assert router.current() is second
        assert router.current() is first
    router.detach(second)
    assert router.current() is first
    router.detach(first)
    context: Any = None
    assert isinstance(await router.sampling(context, sampling_params()), ErrorData)
    assert (await router.elicitation(context, None)).action == "decline"  # type: ignore[arg-type]
    assert (await router.list_roots(context)).roots == []


async def test_sampling_without_a_model_is_refused_with_the_reason() -> None:
    link = TaskLink()
    answer = await link.sample("s", sampling_params())
    assert isinstance(answer, ErrorData) and "no model" in answer.message
    assert json.loads(link.records[0].model_dump_json())["outcome"] == "refused"


async def test_a_warm_child_asks_the_model_of_the_task_it_now_serves(fake: FakeLMStudio, config: Path) -> None:
    task = '@call summarize {"text": "x"}\n@answer {last}'
    answers = []
    async with bridge_client(fake.base_url, config) as client:
        for model in ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509"]:
            result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": task, "model": model})
            answers.append(text_of(result))
        listing = await client.call_tool("list_mcps", {})
    assert answers == [
        f"SUMMARY model={m} tools=0 last=" for m in ["qwen/qwen3-coder-30b", "mistralai/magistral-small-2509"]
    ]
    entry = next(m for m in listing.structured_content["mcps"] if m["name"] == "asking")
    assert "summarize" in entry["tools"]  # one child served both tasks, and still runs


async def test_a_child_cannot_ask_the_user_more_than_max_rounds_questions(fake: FakeLMStudio, config: Path) -> None:
    asker = Asker("accept", {"answer": "yes"})
    task = '@call confirm {"question": "one?"}; confirm {"question": "two?"}'
    async with bridge_client(
        fake.base_url, config, callbacks=asker.callbacks, LMSTUDIO_BRIDGE_APPROVAL="run"
    ) as client:
        result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "asking", "task": task, "max_rounds": 1})
    assert len(asker.questions) == 1
    outcomes = sorted(r["outcome"] for r in result.structured_content["child_requests"])
    assert outcomes == ["accept", "decline"]


@pytest.mark.parametrize(
    ("declared", "form", "url"),
    [
        (None, False, False),
        ({}, True, False),  # an empty elicitation capability means form mode
        ({"form": {}}, True, False),
        ({"url": {}}, False, True),
        ({"form": {}, "url": {}}, True, True),
    ],
)
def test_the_host_says_which_questions_it_takes(declared: dict[str, Any] | None, form: bool, url: bool) -> None:
    from types import SimpleNamespace

    from mcp.types import ClientCapabilities, ElicitationCapability

    from lmstudio_bridge.host import McpHost

    elicitation = None if declared is None else ElicitationCapability.model_validate(declared)
    capabilities = ClientCapabilities(elicitation=elicitation)

    def check(wanted: ClientCapabilities) -> bool:
        return wanted.elicitation is None or capabilities.elicitation is not None

    host = McpHost(SimpleNamespace(client_capabilities=capabilities, check_client_capability=check))
    assert (host.can_elicit, host.can_open_urls) == (form, url)
