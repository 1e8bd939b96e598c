"""The task history: one SQLite file in the user's state directory, shared by every bridge process.

Standard library ``sqlite3``, one connection per process guarded by a lock, every call in a worker
thread (``anyio.to_thread``): the event loop never waits on the disk. The file is created with mode
0600, in WAL mode (readers never block the writer), with a busy timeout so several bridges (one per
host window is common) take turns writing.

Nothing secret is written: every string goes through ``Redactor`` first (the values of ``env`` and
``headers`` entries of the MCP configs, and the API key).

A file that cannot be opened or written (corrupt, read-only, a full disk) turns the history off for
this process, said once in the log; tasks still run and are served from memory.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio.to_thread
import psutil

logger = logging.getLogger(__name__)

DB_NAME = "tasks.sqlite3"
BUSY_TIMEOUT_MS = 5000
WAL_RETRY_SECONDS = 0.02
PRUNE_BATCH = 200
SCHEMA_VERSION = 2

TaskState = Literal["running", "completed", "failed", "cancelled", "interrupted"]
FINISHED: tuple[TaskState, ...] = ("completed", "failed", "cancelled", "interrupted")
TASK_STATES: tuple[TaskState, ...] = ("running", *FINISHED)

REDACTED = "***"
MIN_SECRET_CHARS = 6
"""Shorter values (``1``, ``true``, ``dev``) are settings, not secrets; replacing them everywhere would
mangle every text."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    parent_id TEXT,
    state TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT,
    mcps TEXT NOT NULL,
    read_only INTEGER NOT NULL DEFAULT 0,
    allowed_tools TEXT,
    max_rounds INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    rounds INTEGER NOT NULL DEFAULT 0,
    tool_calls INTEGER NOT NULL DEFAULT 0,
    last_progress TEXT,
    result TEXT,
    error TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (created_at);
CREATE TABLE IF NOT EXISTS messages (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
"""

_TRANSIENT = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
"""Error codes that mean "another bridge holds the file right now": that write is skipped, the history stays on."""

T = TypeVar("T")


def default_state_dir() -> Path:
    """The platform's place for an application's state: XDG on Linux, Application Support on macOS,
    LOCALAPPDATA on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "lmstudio-bridge"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "lmstudio-bridge"
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    return (Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state") / "lmstudio-bridge"


def owner_id() -> str:
    """This process, as ``host:pid:start time``: a pid the system gave to a new process later is told apart."""
    process = psutil.Process()
    return f"{socket.gethostname()}:{process.pid}:{process.create_time():.3f}"


def owner_pid(owner: str | None) -> str:
    """The process id part of an owner, for messages."""
    parts = (owner or "").split(":")
    return parts[1] if len(parts) == 3 else "?"


def owner_alive(owner: str | None) -> bool:
    """Whether the bridge process ``owner`` still runs. A process of another host is taken to run."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        return f"{psutil.Process(int(pid)).create_time():.3f}" == started
    except (psutil.Error, ValueError):
        return False


class Redactor:
    """Replaces known secret values in every string of a JSON-like value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        fresh = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_CHARS}
        self._secrets = sorted(fresh | set(self._secrets), key=len, reverse=True)  # longest first

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def record(self, record: TaskRecord) -> TaskRecord:
        """A copy of ``record`` as the history would hold it."""
        return replace(
            record,
            task=self.text(record.task),
            last_progress=self.text(record.last_progress) if record.last_progress else None,
            error=self.text(record.error) if record.error else None,
            result=self.value(record.result),
            messages=self.value(record.messages),
        )

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


@dataclass
class TaskRecord:
    """One task as the history holds it."""

    id: str
    state: TaskState
    task: str
    mcps: list[str]
    created_at: float
    updated_at: float
    model: str | None = None
    parent_id: str | None = None
    read_only: bool = False
    allowed_tools: list[str] | None = None
    max_rounds: int | None = None
    finished_at: float | None = None
    rounds: int = 0
    tool_calls: int = 0
    last_progress: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    owner: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)


_COLUMNS = (
    "id, parent_id, state, task, model, mcps, read_only, allowed_tools, max_rounds, created_at, updated_at, finished_at, "
    "rounds, tool_calls, last_progress, result, error, owner"
)


