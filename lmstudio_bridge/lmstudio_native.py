"""LM Studio's native REST API, read: which listing a server has, and what its answers mean.

LM Studio 0.4 has ``/api/v1/models`` (state, context lengths, capabilities) and load/unload;
0.3 has ``/api/v0/models`` (state, type, maximum context); any other OpenAI-compatible server
has only ``/v1/models``. ``lmstudio.LMStudioAPI`` asks for each once, in that order, and
remembers the first that answers; this module turns each answer into ``ModelInfo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Dialect = Literal["v1", "v0", "openai"]
"""Which model listing a server answers: LM Studio 0.4, LM Studio 0.3, or only the OpenAI one."""

LISTINGS: tuple[tuple[Dialect, str], ...] = (
    ("v1", "/api/v1/models"),
    ("v0", "/api/v0/models"),
    ("openai", "/v1/models"),
)
LOAD_PATH = "/api/v1/models/load"
UNLOAD_PATH = "/api/v1/models/unload"

ModelType = Literal["llm", "vlm", "embeddings", "unknown"]


@dataclass(frozen=True)
class ModelInfo:
    """One entry of a server's model list; ``None`` wherever the server does not say."""

    id: str
    type: ModelType = "unknown"
    loaded: bool | None = None
    """``None`` when the server does not say (the OpenAI endpoint never does)."""
    context_length: int | None = None
    """The context the model is loaded with (its first loaded instance's)."""
    max_context_length: int | None = None
    tool_use: bool | None = None
    """Trained for tool use."""
    vision: bool | None = None
    reasoning: bool | None = None
    instances: tuple[str, ...] = ()
    """Ids of its loaded instances (``model``, ``model:2``)."""
    server: str = ""
    """The base URL of the server that lists it (set when several servers are merged)."""

    @property
    def is_embedding(self) -> bool:
        return self.type == "embeddings" or (self.type == "unknown" and "embed" in self.id.lower())

    @property
    def sees_images(self) -> bool:
        return self.type == "vlm" or bool(self.vision)

    @property
    def capabilities(self) -> list[str]:
        """What the server says the model can do: ``tool_use``, ``vision``, ``reasoning``."""
        flags = (("tool_use", self.tool_use), ("vision", self.sees_images), ("reasoning", self.reasoning))
        return [name for name, value in flags if value]


@dataclass(frozen=True)
class LoadResult:
    """LM Studio's answer to a load: the instance to unload later, and how long loading took."""

    model: str
    instance_id: str
    load_time_seconds: float | None
    context_length: int | None


class UnexpectedListing(ValueError):
    """The body is not the listing the endpoint promises."""


def parse_listing(dialect: Dialect, body: Any) -> list[ModelInfo]:
    """The models of one listing; raises ``UnexpectedListing`` for any other body."""
    try:
        if dialect == "v1":
            return [_v1_entry(e) for e in body["models"]]
        if dialect == "v0":
            return [_v0_entry(e) for e in body["data"]]
        return [ModelInfo(id=str(e["id"])) for e in body["data"]]
    except (KeyError, TypeError, AttributeError):
        raise UnexpectedListing(str(body)[:200]) from None


def parse_load(model: str, body: Any, context_length: int | None) -> LoadResult:
    if not isinstance(body, dict):
        raise UnexpectedListing(str(body)[:200])
    seconds = body.get("load_time_seconds")
    return LoadResult(
        model=model,
        instance_id=str(body.get("instance_id") or model),
        load_time_seconds=float(seconds) if isinstance(seconds, int | float) else None,
        context_length=context_length,
    )


def _v1_entry(entry: dict[str, Any]) -> ModelInfo:
    capabilities = entry.get("capabilities") or {}
    vision = _flag(capabilities.get("vision"))
    kind = entry.get("type")
    model_type: ModelType = "embeddings" if kind == "embedding" else ("vlm" if vision else "llm") if kind else "unknown"
    instances = [i for i in entry.get("loaded_instances") or [] if isinstance(i, dict)]
    config = instances[0].get("config") or {} if instances else {}
    reasoning = capabilities.get("reasoning")
    return ModelInfo(
        id=str(entry["key"]),
        type=model_type,
        loaded=bool(instances),
        context_length=_int(config.get("context_length")),
        max_context_length=_int(entry.get("max_context_length")),
        tool_use=_flag(capabilities.get("trained_for_tool_use")),
        vision=vision,
        reasoning=bool(reasoning) if capabilities else None,
        instances=tuple(str(i["id"]) for i in instances if i.get("id")),
    )


def _v0_entry(entry: dict[str, Any]) -> ModelInfo:
    kind = entry.get("type")
    return ModelInfo(
        id=str(entry["id"]),
        type=kind if kind in ("llm", "vlm", "embeddings") else "unknown",
        loaded=entry.get("state") == "loaded" if "state" in entry else None,
        max_context_length=_int(entry.get("max_context_length")),
        vision=True if kind == "vlm" else None,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
