"""A child MCP server that misbehaves on purpose: hangs at start, writes invalid UTF-8, ignores signals.

Plain JSON-RPC over stdio with no SDK import, so it starts in tens of milliseconds and every
byte it writes is under its control. Run: ``python tests/hostile_children.py [flags]``.

Flags: ``--hang-at-start`` (never reads stdin, so never answers ``initialize`` and never sees
stdin close), ``--ignore-term`` (ignores SIGTERM), ``--grandchild`` (starts a ``sleep`` in a
session of its own before anything else, which the process-group kill does not reach; its pid
goes to the file named by ``--pid-file``, with this process's own pid), ``--linger`` (keeps
running after stdin closes), ``--log FILE`` (appends ``call NAME`` to FILE as each call begins).

Tools: ``echo(text)``, ``pid()``, ``garble()`` (an invalid UTF-8 line on stdout, then its
answer), ``garble_inside()`` (its answer's text holds an invalid UTF-8 byte), ``big(chars)``
(a text of that many characters), ``spawn_grandchild()`` (returns the pid of a new-session
``sleep``), ``sleep(seconds)`` (blocks the whole server, deaf to cancellation).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SCRIPT = str(Path(__file__).resolve())
SLEEP_SECONDS = "300"
"""Bounded: whatever a failed test leaves behind goes away on its own."""

TOOLS = [
    {"name": name, "description": description, "inputSchema": {"type": "object", "properties": props}}
    for name, description, props in [
        ("echo", "Return the text unchanged.", {"text": {"type": "string"}}),
        ("pid", "This server's process id.", {}),
        ("garble", "Write a line of invalid UTF-8 on stdout, then answer.", {}),
        ("garble_inside", "Answer with an invalid UTF-8 byte inside the text.", {}),
        ("big", "A text of `chars` characters.", {"chars": {"type": "integer"}}),
        ("spawn_grandchild", "Start a sleep in a session of its own; returns its pid.", {}),
        ("sleep", "Block the whole server for `seconds`.", {"seconds": {"type": "number"}}),
    ]
]


def command(*flags: str) -> list[str]:
    """The command line that runs this server with ``flags``."""
    return [sys.executable, SCRIPT, *flags]


def spawn_sleeper() -> int:
    proc = subprocess.Popen(
        ["sleep", SLEEP_SECONDS], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
    )
    return proc.pid


def write(raw: bytes) -> None:
    os.write(1, raw)


def send(message: dict[str, Any]) -> None:
    write(json.dumps(message).encode() + b"\n")


def result_text(request_id: Any, text: str) -> None:
    send(
        {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}], "isError": False}}
    )


def call(request_id: Any, name: str, arguments: dict[str, Any]) -> None:
    if name == "echo":
        result_text(request_id, str(arguments.get("text", "")))
    elif name == "pid":
        result_text(request_id, str(os.getpid()))
    elif name == "garble":
        write(b"\xff\xfe this line is not UTF-8 \xc3\x28\n")
        result_text(request_id, "garbled")
    elif name == "garble_inside":
        placeholder = json.dumps({"jsonrpc": "2.0", "id": request_id, "result": {
            "content": [{"type": "text", "text": "before-MARK-after"}], "isError": False}})  # fmt: skip
        write(placeholder.encode().replace(b"MARK", b"\xff") + b"\n")
    elif name == "big":
        result_text(request_id, "x" * int(arguments.get("chars", 0)))
    elif name == "sleep":
        time.sleep(float(arguments.get("seconds", 0)))
        result_text(request_id, "slept")
    elif name == "spawn_grandchild":
        result_text(request_id, str(spawn_sleeper()))
    else:
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": f"Unknown tool: {name}"}})


def serve(log: str | None) -> None:
    for raw in sys.stdin.buffer:
        try:
            message = json.loads(raw)
        except ValueError:
            continue
        if "id" not in message or "method" not in message:
            continue  # a notification, or an answer to nothing we asked
        method, request_id, params = message["method"], message["id"], message.get("params") or {}
        if method == "initialize":
            send({"jsonrpc": "2.0", "id": request_id, "result": {
                "protocolVersion": params.get("protocolVersion", "2025-06-18"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "hostile", "version": "1.0"},
            }})  # fmt: skip
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}})
        elif method == "tools/call":
            if log:
                with open(log, "a") as file:
                    file.write(f"call {params.get('name', '')}\n")
            call(request_id, params.get("name", ""), params.get("arguments") or {})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "Method not found"}})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hang-at-start", action="store_true")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--grandchild", action="store_true")
    parser.add_argument("--linger", action="store_true")
    parser.add_argument("--pid-file")
    parser.add_argument("--log")
    options = parser.parse_args()
    if options.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids = [os.getpid()]
    if options.grandchild:
        pids.append(spawn_sleeper())
    if options.pid_file:
        Path(options.pid_file + ".tmp").write_text(" ".join(map(str, pids)))
        os.replace(options.pid_file + ".tmp", options.pid_file)
    if options.hang_at_start:
        threading.Event().wait(float(SLEEP_SECONDS))
        return
    serve(options.log)
    if options.linger:
        threading.Event().wait(float(SLEEP_SECONDS))


if __name__ == "__main__":
    main()
