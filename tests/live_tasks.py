"""The live task set: tasks worded as users write them, run by a real local model through the bridge.

Each task names the MCP servers it uses (``time``, ``git``, ``filesystem``, ``memory``,
``everything``: the published servers), builds its own fixtures in a fresh directory (a project
tree, a git repository with known commits, a knowledge-graph file), sends its wording to the real
bridge over stdio (``autonomous_with_mcp``, or ``autonomous_with_multiple_mcps`` for two servers),
then checks what happened (side effects, the tools that ran ok according to the structured
result's ``tool_calls``) and what the answer says (values, not wording).

Every task also has to pass these checks:

- the bridge returned a result, not an error, within the cap;
- the answer came from the model (``stop_reason`` is not ``no_answer``);
- a read-only task called no write tool (a tool its server does not declare ``readOnlyHint``),
  whether or not that call succeeded, and its fixtures are byte for byte what they were.

Write tools are recorded for every task. ``bench/live_tasks.py`` runs the whole set and prints
the table; ``tests/test_live.py`` runs ``CI_SUBSET`` under pytest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent

NODE_SERVERS = (
    "@modelcontextprotocol/server-filesystem@2026.8.31",
    "@modelcontextprotocol/server-memory@2026.8.31",
    "@modelcontextprotocol/server-everything@2026.8.31",
)
SERVERS = ("time", "git", "filesystem", "memory", "everything")

BRIDGE_ENV = {
    "LMSTUDIO_BRIDGE_REQUEST_TIMEOUT": "300",
    "LMSTUDIO_BRIDGE_CHILD_START_TIMEOUT": "60",
    "LMSTUDIO_BRIDGE_DETACH_AFTER": "0",
}
"""Set for every task. The round limit is left at the user's default (25): the cap bounds a task. A task
is not handed to the background after 50 s: its call lasts the whole task, as for a host that waits."""

SAMPLING_ENV = {
    "small": {"LMSTUDIO_BRIDGE_TEMPERATURE": "0", "LMSTUDIO_BRIDGE_MAX_TOKENS": "256"},
    "default": {},
    "server": {"LMSTUDIO_BRIDGE_SAMPLING": "server"},
}
"""``small``: the README's settings for models under 3B. ``default``: what a user who sets nothing gets.
``server``: the bridge sends no sampling at all, so the server's own defaults apply (as LM Studio's presets)."""

DEFAULT_CAP_S = 300.0

# --------------------------------------------------------------------------- fixtures

PROJECT_FILES = {
    "README.md": "# Widget factory\n\nMakes widgets in batches.\n",
    "main.py": "from src.util import greet\n\nprint(greet())\n",
    "src/util.py": "def greet():\n    return 'hello'\n",
    "deploy.yaml": "port: 8080\nreplicas: 2\n",
    "notes.txt": "Buy oat milk.\nCall the plumber about the kitchen sink on Thursday.\n",
    "api.env": "PORT=8081\nLOG_LEVEL=info\n",
    "web.env": "PORT=3005\nLOG_LEVEL=debug\n",
    "greeting.txt": "Hello from the widget factory!\n",
    "contact.txt": "Name: Linus Pauling\nJob: chemist\nCity: Pasadena\n",
    "data/jan.csv": "day,widgets\n1,40\n",
    "data/feb.csv": "day,widgets\n1,42\n",
    "data/mar.csv": "day,widgets\n1,47\n",
    "data/readme.txt": "Monthly widget counts.\n",
    "data/summary.md": "# Summary\n\nQ1 went well.\n",
    "services/billing/conf/settings.ini": "[database]\nhost = db-billing.internal\nport = 5433\n",
    "services/web/app.py": "print('web')\n",
}

COMMITS = (  # author, files written, message; oldest first
    ("Ada Lovelace", {"README.md": "# Widget factory\n"}, "Start the widget factory"),
    ("Linus Torvalds", {"config.toml": "timeout = 30\n"}, "Add the config file"),
    ("Margaret Hamilton", {"widget.py": "def make(n):\n    return ['widget'] * n\n"}, "Make widgets in batches"),
    (
        "Grace Hopper",
        {"config.toml": "timeout = 45\n", "frobnicate.py": "def frobnicate(widget):\n    return widget[::-1]\n"},
        "Teach the widget factory to frobnicate",
    ),
)
BRANCHES = ("feature/login", "release-1.2")  # besides main, made at the third commit

MEMORY_GRAPH = (
    {
        "type": "entity",
        "name": "Marie Curie",
        "entityType": "person",
        "observations": ["physicist and chemist", "won two Nobel Prizes"],
    },
    {"type": "entity", "name": "Pierre Curie", "entityType": "person", "observations": ["physicist"]},
    {"type": "entity", "name": "Radium", "entityType": "element", "observations": ["discovered in 1898"]},
    {"type": "relation", "from": "Marie Curie", "to": "Pierre Curie", "relationType": "married to"},
    {"type": "relation", "from": "Marie Curie", "to": "Radium", "relationType": "discovered"},
)
ENV_VALUE = "moon-base-7"  # the everything server's DEPLOY_REGION


def node_prefix() -> Path:
    """Where the Node servers are installed: next to the model cache."""
    cache = Path(os.environ.get("LMSTUDIO_BRIDGE_MODEL_CACHE") or Path.home() / ".cache" / "lmstudio-bridge" / "models")
    return cache.parent / "node"


def install_node_servers() -> Path:
    """The published Node servers at pinned versions, installed once with npm; their parent folder."""
    prefix = node_prefix()
    marker = prefix / (".installed-" + "-".join(p.rsplit("/", 1)[-1] for p in NODE_SERVERS))
    if not marker.exists():
        if shutil.which("npm") is None:
            raise RuntimeError("npm is needed for the live tasks' Node servers")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", *NODE_SERVERS],
            check=True,
            timeout=600,
            stdout=subprocess.DEVNULL,
        )
        marker.touch()
    return prefix / "node_modules" / "@modelcontextprotocol"


@dataclasses.dataclass
class Workspace:
    """One task's fixtures under a short temporary directory, as a user's paths would be."""

    root: Path
    node_modules: Path

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def memory_file(self) -> Path:
        return self.root / "memory.jsonl"

    def build(self, servers: Sequence[str], memory_seed: bool) -> dict[str, dict[str, Any]]:
        """Builds the fixtures the servers need; returns their MCP config entries."""
        entries: dict[str, dict[str, Any]] = {}
        node = str(self.node_modules)
        for server in servers:
            if server == "time":
                entries[server] = {
                    "command": sys.executable,
                    "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
                }
            elif server == "git":
                make_repo(self.repo)
                entries[server] = {
                    "command": sys.executable,
                    "args": ["-m", "mcp_server_git", "--repository", str(self.repo)],
                }
            elif server == "filesystem":
                for name, text in PROJECT_FILES.items():
                    (self.project / name).parent.mkdir(parents=True, exist_ok=True)
                    (self.project / name).write_text(text)
                entries[server] = {
                    "command": "node",
                    "args": [f"{node}/server-filesystem/dist/index.js", str(self.project)],
                }
            elif server == "memory":
                if memory_seed:
                    self.memory_file.write_text("".join(json.dumps(item) + "\n" for item in MEMORY_GRAPH))
                entries[server] = {
                    "command": "node",
                    "args": [f"{node}/server-memory/dist/index.js"],
                    "env": {"MEMORY_FILE_PATH": str(self.memory_file)},
                }
            elif server == "everything":
                entries[server] = {
                    "command": "node",
                    "args": [f"{node}/server-everything/dist/index.js"],
                    "env": {"DEPLOY_REGION": ENV_VALUE},
                }
            else:
                raise ValueError(f"unknown server {server!r}")
        return entries

    def memory(self) -> list[dict[str, Any]]:
        if not self.memory_file.exists():
            return []
        return [json.loads(line) for line in self.memory_file.read_text().splitlines() if line.strip()]

    def entity(self, name: str) -> dict[str, Any] | None:
        """The graph's entity whose name contains ``name`` (any case)."""
        for item in self.memory():
            if item.get("type") == "entity" and name.lower() in str(item.get("name", "")).lower():
                return item
        return None

    def snapshot(self) -> dict[str, str]:
        """Every fixture file's digest, and each repository's HEAD, branches, index and status."""
        state: dict[str, str] = {}
        paths = [self.memory_file] if self.memory_file.exists() else []
        for top in (self.project, self.repo):
            if top.is_dir():
                paths += [top, *top.rglob("*")]
        for path in sorted(paths):
            relative = path.relative_to(self.root)
            if ".git" in relative.parts:
                continue
            if path.is_file():
                state[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            elif path.is_dir():
                state[str(relative) + "/"] = "dir"
        if (self.repo / ".git").is_dir():
            for what, args in (
                ("HEAD", ["symbolic-ref", "-q", "HEAD"]),
                ("commit", ["rev-parse", "HEAD"]),
                ("branches", ["branch", "--format=%(refname:short) %(objectname:short)"]),
                ("status", ["status", "--porcelain"]),
                ("index", ["ls-files", "-s"]),
            ):
                done = subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, text=True, timeout=30)
                state[f"git {what}"] = done.stdout.strip()
        return state


