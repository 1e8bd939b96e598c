"""A small MCP server (stdio) that asks its client things, and whose tools say (or not) that they only read.

Run: ``python tests/support/asking_server.py [--annotations FILE] [--log FILE]``

Tools:
- ``summarize(text)``: asks the client for a model reply (``sampling/createMessage``) and returns its text.
- ``confirm(question)``: asks the client for the user's input (``elicitation/create``) and returns
  ``action=<accept|decline|cancel> content=<json>``.
- ``list_roots()``: asks the client for its roots (``roots/list``) and returns their URIs, one a line.
- ``read_note()`` (``readOnlyHint: true``) and ``write_note(text)`` (``destructiveHint: true``): each returns
  what it did, and ``write_note`` appends a line to ``--log`` when given, so a test sees whether it ran.

``--annotations FILE``: a JSON object ``{"read_note": true, "write_note": false}`` read at start, giving
each tool's ``readOnlyHint`` (a tool left out carries no annotations), so a test can change a tool's
annotations between two starts.

Nothing but the MCP protocol is written to stdout.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import SamplingMessage, TextContent, ToolAnnotations
from pydantic import BaseModel

warnings.simplefilter("ignore")  # sampling and roots are deprecated in the newest revision; they still work


class Answer(BaseModel):
    answer: str


def annotations_for(read_only: bool | None) -> ToolAnnotations | None:
    if read_only is None:
        return None
    return ToolAnnotations(read_only_hint=read_only, destructive_hint=not read_only)


def build_server(hints: dict[str, bool], log: Path | None) -> MCPServer:
    server = MCPServer("asking", version="1.0.0")

    @server.tool(description="Ask the client's model to summarize the text.")
    async def summarize(text: str, ctx: Context) -> str:
        result = await ctx.request_context.session.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text=f"Summarize: {text}"))],
            max_tokens=64,
            system_prompt="You summarize.",
            related_request_id=ctx.request_id,
        )
        content = result.content
        return content.text if isinstance(content, TextContent) else f"[{content.type}]"

    @server.tool(description="Ask the user a question.")
    async def confirm(question: str, ctx: Context) -> str:
        result = await ctx.request_context.session.elicit_form(
            question, Answer.model_json_schema(), related_request_id=ctx.request_id
        )
        return f"action={result.action} content={json.dumps(result.content)}"

    @server.tool(description="The client's roots, one URI a line.")
    async def list_roots(ctx: Context) -> str:
        result = await ctx.request_context.session.list_roots()
        return "\n".join(str(root.uri) for root in result.roots) or "(no roots)"

    @server.tool(description="Read the note.", annotations=annotations_for(hints.get("read_note")))
    def read_note() -> str:
        return "the note says hello"

    @server.tool(description="Write the note.", annotations=annotations_for(hints.get("write_note")))
    def write_note(text: str) -> str:
        if log is not None:
            with log.open("a", encoding="utf-8") as out:
                out.write(f"wrote {text}\n")
        return f"wrote {text}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=None)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    hints = json.loads(args.annotations.read_text()) if args.annotations else {"read_note": True, "write_note": False}
    build_server(hints, args.log).run()


if __name__ == "__main__":
    main()
