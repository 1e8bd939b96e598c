"""The stdio wire: every line the host sends gets an answer where JSON-RPC 2.0 asks for one.

The MCP SDK's stdio server (``mcp.server.stdio``, mcp 2.3) parses each line and hands
a line it cannot parse to the session as an exception, which is dropped (a debug log
line). So a line that is not JSON, a request whose ``"jsonrpc"`` is not ``"2.0"``, or a
request holding a lone surrogate escape such as ``"\\ud800"`` (valid JSON text that the
SDK's parser refuses) goes unanswered, and a caller waiting for its id waits forever.

Here each line is checked before the SDK sees it. A line the SDK would parse goes on
unchanged; for any other the host gets what JSON-RPC 2.0 prescribes:

- not JSON: a parse error (-32700) with ``"id": null``;
- JSON, but not a valid message: an invalid request error (-32600) carrying the request's
  id when one can be read (a string or an integer), else ``"id": null``; this includes a
  request whose id is null, a boolean or a fraction, which the SDK takes for a notification;
- a response (no ``"method"``) or a blank line: nothing, as a server never answers those.

The SDK takes explicit streams without claiming fd 0, so ``claimed_stdin`` does that part
itself, as the SDK would: the wire is read from a private duplicate, and fd 0 points at
the null device while the bridge serves, so nothing it starts can read the host's messages.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from io import TextIOWrapper
from typing import Any, BinaryIO

import anyio
import mcp.types as mcp_types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCNotification
from pydantic import ValidationError

logger = logging.getLogger(__name__)


def rejection(line: str) -> tuple[bool, JSONRPCError | None]:
    """What to do with one line from the host: (pass it to the SDK?, the error to answer instead).

    ``(True, None)`` for a message the SDK parses; ``(False, error)`` for one the bridge
    answers itself; ``(False, None)`` for a line nobody answers.
    """
    if not line.strip():
        return False, None
    try:
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError as exc:
        problem = exc
    else:
        if isinstance(message, JSONRPCNotification) and _has_id(line):
            # The SDK reads a request whose id is null, a boolean or a fraction as a notification, and never answers.
            reason = 'the "id" of a request must be a string or an integer'
            logger.warning("Answered an invalid request with -32600: %s", reason)
            return False, _error(None, INVALID_REQUEST, f"Invalid request: {reason}")
        return True, None
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        logger.warning("Answered a line that is not JSON (%d characters: %s) with a parse error", len(line), detail)
        return False, _error(None, PARSE_ERROR, f"Parse error: the line is not JSON ({detail})")
    if isinstance(data, dict) and "method" not in data and ("result" in data or "error" in data):
        logger.warning("Dropped a response the SDK cannot read: %s", _reason(data, problem))
        return False, None
    request_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        request_id = None
    reason = _reason(data, problem)
    logger.warning("Answered an invalid request (id %r) with -32600: %s", _short(request_id), reason)
    return False, _error(request_id, INVALID_REQUEST, f"Invalid request: {reason}")


def _has_id(line: str) -> bool:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "id" in data


def _reason(data: Any, problem: ValidationError) -> str:
    if not isinstance(data, dict):
        kind = "a list (batches are not supported)" if isinstance(data, list) else f"a JSON {type(data).__name__}"
        return f"a message must be a JSON object, not {kind}"
    if data.get("jsonrpc") != "2.0":
        return 'a message must carry "jsonrpc": "2.0"'
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return (
            "the message holds a lone surrogate escape (such as \\ud800), which is not a Unicode character; "
            "send text as valid UTF-8, or escape characters outside the BMP as surrogate pairs"
        )
    member = "JSONRPCRequest" if "id" in data else "JSONRPCNotification"
    errors = [e for e in problem.errors() if e["loc"][:1] == (member,)]  # loc[0] names the union member
    if not errors:
        return "the message cannot be read"
    where = ".".join(str(part) for part in errors[0]["loc"][1:])
    return f"{where}: {errors[0]['msg']}" if where else errors[0]["msg"]


def _short(value: object) -> object:
    return value[:40] + "…" if isinstance(value, str) and len(value) > 40 else value


def _error(request_id: int | str | None, code: int, message: str) -> JSONRPCError:
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))


class _BorrowedText(TextIOWrapper):
    """A text layer over a buffer it does not own: closing it (also when it is collected) leaves the buffer open."""

    def close(self) -> None:
        return None


class ScreenedLines:
    """The host's lines, minus those the bridge answers itself (their errors go to ``rejected``)."""

    def __init__(self, source: Any, rejected: MemoryObjectSendStream[JSONRPCError]) -> None:
        self._source = source
        self._rejected = rejected

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        async with self._rejected:
            async for line in self._source:
                forward, error = rejection(line)
                if forward:
                    yield line
                elif error is not None:
                    await self._rejected.send(error)


@contextmanager
def claimed_stdin() -> Iterator[Any]:
    """The host's stdin as async text lines; fd 0 on the null device meanwhile (best effort)."""
    try:
        private = os.dup(0)  # not inheritable: no child gets the wire
    except OSError:
        yield _lines_of(sys.stdin.buffer)  # read in place, as the SDK does when it cannot divert
        return
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            os.dup2(null, 0)
        finally:
            os.close(null)
    except OSError:
        diverted = False  # fd 0 stays the wire; it is read through the duplicate all the same
    else:
        diverted = True
    try:
        # closefd=False: a worker thread may still be blocked reading it after serving ends.
        yield _lines_of(os.fdopen(private, "rb", closefd=False))
    finally:
        if diverted:
            try:
                os.dup2(private, 0)
            except OSError:
                logger.debug("Could not point fd 0 back at stdin", exc_info=True)


def _lines_of(buffer: BinaryIO) -> Any:
    return anyio.wrap_file(_BorrowedText(buffer, encoding="utf-8", errors="replace"))
