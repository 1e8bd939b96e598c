"""The Node child of figure 5: ``@modelcontextprotocol/server-memory``, installed once into bench/.cache/node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .common import CACHE, say

PACKAGE = "@modelcontextprotocol/server-memory"
PREFIX = CACHE / "node"
BIN = PREFIX / "node_modules" / ".bin" / "mcp-server-memory"

skip_reason: str | None = None


def node_memory_server() -> Path | None:
    """The server's command, installing it on first use; None (and ``skip_reason``) when that cannot be done."""
    global skip_reason
    if BIN.exists():
        return BIN
    if shutil.which("npx") is None or shutil.which("npm") is None or shutil.which("node") is None:
        skip_reason = "npx/npm/node not found"
        return None
    say(f"installing {PACKAGE} into {PREFIX} (once) ...")
    PREFIX.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["npm", "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", "--loglevel=error", PACKAGE],
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        skip_reason = f"npm install failed: {detail.strip()[:200]}"
        return None
    if not BIN.exists():
        skip_reason = f"npm install did not provide {BIN.name}"
        return None
    return BIN
