"""The bridge under load and faults: parallelism, cancellation, crashes, exits, leaks, secrets.

Most tests run the bridge in this process (``bridge_client``) with real child processes; how the
bridge process ends (stdin closed, SIGTERM, SIGINT) and its resources over many tasks are tested
on ``python -m lmstudio_bridge`` itself. Time bounds only catch hangs: each is far above what the
work takes on a busy machine and below what the regression it guards against would take. How
fast things are is measured in bench/ (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from lmstudio_bridge.children import OWNER_VAR
from tests.support.bridge import bridge_client, stdio_bridge, stdio_environment, text_of
from tests.support.common import echo_entry, probe_entry, write_config
from tests.support.fake_lmstudio import FakeLMStudio

EIGHT_MODELS = [f"lab/model-{n}" for n in range(8)]


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked(prefix: str) -> list[int]:
    """Live processes whose owner marker starts with ``prefix``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(OWNER_VAR, "").startswith(prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def bridge_marker(pid: int) -> str:
    """The marker prefix of the bridge ``pid``, read from one of its children."""
    for child in psutil.Process(pid).children(recursive=True):
        try:
            value = child.environ().get(OWNER_VAR)
        except psutil.Error:
            continue
        if value:
            return value.split(":")[0] + ":"
    raise AssertionError("the bridge has no marked child")


def lmstudio_connections(port: int, pid: int | None = None) -> int:
    """Open TCP connections from process ``pid`` (this one by default) to 127.0.0.1:``port``."""
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def ms(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds * 1000:.0f} ms"


async def eventually(check: Callable[[], bool], within: float = 8.0) -> float | None:
    """Seconds until ``check()`` held, or None if it never did within ``within``."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await asyncio.to_thread(check):
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


# ----------------------------------------------------------------------------- warm children, parallelism


async def test_twenty_tasks_in_a_row_start_the_child_once(
    fake: FakeLMStudio, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    async with bridge_client(fake.base_url, config) as client:
        for _ in range(20):
            result = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@call counter {}"})
            assert not result.is_error, text_of(result)
    counts = [json.loads(tool_messages(b)[0]) for b in fake.chat_bodies() if tool_messages(b)]
    assert [c["count"] for c in counts] == list(range(1, 21))
    assert len({c["pid"] for c in counts}) == 1
    assert caplog.text.count("MCP 'echo' started") == 1


async def test_eight_tasks_on_eight_models_run_in_parallel(fake: FakeLMStudio, tmp_path: Path) -> None:
    fake.models = list(EIGHT_MODELS)
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    task = '@call echo {"text": "hi"}'
    async with bridge_client(fake.base_url, config) as client:

        async def one(model: str) -> Any:
            return await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": task, "model": model})

        await one(EIGHT_MODELS[0])  # the child starts warm, the model list is cached
        fake.reset()
        fake.hold_answers(until=8)  # answers wait until all eight requests are at the fake at once
        results = await asyncio.gather(*(one(m) for m in EIGHT_MODELS))
    assert [r.structured_content["model"] for r in results] == EIGHT_MODELS
    assert fake.max_in_flight == 8  # one after another, each would have waited for the others in vain


async def test_a_hundred_concurrent_calls_wait_their_turn_and_all_finish(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    waiting: list[str] = []

    async def on_progress(_: float, __: float | None, message: str | None) -> None:
        if message and message.startswith("waiting:"):
            waiting.append(message)

    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_MAX_CONCURRENT_TASKS="4") as client:
        fake.latency = 0.02
        results = await asyncio.gather(
            *(
                client.call_tool(
                    "autonomous_with_mcp",
                    {"mcp_name": "echo", "task": f'@call echo {{"text": "n{n}"}}'},
                    progress_callback=on_progress,
                )
                for n in range(100)
            )
        )
    assert all(not r.is_error for r in results)
    assert sorted(text_of(r) for r in results) == sorted(f"FINAL model=qwen/qwen3-coder-30b tools=1 last=n{n}" for n in range(100))
    assert fake.max_in_flight <= 4
    assert waiting and waiting[0] == "waiting: 4 tasks are already running"


# ----------------------------------------------------------------------------- cancellation


async def test_cancelling_a_call_aborts_the_model_request(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    async with bridge_client(fake.base_url, config) as client:
        slow = {"mcp_name": "echo", "task": "@delay 30\n@answer too late"}
        call = asyncio.create_task(client.call_tool("autonomous_with_mcp", slow))
        assert await eventually(lambda: lmstudio_connections(fake.port) == 1 and fake.in_flight == 1)
        cancelled_at = time.monotonic()
        call.cancel()
        latency = await eventually(lambda: lmstudio_connections(fake.port) == 0, within=15)
        print(f"\nLM Studio request closed {ms(latency)} after the cancel")
        assert latency is not None  # not cancelled, the request would stay open for 30 s
        after = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": '@call echo {"text": "next"}'})
        assert not after.is_error and text_of(after).endswith("last=next")
        assert time.monotonic() - cancelled_at < 25  # did not wait for the cancelled answer


async def test_cancelling_a_call_cancels_its_tool_calls(fake: FakeLMStudio, tmp_path: Path) -> None:
    log = tmp_path / "probe.log"
    config = write_config(tmp_path / "mcp.json", {"probe": probe_entry(log)})
    async with bridge_client(fake.base_url, config) as client:
        call = asyncio.create_task(
            client.call_tool("autonomous_with_mcp", {"mcp_name": "probe", "task": '@call wait {"seconds": 30}'})
        )
        assert await eventually(lambda: log.exists() and "started" in log.read_text(), within=20)
        call.cancel()
        latency = await eventually(lambda: "cancelled" in log.read_text(), within=15)
        print(f"\ntool call cancelled in the child {ms(latency)} after the cancel")
        assert latency is not None  # not cancelled, the call would have finished after 30 s
        after = await client.call_tool("autonomous_with_mcp", {"mcp_name": "probe", "task": '@call wait {"seconds": 0.1}'})
        assert not after.is_error and text_of(after).endswith("last=waited 0.1")
    lines = log.read_text().split("\n")
    assert lines[0] == lines[2] and lines[0].startswith("started ")  # the same warm child served both
    assert lines[1] == "cancelled" and lines[3] == "finished"


async def test_asyncio_timeout_around_call_tool_cancels_too(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    async with bridge_client(fake.base_url, config) as client:
        await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@answer warm"})
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@delay 30\n@answer late"}), 1.0
            )
        assert await eventually(lambda: lmstudio_connections(fake.port) == 0, within=15) is not None


# ----------------------------------------------------------------------------- crashes and LM Studio going away


async def test_a_child_that_dies_mid_task_is_replaced_for_the_next_task(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    async with bridge_client(fake.base_url, config) as client:
        first = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@call counter {}"})
        crashed = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@call crash {}"})
        crash_reply = tool_messages(fake.last_chat())[0]
        second = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@call counter {}"})
    old, new = (json.loads(tool_messages(b)[0]) for b in (fake.chat_bodies()[1], fake.last_chat()))
    assert not first.is_error and not crashed.is_error and not second.is_error
    assert crash_reply.startswith("Error: MCP 'echo' stopped while running crash"), crash_reply
    assert crashed.structured_content["tool_calls"][0]["ok"] is False
    assert new["pid"] != old["pid"] and new["count"] == 1


async def test_lmstudio_going_away_mid_task_then_coming_back(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    fake = FakeLMStudio(models=["qwen/qwen3-coder-30b"]).start()
    port, base_url = fake.port, fake.base_url
    try:
        async with bridge_client(base_url, config, LMSTUDIO_BRIDGE_MAX_RETRIES="1") as client:
            call = asyncio.create_task(
                client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@delay 5\n@answer late"})
            )
            assert await eventually(lambda: fake.in_flight == 1, within=20)
            await asyncio.to_thread(fake.stop)
            gone = await asyncio.wait_for(call, 30)
            assert gone.is_error
            assert text_of(gone).startswith(f"Error: Cannot reach LM Studio at {base_url}"), text_of(gone)
            fake = FakeLMStudio(models=["qwen/qwen3-coder-30b"], port=port).start()
            back = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": '@call echo {"text": "back"}'})
            assert not back.is_error and text_of(back).endswith("last=back"), text_of(back)
    finally:
        fake.stop()


LMSTUDIO_FAULTS: list[tuple[dict[str, Any], str]] = [
    ({"status": 500}, "answered HTTP 500 after 2 attempts: Fake failure: HTTP 500"),
    ({"status": 429, "headers": {"Retry-After": "0"}}, "answered HTTP 429 after 2 attempts"),
    ({"kind": "garbage"}, "something that is not JSON"),
    ({"status": 400, "body": {"error": "Model crashed while loading"}}, "answered HTTP 400: Model crashed while loading"),
    ({"kind": "drop"}, "(the connection was dropped mid-request)"),
    ({"kind": "hang"}, "wrote nothing within 1 s of the request"),
]


async def test_lmstudio_faults_are_clear_errors_and_the_next_call_works(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    env = {"LMSTUDIO_BRIDGE_MAX_RETRIES": "1", "LMSTUDIO_BRIDGE_REQUEST_TIMEOUT": "1"}
    fake.hang_limit = 60
    async with bridge_client(fake.base_url, config, **env) as client:
        for fault, expected in LMSTUDIO_FAULTS:
            fake.fail_next(times=2, **fault)
            started = time.monotonic()
            failed = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@answer x"})
            assert time.monotonic() - started < 30  # without the 1 s timeout a hang would last 60 s
            text = text_of(failed)
            assert failed.is_error and text.startswith("Error: ") and fake.base_url in text, text
            assert expected in text, (fault, text)
            fake.clear_faults()
            ok = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "@answer fine"})
            assert not ok.is_error and text_of(ok) == "fine", (fault, text_of(ok))


async def test_a_hung_tool_call_times_out_and_the_child_keeps_serving(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    async with bridge_client(fake.base_url, config, LMSTUDIO_BRIDGE_TOOL_TIMEOUT="1") as client:
        started = time.monotonic()
        hung = await client.call_tool(
            "autonomous_with_mcp", {"mcp_name": "echo", "task": '@call slow {"seconds": 600}\n@call counter {}'}
        )
        assert time.monotonic() - started < 30  # the tool would take 600 s
        first, second = tool_messages(fake.last_chat())
    assert not hung.is_error
    assert first == "Error: echo.slow did not finish within 1 s"
    assert json.loads(second)["count"] == 1


# ----------------------------------------------------------------------------- no orphans on exit


class RawBridge:
    """The bridge as a bare subprocess spoken to in JSON-RPC lines, to control exactly how it ends."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._ids = 0

    @classmethod
    async def start(cls, base_url: str, config: Path, stderr: Path) -> RawBridge:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lmstudio_bridge",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr.open("w"),
            env=stdio_environment(base_url, config), cwd=str(config.parent), limit=2**22,
        )  # fmt: skip
        raw = cls(process)
        capabilities = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        await raw.request("initialize", capabilities)
        await raw.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return raw

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        await self.send({"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params})
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), 30)
            assert line, "the bridge closed stdout"
            message = json.loads(line)
            if message.get("id") == self._ids:
                return message["result"]

    async def call(self, mcp: str, task: str) -> dict[str, Any]:
        return await self.request("tools/call", {"name": "autonomous_with_mcp", "arguments": {"mcp_name": mcp, "task": task}})


