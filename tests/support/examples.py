"""The scripts in ``examples/`` run in this process, as ``python examples/NAME.py ARGS`` would run them.

Each script imports ``bridge_helpers`` from its folder and starts the bridge over stdio with
``bridge_helpers.bridge()``; here that one function is replaced by the bridge in this process,
given the same environment and working directory. Everything else (argument parsing, the calls,
what is printed, exit codes) is the script's own code. tests/test_examples.py still runs one
script as a real process, so ``bridge_helpers.bridge()`` itself is tested too.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from unittest import mock

from mcp import Client

from .bridge import bridge_client_for, run_in_process
from .common import ROOT

EXAMPLES = ROOT / "examples"


def run_example(
    name: str, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python examples/NAME ARGS`` in this process, with the bridge in this process: exit code, stdout, stderr."""
    script = EXAMPLES / name

    def main() -> None:
        with mock.patch.dict(sys.modules):  # the script's bridge_helpers is gone again afterwards
            _load_helpers()
            runpy.run_path(str(script), run_name="__main__")

    return run_in_process(main, [str(script), *args], env=env, cwd=cwd)


def _load_helpers() -> ModuleType:
    """A new ``bridge_helpers`` in ``sys.modules``, where the script's import finds it.

    (examples/ is not on ``sys.path``; ``python examples/NAME.py`` puts it there for the script.)
    """
    spec = importlib.util.spec_from_file_location("bridge_helpers", EXAMPLES / "bridge_helpers.py")
    assert spec is not None and spec.loader is not None
    helpers = importlib.util.module_from_spec(spec)
    sys.modules["bridge_helpers"] = helpers
    spec.loader.exec_module(helpers)
    timeout = helpers.TASK_TIMEOUT

    @asynccontextmanager
    async def bridge() -> AsyncIterator[Client]:
        """What ``bridge_helpers.bridge`` starts over stdio, in this process: the same environment and folder."""
        env = dict(os.environ)
        env.setdefault("LMSTUDIO_BRIDGE_LOG_LEVEL", "WARNING")
        async with bridge_client_for(env, Path.cwd(), read_timeout=timeout) as client:
            yield client

    helpers.bridge = bridge
    return helpers
