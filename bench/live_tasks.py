"""The live task set, run by a real small model: pass counts, times and write tools, as a Markdown table.

    .venv/bin/python -m bench.live_tasks --model 0.5b --sampling small --runs 3
    .venv/bin/python -m bench.live_tasks --sampling default --runs 1 --cap 300 --json default.jsonl
    .venv/bin/python -m bench.live_tasks --only time_tokyo git_last_message --base-url http://127.0.0.1:8080/v1
    .venv/bin/python -m bench.live_tasks --list

The tasks and their checks are in ``tests/live_tasks.py``. Each run of a task builds its own
fixtures, starts the bridge (``python -m lmstudio_bridge``) and calls ``autonomous_with_mcp`` (or
``autonomous_with_multiple_mcps``) over stdio, without naming a model or a round limit, as a host
would. Seconds are the wall time of that call, children's start included; a call still running
after ``--cap`` seconds is stopped and counts as failed ("timeout").

Sampling:

- ``small``: the README's settings for small models, ``LMSTUDIO_BRIDGE_TEMPERATURE=0`` and
  ``LMSTUDIO_BRIDGE_MAX_TOKENS=256`` in the bridge's environment;
- ``default``: neither variable set, and llama.cpp started at its own sampling defaults with no
  generation limit (``--n-predict -1``), as LM Studio serves by default;
- ``server``: as ``default``, and ``LMSTUDIO_BRIDGE_SAMPLING=server``: the bridge sends no
  temperature of its own, so the server's sampling applies throughout.

Without ``--base-url`` the llama.cpp server is started here (``lmstudio_bridge.llamacpp``) with
the chosen model, its log going to ``--server-log``; with it, the server's own settings apply.
Every run's transcript (answer, tool calls, stop reason, rounds, seconds, the whole structured
result, progress lines and the bridge's agent log) goes to the ``--json`` file, one line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.live_tasks import (  # noqa: E402
    DEFAULT_CAP_S,
    TASKS,
    Run,
    install_node_servers,
    repo_commit,
    run_live_task,
    tool_annotations,
)

SLOW_S = 90.0


def table(runs: dict[str, list[Run]], n: int) -> str:
    """Per task: passes, median and max seconds, write tools called, and why runs failed; then the totals."""
    lines = [
        "| task | servers | passed | median s | max s | write tools called | failures |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    every: list[Run] = []
    for name, done in runs.items():
        every += done
        seconds = [r.seconds for r in done]
        writes = sorted({w for r in done for w in r.write_calls})
        failures = "; ".join(
            f"{r.verdict}: {r.problems[0][:90]}" + (f" (+{len(r.problems) - 1})" if len(r.problems) > 1 else "")
            for r in done
            if not r.passed
        )
        lines.append(
            f"| {name} | {'+'.join(TASKS[name].servers)} | {sum(r.passed for r in done)}/{len(done)} "
            f"| {statistics.median(seconds):.1f} | {max(seconds):.1f} | {', '.join(writes) or '-'} "
            f"| {failures.replace('|', '/') or '-'} |"
        )
    seconds = [r.seconds for r in every]
    passed = sum(r.passed for r in every)
    slow = [r for r in every if r.seconds > SLOW_S]
    checked = ("unfounded_numbers", "unfounded_names", "unfounded_items", "unfounded_answer")
    flagged = [r for r in every if any(r.outcome.get(key) for key in checked)]
    unmade = [r for r in every if r.outcome.get("unfounded_change")]
    lines += [
        "",
        f"**Total**: {passed}/{len(every)} passed ({100 * passed / max(1, len(every)):.0f} %), "
        f"{sum(all(r.passed for r in d) for d in runs.values())}/{len(runs)} tasks passed every run; "
        f"median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s; "
        f"runs over {SLOW_S:g} s: {len(slow)} (tasks: {len({r.task.name for r in slow})}); "
        f"timeouts: {sum(r.timed_out for r in every)}; "
        f"runs that called a write tool: {sum(bool(r.write_calls) for r in every)}; "
        f"answers repeating the bridge's prompt text: {sum(bool(r.parroted) for r in every)}; "
        f"answers telling the user to make calls that were made: {sum(bool(r.instructs) for r in every)}; "
        f"answers the caller is told to check (numbers, names or items from nowhere, or from no result): {len(flagged)}, "
        f"{sum(r.passed for r in flagged)} of them in runs that passed; "
        f"answers saying a change was made when no call made one (the caller is told): {len(unmade)}, "
        f"{sum(r.passed for r in unmade)} of them in runs that passed; "
        f"failed runs whose answer the caller is told to check or told was not done: "
        f"{sum(not r.passed for r in every if r in flagged or r in unmade)} of {len(every) - passed}.",
    ]
    return "\n".join(lines)


async def run_all(args: argparse.Namespace, base_url: str, names: Sequence[str], model_label: str, commit: str) -> None:
    node_modules = install_node_servers()
    read_only = await tool_annotations(node_modules)
    writes = sorted(name for name, ro in read_only.items() if not ro)
    say(f"write tools (no readOnlyHint): {', '.join(writes)}")
    runs: dict[str, list[Run]] = {name: [] for name in names}
    out = open(args.json, "a") if args.json else None  # noqa: SIM115 - closed below
    started = time.perf_counter()
    try:
        total = len(names) * args.runs
        count = 0
        for index in range(args.runs):
            for name in names:
                count += 1
                run = await run_live_task(
                    TASKS[name],
                    base_url,
                    node_modules,
                    sampling=args.sampling,
                    cap=args.cap,
                    read_only_tools=read_only,
                    pass_read_only=not args.no_read_only,
                )
                runs[name].append(run)
                why = "" if run.passed else "  " + "; ".join(run.problems)[:300]
                say(
                    f"[{count}/{total}] {name} #{index + 1}: {run.verdict} in {run.seconds:.1f} s, "
                    f"{run.outcome.get('rounds', '-')} rounds, {run.outcome.get('stop_reason', '-')}, "
                    f"calls {[c['name'] + {True: '', False: '!', None: '?'}[c['ok']] for c in run.calls]}{why}"
                )
                if out:
                    out.write(json.dumps(run.record(model_label, args.sampling, commit, index + 1)) + "\n")
                    out.flush()
    finally:
        if out:
            out.close()
    print(
        f"\nLive tasks: model {model_label}, sampling {args.sampling}, {args.runs} run(s) each, cap {args.cap:g} s, "
        f"commit {commit}, {time.perf_counter() - started:.0f} s in all\n",
        flush=True,
    )
    print(table(runs, args.runs), flush=True)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="0.5b", choices=("0.5b", "1.5b"))
    parser.add_argument("--sampling", default="small", choices=("small", "default", "server"))
    parser.add_argument(
        "--no-read-only",
        action="store_true",
        help="do not pass read_only: true with the questions (tasks marked read-only)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each task (default 1)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these tasks")
    parser.add_argument("--base-url", help="use this OpenAI-compatible server instead of starting llama.cpp")
    parser.add_argument("--json", help="append one JSON line per run (the transcript) to this file")
    parser.add_argument(
        "--cap",
        type=float,
        default=DEFAULT_CAP_S,
        help=f"seconds one task may take before it counts as failed (default {DEFAULT_CAP_S:g})",
    )
    parser.add_argument("--server-log", help="llama.cpp's log (default: a file in the temp directory)")
    parser.add_argument("--list", action="store_true", help="list the tasks and what their checks require")
    args = parser.parse_args(argv)
    if args.list:
        for live in TASKS.values():
            print(f"{live.name} [{'+'.join(live.servers)}; {live.kind}]\n  {live.wording}\n  check: {live.requires}")
        return 0
    names = args.only or list(TASKS)
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        parser.error(f"unknown task(s): {', '.join(unknown)}; --list shows them")
    commit = repo_commit()
    with ExitStack() as stack:
        base_url = args.base_url
        model_label = f"{args.model} at {base_url}" if base_url else args.model
        if base_url is None:
            from lmstudio_bridge.llamacpp import start_server

            log_path = args.server_log or tempfile.mkstemp(prefix="llamacpp-", suffix=".log")[1]
            log = stack.enter_context(open(log_path, "w"))
            extra = ["--n-predict", "-1"] if args.sampling in ("default", "server") else []
            say(f"starting llama.cpp with the {args.model} model {' '.join(extra)}; its log: {log_path}")
            base_url = stack.enter_context(
                start_server(model=args.model, timeout=1800, extra_args=extra, stderr=log)
            ).base_url
        say(f"{len(names)} task(s) x {args.runs} against {base_url}, sampling {args.sampling}, commit {commit}")
        asyncio.run(run_all(args, base_url, names, model_label, commit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