async def end_by(how: str, raw: RawBridge) -> None:
    if how == "stdin":
        assert raw.process.stdin is not None
        raw.process.stdin.close()
    else:
        raw.process.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)


@pytest.mark.parametrize("how", ["stdin", "sigterm", "sigint"])
async def test_exit_leaves_no_process_behind(fake: FakeLMStudio, tmp_path: Path, how: str) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo"), "echo2": echo_entry("echo2")})
    raw = await RawBridge.start(fake.base_url, config, tmp_path / "stderr.log")
    try:
        for name in ("echo", "echo2"):
            done = await raw.call(name, '@call spawn_grandchild {"new_session": false}; spawn_grandchild {"new_session": true}')
            assert not done.get("isError"), done
        grandchildren = [int(m) for b in fake.chat_bodies() for m in tool_messages(b)]
        prefix = await asyncio.to_thread(bridge_marker, raw.process.pid)
        before = await asyncio.to_thread(marked, prefix)
        assert len(before) == 6 and set(grandchildren) <= set(before)  # two children, four grandchildren
        started = time.monotonic()
        await end_by(how, raw)
        await asyncio.wait_for(raw.process.wait(), 30)
        exit_seconds = time.monotonic() - started
        left = await eventually(lambda: not marked(prefix), within=15)
        print(f"\n{how}: exit after {exit_seconds:.2f} s; marked processes {len(before)} before, "
              f"{len(await asyncio.to_thread(marked, prefix))} after")  # fmt: skip
        assert exit_seconds < 15  # the bridge's own worst case: signal grace, then a child's stop timeout
        assert left is not None, f"left running: {marked(prefix)}"
    finally:
        if raw.process.returncode is None:
            raw.process.kill()
            await raw.process.wait()