def make_repo(repo: Path) -> None:
    """A repository with ``COMMITS`` on main and ``BRANCHES`` at the third commit. As in a user's repository,
    each commit has its own time: three days apart, the latest two hours ago."""
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True, timeout=30)
    now = datetime.now(UTC).replace(microsecond=0)
    for index, (author, files, message) in enumerate(COMMITS):
        for name, text in files.items():
            (repo / name).write_text(text)
        email = author.lower().replace(" ", ".") + "@example.invalid"
        who = ["-c", f"user.name={author}", "-c", f"user.email={email}"]
        when = (now - timedelta(days=3 * (len(COMMITS) - 1 - index), hours=2)).isoformat()
        dated = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        subprocess.run([*git, "add", "--", *files], check=True, timeout=30)
        subprocess.run([*git, *who, "commit", "-q", "-m", message], check=True, timeout=30, env=dated)
        if index == 2:
            for branch in BRANCHES:
                subprocess.run([*git, "branch", branch], check=True, timeout=30)


# --------------------------------------------------------------------------- what a run gives a check


@dataclasses.dataclass
class Run:
    """One run of one task: what the bridge returned and what the check needs to judge it."""

    task: LiveTask
    ws: Workspace
    started: datetime
    ended: datetime | None = None
    answer: str = ""
    outcome: dict[str, Any] = dataclasses.field(default_factory=dict)  # the structured result
    error: str | None = None  # an error result's text, or why the run did not finish
    timed_out: bool = False
    seconds: float = 0.0
    before: dict[str, str] = dataclasses.field(default_factory=dict)  # the fixtures' snapshot before the run
    write_calls: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    progress: list[str] = dataclasses.field(default_factory=list)
    bridge_log: str = ""

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The structured result's ``tool_calls``; for a run stopped at the cap, the calls its progress
        notifications announced (their outcome unknown: ``ok`` is None)."""
        if self.outcome:
            return list(self.outcome.get("tool_calls") or [])
        return [{"name": m.group(1), "ok": None} for line in self.progress if (m := ANNOUNCED_CALL.search(line))]

    def ran_ok(self, *names: str) -> bool:
        """Whether one of these tools (``server.tool``) ran without error."""
        return any(c["name"] in names and c["ok"] for c in self.calls)

    def called(self, *names: str) -> bool:
        """Whether one of these tools was called, with or without success."""
        return any(c["name"] in names for c in self.calls)

    def changed(self) -> list[str]:
        """The fixture files and repository states that differ from before the run."""
        after = self.ws.snapshot()
        return sorted(k for k in self.before.keys() | after.keys() if self.before.get(k) != after.get(k))

    def text(self) -> str:
        """The answer without the fixture paths (their random characters hold digits)."""
        return self.answer.replace(str(self.ws.root), "ROOT")

    def record(self, model: str = "", sampling: str = "", commit: str = "", run_index: int = 0) -> dict[str, Any]:
        """The run's transcript, one JSON line of the runner's output."""
        return {
            "task": self.task.name,
            "run": run_index,
            "model": model,
            "sampling": sampling,
            "commit": commit,
            "wording": self.task.wording.format(project=self.ws.project, repo=self.ws.repo),
            "servers": list(self.task.servers),
            "result": self.verdict,
            "problems": self.problems,
            "seconds": round(self.seconds, 2),
            "answer": self.answer,
            "stop_reason": self.outcome.get("stop_reason"),
            "rounds": self.outcome.get("rounds"),
            "tool_calls": self.calls,
            "write_calls": self.write_calls,
            "structured": self.outcome,
            "error": self.error,
            "progress": self.progress,
            "bridge_log": self.bridge_log,
            "parroted": self.parroted,
            "instructs": self.instructs,
        }

    @property
    def parroted(self) -> list[str]:
        """Runs of five or more words in the answer that come from the bridge's own prompts (the system
        prompts, and every closing and result it writes) and not from the task: text the model repeated
        from its instructions instead of taking it from the task or the results."""
        from lmstudio_bridge import prompts

        def grams(text: str) -> set[tuple[str, ...]]:
            words = re.findall(r"[a-z0-9]+", text.lower())
            return {tuple(words[i : i + 5]) for i in range(len(words) - 4)}

        own = set().union(*(grams(v) for k, v in vars(prompts).items() if isinstance(v, str) and k.isupper()))
        return [" ".join(g) for g in sorted((grams(self.answer) & own) - grams(self.task.wording))]

    @property
    def instructs(self) -> list[str]:
        """The tools the answer tells the user to call when the calls of them worked: the task's work done,
        and an answer that reads as if it were still to do (``grounding.instructs``)."""
        from lmstudio_bridge.grounding import Made, instructs

        made = [Made(c["name"].partition(".")[2], "", "", bool(c.get("ok"))) for c in self.calls]
        offered = [label.partition(".")[2] for label in self.outcome.get("tools_offered") or ()]
        return instructs(self.answer, made, offered)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "timeout" if self.timed_out else "fail"


Check = Callable[[Run], Iterable[str]]
ANNOUNCED_CALL = re.compile(r"round \d+/\d+ · (?!waiting for |writing)(\S+)$")
"""A progress line announcing a tool call, e.g. ``round 2/25 · git.git_log``."""


@dataclasses.dataclass(frozen=True)
class LiveTask:
    name: str
    servers: tuple[str, ...]
    kind: str
    wording: str  # ``{project}`` and ``{repo}`` are the fixture paths
    check: Check
    requires: str  # what the check requires, in words, for the docs and the report
    read_only: bool = False
    memory_seed: bool = False


TASKS: dict[str, LiveTask] = {}


def task(
    name: str,
    servers: str,
    kind: str,
    wording: str,
    requires: str,
    *,
    read_only: bool = False,
    memory_seed: bool = False,
) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        assert name not in TASKS, name
        TASKS[name] = LiveTask(name, tuple(servers.split("+")), kind, wording, check, requires, read_only, memory_seed)
        return check

    return register


# --------------------------------------------------------------------------- answer helpers

CLOCK = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?(?:\s*([AaPp])\.?\s*[Mm]\b\.?)?")
NEGATIVE = re.compile(
    r"\b(no|not|none|nothing|never|cannot|unable|missing|absent|neither|nor|nonexistent|non-existent)\b|n't\b",
    re.IGNORECASE,
)


def clock_times(text: str) -> set[tuple[int, int]]:
    """Every (hour, minute) the text states; a 12-hour time without am/pm counts as both, and a 24-hour
    time stays itself whatever follows it ("14:30 am" is 14:30)."""
    found: set[tuple[int, int]] = set()
    for hour_text, minute_text, half in CLOCK.findall(text):
        hour, minute = int(hour_text), int(minute_text)
        if hour > 23 or minute > 59:
            continue
        if half and hour <= 12:
            if 1 <= hour <= 12:
                found.add((hour % 12 + (12 if half.lower() == "p" else 0), minute))
        else:
            found.add((hour, minute))
            if 1 <= hour <= 12:
                found.add(((hour + 12) % 24, minute))
    return found


def states_time_in(run: Run, zone: str, slack: timedelta = timedelta(minutes=2)) -> bool:
    """Whether the text gives the time in ``zone`` at some moment of the run (give or take ``slack``)."""
    return states_time(run.text(), run, zone, slack)


def states_time(text: str, run: Run, zone: str, slack: timedelta = timedelta(minutes=2)) -> bool:
    tz = ZoneInfo(zone)
    moment = (run.started - slack).astimezone(tz)
    end = ((run.ended or datetime.now(UTC)) + slack).astimezone(tz)
    wanted = set()
    while moment <= end:
        wanted.add((moment.hour, moment.minute))
        moment += timedelta(minutes=1)
    return bool(clock_times(text) & wanted)


ABSENCE = re.compile(
    r"\b(exists?|existing|found|find|no such|missing|there is no|there's no|not present|absent|nonexistent|non-existent)\b",
    re.IGNORECASE,
)


def says_absent(run: Run) -> bool:
    """A negative answer that says the thing is not there (exist, found, missing, ...), not just "no"."""
    return says_no(run) and bool(ABSENCE.search(run.text()))


def says_no(run: Run) -> bool:
    """A negative answer: words of denial, and it does not open with yes."""
    text = run.text()
    return bool(NEGATIVE.search(text)) and not re.match(r"\W*yes\b", text, re.IGNORECASE)


def has(run: Run, *values: str) -> list[str]:
    """Problems for each value the answer lacks (any case, thousands separators ignored)."""
    text = run.text().replace(",", "")
    return [
        f"the answer lacks {v!r}" for v in values if not re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text, re.IGNORECASE)
    ]


def number(run: Run, value: int, word: str) -> list[str]:
    if re.search(rf"\b({value}|{word})\b", run.text(), re.IGNORECASE):
        return []
    return [f"the answer does not say {value}"]


def needs(run: Run, *tools: str) -> list[str]:
    """A problem unless one of these tools ran ok."""
    return [] if run.ran_ok(*tools) else [f"no successful call of {' or '.join(tools)}"]


FS_READ = ("filesystem.read_file", "filesystem.read_text_file", "filesystem.read_multiple_files")
FS_FIND = (
    "filesystem.search_files",
    "filesystem.directory_tree",
    "filesystem.list_directory",
    "filesystem.list_directory_with_sizes",
)
GIT_HISTORY = ("git.git_log", "git.git_show")
MEMORY_READ = ("memory.read_graph", "memory.search_nodes", "memory.open_nodes")


# --------------------------------------------------------------------------- the tasks: one call


@task(
    "time_tokyo",
    "time",
    "one call",
    "What's the current time in Tokyo?",
    "time.get_current_time ok; the answer gives Tokyo's time at the moment of the run (±2 min)",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "time.get_current_time")
    if not states_time_in(run, "Asia/Tokyo"):
        yield "the answer does not give the time in Tokyo"


def _london_at_930_new_york() -> tuple[int, int]:
    today = datetime.now(ZoneInfo("America/New_York")).date()
    local = datetime(today.year, today.month, today.day, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    london = local.astimezone(ZoneInfo("Europe/London"))
    return london.hour, london.minute


@task(
    "time_convert",
    "time",
    "one call",
    "If it's 9:30 am in New York, what time is it in London?",
    "time.convert_time ok; the answer gives London's time for 9:30 in New York today (14:30 outside DST gaps)",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "time.convert_time")
    if _london_at_930_new_york() not in clock_times(run.text()):
        hour, minute = _london_at_930_new_york()
        yield f"the answer lacks {hour:02d}:{minute:02d}"


@task(
    "sum_tool",
    "everything",
    "one call",
    "How much is 1234 plus 4321? Use the get-sum tool.",
    "everything.get-sum ok; 5555 in the answer",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "everything.get-sum")
    yield from has(run, "5555")


@task(
    "env_var",
    "everything",
    "one call",
    "What is the DEPLOY_REGION environment variable set to?",
    f"everything.get-env ok; {ENV_VALUE!r} in the answer",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "everything.get-env")
    yield from has(run, ENV_VALUE)


@task(
    "weather_chicago",
    "everything",
    "one call",
    "What weather does get-structured-content report for Chicago?",
    "everything.get-structured-content ok; 36 and rain/drizzle in the answer",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "everything.get-structured-content")
    yield from has(run, "36")
    if not re.search(r"rain|drizzle", run.text(), re.IGNORECASE):
        yield "the answer lacks the conditions (light rain / drizzle)"


@task(
    "notes_read",
    "filesystem",
    "read-only, one call",
    "What's in {project}/notes.txt?",
    "a filesystem read ok; 'oat milk' and 'plumber' in the answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *FS_READ)
    yield from has(run, "oat milk", "plumber")


@task(
    "git_last_message",
    "git",
    "read-only, one call",
    "What is the message of the latest commit in the git repository at {repo}?",
    "git_log or git_show ok; 'frobnicate' in the answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *GIT_HISTORY)
    yield from has(run, "frobnicate")


@task(
    "git_show_latest",
    "git",
    "read-only, one call",
    "Show the latest commit of the git repository at {repo} and tell me its message.",
    "git_log or git_show ok; 'frobnicate' in the answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *GIT_HISTORY)
    yield from has(run, "frobnicate")


@task(
    "git_author",
    "git",
    "read-only, one call",
    "Who made the most recent commit in {repo}?",
    "git_log or git_show ok; 'Grace Hopper' in the answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *GIT_HISTORY)
    yield from has(run, "Grace Hopper")


@task(
    "git_branches",
    "git",
    "read-only, one call",
    "Which branches does the repository at {repo} have?",
    "git_branch ok; main, feature/login and release-1.2 in the answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "git.git_branch")
    yield from has(run, "main", "feature/login", "release-1.2")


@task(
    "memory_lookup",
    "memory",
    "read-only, one call",
    "What does the knowledge graph say about Marie Curie?",
    "read_graph, search_nodes or open_nodes ok; 'Nobel' and 'chemist' in the answer",
    read_only=True,
    memory_seed=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *MEMORY_READ)
    yield from has(run, "Nobel", "chemist")


# --------------------------------------------------------------------------- multi-step


@task(
    "fs_yaml_search",
    "filesystem",
    "read-only, search",
    "Search {project} for YAML files and give me their names.",
    "a search/listing tool ok; deploy.yaml named and README.md not (the YAML file, not a whole listing)",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *FS_FIND)
    yield from has(run, "deploy.yaml")
    if "README.md" in run.text():
        yield "the answer lists README.md too"


@task(
    "fs_find_then_read",
    "filesystem",
    "read-only, multi-step (search then read)",
    "There is a settings.ini somewhere under {project}. Which database host does it set?",
    "a filesystem read ok; 'db-billing.internal' in the answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *FS_READ)
    yield from has(run, "db-billing.internal")


@task(
    "fs_count_csv",
    "filesystem",
    "read-only, multi-step (list then count)",
    "How many CSV files are in {project}/data?",
    "a listing/search tool ok; the answer says 3",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *FS_FIND)
    yield from number(run, 3, "three")


@task(
    "git_count",
    "git",
    "read-only, multi-step (list then count)",
    "How many commits does the repository at {repo} have?",
    "git_log ok; the answer says 4",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "git.git_log")
    yield from number(run, len(COMMITS), "four")


@task(
    "git_last_change",
    "git",
    "read-only, multi-step (find, then show)",
    "What changed in the latest commit of {repo}?",
    "git_show or git_diff ok; the new timeout 45 and frobnicate.py in the answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "git.git_show", "git.git_diff")
    yield from has(run, "45", "frobnicate.py")


@task(
    "fs_copy",
    "filesystem",
    "multi-step (get then write)",
    "Make a copy of {project}/greeting.txt named greeting-copy.txt in the same folder.",
    "greeting-copy.txt exists with greeting.txt's text; greeting.txt unchanged",
)
def _(run: Run) -> Iterable[str]:
    _original, copy = run.ws.project / "greeting.txt", run.ws.project / "greeting-copy.txt"
    yield from only_changed(run, "project/greeting-copy.txt")
    if not copy.exists():
        yield "no greeting-copy.txt"
    elif copy.read_text().strip() != PROJECT_FILES["greeting.txt"].strip():
        yield f"greeting-copy.txt holds {copy.read_text()[:200]!r}"


@task(
    "fs_remove_line",
    "filesystem",
    "multi-step (read then edit)",
    "Remove the second line of {project}/notes.txt.",
    "notes.txt holds its first line only; nothing else changed",
)
def _(run: Run) -> Iterable[str]:
    yield from only_changed(run, "project/notes.txt")
    notes = (run.ws.project / "notes.txt").read_text()
    if notes.strip() != PROJECT_FILES["notes.txt"].splitlines()[0]:
        yield f"notes.txt holds {notes[:200]!r}"


@task(
    "memory_create",
    "memory",
    "write, one call",
    "Create an entity in the knowledge graph: a person named Ada Lovelace, with the observation that she wrote the first program.",
    "memory.create_entities ok; the graph file holds an entity named Ada Lovelace; 'Ada' in the answer",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "memory.create_entities")
    yield from only_changed(run, "memory.jsonl")
    if run.ws.entity("Ada Lovelace") is None:
        yield f"no Ada Lovelace entity in the graph: {run.ws.memory()}"
    yield from has(run, "Ada")


@task(
    "memory_add_fact",
    "memory",
    "multi-step (get then write)",
    "Add to the knowledge graph that Marie Curie was born in Warsaw.",
    "the Marie Curie entity has an observation with 'Warsaw'; its other observations and the other entities kept",
    memory_seed=True,
)
def _(run: Run) -> Iterable[str]:
    yield from only_changed(run, "memory.jsonl")
    marie = run.ws.entity("Marie Curie")
    if marie is None:
        yield "the Marie Curie entity is gone"
        return
    if not any("warsaw" in o.lower() for o in marie.get("observations", [])):
        yield f"Marie Curie's observations: {marie.get('observations')}"
    if not any("nobel" in o.lower() for o in marie.get("observations", [])):
        yield "the Nobel observation was lost"
    if run.ws.entity("Pierre Curie") is None or run.ws.entity("Radium") is None:
        yield "other entities were lost"


# --------------------------------------------------------------------------- two servers


@task(
    "time_to_file",
    "time+filesystem",
    "two servers (get then write)",
    "Write the current UTC time to {project}/stamp.txt.",
    "time.get_current_time ok; stamp.txt holds the UTC time of the run (±2 min)",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "time.get_current_time")
    yield from only_changed(run, "project/stamp.txt")
    stamp = run.ws.project / "stamp.txt"
    if not stamp.exists():
        yield "no stamp.txt"
    elif not states_time(stamp.read_text(), run, "UTC"):
        yield f"stamp.txt holds {stamp.read_text()[:200]!r}"


@task(
    "contact_to_memory",
    "filesystem+memory",
    "two servers (read then write)",
    "Read {project}/contact.txt and save the person it describes in the knowledge graph.",
    "a filesystem read ok; the graph holds an entity named Linus Pauling",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *FS_READ)
    yield from only_changed(run, "memory.jsonl")
    if run.ws.entity("Linus Pauling") is None:
        yield f"no Linus Pauling entity in the graph: {run.ws.memory()}"


@task(
    "author_to_memory",
    "git+memory",
    "two servers (read then write)",
    "Find out who made the latest commit in {repo} and add them to the knowledge graph as a person.",
    "git_log or git_show ok; the graph holds an entity named Grace Hopper; the repository unchanged",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *GIT_HISTORY)
    yield from only_changed(run, "memory.jsonl")
    if run.ws.entity("Grace Hopper") is None:
        yield f"no Grace Hopper entity in the graph: {run.ws.memory()}"


# --------------------------------------------------------------------------- the same tool several times


@task(
    "time_three_cities",
    "time",
    "same tool 3 times",
    "What time is it right now in Tokyo, London and New York?",
    "a time tool ok; the answer gives the time of the run in all three cities (±2 min)",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "time.get_current_time", "time.convert_time")
    for city, zone in (("Tokyo", "Asia/Tokyo"), ("London", "Europe/London"), ("New York", "America/New_York")):
        if not states_time_in(run, zone):
            yield f"the answer does not give the time in {city}"


@task(
    "fs_two_ports",
    "filesystem",
    "read-only, same tool twice",
    "Which ports do {project}/api.env and {project}/web.env set?",
    "a filesystem read ok; 8081 and 3005 in the answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *FS_READ)
    yield from has(run, "8081", "3005")


@task(
    "weather_two_cities",
    "everything",
    "same tool twice",
    "What temperatures does get-structured-content give for New York and for Los Angeles?",
    "get-structured-content ok; 33 and 73 in the answer",
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "everything.get-structured-content")
    yield from has(run, "33", "73")


# --------------------------------------------------------------------------- the honest answer is "there is none"


@task(
    "fs_missing_file",
    "filesystem",
    "read-only, absent",
    "What does {project}/TODO.md say?",
    "a filesystem tool called; the answer says the file does not exist (a denial with exist/found/missing/no such...)",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    if not run.called(*FS_READ, *FS_FIND, "filesystem.get_file_info"):
        yield "no filesystem tool was called"
    if not says_absent(run):
        yield "the answer does not say the file is missing"


@task(
    "git_no_such_word",
    "git",
    "read-only, absent",
    "Does any commit message in {repo} mention a database?",
    "git_log ok; a negative answer",
    read_only=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, "git.git_log")
    if not says_no(run):
        yield "the answer is not a no"


@task(
    "memory_no_such_entity",
    "memory",
    "read-only, absent",
    "Is Alan Turing in the knowledge graph?",
    "read_graph, search_nodes or open_nodes ok; a negative answer",
    read_only=True,
    memory_seed=True,
)
def _(run: Run) -> Iterable[str]:
    yield from needs(run, *MEMORY_READ)
    if not says_no(run):
        yield "the answer is not a no"


CI_SUBSET = (
    "time_tokyo",
    "time_convert",
    "sum_tool",
    "git_branches",
    "notes_read",
    "memory_create",
)
"""Run by ``pytest -m live`` in CI with the 0.5B model at the small-model settings: one task or more on
each of the five servers, among those the 0.5B passes most often (docs/performance.md). Under the fixed
paths of ``tests/test_live.py`` each sends the model the same prompt on every run. Under random paths the
0.5B gave only the first line of the note in ``notes_read`` in 2 of 9 stored runs of the whole set and in
one CI run. The rest of the set is measured by ``python -m bench.live_tasks``."""


# --------------------------------------------------------------------------- which tools write


async def tool_annotations(node_modules: Path) -> dict[str, bool]:
    """``server.tool`` -> read-only, as each server declares it (``readOnlyHint``; absent counts as a write)."""
    with tempfile.TemporaryDirectory(prefix="live-tools-") as tmp:
        ws = Workspace(Path(tmp), node_modules)
        entries = ws.build(SERVERS, memory_seed=False)
        found: dict[str, bool] = {}
        for name, entry in entries.items():
            env = {"PATH": os.environ.get("PATH", ""), **entry.get("env", {})}
            params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=tmp)
            with open(os.devnull, "w") as quiet:
                async with Client(stdio_client(params, errlog=quiet), mode="legacy", read_timeout_seconds=60) as client:
                    listing = await client.list_tools()
            for tool in listing.tools:
                hints = tool.annotations
                found[f"{name}.{tool.name}"] = bool(hints and hints.read_only_hint)
        return found


# --------------------------------------------------------------------------- running one task


@asynccontextmanager
async def bridge_over_stdio(
    base_url: str, ws: Workspace, config: Path, env: dict[str, str], errlog: Any
) -> AsyncIterator[Client]:
    """The real bridge as a subprocess, with a hermetic home, spoken to over stdio (as ``tests.conftest.bridge_client``)."""
    home = ws.root / "home"
    home.mkdir(exist_ok=True)
    environment = {
        "LMSTUDIO_BASE_URL": base_url,
        "LMSTUDIO_BRIDGE_MCP_CONFIG": str(config),
        "LMSTUDIO_BRIDGE_LOG_LEVEL": "DEBUG",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),  # this checkout's bridge, wherever the environment's own install points
        **env,
    }
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "lmstudio_bridge"], env=environment, cwd=str(ws.root)
    )
    async with Client(stdio_client(params, errlog=errlog), mode="legacy", read_timeout_seconds=3600) as client:
        yield client


async def run_live_task(
    live: LiveTask,
    base_url: str,
    node_modules: Path,
    *,
    sampling: str = "small",
    cap: float = DEFAULT_CAP_S,
    read_only_tools: dict[str, bool] | None = None,
    keep: bool = False,
    pass_read_only: bool = True,
    root: Path | None = None,
) -> Run:
    """Builds the task's fixtures, runs it through the bridge within ``cap`` seconds, and checks it.

    A question (a task marked read-only) is passed with ``read_only: true``, as the tool's description
    tells a host to do, unless ``pass_read_only`` is false. The fixtures go under ``root``, made afresh,
    or else under a new temporary directory of a random name, as users' paths differ."""
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="live-"))
    else:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    ws = Workspace(root, node_modules)
    run = Run(task=live, ws=ws, started=datetime.now(UTC))
    try:
        entries = ws.build(live.servers, live.memory_seed)
        config = root / "mcp.json"
        config.write_text(json.dumps({"mcpServers": entries}, indent=2))
        run.before = ws.snapshot()
        wording = live.wording.format(project=ws.project, repo=ws.repo)
        if len(live.servers) == 1:
            tool, arguments = "autonomous_with_mcp", {"mcp_name": live.servers[0], "task": wording}
        else:
            tool, arguments = "autonomous_with_multiple_mcps", {"mcp_names": list(live.servers), "task": wording}
        if live.read_only and pass_read_only:
            arguments["read_only"] = True

        async def progress(_done: float, _total: float | None, message: str | None) -> None:
            run.progress.append(f"{time.perf_counter() - started:7.1f} s  {message}")

        log_path = root / "bridge.log"
        with open(log_path, "w") as errlog:
            async with bridge_over_stdio(
                base_url, ws, config, {**BRIDGE_ENV, **SAMPLING_ENV[sampling]}, errlog
            ) as client:
                run.started = datetime.now(UTC)
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(cap):
                        result = await client.call_tool(tool, arguments, progress_callback=progress)
                except TimeoutError:
                    run.timed_out = True
                    run.error = f"timeout: no result within {cap:g} s"
                run.seconds = time.perf_counter() - started
                run.ended = datetime.now(UTC)
        run.bridge_log = _agent_log(log_path.read_text(errors="replace"))
        if not run.timed_out:
            text = "\n".join(getattr(b, "text", "") for b in result.content)
            if result.is_error:
                run.error = text
            else:
                run.outcome = dict(result.structured_content or {})
                run.answer = str(run.outcome.get("answer", text))
        judge(run, read_only_tools)
    except Exception as exc:  # noqa: BLE001 - a broken run is reported like a failed one
        run.error = run.error or f"{type(exc).__name__}: {exc}"
        run.problems = run.problems or [f"the run broke: {run.error}"]
        run.ended = run.ended or datetime.now(UTC)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return run


