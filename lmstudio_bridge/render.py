"""Plain-text forms of the results, shared by the MCP tools and the command line."""

from __future__ import annotations

from .errors import capitalized
from .results import (
    HealthResult,
    McpListResult,
    ModelEntry,
    ModelLoadResult,
    ModelsResult,
    ModelUnloadResult,
    TaskResult,
)

REFUSED_BY = {
    "rules": "denied by the tool rules",
    "allowed_tools": "not in allowed_tools",
    "read_only": "not read-only, in a read-only task",
    "approval": "refused by the approval setting",
    "user": "declined by the user",
    "timeout": "the user did not answer in time",
}


def render_models(result: ModelsResult) -> str:
    if not result.models:
        name = result.server_name or f"LM Studio at {result.base_url}"
        if not name.startswith("LM Studio"):
            return f"No models are listed by {name}.\nIts log says why; restart the bridge to start it again."
        return (
            f"No models are loaded in {name}.\n"
            "Load one in LM Studio (My Models -> Load) or run `lms load <model>`, then call list_models again."
        )
    lines = [f"Available models ({len(result.models)}):"]
    lines += [f"{n}. {m.id}{_facts(m)}" for n, m in enumerate(result.models, start=1)]
    if result.default_model:
        lines += ["", f"Default model: {result.default_model}"]
    if result.notes:
        lines += ["", *result.notes]
    return "\n".join(lines)


def _facts(model: ModelEntry) -> str:
    """`` (loaded, llm, context 4096 of 32768, tool use, on URL)``: what the server says, after the id."""
    facts = []
    if model.loaded is not None:
        facts.append("loaded" if model.loaded else "not loaded")
    if model.type != "unknown":
        facts.append(model.type)
    if model.context_length and model.max_context_length:
        facts.append(f"context {model.context_length} of {model.max_context_length}")
    elif model.context_length:
        facts.append(f"context {model.context_length}")
    elif model.max_context_length:
        facts.append(f"max context {model.max_context_length}")
    facts += [c.replace("_", " ") for c in model.capabilities]
    if model.server:
        facts.append(f"on {model.server}")
    return f" ({', '.join(facts)})" if facts else ""


def render_health(result: HealthResult) -> str:
    if len(result.servers) > 1:
        lines = [f"{len([s for s in result.servers if s.reachable])} of {len(result.servers)} model servers reachable:"]
        for server in result.servers:
            if server.reachable:
                lines.append(
                    f"- {server.base_url}: reachable ({server.api}), {server.model_count} model(s), "
                    f"round trip {server.round_trip_ms:g} ms"
                )
            else:
                lines.append(f"- {server.base_url}: not reachable. {server.error}")
        if result.default_model:
            lines.append(f"Default model: {result.default_model}")
        return "\n".join(lines)
    name = capitalized(result.server_name or f"LM Studio at {result.base_url}")
    if not result.reachable:
        return f"{name}: not reachable.\n{result.error}"
    default = f", default {result.default_model}" if result.default_model else ""
    return f"{name}: reachable, {result.model_count} model(s){default}, round trip {result.round_trip_ms:g} ms."


def render_mcps(result: McpListResult) -> str:
    usable = [m for m in result.mcps if m.usable]
    lines = [f"Available MCPs ({len(usable)}):"]
    for entry in result.mcps:
        target = entry.command or entry.url
        where = f"{entry.transport}: {target}" if target else entry.transport
        note = f"  [{entry.note}]" if entry.note else ""
        lines.append(f"- {entry.name} ({where}) from {entry.source}{note}")
        rules = [
            f"{key}: {', '.join(values)}" for key, values in (("allow", entry.allow), ("deny", entry.deny)) if values
        ]
        if entry.tools is not None:
            rules.append(f"tools: {', '.join(entry.tools) or '(none)'}")
        if rules:
            lines.append(f"    {'; '.join(rules)}")
    if not result.mcps:
        lines.append(
            'No MCP servers are configured. Add them under "mcpServers" in .mcp.json, ~/.lmstudio/mcp.json, '
            "Claude Desktop's config, or a file named by LMSTUDIO_BRIDGE_MCP_CONFIG."
        )
    if result.problems:
        lines += ["", "Problems:"] + [f"- {p}" for p in result.problems]
    return "\n".join(lines)


def render_task(result: TaskResult, *, include_reasoning: bool = False) -> str:
    """The answer, with a note when the task ended early, and the reasoning only when asked for."""
    text = result.answer or "(the model gave an empty answer)"
    if result.stop_reason == "round_limit":
        text += (
            f"\n\n[Round limit reached: the model used all {result.rounds - 1} tool rounds; "
            "this is its answer from the results so far. Raise max_rounds for a longer task.]"
        )
    if result.generation.answer_cut == "budget":
        text += (
            "\n\n[The answer was cut off: it ran past the bridge's reply budget (LMSTUDIO_BRIDGE_REPLY_TOKENS). "
            "Ask for a shorter answer, or raise the budget.]"
        )
    if result.unfounded_numbers or result.unfounded_names:
        said = [f"gives {_some(result.unfounded_numbers)}"] if result.unfounded_numbers else []
        said += [f"names {_some(result.unfounded_names)}"] if result.unfounded_names else []
        made_up = (
            f", but for calls given made-up values ({_some(result.unfounded_calls)})" if result.unfounded_calls else ""
        )
        text += f"\n\n[Check the answer: it {' and '.join(said)}, which neither the task nor any tool result holds{made_up}.]"
    if result.unfounded_items:
        text += (
            f"\n\n[Check the answer: no tool call gave a result for {listed(result.unfounded_items)}, which the "
            "task asks about.]"
        )
    if result.unfounded_answer:
        text += (
            f"\n\n[Check the answer: every tool call failed or returned nothing ({_some(result.unfounded_answer)}), "
            "so no tool result supports it.]"
        )
    if result.unfounded_change:
        text += (
            f"\n\n[Not done: the answer says something was {result.unfounded_change}, but no tool call in this "
            "task changed anything. Run the task again, or with a larger model.]"
        )
    if result.stop_reason == "no_answer":
        text += "\n\n[The model did not answer; a larger model, or a narrower task, may do better.]"
    if result.refused_calls:
        shown = "; ".join(f"{r.name} ({REFUSED_BY[r.by]})" for r in result.refused_calls[:5])
        more = f" and {len(result.refused_calls) - 5} more" if len(result.refused_calls) > 5 else ""
        text += f"\n\n[Calls that did not run: {shown}{more}.]"
    if include_reasoning and result.reasoning:
        text += f"\n\n--- reasoning ---\n{result.reasoning}"
    return text


def _some(items: list[str], shown: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 2 more``."""
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def listed(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def render_load(result: ModelLoadResult) -> str:
    context = f" with a context of {result.context_length:,} tokens" if result.context_length else ""
    if not result.loaded_now:
        return f"{result.model} is loaded already on {result.server}{context}."
    took = f" in {result.load_time_seconds:g} s" if result.load_time_seconds is not None else ""
    return f"Loaded {result.model} on {result.server}{context}{took}."


def render_unload(result: ModelUnloadResult) -> str:
    return f"Unloaded {', '.join(result.unloaded)} on {', '.join(result.servers)}."