# ----------------------------------------------------------------------------- steady resources


def resources(pid: int) -> tuple[int, float]:
    proc = psutil.Process(pid)
    return proc.num_fds(), proc.memory_info().rss / 2**20


async def test_many_tasks_in_a_row_do_not_leak_fds(fake: FakeLMStudio, tmp_path: Path) -> None:
    total = int(os.environ.get("RELIABILITY_SOAK_TASKS", "150"))
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    samples: list[tuple[int, int, float]] = []
    task = '@call echo {"text": "x"}; counter {}'
    async with stdio_bridge(fake.base_url, config, tmp_path / "stderr.log", LMSTUDIO_BRIDGE_LOG_LEVEL="WARNING") as run:
        for n in range(1, total + 1):
            result = await run.client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": task})
            assert not result.is_error, text_of(result)
            if n % 50 == 0 or n in (10, 100):
                samples.append((n, *await asyncio.to_thread(resources, run.pid)))
            if n % 50 == 0:
                fake.reset()  # the fake's own record would grow otherwise
    for n, fds, rss in samples:
        print(f"\nafter {n:4d} tasks: {fds} fds, {rss:.1f} MiB RSS", end="")
    _, fds_early, rss_early = samples[0]
    _, fds_late, rss_late = samples[-1]
    assert fds_late - fds_early <= 4
    assert rss_late - rss_early < 40