def judge(run: Run, read_only_tools: dict[str, bool] | None = None) -> None:
    """Fills in the run's write calls and problems."""
    live = run.task
    run.write_calls = [
        c["name"] + {True: "", False: " (failed)", None: " (outcome unknown)"}[c["ok"]]
        for c in run.calls
        if is_write_tool(c["name"], read_only_tools)
    ]
    problems: list[str] = []
    if run.timed_out or run.error:
        problems.append(run.error or "no result")
    elif run.outcome.get("stop_reason") == "no_answer":
        problems.append("no answer from the model (stop_reason no_answer)")
    if live.read_only:
        if run.write_calls:
            problems.append(f"write tools called in a read-only task: {', '.join(run.write_calls)}")
        if changed := run.changed():
            problems.append(f"fixtures changed: {', '.join(changed)}")
    if not (run.timed_out or run.error):
        problems.extend(live.check(run))
    run.problems = problems


WRITE_TOOLS = frozenset(
    {
        "git.git_commit",
        "git.git_add",
        "git.git_reset",
        "git.git_create_branch",
        "git.git_checkout",
        "filesystem.write_file",
        "filesystem.edit_file",
        "filesystem.create_directory",
        "filesystem.move_file",
        "memory.create_entities",
        "memory.create_relations",
        "memory.add_observations",
        "memory.delete_entities",
        "memory.delete_observations",
        "memory.delete_relations",
        "everything.gzip-file-as-resource",
        "everything.toggle-simulated-logging",
        "everything.toggle-subscriber-updates",
        "everything.simulate-research-query",
    }
)
"""The tools without ``readOnlyHint`` in the pinned servers, for when their declarations were not read."""


