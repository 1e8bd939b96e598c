"""Images from tool results, for models that see them.

A tool result's image blocks (a screenshot, ``read_media_file``) reach a vision model as
``image_url`` parts with a ``data:`` URL. The OpenAI chat format lets a ``tool`` message carry
text only, so the images follow the round's tool messages in one ``user`` message that says
which call each came from. Models that do not see images get the text placeholder the tool
result already holds (``[image: image/png, N bytes]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mcp.types import CallToolResult, ImageContent

MAX_IMAGES = 8
"""Images one round passes on; more are left as their placeholders."""
MAX_IMAGE_BYTES = 8 * 1024 * 1024
"""A larger image (its base64 text, that is) stays a placeholder."""


@dataclass(frozen=True)
class ToolImage:
    mime_type: str
    data: str
    """Base64, as the MCP result carries it."""


def images_of(result: CallToolResult) -> tuple[ToolImage, ...]:
    """The image blocks of a tool result that are small enough to pass on."""
    return tuple(
        ToolImage(block.mime_type, block.data)
        for block in result.content
        if isinstance(block, ImageContent)
        and block.mime_type.startswith("image/")
        and len(block.data) <= MAX_IMAGE_BYTES
    )


def image_message(results: Sequence[tuple[str, Sequence[ToolImage]]]) -> dict[str, Any] | None:
    """One ``user`` message with the images of a round's results (``(label, images)`` per call), or None."""
    parts: list[dict[str, Any]] = []
    count = 0
    for label, images in results:
        for image in images:
            if count >= MAX_IMAGES:
                break
            count += 1
            parts.append({"type": "text", "text": f"Image {count}, from {label}:"})
            parts.append({"type": "image_url", "image_url": {"url": f"data:{image.mime_type};base64,{image.data}"}})
    if not parts:
        return None
    return {"role": "user", "content": [{"type": "text", "text": "The images the tool results above hold:"}, *parts]}
