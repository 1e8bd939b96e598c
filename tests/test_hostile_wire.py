"""Lines on stdin that are not valid MCP messages get the answer JSON-RPC 2.0 prescribes, over real stdio.

Each bad line is followed by a ping: the first answer must be the error, the second the pong,
so a line that goes unanswered fails the test at once instead of after a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

ANSWER_TIMEOUT = 30


class Wire:
    """The bridge as a subprocess, spoken to line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.next_id = 100

    async def write(self, line: str | bytes) -> None:
        assert self.process.stdin is not None
        data = line.encode() if isinstance(line, str) else line
        self.process.stdin.write(data + b"\n")
        await self.process.stdin.drain()

    async def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), ANSWER_TIMEOUT)
        assert line, "the bridge closed stdout"
        return json.loads(line)

    async def ping(self) -> int:
        self.next_id += 1
        await self.write(json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": "ping"}))
        return self.next_id

    async def expect_pong(self, request_id: int) -> None:
        assert await self.read() == {"jsonrpc": "2.0", "id": request_id, "result": {}}


@asynccontextmanager
async def wire(tmp_path: Path) -> AsyncIterator[Wire]:
    env = {
        "LMSTUDIO_BASE_URL": "http://127.0.0.1:9",
        "LMSTUDIO_BRIDGE_MCP_CONFIG": str(tmp_path / "none.json"),
        "HOME": os.environ["HOME"],
        "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME", ""),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lmstudio_bridge",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=(tmp_path / "stderr.log").open("w"),
        env=env, cwd=str(tmp_path),
    )  # fmt: skip
    talk = Wire(process)
    try:
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        await talk.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}))
        assert "result" in await talk.read()
        await talk.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        yield talk
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


def error(request_id: int | str | None, code: int) -> dict[str, Any]:
    return {"id": request_id, "code": code}


def summary(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer.get("jsonrpc") == "2.0" and "error" in answer, answer
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    return {"id": answer["id"], "code": answer["error"]["code"]}


SURROGATE_PING = '{"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {"note": "\\ud800"}}'
SURROGATE_CALL = (
    '{"jsonrpc": "2.0", "id": "call-8", "method": "tools/call", '
    '"params": {"name": "autonomous_with_mcp", "arguments": {"mcp_name": "echo", "task": "say \\udfff"}}}'
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("this is not json", error(None, -32700), id="not-json"),
        pytest.param('{"jsonrpc": "2.0", "id": 3, "method": "ping"', error(None, -32700), id="cut-off-json"),
        pytest.param(SURROGATE_PING, error(7, -32600), id="lone-surrogate-in-params"),
        pytest.param(SURROGATE_CALL, error("call-8", -32600), id="lone-surrogate-in-tool-arguments"),
        pytest.param('{"jsonrpc": "1.0", "id": 9, "method": "ping"}', error(9, -32600), id="jsonrpc-1.0"),
        pytest.param('{"id": 10, "method": "ping"}', error(10, -32600), id="no-jsonrpc"),
        pytest.param('{"jsonrpc": "2.0", "id": 11, "method": 5}', error(11, -32600), id="method-not-a-string"),
        pytest.param('{"jsonrpc": "2.0", "id": 12, "method": "ping", "params": "x"}', error(12, -32600), id="params-not-an-object"),
        pytest.param('[{"jsonrpc": "2.0", "id": 13, "method": "ping"}]', error(None, -32600), id="batch"),
        pytest.param('{"jsonrpc": "2.0", "method": 5}', error(None, -32600), id="invalid-without-id"),
        pytest.param('{"jsonrpc": "2.0", "id": true, "method": "ping"}', error(None, -32600), id="id-a-boolean"),
        pytest.param('{"jsonrpc": "2.0", "id": null, "method": "ping"}', error(None, -32600), id="id-null"),
        pytest.param('{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', error(None, -32600), id="id-a-fraction"),
    ],
)  # fmt: skip
async def test_a_bad_line_is_answered_and_the_bridge_goes_on(tmp_path: Path, line: str, expected: dict[str, Any]) -> None:
    async with wire(tmp_path) as talk:
        await talk.write(line)
        pong = await talk.ping()
        assert summary(await talk.read()) == expected
        await talk.expect_pong(pong)
    log = (tmp_path / "stderr.log").read_text()
    assert "\\ud800" not in line or "lone surrogate" in log


async def test_the_answer_says_what_is_wrong(tmp_path: Path) -> None:
    async with wire(tmp_path) as talk:
        for line in (SURROGATE_PING, '{"jsonrpc": "1.0", "id": 9, "method": "ping"}', "nope", b"\xff\xfe {"):
            await talk.write(line)
        pong = await talk.ping()
        messages = []
        for _ in range(4):
            answer = await talk.read()
            summary(answer)  # an error, not the pong
            messages.append(answer["error"]["message"])
        await talk.expect_pong(pong)
    assert "lone surrogate" in messages[0] and messages[0].startswith("Invalid request: ")
    assert messages[1] == 'Invalid request: a message must carry "jsonrpc": "2.0"'
    assert messages[2].startswith("Parse error: ") and messages[3].startswith("Parse error: ")


async def test_responses_and_blank_lines_get_no_answer_but_garbage_does(tmp_path: Path) -> None:
    async with wire(tmp_path) as talk:
        if sys.platform.startswith("linux"):  # the wire is read from a private descriptor while serving
            assert os.readlink(f"/proc/{talk.process.pid}/fd/0") == os.devnull
        for line in ('{"jsonrpc": "2.0", "id": 55, "result": "not an object"}', "", "   ", "garbage"):
            await talk.write(line)
        pong = await talk.ping()
        assert summary(await talk.read()) == error(None, -32700)
        await talk.expect_pong(pong)


def test_troubleshooting_explains_the_wire_errors() -> None:
    guide = (Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md").read_text()
    for message in (
        "Parse error: the line is not JSON",
        'Invalid request: a message must carry "jsonrpc": "2.0"',
        "Invalid request: the message holds a lone surrogate escape",
        'Invalid request: the "id" of a request must be a string or an integer',
    ):
        assert message in guide, message