def is_write_tool(name: str, read_only_tools: dict[str, bool] | None = None) -> bool:
    """Whether ``server.tool`` is one its server does not declare read-only. Unknown names (a tool that
    does not exist never ran) are not write tools."""
    if read_only_tools:
        return name in read_only_tools and not read_only_tools[name]
    return name in WRITE_TOOLS


def only_changed(run: Run, *allowed: str) -> list[str]:
    """A problem for each fixture change other than ``allowed`` (paths relative to the workspace)."""
    others = [k for k in run.changed() if k not in allowed]
    return [f"fixtures changed: {', '.join(others)}"] if others else []


LOG_RECORD = re.compile(r"^\d\d:\d\d:\d\d \w+ ")


def _agent_log(log: str, limit: int = 60_000) -> str:
    """The bridge's log records (with their continuation lines) that show the task's path: rounds,
    answer steps with every call's arguments and result, failures. Children's stderr is left out."""
    records: list[list[str]] = []
    for line in log.splitlines():
        if LOG_RECORD.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    wanted = (
        "lmstudio_bridge.agent",
        "lmstudio_bridge.lmstudio",
        "lmstudio_bridge.server",
        "lmstudio_bridge.service",
        "lmstudio_bridge.toolbox",
        "Traceback",
        "ERROR",
        "WARNING",
    )
    text = "\n".join("\n".join(r) for r in records if any(w in r[0] for w in wanted))
    return text if len(text) <= limit else text[: limit // 2] + "\n[...]\n" + text[-limit // 2 :]


def repo_commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout
    return done.stdout.strip() + ("+dirty" if dirty.strip() else "")