# ----------------------------------------------------------------------------- bad input, security


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("autonomous_with_mcp", {"mcp_name": "echo", "task": None}, "Error: invalid arguments for autonomous_with_mcp: task"),
    ("autonomous_with_mcp", {"mcp_name": "echo", "task": 12}, "Error: invalid arguments for autonomous_with_mcp: task"),
    ("autonomous_with_mcp", {"mcp_name": "echo", "task": "x" * 1_000_000}, "Error: The task is 1,000,000 characters long"),
    ("autonomous_with_mcp", {"mcp_name": "e" * 1_000_000, "task": "x"}, "Error: An MCP name is longer than 200"),
    ("autonomous_with_mcp", {"mcp_name": "", "task": "x"}, "Error: Name at least one MCP server"),
    ("autonomous_with_mcp", {"mcp_name": "echo/../echo", "task": "x"}, "Error: MCP 'echo/../echo' not found."),
    ("autonomous_with_mcp", {"mcp_name": "..", "task": "x"}, "Error: MCP '..' not found."),
    ("autonomous_with_mcp", {"mcp_name": sys.executable, "task": "x"}, f"Error: MCP '{sys.executable}' not found."),
    ("autonomous_with_mcp", {"mcp_name": "touch /tmp/pwned", "task": "x"}, "Error: MCP 'touch /tmp/pwned' not found."),
    ("autonomous_with_mcp", {"mcp_name": "écho ✨", "task": "x"}, "Error: MCP 'écho ✨' not found."),
    ("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "model": "../../etc/passwd"}, "Error: Model '../../etc/passwd' not found."),
    ("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "max_rounds": "many"}, "Error: invalid arguments for autonomous_with_mcp: max_rounds"),
    ("autonomous_with_multiple_mcps", {"mcp_names": "echo", "task": "x"}, "Error: invalid arguments for autonomous_with_multiple_mcps: mcp_names"),
    ("autonomous_with_multiple_mcps", {"mcp_names": [None, 3], "task": "x"}, "Error: invalid arguments for autonomous_with_multiple_mcps: mcp_names"),
    ("autonomous_with_multiple_mcps", {"mcp_names": ["echo"] * 17 + [f"n{i}" for i in range(17)], "task": "x"}, "Error: At most 16 MCP servers"),
    ("autonomous_with_multiple_mcps", {"mcp_names": None, "task": "x"}, "Error: invalid arguments for autonomous_with_multiple_mcps: mcp_names"),
]  # fmt: skip


async def test_bad_input_never_crashes_and_never_starts_a_process(fake: FakeLMStudio, tmp_path: Path) -> None:
    config = write_config(tmp_path / "mcp.json", {"echo": echo_entry("echo")})
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    async with bridge_client(fake.base_url, config) as client:
        for tool, args, expected in BAD_INPUTS:
            result = await client.call_tool(tool, args)
            assert result.is_error and text_of(result).startswith(expected), (args if len(str(args)) < 300 else tool, text_of(result)[:300])
            assert {p.pid for p in psutil.Process().children(recursive=True)} <= before
        unicode = await client.call_tool("autonomous_with_mcp", {"mcp_name": "echo", "task": "数学 🚀\n@answer 答え ✓"})
        assert not unicode.is_error and text_of(unicode) == "答え ✓"
    assert not Path("/tmp/pwned").exists()
    assert fake.chat_requests()[-1].json["messages"][1]["content"] == "数学 🚀\n@answer 答え ✓"


async def test_secrets_never_reach_results_progress_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    api_key, entry_secret = "sk-lms-7f3a9c0d2e1b", "entry-secret-4b8e61f2"
    config = write_config(
        tmp_path / "mcp.json",
        {
            "echo": {**echo_entry("echo"), "env": {"SERVICE_TOKEN": entry_secret}},
            "broken": {**echo_entry("broken", "--crash-on-start"), "env": {"SERVICE_TOKEN": entry_secret}},
        },
    )
    seen: list[str] = []

    async def on_progress(_: float, __: float | None, message: str | None) -> None:
        seen.append(message or "")

    with FakeLMStudio(models=["qwen/qwen3-coder-30b"], require_api_key=api_key) as fake:
        async with bridge_client(fake.base_url, config, LMSTUDIO_API_KEY=api_key) as client:
            calls = [
                ("autonomous_with_mcp", {"mcp_name": "echo", "task": '@call echo {"text": "hi"}\n@call fail {"message": "nope"}'}),
                ("autonomous_with_mcp", {"mcp_name": "broken", "task": "x"}),
                ("autonomous_with_mcp", {"mcp_name": "echo", "task": "x", "model": "missing"}),
                ("list_mcps", {}),
                ("list_models", {}),
                ("health_check", {}),
            ]
            for tool, args in calls:
                result = await client.call_tool(tool, args, progress_callback=on_progress)
                seen += [text_of(result), json.dumps(result.structured_content)]
            fake.require_api_key = "another-key"
            refused = await client.call_tool("health_check", {})
            seen.append(json.dumps(refused.structured_content))
    logs = caplog.text  # every log record of the bridge, at DEBUG, with tracebacks
    assert "MCP 'broken' failed to start" in "\n".join(seen) and "refused" in seen[-1]
    assert "MCP 'echo' started" in logs and "MCP 'broken' failed to start" in logs  # the logs were seen
    for secret in (api_key, entry_secret):
        assert all(secret not in text for text in seen)
        assert secret not in logs
