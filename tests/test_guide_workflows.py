"""The multi-model guide's workflows, end to end through the MCP tools, with real child servers.

The bridge runs in this process (``bridge_client``).

Each task carries cues for the scripted server, so the "model" really calls the
child's tools; the assertions check what reached whom.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.bridge import bridge_client, text_of
from tests.support.fake_lmstudio import FakeLMStudio

REASONING = "mistralai/magistral-small-2509"
CODING = "qwen/qwen3-coder-30b"
OTHER_CODING = "deepseek/deepseek-coder-33b"
READ_NOTES = '@call read_file {"path": "notes.txt"}'


async def test_analysis_then_implementation(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        analysis = await client.call_tool(
            "autonomous_with_mcp",
            {
                "mcp_name": "filesystem",
                "task": f"Analyze the codebase and identify missing unit tests\n{READ_NOTES}",
                "model": REASONING,
            },
        )
        assert not analysis.is_error, text_of(analysis)
        tests = await client.call_tool(
            "autonomous_with_mcp",
            {
                "mcp_name": "filesystem",
                "task": f'Based on this analysis: {text_of(analysis)}\nGenerate unit tests.\n@call echo {{"text": "tests written"}}',
                "model": CODING,
            },
        )
    assert text_of(analysis) == f"FINAL model={REASONING} tools=1 last=the secret word is pineapple"
    assert text_of(tests) == f"FINAL model={CODING} tools=1 last=tests written"
    second_task = fake.chat_bodies()[-1]["messages"][1]["content"]
    assert "pineapple" in second_task  # the first answer fed the second task


async def test_multi_step_pipeline(fake: FakeLMStudio, mcp_config: Path) -> None:
    steps = [REASONING, CODING, OTHER_CODING, None]
    async with bridge_client(fake.base_url, mcp_config) as client:
        previous = ""
        for n, model in enumerate(steps):
            args = {"mcp_name": "filesystem", "task": f'Step {n}: {previous}\n@call echo {{"text": "step {n}"}}'}
            if model:
                args["model"] = model
            result = await client.call_tool("autonomous_with_mcp", args)
            assert not result.is_error, text_of(result)
            previous = text_of(result)
            assert previous == f"FINAL model={model or CODING} tools=1 last=step {n}"


async def test_parallel_models_with_gather(fake: FakeLMStudio, mcp_config: Path) -> None:
    fake.hold_answers(until=2)  # each answer waits until both tasks ask at once
    task = f"Identify security vulnerabilities in auth module\n{READ_NOTES}"
    async with bridge_client(fake.base_url, mcp_config) as client:
        results = await asyncio.gather(
            *(
                client.call_tool("autonomous_with_mcp", {"mcp_name": "filesystem", "task": task, "model": m})
                for m in (REASONING, CODING)
            )
        )
    assert [r.structured_content["model"] for r in results] == [REASONING, CODING]
    assert all("pineapple" in text_of(r) for r in results)
    assert fake.max_in_flight >= 2  # the two tasks really overlapped


async def test_model_switching_on_one_server(fake: FakeLMStudio, mcp_config: Path) -> None:
    async with bridge_client(fake.base_url, mcp_config) as client:
        for model in (None, REASONING, CODING):
            args = {"mcp_name": "filesystem", "task": "@call counter {}"}
            if model:
                args["model"] = model
            result = await client.call_tool("autonomous_with_mcp", args)
            assert result.structured_content["model"] == (model or CODING)
    counts = [b for b in fake.chat_bodies() if b["messages"][-1]["role"] == "tool"]
    replies = [b["messages"][-1]["content"] for b in counts]
    assert [r.count('"count"') for r in replies] == [1, 1, 1]
    assert len({r.split('"pid":')[1] for r in replies}) == 1  # one warm child served all three models


async def test_several_servers_with_one_model(fake: FakeLMStudio, mcp_config: Path) -> None:
    task = "\n".join(
        [
            "1. Analyze local codebase structure (filesystem)",
            "2. Fetch best practices (fetch)",
            "3. Create a knowledge graph (memory)",
            '@call filesystem.read_file {"path": "notes.txt"}',
            '@call fetch.echo {"text": "best practices"}',
            '@call memory.echo {"text": "graph stored"}',
        ]
    )
    async with bridge_client(fake.base_url, mcp_config) as client:
        result = await client.call_tool(
            "autonomous_with_multiple_mcps",
            {"mcp_names": ["filesystem", "memory", "fetch"], "task": task, "model": REASONING},
        )
    assert not result.is_error, text_of(result)
    assert [c["name"] for c in result.structured_content["tool_calls"]] == [
        "filesystem.read_file",
        "fetch.echo",
        "memory.echo",
    ]
    assert {b["model"] for b in fake.chat_bodies()} == {REASONING}
    assert text_of(result) == f"FINAL model={REASONING} tools=3 last=graph stored"
