"""Tasks that outlive a tool call: ids, background runs, detaching, waiting, cancelling, follow-ups.

Every task runs in an asyncio task of its own (``TaskManager.start``), not in the tool call that
started it, so the call can return while the task goes on:

- a foreground call waits for the task; if it is still running after ``detach_after`` seconds the
  call returns a normal result with the task id and the call that fetches the answer (the task goes
  on); a client that cancels the call cancels the task, as before;
- a background call (``background: true``) returns at once;
- ``task_result`` waits up to ``wait_seconds`` (capped below the hosts' cut-offs) for the answer;
- ``cancel_task`` cancels the asyncio task: the cancellation reaches the LM Studio request and the
  tool calls exactly as a client's cancel of a call does.

Tasks are recorded in ``TaskStore`` (SQLite); this process's tasks are also held in memory, so they
are served when the history is off.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from .agent import ProgressFn
from .continuation import fit_history
from .errors import BridgeError, InvalidRequest
from .results import TaskResult, TokenUsage
from .task_store import FINISHED, INTERRUPTED, Redactor, TaskRecord, TaskState, TaskStore, default_state_dir, owner_pid
from .task_views import TaskList, TaskStatus, status_of

if TYPE_CHECKING:
    from .host import Host
    from .service import Bridge

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 50.0
"""task_result waits at most this long: below the 60 s after which some hosts cut a call off."""
DEFAULT_WAIT_SECONDS = 30.0
CANCEL_GRACE = 5.0
"""Seconds cancel_task waits for a cancelled task to unwind before it answers."""
KEEP_FINISHED = 200
"""Finished tasks this process keeps in memory (besides the history file)."""
PROGRESS_EVERY = 1.0
"""Seconds between two progress updates written to the history."""
POLL_EVERY = 1.0
"""Seconds between two looks at the history, waiting for a task another bridge process runs."""
MAX_LIST = 200


class TaskNotFound(InvalidRequest):
    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"No task has the id {task_id[:40]!r}. list_tasks shows the recent ones "
            "(tasks older than the history keeps are gone)."
        )


class TaskFailed(BridgeError):
    """The task ended without an answer: failed, cancelled or interrupted."""


@dataclass
class TaskRequest:
    mcp_names: Sequence[str]
    task: str
    model: str | None = None
    max_rounds: int | None = None
    read_only: bool = False
    parent_id: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    """An earlier conversation the task continues (``continue_task``)."""
    allowed_tools: Sequence[str] | None = None
    host: Host | None = None
    """The calling client, while one is there to ask (approvals, children's questions, roots); None for a
    background task, which gets the approval fallback."""


@dataclass
class RunningTask:
    """A task of this process: running, or finished not long ago."""

    id: str
    request: TaskRequest
    names: list[str]
    model: str
    created_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    conversation: list[dict[str, Any]] = field(default_factory=list)
    state: TaskState = "running"
    last_progress: str | None = None
    result: TaskResult | None = None
    failure: BaseException | None = None
    finished_at: float | None = None
    listeners: list[ProgressFn] = field(default_factory=list)
    job: asyncio.Task[None] | None = None
    saved_messages: int = 0
    saved_progress_at: float = 0.0

    @property
    def rounds(self) -> int:
        """Model replies so far in this task (an earlier conversation's are not counted)."""
        return sum(m.get("role") == "assistant" for m in self.conversation[len(self.request.history) :])

    @property
    def tool_calls(self) -> int:
        return sum(m.get("role") == "tool" for m in self.conversation[len(self.request.history) :])

    @property
    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 3) if self.finished_at is None else self._elapsed

    _elapsed: float = 0.0

    def record(self) -> TaskRecord:
        return TaskRecord(
            id=self.id,
            parent_id=self.request.parent_id,
            state=self.state,
            task=self.request.task,
            model=self.model,
            mcps=self.names,
            read_only=self.request.read_only,
            allowed_tools=list(self.request.allowed_tools) if self.request.allowed_tools is not None else None,
            max_rounds=self.request.max_rounds,
            created_at=self.created_at,
            updated_at=time.time(),
            finished_at=self.finished_at,
            rounds=self.result.rounds if self.result else self.rounds,
            tool_calls=self.tool_calls,
            last_progress=self.last_progress,
            result=self.result.model_dump(mode="json") if self.result else None,
            error=str(self.failure) if self.failure and self.state != "completed" else None,
            messages=self.conversation,
        )

    async def report(self, line: str) -> None:
        self.last_progress = line
        for listener in list(self.listeners):
            await listener(line)


def next_call(task_id: str, wait: float = MAX_WAIT_SECONDS) -> str:
    return f'task_result(task_id="{task_id}", wait_seconds={wait:g})'


class TaskManager:
    """This process's tasks, and the history they are recorded in."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        settings = bridge.settings
        secrets = [settings.api_key.get_secret_value()] if settings.api_key else []
        self.store = TaskStore(
            settings.state_dir or default_state_dir(),
            retention_days=settings.task_retention_days,
            retention_count=settings.task_retention_count,
            redactor=Redactor(secrets),
        )
        self._tasks: dict[str, RunningTask] = {}
        self._opening: asyncio.Lock | None = None
        self._closing = False

    async def ready(self) -> None:
        """Opens the history on first use (a failure turns it off and is logged once)."""
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            await self.store.open()

    async def aclose(self) -> None:
        """Stops the tasks still running (they are recorded as interrupted), then closes the history."""
        self._closing = True
        running = [t.job for t in self._tasks.values() if t.job is not None and not t.job.done()]
        for job in running:
            job.cancel()
        if running:
            await asyncio.wait(running, timeout=CANCEL_GRACE)
        await self.store.aclose()

    # -- starting

    async def start(self, request: TaskRequest, progress: ProgressFn | None = None) -> RunningTask:
        """Checks the request, records the task and starts it. ``progress`` gets every progress line,
        starting with one that holds the task id."""
        from .service import _check_request

        await self.ready()
        names = _check_request(request.mcp_names, request.task, request.max_rounds, request.model)
        await anyio.to_thread.run_sync(lambda: [self._bridge.catalog.get(n) for n in names])  # unknown names fail here
        every = await anyio.to_thread.run_sync(lambda: list(self._bridge.catalog.servers().values()))
        self.store.redactor.add(v for spec in every for _, v in (*spec.env, *spec.headers))
        model = (await self._bridge.fleet.route(request.model)).model
        task = RunningTask(
            id=uuid.uuid4().hex[:12], request=request, names=names, model=model, conversation=list(request.history)
        )
        self._tasks[task.id] = task
        self._forget_old()
        await self.store.insert(task.record())
        if progress is not None:
            task.listeners.append(progress)
            await progress(f"task {task.id} · {', '.join(names)} · {model}")
        task.job = asyncio.create_task(self._drive(task), name=f"lmstudio-bridge-task-{task.id}")
        logger.info("Task %s started (%s, %s)", task.id, ", ".join(names), model)
        return task

    async def run(
        self,
        request: TaskRequest,
        *,
        progress: ProgressFn | None = None,
        background: bool = False,
        detach_after: float | None = None,
    ) -> TaskResult:
        """Starts a task and, unless ``background``, waits for it: its result, a failure raised, or, past
        ``detach_after`` seconds (default: the setting; 0 never), a result saying it runs on. A cancelled
        wait cancels the task."""
        task = await self.start(request, progress)
        assert task.job is not None
        if background:
            task.listeners.clear()
            return running_result(task, "running in the background")
        if detach_after is None:
            detach_after = self._bridge.settings.detach_after
        try:
            await asyncio.wait({task.job}, timeout=detach_after or None)
        except asyncio.CancelledError:
            task.job.cancel()  # the caller gave up: so does the task, as before tasks had ids
            raise
        finally:
            if progress is not None and progress in task.listeners:
                task.listeners.remove(progress)
        if not task.job.done():
            logger.info("Task %s still runs after %g s; its call returns and it goes on", task.id, detach_after)
            return running_result(task, f"still running after {detach_after:g} s, so it goes on in the background")
        return outcome(task)

    async def _drive(self, task: RunningTask) -> None:
        try:
            result = await self._bridge.run_task(
                task.names,
                task.request.task,
                model=task.model,
                max_rounds=task.request.max_rounds,
                read_only=task.request.read_only,
                progress=lambda line: self._progress(task, line),
                conversation=task.conversation,
                allowed_tools=task.request.allowed_tools,
                host=task.request.host,
            )
        except asyncio.CancelledError:
            if self._closing:  # the bridge stops: nobody asked for it
                await self._finish(task, "interrupted", failure=TaskFailed(INTERRUPTED))
            else:
                await self._finish(task, "cancelled", failure=TaskFailed(f"Task {task.id} was cancelled."))
        except BridgeError as exc:
            await self._finish(task, "failed", failure=exc)
        except Exception as exc:
            logger.exception("Task %s failed unexpectedly", task.id)
            await self._finish(task, "failed", failure=exc)
        else:
            if result.answer:
                task.conversation.append({"role": "assistant", "content": result.answer})
            await self._finish(task, "completed", result=result.model_copy(update={"task_id": task.id}))

    async def _progress(self, task: RunningTask, line: str) -> None:
        await task.report(line)
        now = time.monotonic()
        if now - task.saved_progress_at >= PROGRESS_EVERY:
            task.saved_progress_at = now
            await self._save_messages(task)
            await self.store.progress(
                task.id, model=task.model, rounds=task.rounds, tool_calls=task.tool_calls, last_progress=line
            )

    async def _save_messages(self, task: RunningTask) -> None:
        count = len(task.conversation)
        await self.store.add_messages(task.id, task.saved_messages, task.conversation[task.saved_messages : count])
        task.saved_messages = count

    async def _finish(
        self,
        task: RunningTask,
        state: TaskState,
        *,
        result: TaskResult | None = None,
        failure: BaseException | None = None,
    ) -> None:
        task._elapsed = round(time.monotonic() - task.started, 3)
        task.state, task.result, task.failure, task.finished_at = state, result, failure, time.time()
        task.listeners.clear()
        logger.info("Task %s %s after %.1f s", task.id, state, task._elapsed)
        await self._save_messages(task)
        record = task.record()
        await self.store.finish(
            task.id,
            state,
            model=task.model,
            rounds=record.rounds,
            tool_calls=record.tool_calls,
            result=record.result,
            error=record.error,
            last_progress=task.last_progress,
        )

    def _forget_old(self) -> None:
        finished = [t for t in self._tasks.values() if t.state in FINISHED]
        for task in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._tasks[task.id]

    # -- looking at tasks

    async def _record(self, task_id: str, *, messages: bool = False) -> TaskRecord:
        await self.ready()
        task = self._tasks.get(task_id)
        if task is not None:
            return self.store.redactor.record(task.record())
        record = await self.store.get(task_id, messages=messages)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    async def status(self, task_id: str) -> TaskStatus:
        return status_of(await self._record(task_id), mine=task_id in self._tasks)

    async def transcript(self, task_id: str) -> TaskRecord:
        """The task with its messages (as sent to the model)."""
        return await self._record(task_id, messages=True)

    async def list(self, *, state: TaskState | None = None, limit: int = 20) -> TaskList:
        await self.ready()
        limit = max(1, min(limit, MAX_LIST))
        records = {r.id: r for r in await self.store.recent(limit=limit, state=state)}
        for task in self._tasks.values():
            if state is None or task.state == state:
                records[task.id] = self.store.redactor.record(task.record())
        newest = sorted(records.values(), key=lambda r: r.created_at, reverse=True)[:limit]
        return TaskList(
            tasks=[status_of(r, mine=r.id in self._tasks) for r in newest],
            history=str(self.store.path) if self.store.enabled else None,
            history_problem=self.store.problem,
        )

    async def wait(self, task_id: str, wait_seconds: float, progress: ProgressFn | None = None) -> TaskResult:
        """The task's result; while it runs, waits up to ``wait_seconds`` (at most ``MAX_WAIT_SECONDS``) first.
        A failed, cancelled or interrupted task raises ``TaskFailed``. Cancelling the wait leaves the task alone."""
        wait = max(0.0, min(wait_seconds, MAX_WAIT_SECONDS))
        task = self._tasks.get(task_id)
        if task is None:
            return await self._wait_elsewhere(task_id, wait)
        assert task.job is not None
        if not task.job.done() and wait > 0:
            if progress is not None:
                task.listeners.append(progress)
            try:
                await asyncio.wait({task.job}, timeout=wait)
            finally:
                if progress is not None and progress in task.listeners:
                    task.listeners.remove(progress)
        if not task.job.done():
            return running_result(task, f"still running after {task.elapsed:.0f} s")
        return outcome(task)

    async def _wait_elsewhere(self, task_id: str, wait: float) -> TaskResult:
        """A task of the history: finished (maybe before a restart), or running in another bridge process."""
        deadline = time.monotonic() + wait
        while True:
            record = await self._record(task_id)
            if record.state != "running" or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(POLL_EVERY, max(0.0, deadline - time.monotonic())))
        if record.state == "running":
            status = status_of(record, mine=False)
            return TaskResult(
                answer="",
                model=record.model or "",
                mcps=record.mcps,
                rounds=record.rounds,
                stop_reason=None,
                tool_calls=[],
                usage=TokenUsage(),
                elapsed_seconds=status.elapsed_seconds,
                task_id=record.id,
                state="running",
                next_call=next_call(record.id),
            )
        if record.state == "completed" and record.result is not None:
            return TaskResult.model_validate(record.result)
        raise TaskFailed(failure_text(record.id, record.state, record.error))

    async def cancel(self, task_id: str) -> TaskStatus:
        task = self._tasks.get(task_id)
        if task is None:
            record = await self._record(task_id)
            if record.state == "running":
                raise InvalidRequest(
                    f"Task {task_id} runs in another bridge process (pid {owner_pid(record.owner)}); "
                    "cancel it from the host that started it."
                )
            return status_of(record, mine=False)
        if task.job is not None and not task.job.done():
            task.job.cancel()
            await asyncio.wait({task.job}, timeout=CANCEL_GRACE)
        return status_of(self.store.redactor.record(task.record()), mine=True)

    async def follow_up(self, task_id: str, message: str, model: str | None = None) -> TaskRequest:
        """The request that continues a finished task's conversation with ``message``."""
        record = await self._record(task_id, messages=True)
        if record.state == "running":
            raise InvalidRequest(
                f"Task {task_id} is still running; wait for its answer ({next_call(task_id)}), then continue it."
            )
        if not record.messages:
            raise InvalidRequest(
                f"Task {task_id} has no stored conversation to continue (the history was off when it ran); "
                "start a new task instead."
            )
        history = fit_history(record.messages, self._bridge.settings.history_tokens)
        return TaskRequest(
            mcp_names=record.mcps,
            task=message,
            model=model or record.model,
            read_only=record.read_only,
            allowed_tools=record.allowed_tools,
            parent_id=record.id,
            history=history,
        )


def outcome(task: RunningTask) -> TaskResult:
    """A finished task's result; raises its failure."""
    if task.result is not None:
        return task.result
    if isinstance(task.failure, BridgeError):
        if task.state == "failed":
            raise task.failure
        raise TaskFailed(failure_text(task.id, task.state, str(task.failure)))
    if task.failure is not None:
        raise task.failure
    raise TaskFailed(failure_text(task.id, task.state, None))


def failure_text(task_id: str, state: str, error: str | None) -> str:
    if state == "cancelled":
        return f"Task {task_id} was cancelled before it finished; run it again, or continue_task it."
    if state == "interrupted":
        return (
            f"Task {task_id} was interrupted: the bridge running it stopped before it finished. "
            "Run it again, or continue_task it from where its conversation got to."
        )
    return f"Task {task_id} failed: {(error or 'no reason was recorded').removeprefix('Error: ')}"


def running_result(task: RunningTask, how: str) -> TaskResult:
    """The result of a call that returns while its task goes on."""
    follow = next_call(task.id)
    return TaskResult(
        answer=f"Task {task.id} is {how}. Call {follow} for its answer, task_status for its progress, "
        f"or cancel_task to stop it.",
        model=task.model,
        mcps=task.names,
        rounds=task.rounds,
        stop_reason=None,
        tool_calls=[],
        usage=TokenUsage(),
        elapsed_seconds=task.elapsed,
        task_id=task.id,
        state="running",
        next_call=follow,
    )