def _record(row: sqlite3.Row) -> TaskRecord:
    return TaskRecord(
        id=row["id"],
        parent_id=row["parent_id"],
        state=row["state"],
        task=row["task"],
        model=row["model"],
        mcps=json.loads(row["mcps"]),
        read_only=bool(row["read_only"]),
        allowed_tools=json.loads(row["allowed_tools"]) if row["allowed_tools"] is not None else None,
        max_rounds=row["max_rounds"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        rounds=row["rounds"],
        tool_calls=row["tool_calls"],
        last_progress=row["last_progress"],
        result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
        owner=row["owner"],
    )


def _to_wal(db: sqlite3.Connection) -> str:
    """Switches the file to WAL mode and returns the mode it is in. While another bridge opens the same new
    file, SQLite refuses the switch with SQLITE_BUSY at once, without waiting the busy timeout (two bridges
    started together: one in six found the history off); so it is tried again until that timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in _TRANSIENT or time.monotonic() > deadline:
                raise
        time.sleep(WAL_RETRY_SECONDS)


class TaskStore:
    """The history file. Every public method is async and runs its SQL in a worker thread; each returns
    quietly (``None``, ``[]``) once the history is off."""

    def __init__(
        self,
        directory: Path,
        *,
        retention_days: float,
        retention_count: int,
        redactor: Redactor | None = None,
    ) -> None:
        self.path = directory / DB_NAME
        self.retention_days = retention_days
        self.retention_count = retention_count
        self.redactor = redactor or Redactor()
        self.owner = owner_id()
        self.problem: str | None = None
        """Why the history is off, once it is."""
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._opened = False

    @property
    def enabled(self) -> bool:
        return self.problem is None

    # -- opening and closing

    async def open(self) -> None:
        """Opens (creating if needed) the file, marks tasks of bridges that died as ``interrupted``,
        and prunes old tasks. A failure turns the history off."""
        if self._opened:
            return
        self._opened = True
        await self._call(self._open_sync, opening=True)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            # Created empty with mode 0600 before SQLite opens it: no moment where others may read it.
            try:
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                pass  # another bridge made it a moment ago
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = _to_wal(db)
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"the file cannot use WAL mode (it stays in {mode} mode)")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            with db:
                db.execute("BEGIN IMMEDIATE")
                for statement in _statements():
                    db.execute(statement)
                columns = {row["name"] for row in db.execute("PRAGMA table_info(tasks)")}
                if "allowed_tools" not in columns:  # a history written before tasks kept their allowed tools
                    db.execute("ALTER TABLE tasks ADD COLUMN allowed_tools TEXT")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM tasks").fetchone()
        except BaseException:
            db.close()
            raise
        for suffix in ("-wal", "-shm"):
            sidecar = self.path.with_name(self.path.name + suffix)
            try:
                os.chmod(sidecar, 0o600)
            except OSError:
                pass
        self._db = db
        self._mark_interrupted_sync()
        self._prune_sync()

    async def aclose(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await anyio.to_thread.run_sync(self._close_sync, db)

    def _close_sync(self, db: sqlite3.Connection) -> None:
        with self._lock:
            db.close()

    # -- writing

    async def insert(self, record: TaskRecord) -> None:
        r = self.redactor
        row = (
            record.id,
            record.parent_id,
            record.state,
            r.text(record.task),
            record.model,
            json.dumps(r.value(record.mcps)),
            int(record.read_only),
            json.dumps(record.allowed_tools) if record.allowed_tools is not None else None,
            record.max_rounds,
            record.created_at,
            record.updated_at,
            self.owner,
        )
        await self._write(
            "INSERT INTO tasks (id, parent_id, state, task, model, mcps, read_only, allowed_tools, max_rounds, "
            "created_at, updated_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row],
        )

    async def progress(
        self, task_id: str, *, model: str | None, rounds: int, tool_calls: int, last_progress: str | None
    ) -> None:
        """Updates a running task's counters; a task already finished keeps its final state."""
        line = self.redactor.text(last_progress) if last_progress else None
        await self._write(
            "UPDATE tasks SET model = coalesce(?, model), rounds = ?, tool_calls = ?, last_progress = ?, "
            "updated_at = ? WHERE id = ? AND state = 'running'",
            [(model, rounds, tool_calls, line, time.time(), task_id)],
        )

    async def add_messages(self, task_id: str, first_seq: int, messages: Sequence[dict[str, Any]]) -> None:
        """Stores messages ``first_seq``, ``first_seq + 1``, ...; messages already stored stay as they are."""
        rows = [
            (task_id, first_seq + n, json.dumps(self.redactor.value(m), ensure_ascii=False))
            for n, m in enumerate(messages)
        ]
        if rows:
            await self._write("INSERT OR IGNORE INTO messages (task_id, seq, message) VALUES (?, ?, ?)", rows)

    async def finish(
        self,
        task_id: str,
        state: TaskState,
        *,
        model: str | None = None,
        rounds: int = 0,
        tool_calls: int = 0,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        last_progress: str | None = None,
    ) -> None:
        now = time.time()
        await self._write(
            "UPDATE tasks SET state = ?, model = coalesce(?, model), rounds = ?, tool_calls = ?, result = ?, "
            "error = ?, last_progress = coalesce(?, last_progress), finished_at = ?, updated_at = ? WHERE id = ?",
            [
                (
                    state,
                    model,
                    rounds,
                    tool_calls,
                    json.dumps(self.redactor.value(result), ensure_ascii=False) if result is not None else None,
                    self.redactor.text(error) if error else None,
                    self.redactor.text(last_progress) if last_progress else None,
                    now,
                    now,
                    task_id,
                )
            ],
        )
        await self._call(self._prune_sync)

    # -- reading

    async def get(self, task_id: str, *, messages: bool = False) -> TaskRecord | None:
        found = await self._call(self._get_sync, task_id, messages)
        return found if isinstance(found, TaskRecord) else None

    async def recent(self, *, limit: int = 20, state: TaskState | None = None) -> list[TaskRecord]:
        found = await self._call(self._recent_sync, limit, state)
        return found if isinstance(found, list) else []

    def _get_sync(self, task_id: str, with_messages: bool) -> TaskRecord | None:
        with self._lock:
            db = self._need()
            row = db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            record = self._checked(db, _record(row))
            if with_messages:
                rows = db.execute("SELECT message FROM messages WHERE task_id = ? ORDER BY seq", (task_id,))
                record.messages = [json.loads(m["message"]) for m in rows]
            return record

    def _recent_sync(self, limit: int, state: TaskState | None) -> list[TaskRecord]:
        with self._lock:
            db = self._need()
            if state is None:
                rows = db.execute(f"SELECT {_COLUMNS} FROM tasks ORDER BY created_at DESC LIMIT ?", (limit,))
            elif state in ("running", "interrupted"):
                # A running row of a bridge that died is interrupted: decide before filtering.
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM tasks WHERE state IN ('running', 'interrupted') ORDER BY created_at DESC"
                )
            else:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM tasks WHERE state = ? ORDER BY created_at DESC LIMIT ?", (state, limit)
                )
            records = [self._checked(db, _record(r)) for r in rows.fetchall()]
            if state is not None:
                records = [r for r in records if r.state == state][:limit]
            return records

    def _checked(self, db: sqlite3.Connection, record: TaskRecord) -> TaskRecord:
        """A running task whose bridge is gone is ``interrupted`` (and stored so)."""
        if record.state == "running" and record.owner != self.owner and not owner_alive(record.owner):
            record.state = "interrupted"
            record.error = INTERRUPTED
            try:
                db.execute(
                    "UPDATE tasks SET state = 'interrupted', error = ?, finished_at = updated_at "
                    "WHERE id = ? AND state = 'running'",
                    (INTERRUPTED, record.id),
                )
            except sqlite3.Error as exc:
                if exc.sqlite_errorcode not in _TRANSIENT:
                    raise
        return record

    # -- upkeep

    def _mark_interrupted_sync(self) -> None:
        with self._lock:
            db = self._need()
            rows = db.execute("SELECT id, owner FROM tasks WHERE state = 'running'").fetchall()
            dead = [(INTERRUPTED, r["id"]) for r in rows if not owner_alive(r["owner"])]
            if dead:
                db.executemany(
                    "UPDATE tasks SET state = 'interrupted', error = ?, finished_at = updated_at "
                    "WHERE id = ? AND state = 'running'",
                    dead,
                )
                logger.info("%d task(s) of a bridge that stopped are marked interrupted", len(dead))

    def _prune_sync(self) -> None:
        """Removes finished tasks past the age limit or beyond the count, a small batch per transaction,
        so no other bridge waits long."""
        cutoff = time.time() - self.retention_days * 86400
        while True:
            with self._lock:
                db = self._need()
                ids = [
                    r["id"]
                    for r in db.execute(
                        "SELECT id FROM tasks WHERE state != 'running' AND (created_at < ? OR id NOT IN "
                        "(SELECT id FROM tasks ORDER BY created_at DESC LIMIT ?)) LIMIT ?",
                        (cutoff, self.retention_count, PRUNE_BATCH),
                    )
                ]
                if ids:
                    marks = ",".join("?" * len(ids))
                    with db:
                        db.execute("BEGIN IMMEDIATE")
                        db.execute(f"DELETE FROM tasks WHERE id IN ({marks})", ids)
            if len(ids) < PRUNE_BATCH:
                return

    # -- plumbing

    def _need(self) -> sqlite3.Connection:
        if self._db is None:
            raise _Off()
        return self._db

    async def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        def run() -> None:
            with self._lock:
                db = self._need()
                with db:
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(sql, rows)

        await self._call(run)

    async def _call(self, fn: Callable[..., T], *args: Any, opening: bool = False) -> T | None:
        """Runs ``fn`` in a worker thread. A file another bridge holds past the busy timeout skips that one
        update; while ``opening``, it turns the history off (this bridge has no connection to write with)."""
        if not self.enabled:
            return None
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except _Off:
            return None
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _TRANSIENT:
                self._turn_off(f"{type(exc).__name__}: {exc}")
            elif opening:
                self._turn_off(f"another bridge held it for over {BUSY_TIMEOUT_MS / 1000:g} s while this one opened it")
            else:
                logger.warning("Task history busy (another bridge holds %s); one update was skipped", self.path)
            return None
        except OSError as exc:
            self._turn_off(f"{exc.strerror or exc}")
            return None

    def _turn_off(self, why: str) -> None:
        self.problem = why
        logger.error(
            "Task history is off: %s cannot be used (%s). Tasks still run, but are kept only while this bridge "
            "runs. Move the file away (or fix its permissions), or set LMSTUDIO_BRIDGE_STATE_DIR to another "
            "directory, then restart the bridge.",
            self.path,
            why,
        )
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass


INTERRUPTED = "the bridge running it stopped before it finished"


class _Off(Exception):
    """The history is off (or not open): the call does nothing."""


def _statements() -> list[str]:
    return [s.strip() for s in _SCHEMA.split(";") if s.strip()]
