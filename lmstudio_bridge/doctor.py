"""``lmstudio-bridge doctor``: checks LM Studio and every configured MCP server, and says how to fix what fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from .errors import BridgeError, LMStudioAuthError, LMStudioUnreachable, ServerDidNotStart, capitalized, quoted
from .service import Bridge

OK, BAD, NOTE = "ok  ", "FAIL", "note"
Say = Callable[..., None]


async def run_doctor(bridge: Bridge, *, out: TextIO) -> bool:
    """Prints one line per check; True when nothing failed."""

    def say(status: str, text: str, fix: str = "") -> None:
        out.write(f"[{status}] {text}\n")
        if fix:
            out.write(f"       fix: {fix}\n")
        out.flush()

    healthy = await _check_lmstudio(bridge, say)
    healthy = _check_config_files(bridge, say) and healthy
    return await _check_mcps(bridge, say) and healthy


async def _check_lmstudio(bridge: Bridge, say: Say) -> bool:
    started = time.perf_counter()
    api = bridge.api
    if api.managed is not None and api.starting:
        say(NOTE, f"starting {api.managed.label} (its first start fetches the model)")
    try:
        listing = await bridge.validator.models(refresh=True)
    except ServerDidNotStart as exc:
        say(BAD, f"{capitalized(exc.server)} did not start: {exc.reason}", exc.hint)
        return False
    except LMStudioUnreachable as exc:
        say(BAD, f"{capitalized(api.server_name)} does not answer", str(exc).split(". ", 1)[-1])
        return False
    except LMStudioAuthError:
        say(BAD, f"{capitalized(api.server_name)} refused the request", "set LMSTUDIO_API_KEY (or LM_API_TOKEN)")
        return False
    except BridgeError as exc:
        say(BAD, f"{capitalized(api.server_name)}: {exc}")
        return False
    ms = (time.perf_counter() - started) * 1000
    say(OK, f"{capitalized(api.server_name)} answers ({ms:.0f} ms)")
    if not listing.models:
        say(BAD, "no model is loaded", str(api.no_models_loaded()).split(". ", 1)[-1])
        return False
    say(
        OK, f"{len(listing.models)} model(s): {', '.join(listing.names[:8])}{' ...' if len(listing.models) > 8 else ''}"
    )
    configured = bridge.settings.default_model
    if configured and listing.match(configured) is None:
        say(
            BAD, f"LMSTUDIO_DEFAULT_MODEL={quoted(configured)} is not listed", "use an id from `lmstudio-bridge models`"
        )
        return False
    reports_loading = any(m.loaded is not None for m in listing.models)
    how = "LMSTUDIO_DEFAULT_MODEL" if configured else "first loaded" if reports_loading else "first listed"
    say(OK, f"default model: {listing.default} ({how})")
    return True


def _check_config_files(bridge: Bridge, say: Say) -> bool:
    problems = bridge.catalog.problems
    found = [str(p) for p, _ in bridge.catalog.candidate_paths() if p.is_file()]
    clean = [path for path in found if not any(problem.startswith(f"{path}:") for problem in problems)]
    if clean:
        say(OK, "MCP config files: " + ", ".join(clean))
    elif not found:
        say(
            NOTE,
            "no MCP config file found",
            'create .mcp.json with an "mcpServers" object, or set LMSTUDIO_BRIDGE_MCP_CONFIG',
        )
    for problem in problems:
        say(BAD, problem, "fix the file; the other files are still used")
    return not problems


async def _check_mcps(bridge: Bridge, say: Say) -> bool:
    healthy = True
    for entry in bridge.list_mcps().mcps:
        if not entry.usable:
            say(NOTE, f"MCP '{entry.name}': {entry.note}")
            continue
        started = time.perf_counter()
        try:
            async with bridge.children.lease(bridge.catalog.get(entry.name)) as child:
                names = [t.name for t in child.tools]
        except BridgeError as exc:
            say(BAD, str(exc), "run the command from the entry by hand to see why it fails")
            healthy = False
            continue
        seconds = time.perf_counter() - started
        shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
        say(OK, f"MCP '{entry.name}' started in {seconds:.2f} s, {len(names)} tool(s): {shown}")
    return healthy
